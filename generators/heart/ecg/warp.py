"""A beat-by-beat time warp that gives a generated ECG the rhythm asked for.

The GAN is unconditional: its beats come at its own rate with its own
intervals. Each source cardiac cycle (P onset to the next P onset) is cut
at its QRS onset, QRS offset and T offset, and each segment is stretched
linearly to the requested length, as the heart itself varies them: the PR
segment for the PR interval, the ST-T segment for the QT interval (the QRS
only within 0.85-1.2x, so its morphology stays its own) and diastole (T
offset to the next P onset) for the rate, with a slight respiratory sinus
arrhythmia. Cycles are taken in order and again from the first when the
requested rate needs more than the source has; each cycle's baseline is
levelled between its P onsets so that the joins are continuous.
"""

from __future__ import annotations

import numpy as np

from .measure import Beats, DelineationFailed
from .rhythm import Rhythm

#: Shortest diastole (T offset to the next P onset), ms.
MIN_DIASTOLE_MS = 40.0


def cycles(beats: Beats) -> np.ndarray:
    """Source cycles as rows (P onset, QRS onset, QRS offset, T offset, next P onset) in samples."""
    complete = beats.complete()
    p_onset = beats.column("p_onset")
    rows = []
    for i in range(len(beats.points) - 1):
        if not complete[i] or not np.isfinite(p_onset[i + 1]):
            continue
        p0, q0, _, q1, t1 = beats.points[i]
        if p_onset[i + 1] > t1:
            rows.append((p0, q0, q1, t1, p_onset[i + 1]))
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


def warp(source: np.ndarray, beats: Beats, rhythm: Rhythm, rng: np.random.Generator) -> np.ndarray:
    """``source`` (leads, samples) re-timed to ``rhythm``; the same shape.

    Raises
    ------
    DelineationFailed
        When the source has fewer than two whole cycles to re-time.
    """
    table = cycles(beats)
    if len(table) < 2:
        raise DelineationFailed(f"{len(table)} whole cardiac cycles in the source; at least 2 are needed")
    leads, n = source.shape
    per_ms = beats.sampling_hz / 1000.0
    rr = rhythm.rr_ms * per_ms
    pr, qt = rhythm.pr_ms * per_ms, rhythm.qt_ms * per_ms
    breath = rng.uniform(3.5, 5.5)  # beats per breath
    phase = rng.uniform(0, 2 * np.pi)
    start = rng.uniform(0.2, 0.9) * rr  # the recording starts somewhere in a cycle
    first = int(rng.integers(len(table)))
    out = np.zeros((leads, int(np.ceil(start + n + 2 * rr))), dtype=np.float64)
    at, k = 0.0, 0
    while at < start + n:
        p0, q0, q1, t1, p1 = table[(first + k) % len(table)]
        qrs = float(np.clip(rhythm.qrs_ms * per_ms, 0.85 * (q1 - q0), 1.2 * (q1 - q0)))
        length = rr * (1.0 + 0.025 * np.sin(phase + 2 * np.pi * k / breath) + rng.normal(0, 0.006))
        diastole = max(length - pr - qt, MIN_DIASTOLE_MS * per_ms)
        knots_out = at + np.cumsum([0.0, pr, qrs, qt - qrs, diastole])
        knots_src = np.array([p0, q0, q1, t1, p1])
        positions = np.arange(int(np.ceil(knots_out[0])), int(np.ceil(knots_out[-1])))
        positions = positions[positions < out.shape[1]]
        where = np.interp(positions, knots_out, knots_src)
        below = np.clip(np.floor(where).astype(np.int64), 0, n - 2)
        frac = where - below
        values = source[:, below] * (1 - frac) + source[:, below + 1] * frac
        level0, level1 = _level(source, p0), _level(source, p1)
        values -= level0[:, None] + (level1 - level0)[:, None] * ((where - p0) / (p1 - p0))[None, :]
        out[:, positions] = values
        at, k = float(knots_out[-1]), k + 1
    offset = int(round(start))
    return out[:, offset : offset + n]


def _level(source: np.ndarray, position: float, half_ms: float = 10.0, sampling_hz: float = 500.0) -> np.ndarray:
    """Each lead's level around a sample position (a short mean, robust to noise)."""
    half = max(1, int(half_ms * sampling_hz / 1000))
    i = int(round(position))
    return source[:, max(0, i - half) : min(source.shape[1], i + half + 1)].mean(axis=1)
