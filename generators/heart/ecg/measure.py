"""Delineating an ECG with neurokit2, and the global intervals a reader reports.

Every beat's P onset, QRS onset and offset, R peak and T offset come from
neurokit2's prominence delineator (``ecg_delineate(method="prominence")``)
on lead II, after its own cleaning (its wavelet delineator put QRS offsets
40-100 ms late on these signals, measuring a 90 ms QRS as 150-190 ms); the global values are medians over the
beats where both ends of an interval were found. QTc is Fridericia's
(QT / RR^(1/3), the correction cardiac-safety trials use, ICH E14) and
Bazett's for reference.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: Fiducial points of each beat, in the order a beat has them.
POINTS = ("p_onset", "qrs_onset", "r_peak", "qrs_offset", "t_offset")
_NEUROKIT = {
    "p_onset": "ECG_P_Onsets",
    "qrs_onset": "ECG_R_Onsets",
    "qrs_offset": "ECG_R_Offsets",
    "t_offset": "ECG_T_Offsets",
}
#: Fewest beats with a measured QT for a delineation to count.
MIN_BEATS = 3


class DelineationFailed(ValueError):
    """The delineator found too few whole beats to measure the ECG."""


@dataclass(frozen=True)
class Beats:
    """Fiducial sample positions (0-based, NaN where not found), one row per beat, columns :data:`POINTS`."""

    points: np.ndarray
    sampling_hz: float

    def column(self, name: str) -> np.ndarray:
        return self.points[:, POINTS.index(name)]

    def complete(self) -> np.ndarray:
        """Beats whose points were all found and are in order."""
        p = self.points
        ok = np.isfinite(p).all(axis=1)
        ordered = np.zeros(len(p), dtype=bool)
        ordered[ok] = (np.diff(p[ok], axis=1) > 0).all(axis=1)
        return ordered


@dataclass(frozen=True)
class Measurements:
    """The global intervals of one ECG (ms, and beats per minute)."""

    heart_rate_bpm: float
    rr_ms: float
    pr_ms: float
    qrs_ms: float
    qt_ms: float
    qtcf_ms: float  # Fridericia
    qtcb_ms: float  # Bazett
    beats: int  # beats the intervals were measured on

    def as_dict(self) -> dict[str, float]:
        return {
            "heart_rate_bpm": self.heart_rate_bpm,
            "rr_ms": self.rr_ms,
            "pr_ms": self.pr_ms,
            "qrs_ms": self.qrs_ms,
            "qt_ms": self.qt_ms,
            "qtcf_ms": self.qtcf_ms,
            "qtcb_ms": self.qtcb_ms,
            "beats": self.beats,
        }


def delineate(lead: np.ndarray, sampling_hz: float, method: str = "prominence") -> Beats:
    """The beats of one lead (microvolts).

    Raises
    ------
    DelineationFailed
        When fewer than :data:`MIN_BEATS` R peaks are found.
    """
    import neurokit2 as nk

    signal = np.asarray(lead, dtype=np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cleaned = nk.ecg_clean(signal, sampling_rate=sampling_hz)
        _, info = nk.ecg_peaks(cleaned, sampling_rate=sampling_hz)
        peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
        if len(peaks) < MIN_BEATS:
            raise DelineationFailed(f"{len(peaks)} R peaks found; at least {MIN_BEATS} are needed")
        try:
            _, waves = nk.ecg_delineate(cleaned, peaks, sampling_rate=sampling_hz, method=method)
        except (ValueError, IndexError, ZeroDivisionError) as exc:
            raise DelineationFailed(f"the delineator failed: {exc}") from None
    points = np.full((len(peaks), len(POINTS)), np.nan)
    points[:, POINTS.index("r_peak")] = peaks
    for name, key in _NEUROKIT.items():
        values = np.asarray(waves.get(key, []), dtype=np.float64)
        n = min(len(values), len(peaks))
        points[:n, POINTS.index(name)] = values[:n]
    return Beats(points, float(sampling_hz))


def intervals(beats: Beats) -> Measurements:
    """Median global intervals over the beats.

    Raises
    ------
    DelineationFailed
        When fewer than :data:`MIN_BEATS` beats have a QRS onset and a T offset.
    """
    ms = 1000.0 / beats.sampling_hz

    def median(start: str, stop: str, low: float, high: float) -> tuple[float, int]:
        values = (beats.column(stop) - beats.column(start)) * ms
        values = values[np.isfinite(values) & (values >= low) & (values <= high)]
        return (float(np.median(values)) if len(values) else float("nan")), len(values)

    rr = np.diff(beats.column("r_peak")) * ms
    rr = rr[(rr >= 240) & (rr <= 2400)]  # 25-250 bpm
    if len(rr) < MIN_BEATS - 1:
        raise DelineationFailed(f"{len(rr)} RR intervals in 240-2400 ms; at least {MIN_BEATS - 1} are needed")
    rr_ms = float(np.median(rr))
    pr, _ = median("p_onset", "qrs_onset", 60, 400)
    qrs, _ = median("qrs_onset", "qrs_offset", 40, 200)
    qt, n = median("qrs_onset", "t_offset", 200, 700)
    if n < MIN_BEATS or not np.isfinite([pr, qrs]).all():
        raise DelineationFailed(f"{n} beats with a QT interval; at least {MIN_BEATS} (and a PR and a QRS) are needed")
    seconds = rr_ms / 1000.0
    return Measurements(
        heart_rate_bpm=round(60.0 / seconds, 1),
        rr_ms=round(rr_ms, 1),
        pr_ms=round(pr, 1),
        qrs_ms=round(qrs, 1),
        qt_ms=round(qt, 1),
        qtcf_ms=round(qt / seconds ** (1 / 3), 1),
        qtcb_ms=round(qt / seconds**0.5, 1),
        beats=n,
    )


def measure(lead_ii: np.ndarray, sampling_hz: float, method: str = "prominence") -> tuple[Measurements, Beats]:
    """Delineate lead II and measure it."""
    beats = delineate(lead_ii, sampling_hz, method)
    return intervals(beats), beats
