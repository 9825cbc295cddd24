"""The ECG target's series, study plan and the schema of its cohort ``acquisition:`` block."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthpacs.generation.contract import PlanDraws, SeriesSlot, StudyPlan

TWELVE_LEAD_ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
SLOTS = (SeriesSlot("ecg", 1, "ECG", TWELVE_LEAD_ECG),)
SERIES_DESCRIPTION = "Resting 12-lead ECG"
#: Heart rates a cohort may ask for (a resting ECG of an adult trial subject).
RATE_LIMITS = (35.0, 160.0)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QTcEffect(_Strict):
    """A drug's effect on QTcF in the subjects it affects (a concentration-QTc effect at steady state)."""

    share: float = Field(0.3, ge=0, le=1)  # share of subjects whose QTc rises on treatment
    max_ms: float = Field(12.0, ge=0, le=80)  # mean rise at steady state, ms (a subject's own: 0.6-1.4x)
    onset_visits: float = Field(1.5, gt=0, le=20)  # visits to reach 63 % of it (exponential)


class ECGAcquisition(_Strict):
    """The ``acquisition:`` block of a cohort's ECG exam."""

    heart_rate_bpm: tuple[float, float] = (55.0, 95.0)  # the cohort's resting rates at baseline
    qtc_effect: QTcEffect = QTcEffect(share=0.3, max_ms=12.0, onset_visits=1.5)
    abnormal_share: float = Field(0.08, ge=0, le=1)  # ECGs with a finding a safety reader looks for

    @model_validator(mode="after")
    def _rates(self) -> ECGAcquisition:
        low, high = self.heart_rate_bpm
        lo, hi = RATE_LIMITS
        if not lo <= low < high <= hi:
            raise ValueError(
                f"heart_rate_bpm must be [low, high] with {lo:g} <= low < high <= {hi:g} beats/min, got [{low:g}, {high:g}]"
            )
        return self


def plan(draws: PlanDraws) -> StudyPlan:
    """One ECG instance per study: a waveform, no pixel matrix."""
    n = len(draws)
    ones, zeros = np.ones((n, 1), dtype=np.int64), np.zeros((n, 1), dtype=np.int64)
    descriptions = np.full((n, 1), SERIES_DESCRIPTION, dtype=object)
    return StudyPlan(n_instances=ones, frames=zeros, rows=zeros, columns=zeros, descriptions=descriptions)
