"""12-lead ECG speed: raw DeepFake ECG samples per second (CPU, and GPU where present), ECGs made as
for a study (re-timed and measured), and one ECG study retrieved cold in a fresh process (importing
torch and neurokit2, loading the checkpoint, generating, building the DICOM)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SPEED_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from synthpacs.generation.contract import GeneratorOptions
from generators.heart.ecg.target import ATTEMPTS, ECGGenerator
from generators.heart.ecg.plan import ECGAcquisition
from generators.heart.ecg.rhythm import draw_rhythm
n, device = int(sys.argv[1]), sys.argv[2]
gen = ECGGenerator(GeneratorOptions(device=device))
rng = np.random.default_rng(0)
gen.raw(gen.noise(rng, 4))  # warm-up
noise = gen.noise(rng, n)
t = time.perf_counter()
for start in range(0, n, 32):
    gen.raw(noise[start:start + 32])
raw_s = time.perf_counter() - t
made = 0
acq = ECGAcquisition.model_validate({})
k = min(n, 24)
gen.fit(gen.noise(rng, ATTEMPTS), draw_rhythm(rng, rng, 1, False, acq), lambda a: np.random.default_rng(a))  # imports neurokit2
t = time.perf_counter()
for i in range(k):
    r = np.random.default_rng([1, i])
    gen.fit(gen.noise(r, ATTEMPTS), draw_rhythm(r, r, i % 6, bool(i % 2), acq), lambda a: np.random.default_rng([2, i, a]))
study_s = time.perf_counter() - t
print(json.dumps({"n": n, "raw_s": raw_s, "k": k, "study_s": study_s, "threads": torch.get_num_threads(), "gpu": torch.cuda.is_available()}))
"""

_COLD_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from synthpacs.config import load_config
from synthpacs.archive import Archive
archive = Archive(load_config(None, {"patients": 100, "data_dir": sys.argv[1]}, environ={}))
uids = archive.studies_of_target("heart/ecg", 0, 2)
if sys.argv[2] == "loaded":
    archive.load_generators()  # what a server does in the background at start-up
t = time.perf_counter()
(ref,) = archive.instances(uids[0]); archive.instance_bytes(ref)
cold = time.perf_counter() - t
t = time.perf_counter()
(ref,) = archive.instances(uids[1]); archive.instance_bytes(ref)
warm = time.perf_counter() - t
archive.close()
print(json.dumps({"cold_s": cold, "next_s": warm, "process_s": time.perf_counter() - t0}))
"""


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    n = 64 if quick else 256
    speed = _run(_SPEED_SCRIPT, str(n), "cpu")
    rows = [
        (
            f"DeepFake ECG raw samples, CPU ({speed['threads']} threads, batches of 32)",
            f"{speed['n'] / speed['raw_s']:.0f}",
            "ECGs/s",
        ),
        (
            "ECGs made as for a study (GAN, re-timed, measured by neurokit2), CPU",
            f"{speed['k'] / speed['study_s']:.1f}",
            "ECGs/s",
        ),
    ]
    if speed["gpu"]:
        gpu = _run(_SPEED_SCRIPT, str(8 * n), "cuda")
        rows.append(("DeepFake ECG raw samples, GPU (batches of 32)", f"{gpu['n'] / gpu['raw_s']:.0f}", "ECGs/s"))
        rows.append(("ECGs made as for a study, GPU network", f"{gpu['k'] / gpu['study_s']:.1f}", "ECGs/s"))
    with tempfile.TemporaryDirectory() as tmp:
        cold = _run(_COLD_SCRIPT, tmp, "cold")
    with tempfile.TemporaryDirectory() as tmp:
        loaded = _run(_COLD_SCRIPT, tmp, "loaded")
    rows.append(
        ("one ECG study cold in a fresh process (torch, neurokit2, checkpoint, ECG, DICOM)", f"{cold['cold_s']:.1f}", "s")
    )
    rows.append(
        ("one ECG study never made, generators loaded (a served archive after start-up)", f"{1000 * loaded['cold_s']:.0f}", "ms")
    )
    rows.append(("the next ECG study in that process", f"{1000 * loaded['next_s']:.0f}", "ms"))
    return rows
