"""The heart/ecg generator: keyed noise -> DeepFake ECG -> re-timed to the rhythm -> measured -> 12 leads.

For one study: the subject's rhythm request for the visit (:mod:`.rhythm`);
the subject's own noise (patient-keyed, so their ECGs share a morphology
from visit to visit) through the pretrained network; a delineation of the
drawn beats; the warp that gives them the requested intervals; the 12
leads; and a delineation of the result, whose measurements (not the
request) are written into the instance. A sample the delineator cannot
measure, or whose re-timed intervals it measures more than 12 ms off the
request, is replaced by the next keyed sample (selection among samples).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from pydicom.sr.coding import Code

from synthpacs.generation.contract import GeneratorOptions, Part, StudyRequest
from synthpacs.generation.devices import resolve_device
from synthpacs.imaging.spec import IODSpec, WaveformAnnotation, WaveformSpec

from . import measure as measuring
from .checkpoint import fingerprint
from .leads import LEAD_CODES, LEADS, twelve_leads
from .network import MICROVOLTS, NETWORK_LEADS, SAMPLES, SAMPLING_HZ, load_network
from .rhythm import Rhythm, draw_rhythm
from .warp import warp

#: Keyed samples tried per ECG before giving up (each is measured until one delineates).
ATTEMPTS = 8
#: Warps re-aimed by the measured miss (each costs one warp and one delineation, ~30 ms).
CORRECTIONS = 1
#: A sample whose measured PR or QTcF misses the request by more is replaced by the next (the best is kept).
TOLERANCE_MS = 12.0

SCPECG_VERSION = "1.3"  # SCPECG codes carry their version (PS3.16 Basic Code Sequence Macro)
MS = Code("ms", "UCUM", "millisecond")
PER_MIN = Code("/min", "UCUM", "per minute")
#: Global measurements (SCPECG, as ECG carts write them; heart rate from LOINC).
HEART_RATE = Code("8867-4", "LN", "Heart rate")
RR = Code("5.10.2.1-3", "SCPECG", "RR Interval", scheme_version=SCPECG_VERSION)
PR = Code("5.13.5-7", "SCPECG", "PR Interval", scheme_version=SCPECG_VERSION)
QRS = Code("5.13.5-9", "SCPECG", "QRS Duration", scheme_version=SCPECG_VERSION)
QT = Code("5.13.5-11", "SCPECG", "QT Interval", scheme_version=SCPECG_VERSION)
QTC = Code("5.10.2.5-5", "SCPECG", "QTc Interval", scheme_version=SCPECG_VERSION)
#: Per-beat fiducial points, as ECG carts write them (SCPECG).
FIDUCIALS = {
    "p_onset": Code("5.10.3-1", "SCPECG", "P Onset", scheme_version=SCPECG_VERSION),
    "qrs_onset": Code("5.10.3-3", "SCPECG", "QRS Onset", scheme_version=SCPECG_VERSION),
    "r_peak": Code("5.7.1-3", "SCPECG", "Fiducial Point", scheme_version=SCPECG_VERSION),
    "qrs_offset": Code("5.10.3-4", "SCPECG", "QRS Offset", scheme_version=SCPECG_VERSION),
    "t_offset": Code("5.10.3-5", "SCPECG", "T Offset", scheme_version=SCPECG_VERSION),
}


@dataclass(frozen=True)
class ECG:
    """One made ECG: 12 leads (integer microvolts), what was asked and what was measured."""

    samples: np.ndarray  # (12, 5000), LEADS order
    rhythm: Rhythm
    measurements: measuring.Measurements
    beats: measuring.Beats
    attempt: int


class ECGGenerator:
    """The loaded target (contract.Generator)."""

    def __init__(self, options: GeneratorOptions):
        import torch

        self.device = resolve_device(
            options.device, "the device setting" if options.device_source == "default" else options.device_source
        )
        self.network = load_network(options.weights, self.device)
        # neurokit2 is imported by the first ECG measured, not here: with pandas, scikit-learn and
        # matplotlib it holds 130 MiB, which a server that never makes an ECG should not carry.
        self.fingerprint = fingerprint(options)
        self._torch = torch
        self._lock = threading.Lock()  # one forward pass at a time (torch threads are shared)

    # -- the seed's interface -------------------------------------------------------------

    def raw(self, noise: np.ndarray) -> np.ndarray:
        """Noise (n, 8, 5000) in [-1, 1] -> the network's eight leads in microvolts (n, 8, 5000)."""
        torch = self._torch
        with self._lock, torch.inference_mode():
            out = self.network(torch.from_numpy(np.ascontiguousarray(noise, dtype=np.float32)).to(self.device))
        return out.float().cpu().numpy() * MICROVOLTS

    @staticmethod
    def noise(rng: np.random.Generator, n: int = 1) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(n, len(NETWORK_LEADS), SAMPLES)).astype(np.float32)

    # -- one study ------------------------------------------------------------------------

    def make(self, request: StudyRequest) -> ECG:
        """The ECG of one study; DelineationFailed when no keyed sample can be measured."""
        draws = request.draws
        rhythm = draw_rhythm(
            draws.rng("ecg", "rhythm"),
            draws.study_rng("ecg", "rhythm"),
            request.visit,
            request.patient_sex == "F",
            request.acquisition,
        )
        noise = self.noise(draws.rng("ecg", "noise"), ATTEMPTS)
        return self.fit(noise, rhythm, lambda attempt: draws.study_rng("ecg", "warp", attempt))

    def fit(self, noise: np.ndarray, rhythm: Rhythm, warp_rng: Callable[[int], np.random.Generator]) -> ECG:
        """The first of the candidate noises (n, 8, 5000) whose sample, re-timed to ``rhythm``, measures
        within :data:`TOLERANCE_MS` of it (else the closest); DelineationFailed when none can be measured."""
        problem: Exception | None = None
        best: ECG | None = None
        for attempt in range(len(noise)):
            source = self.raw(noise[attempt : attempt + 1])[0]
            try:
                _, beats = measuring.measure(source[1], SAMPLING_HZ)
                aim = rhythm
                for _ in range(1 + CORRECTIONS):
                    timed = warp(source, beats, aim, warp_rng(attempt))
                    samples = twelve_leads(timed)
                    measured, final = measuring.measure(samples[LEADS.index("II")].astype(np.float64), SAMPLING_HZ)
                    # The delineator places the ends of a stretched segment a little off: aim again by what it missed.
                    aim = replace(
                        aim,
                        pr_ms=aim.pr_ms + rhythm.pr_ms - measured.pr_ms,
                        qtcf_ms=aim.qtcf_ms + rhythm.qtcf_ms - measured.qtcf_ms,
                    )
            except measuring.DelineationFailed as exc:
                problem = exc
                continue
            made = ECG(samples, rhythm, measured, final, attempt)
            if best is None or miss(made) < miss(best):
                best = made
            if miss(made) <= TOLERANCE_MS:
                break
        if best is None:
            raise measuring.DelineationFailed(f"none of {len(noise)} keyed samples could be measured: {problem}")
        return best

    def generate(self, request: StudyRequest, part: Part | None = None) -> list[IODSpec]:
        series = request.by_role("ecg")
        if series is None:
            return []
        ecg = self.make(request)
        return [
            WaveformSpec(
                study=request.study,
                series=series.context,
                samples=ecg.samples,
                leads=tuple(LEAD_CODES[name] for name in LEADS),
                sampling_frequency_hz=float(SAMPLING_HZ),
                annotations=waveform_annotations(ecg),
            )
        ]


