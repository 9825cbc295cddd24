"""GAN inference speed: slices per second at 512 x 512 on the CPU, and one whole CT series, cold.

Each measurement runs in a fresh process, so "cold" includes importing
torch, loading the shipped weights and drawing the geometry, as the first
retrieve of a study does on a freshly started server (the teacher row is
the same retrieve with ``renderer: teacher``, for comparison).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SLICES_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
from generators.chest.lung_ct.geometry import CTGrid, draw_anatomy, label_volume, place_lesions
from generators.chest.lung_ct.target import FOLDER
from generators.chest.lung_ct.pipeline import LungCTPipeline
n_slices, batch, device = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
grid = CTGrid(rows=512, columns=512, n_slices=n_slices, pixel_spacing_mm=0.75, slice_spacing_mm=2.5)
rng = np.random.default_rng(0)
anatomy = draw_anatomy(rng, grid, "M")
labels = label_volume(anatomy, grid, [(s, 30.0) for s in place_lesions(anatomy, grid, 1, rng)])
pipe = LungCTPipeline.from_pretrained(FOLDER, device=device)
pipe(labels[:2], 0.75, 2.5, rng=np.random.default_rng(1), batch_slices=batch)  # warm-up
t = time.perf_counter()
pipe(labels, 0.75, 2.5, rng=np.random.default_rng(2), batch_slices=batch)
seconds = time.perf_counter() - t
print(json.dumps({"slices": n_slices, "seconds": seconds, "threads": torch.get_num_threads(), "gpu": torch.cuda.is_available()}))
"""

_SERIES_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from synthpacs.config import load_config
from synthpacs.archive import Archive
config = load_config(None, {"patients": 100, "data_dir": sys.argv[1], "renderer": sys.argv[2]}, environ={})
archive = Archive(config)
study = next(iter(archive.find("STUDY", {"ModalitiesInStudy": "CT"}, limit=1)))
refs = [r for r in archive.instances(str(study.StudyInstanceUID)) if r.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"]
t = time.perf_counter(); archive.instance_bytes(refs[0]); first = time.perf_counter() - t
for ref in refs: archive.instance_bytes(ref)
whole = time.perf_counter() - t
archive.close()
print(json.dumps({"slices": len(refs), "first_s": first, "cold_s": whole, "process_s": time.perf_counter() - t0}))
"""


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    n = 16 if quick else 48
    speed = _run(_SLICES_SCRIPT, str(n), "8", "cpu")
    rows.append(
        (
            f"GAN inference, 512x512 CPU ({speed['threads']} threads, batches of 8)",
            f"{speed['slices'] / speed['seconds']:.2f}",
            "slices/s",
        )
    )
    rows.append(("GAN inference, 512x512 CPU", f"{1000 * speed['seconds'] / speed['slices']:.0f}", "ms/slice"))
    if speed["gpu"]:
        gpu = _run(_SLICES_SCRIPT, str(4 * n), "8", "cuda")
        rows.append(("GAN inference, 512x512 GPU", f"{gpu['slices'] / gpu['seconds']:.1f}", "slices/s"))
    renderers = ["gan"] if quick else ["gan", "teacher"]
    for renderer in renderers:
        with tempfile.TemporaryDirectory() as tmp:
            series = _run(_SERIES_SCRIPT, tmp, renderer)
        loading = "torch, weights, " if renderer == "gan" else ""
        rows.append(
            (
                f"one CT series cold, renderer {renderer}: first slice ({loading}geometry, its slab, DICOM)",
                f"{series['first_s']:.1f}",
                "s",
            )
        )
        rows.append(
            (f"one CT series cold, renderer {renderer}: all {series['slices']} slices 512x512", f"{series['cold_s']:.1f}", "s")
        )
    return rows
