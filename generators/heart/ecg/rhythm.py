"""The geometry stage of an ECG: what the subject's heart should show at one visit.

A subject keeps a resting rate, PR, QRS and QTcF of their own (patient-keyed
draws, QTcF about 8 ms longer in women); each visit varies them a little
(study-keyed). In the share of subjects the drug affects, QTcF rises towards
a steady-state effect over the visits on treatment. Now and then an ECG
shows a finding a safety reader looks for. These are requests: the warp
(:mod:`.warp`) reaches them, and the delineator's measurement of the result
is the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .plan import ECGAcquisition

NORMAL = "Sinus rhythm"
#: Findings by name; each is a change to the rhythm request.
FINDINGS = ("Sinus bradycardia", "Sinus tachycardia", "First-degree AV block", "Prolonged QTc")


@dataclass(frozen=True)
class Rhythm:
    """Requested intervals of one ECG (ms, beats per minute)."""

    heart_rate_bpm: float
    pr_ms: float
    qrs_ms: float
    qtcf_ms: float
    drug_effect_ms: float  # the part of QTcF that is the drug's
    finding: str  # NORMAL or one of FINDINGS
    responder: bool  # whether the drug affects this subject's QTc

    @property
    def rr_ms(self) -> float:
        return 60_000.0 / self.heart_rate_bpm

    @property
    def qt_ms(self) -> float:
        """QT that gives the requested QTcF at the requested rate (Fridericia)."""
        return self.qtcf_ms * (self.rr_ms / 1000.0) ** (1 / 3)


def drug_effect(visit: int, max_ms: float, onset_visits: float) -> float:
    """QTcF rise at ``visit`` (0 = baseline, before the first dose)."""
    return 0.0 if visit <= 0 else max_ms * (1.0 - math.exp(-visit / onset_visits))


def draw_rhythm(
    subject: np.random.Generator, visit_draws: np.random.Generator, visit: int, female: bool, acq: ECGAcquisition
) -> Rhythm:
    """The rhythm of one subject at one visit from their keyed draws."""
    low, high = acq.heart_rate_bpm
    rate = float(np.clip(subject.normal((low + high) / 2, (high - low) / 5), low, high))
    pr = float(np.clip(subject.normal(152, 16), 120, 196))
    qrs = float(np.clip(subject.normal(90, 7), 74, 108))
    qtcf = float(np.clip(subject.normal(404 if female else 396, 12), 370, 440))
    effect = acq.qtc_effect
    responder = bool(subject.uniform() < effect.share)
    own_max = effect.max_ms * subject.uniform(0.6, 1.4) if responder else 0.0

    rate = float(np.clip(rate + visit_draws.normal(0, 4), 40, 150))
    pr = float(np.clip(pr + visit_draws.normal(0, 4), 110, 210))
    qtcf += visit_draws.normal(0, 4)
    delta = drug_effect(visit, own_max, effect.onset_visits)
    qtcf += delta
    finding = NORMAL
    if visit_draws.uniform() < acq.abnormal_share:
        finding = FINDINGS[int(visit_draws.integers(len(FINDINGS)))]
        if finding == "Sinus bradycardia":
            rate = float(visit_draws.uniform(44, 52))
        elif finding == "Sinus tachycardia":
            rate = float(visit_draws.uniform(104, 118))
        elif finding == "First-degree AV block":
            pr = float(visit_draws.uniform(215, 260))
        else:
            qtcf = float(max(qtcf, visit_draws.uniform(475, 510)))
    return Rhythm(rate, pr, qrs, float(qtcf), float(delta), finding, responder)