def miss(ecg: ECG) -> float:
    """How far the measured ECG is from the request (ms; the larger of the PR and QTcF misses)."""
    m, r = ecg.measurements, ecg.rhythm
    return max(abs(m.pr_ms - r.pr_ms), abs(m.qtcf_ms - r.qtcf_ms))


def waveform_annotations(ecg: ECG) -> tuple[WaveformAnnotation, ...]:
    """The measured values, the rhythm statement, the QTc method and every beat's fiducial points."""
    m = ecg.measurements
    out = [
        WaveformAnnotation(HEART_RATE, m.heart_rate_bpm, PER_MIN),
        WaveformAnnotation(RR, m.rr_ms, MS),
        WaveformAnnotation(PR, m.pr_ms, MS),
        WaveformAnnotation(QRS, m.qrs_ms, MS),
        WaveformAnnotation(QT, m.qt_ms, MS),
        WaveformAnnotation(QTC, m.qtcf_ms, MS),
        WaveformAnnotation(text="QTc: Fridericia correction (QT/RR^(1/3))"),
        WaveformAnnotation(text=statement(m)),
        WaveformAnnotation(text="Measured by neurokit2 ECG delineation (prominence) on lead II; synthetic ECG (DeepFake ECG)"),
    ]
    complete = ecg.beats.complete()
    for row in ecg.beats.points[complete]:
        for name, value in zip(measuring.POINTS, row):
            out.append(WaveformAnnotation(FIDUCIALS[name], sample_position=int(value) + 1))
    return tuple(out)


def statement(m: measuring.Measurements) -> str:
    """The rhythm statement a reader writes from the measurements (thresholds of common ECG criteria)."""
    words = ["Sinus rhythm"]
    if m.heart_rate_bpm < 60:
        words = ["Sinus bradycardia"]
    elif m.heart_rate_bpm > 100:
        words = ["Sinus tachycardia"]
    if m.pr_ms > 200:
        words.append("first-degree AV block")
    if m.qrs_ms >= 120:
        words.append("wide QRS")
    if m.qtcf_ms > 450:
        words.append(f"prolonged QTcF ({m.qtcf_ms:g} ms)")
    return ", ".join(words)


def load(options: GeneratorOptions) -> ECGGenerator:
    return ECGGenerator(options)


def sample(n: int, seed: int, psi: float = 1.0, device: str = "auto", generator: ECGGenerator | None = None) -> list[np.ndarray]:
    """``n`` raw samples (eight leads I, II, V1-V6, microvolts, (8, 5000) each) from keyed noise of ``seed``.

    ``psi`` is accepted for the zoo's sampling interface; Pulse2Pulse has no latent mean to truncate towards.

    Sample ``i`` of a seed is the same whatever ``n``: each has its own noise.
    """
    generator = generator or ECGGenerator(GeneratorOptions(device=device))
    noise = (
        np.concatenate([generator.noise(np.random.default_rng([seed, i])) for i in range(n)]) if n else np.zeros((0, 8, SAMPLES))
    )
    return [x for start in range(0, n, 32) for x in generator.raw(noise[start : start + 32])]


def interpolate(a: int, b: int, frames: int, generator: ECGGenerator) -> list[np.ndarray]:
    """Raw samples along the straight line between the noises of samples ``a`` and ``b`` (seed 0), both included."""
    za, zb = (generator.noise(np.random.default_rng([0, s]))[0] for s in (a, b))
    steps = np.linspace(0.0, 1.0, frames, dtype=np.float32)[:, None, None]
    return list(generator.raw((1 - steps) * za[None] + steps * zb[None]))
