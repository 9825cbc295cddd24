"""Catalog build time and peak memory, study-level query latency, CT series generation."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh process so that peak memory belongs to one catalog build.
_CATALOG_SCRIPT = r"""
import json, resource, statistics, sys, time
from synthpacs.config import load_config
from synthpacs.archive import Archive
patients, data_dir = int(sys.argv[1]), sys.argv[2]
config = load_config(None, {"patients": patients, "data_dir": data_dir}, environ={})
started = time.perf_counter()
archive = Archive(config)
build = time.perf_counter() - started
queries = [{"PatientName": "PH*"}, {"StudyDate": "20250101-20250107"}, {"PatientID": "SYN-0000042"},
           {"AccessionNumber": "SYNA000000100"}, {}]
latencies = []
for _ in range(20):
    for query in queries:
        t = time.perf_counter()
        list(archive.find("STUDY", query, limit=100))
        latencies.append((time.perf_counter() - t) * 1000)
latencies.sort()
figures = archive.figures()
print(json.dumps({"build_s": build, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "p50_ms": statistics.median(latencies), "p95_ms": latencies[int(0.95 * len(latencies)) - 1],
                  "studies": figures["studies"], "instances": figures["instances"]}))
"""

_GENERATE_SCRIPT = r"""
import json, sys, time
from synthpacs.config import load_config
from synthpacs.archive import Archive
config = load_config(None, {"patients": 100, "data_dir": sys.argv[1]}, environ={})
archive = Archive(config)
study = next(iter(archive.find("STUDY", {"ModalitiesInStudy": "CT"}, limit=1)))
refs = [r for r in archive.instances(str(study.StudyInstanceUID)) if r.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"]
t = time.perf_counter(); [archive.instance_bytes(r) for r in refs]; cold = time.perf_counter() - t
t = time.perf_counter(); [archive.instance_bytes(r) for r in refs]; warm = time.perf_counter() - t
archive.close()
archive = Archive(config)  # the same data folder: the catalog and the disk cache stay, the memory cache is empty
t = time.perf_counter(); [archive.instance_bytes(r) for r in refs]; disk = time.perf_counter() - t
assert archive.studies_generated == 0, "the disk cache was missed"
print(json.dumps({"slices": len(refs), "cold_s": cold, "warm_s": warm, "disk_s": disk}))
"""


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    rows = []
    sizes = [1_000, 100_000] if quick else [1_000, 100_000, 1_000_000]
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            r = _run(_CATALOG_SCRIPT, str(n), tmp)
        label = f"{n:,} patients ({r['studies']:,} studies, {r['instances']:,} instances)"
        rows.append((f"catalog build, {label}", f"{r['build_s']:.2f}", "s"))
        rows.append((f"catalog build peak memory, {n:,} patients", f"{r['peak_mb']:.0f}", "MiB"))
        rows.append((f"study-level query p50 / p95, {n:,} patients", f"{r['p50_ms']:.1f} / {r['p95_ms']:.1f}", "ms"))
    with tempfile.TemporaryDirectory() as tmp:
        g = _run(_GENERATE_SCRIPT, tmp)
    rows.append(
        (f"one CT series, 512x512x{g['slices']}, cold, default renderer (geometry + GAN + CT/SEG/SR)", f"{g['cold_s']:.1f}", "s")
    )
    rows.append(("same series, warm (memory cache)", f"{g['warm_s'] * 1000:.1f}", "ms"))
    rows.append(("same series, warm (disk cache)", f"{g['disk_s'] * 1000:.1f}", "ms"))
    return rows
