"""Measuring the ECG generator (``synthpacs evaluate heart/ecg``).

* **Delineation success:** the share of raw GAN samples (keyed noise, the
  evaluation seed) that neurokit2 measures, and of those re-timed to a
  rhythm drawn as the universe draws it, with how far the measurement
  lands from the request.
* **Intervals against normal ranges:** HR, PR, QRS, QT and QTcF of the raw
  samples (mean, SD, 5th-95th percentiles) and the share inside the adult
  normal ranges readers use (HR 60-100 bpm, PR 120-200 ms, QRS 70-110 ms,
  QTcF 350-450 ms).
* **Diversity:** 1 - Pearson r between the lead-II median beats of random
  pairs of samples (0: identical beats).
* **Distance to a real ECG:** the one real 12-lead ECG pydicom ships
  (``waveform_ecg.dcm``, 1000 Hz, resampled to 500 Hz): its intervals, and the
  correlation of each sample's median beat with its median beat per lead,
  next to the floor of the real ECG's two halves against each other.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from synthpacs.generation.contract import GeneratorOptions
from synthpacs.generation.evaluate import EvaluationRequest, update_card_block

from . import measure as measuring
from .checkpoint import checkpoint_file
from .leads import NETWORK_LEADS, SAMPLING_HZ
from .plan import ECGAcquisition
from .rhythm import draw_rhythm

NORMAL = {"heart_rate_bpm": (60, 100), "pr_ms": (120, 200), "qrs_ms": (70, 110), "qtcf_ms": (350, 450)}
INTERVALS = ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtcf_ms")
BEAT_MS = (-250, 450)  # the median beat's window around the R peak
DEFAULT_SAMPLES = 64


def median_beats(eight: np.ndarray, peaks: np.ndarray, hz: float = SAMPLING_HZ) -> np.ndarray | None:
    """Each lead's median beat around the R peaks, (leads, window); None with fewer than 3 whole beats."""
    before, after = int(-BEAT_MS[0] * hz / 1000), int(BEAT_MS[1] * hz / 1000)
    whole = [int(p) for p in peaks if p - before >= 0 and p + after <= eight.shape[1]]
    if len(whole) < 3:
        return None
    return np.median(np.stack([eight[:, p - before : p + after] for p in whole]), axis=0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over leads of Pearson r between two sets of median beats."""
    rows = [np.corrcoef(x, y)[0, 1] for x, y in zip(a, b) if np.std(x) > 0 and np.std(y) > 0]
    return float(np.mean(rows)) if rows else float("nan")


def real_reference() -> np.ndarray:
    """pydicom's real 12-lead ECG as the eight network leads, 500 Hz, 10 s, microvolts."""
    from pydicom.data import get_testdata_file

    from .records import read_dicom

    return read_dicom(Path(str(get_testdata_file("waveform_ecg.dcm"))))


def _warp_rng(seed: int, study: int, attempt: int) -> np.random.Generator:
    return np.random.default_rng([seed, 9, study, attempt])


def _stats(values: Sequence[float]) -> dict[str, float]:
    x = np.asarray(values, dtype=np.float64)
    return {"mean": float(x.mean()), "sd": float(x.std()), "p5": float(np.percentile(x, 5)), "p95": float(np.percentile(x, 95))}


def evaluate(request: EvaluationRequest) -> dict:
    from .target import ATTEMPTS, ECGGenerator

    options = GeneratorOptions(
        weights=request.weights, weights_source=request.weights_source, device=request.device, device_source=request.device_source
    )
    generator = ECGGenerator(options)
    n = int(request.extra.get("samples") or DEFAULT_SAMPLES)
    rng = np.random.default_rng([request.seed, 8_1000])
    raw = np.concatenate([generator.raw(generator.noise(rng, min(32, n - i))) for i in range(0, n, 32)])
    measured, beats_of, failures = [], [], 0
    for x in raw:
        try:
            m, beats = measuring.measure(x[1], SAMPLING_HZ)
        except measuring.DelineationFailed:
            failures += 1
            continue
        measured.append((x, m, beats))
    # Re-timed as a study is made (warp, re-aim, selection among 8 keyed samples), to rhythms drawn
    # as the universe draws them (the default acquisition, with more findings).
    acq = ECGAcquisition.model_validate({"abnormal_share": 0.25})
    studies = min(n, 32)
    misses, retimed_ok, attempts = [], 0, []
    for i in range(studies):
        draw = np.random.default_rng([request.seed, 7, i])
        rhythm = draw_rhythm(draw, draw, int(draw.integers(0, 6)), bool(i % 2), acq)
        try:
            made = generator.fit(generator.noise(draw, ATTEMPTS), rhythm, functools.partial(_warp_rng, request.seed, i))
        except measuring.DelineationFailed:
            continue
        retimed_ok += 1
        attempts.append(made.attempt + 1)
        m2 = made.measurements
        misses.append(
            max(abs(m2.heart_rate_bpm - rhythm.heart_rate_bpm), abs(m2.pr_ms - rhythm.pr_ms), abs(m2.qtcf_ms - rhythm.qtcf_ms))
        )
    for x, _, beats in measured:
        beats_of.append(median_beats(x, beats.column("r_peak")))
    beats_ok = [b for b in beats_of if b is not None]
    real = real_reference()
    real_m, real_beats = measuring.measure(real[1], SAMPLING_HZ)
    real_beat = median_beats(real, real_beats.column("r_peak"))
    half = real.shape[1] // 2
    floor = float("nan")
    if real_beat is not None:
        peaks = real_beats.column("r_peak")
        a = median_beats(real[:, :half], peaks[peaks < half])
        b = median_beats(real[:, half:], peaks[peaks >= half] - half)
        floor = correlation(a, b) if a is not None and b is not None else float("nan")
    pair_rng = np.random.default_rng([request.seed, 2])
    pairs = (
        [pair_rng.choice(len(beats_ok), 2, replace=False) for _ in range(min(200, len(beats_ok) * 2))]
        if len(beats_ok) > 1
        else []
    )
    diversity = float(np.mean([1 - correlation(beats_ok[i][1:2], beats_ok[j][1:2]) for i, j in pairs])) if pairs else float("nan")
    to_real = [correlation(b, real_beat) for b in beats_ok] if real_beat is not None else []
    intervals = {k: _stats([getattr(m, k) for _, m, _ in measured]) for k in INTERVALS} if measured else {}
    normal = (
        {k: float(np.mean([low <= getattr(m, k) <= high for _, m, _ in measured])) for k, (low, high) in NORMAL.items()}
        if measured
        else {}
    )
    path = checkpoint_file(request.weights)
    report = {
        "target": "heart/ecg",
        "samples": n,
        "seed": request.seed,
        "weights": str(path),
        "weights_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "delineated_share": (n - failures) / n,
        "retimed_share": retimed_ok / max(1, studies),
        "retimed_miss_ms": _stats(misses) if misses else {},
        "retimed_samples_tried": _stats(attempts) if attempts else {},
        "intervals": intervals,
        "normal_share": normal,
        "diversity_1_minus_r": diversity,
        "real": {k: getattr(real_m, k) for k in INTERVALS},
        "median_beat_r_to_real": _stats(to_real) if to_real else {},
        "real_halves_r": floor,
        "leads": list(NETWORK_LEADS),
    }
    if request.out:
        Path(request.out).write_text(json.dumps(report, indent=2) + "\n")
    if request.card:
        update_card(Path(request.card), report)
    return report


SUMMARY_HEADERS = ("quantity", "generated", "real reference")


def summary_rows(report: dict) -> list[tuple[str, str, str]]:
    rows = [
        ("raw samples delineated", f"{100 * report['delineated_share']:.0f} %", ""),
        ("ECGs made as for a study (re-timed, measured)", f"{100 * report['retimed_share']:.0f} %", ""),
    ]
    if report["retimed_miss_ms"]:
        miss, tried = report["retimed_miss_ms"], report["retimed_samples_tried"]
        rows.append(("  measured vs requested: worst of HR/PR/QTcF (mean, p95)", f"{miss['mean']:.1f}, {miss['p95']:.1f}", ""))
        rows.append(("  keyed samples tried per ECG (mean, p95)", f"{tried['mean']:.2f}, {tried['p95']:.0f}", ""))
    names = {"heart_rate_bpm": "HR (bpm)", "pr_ms": "PR (ms)", "qrs_ms": "QRS (ms)", "qt_ms": "QT (ms)", "qtcf_ms": "QTcF (ms)"}
    for key, label in names.items():
        s = report["intervals"].get(key)
        if s:
            inside = report["normal_share"].get(key)
            share = f", {100 * inside:.0f} % in {NORMAL[key][0]}-{NORMAL[key][1]}" if inside is not None else ""
            rows.append(
                (
                    f"raw {label}: mean ± SD [p5-p95]{share}",
                    f"{s['mean']:.0f} ± {s['sd']:.0f} [{s['p5']:.0f}-{s['p95']:.0f}]",
                    f"{report['real'][key]:.0f}",
                )
            )
    rows.append(("diversity: 1 - r of lead-II median beats", f"{report['diversity_1_minus_r']:.2f}", ""))
    if report["median_beat_r_to_real"]:
        r = report["median_beat_r_to_real"]
        rows.append(
            (
                "median beat r to the real ECG (8 leads; mean, p95)",
                f"{r['mean']:.2f}, {r['p95']:.2f}",
                f"{report['real_halves_r']:.2f} (its halves)",
            )
        )
    return rows


def update_card(card: Path, report: dict) -> None:
    """Rewrite the block between the evaluation markers of MODEL_CARD.md with this report's table."""
    from tabulate import tabulate

    table = tabulate(summary_rows(report), headers=list(SUMMARY_HEADERS), tablefmt="github")
    block = (
        f"Measured by `synthpacs evaluate heart/ecg` ({report['samples']} samples, seed {report['seed']}, "
        f"weights `{report['weights_sha256'][:16]}`):\n\n{table}"
    )
    update_card_block(card, block)
