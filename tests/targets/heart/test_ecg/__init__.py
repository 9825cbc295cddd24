"""A waveform-only target for the contract tests: one 12-lead resting ECG per study."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydicom.sr.coding import Code

from synthpacs.generation.contract import Part, PlanDraws, SeriesSlot, StudyPlan, StudyRequest, ZooTarget
from synthpacs.imaging.spec import IODSpec, WaveformSpec

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
SLOTS = (SeriesSlot("ecg", 1, "ECG", TWELVE_LEAD),)
# CID 3001 leads (SCPECG).
LEADS = tuple(
    Code(f"5.6.3-9-{n}", "SCPECG", name, scheme_version="1.3")
    for n, name in (
        (1, "Lead I"),
        (2, "Lead II"),
        (61, "Lead III"),
        (62, "Lead aVR"),
        (63, "Lead aVL"),
        (64, "Lead aVF"),
        (3, "Lead V1"),
        (4, "Lead V2"),
        (5, "Lead V3"),
        (6, "Lead V4"),
        (7, "Lead V5"),
        (8, "Lead V6"),
    )
)
INTERVALS = (Code("8625-6", "LN", "P-R interval"), Code("8633-0", "LN", "QRS duration"), Code("8634-8", "LN", "Q-T interval"))


class Acquisition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seconds: float = Field(10.0, gt=0, le=30)
    sampling_frequency_hz: float = Field(500.0, ge=200, le=1000)


def plan(draws: PlanDraws) -> StudyPlan:
    n = len(draws)
    ones, zeros = np.ones((n, 1), dtype=np.int64), np.zeros((n, 1), dtype=np.int64)
    descriptions = np.full((n, 1), "Resting 12-lead ECG", dtype=object)
    return StudyPlan(n_instances=ones, frames=zeros, rows=zeros, columns=zeros, descriptions=descriptions)


class ECGGenerator:
    fingerprint = "test-ecg-1"

    def generate(self, request: StudyRequest, part: Part | None = None) -> list[IODSpec]:
        acq = request.acquisition
        rng = request.draws.study_rng("ecg")
        rate = rng.uniform(55, 90)  # beats per minute
        t = np.arange(int(acq.seconds * acq.sampling_frequency_hz)) / acq.sampling_frequency_hz
        phase = (t * rate / 60.0) % 1.0
        beat = 1000 * np.exp(-(((phase - 0.3) / 0.012) ** 2)) + 150 * np.exp(-(((phase - 0.55) / 0.05) ** 2))
        gains = rng.uniform(0.3, 1.2, len(LEADS))
        samples = gains[:, None] * beat[None, :]
        series = request.by_role("ecg")
        assert series is not None
        intervals = tuple(
            zip(INTERVALS, (round(rng.uniform(140, 180)), round(rng.uniform(80, 100)), round(rng.uniform(360, 420))))
        )
        return [
            WaveformSpec(
                study=request.study,
                series=series.context,
                samples=samples,
                leads=LEADS,
                sampling_frequency_hz=acq.sampling_frequency_hz,
                intervals_ms=intervals,
            )
        ]


TARGET = ZooTarget(
    name="heart/test-ecg",
    title="Test target: resting 12-lead ECG",
    slots=SLOTS,
    plan=plan,
    renderers=("analytic",),
    load=lambda options: ECGGenerator(),
    fingerprint=lambda options: ECGGenerator.fingerprint,
    acquisition=Acquisition,
)
