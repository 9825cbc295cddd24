"""Mammography speed: one four-view study made cold in a fresh process at the shipped size (3000 x 2400),
and frames of those views served warm through DICOMweb (the bytes a viewer fetches)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from synthpacs.config import load_config
from synthpacs.archive import Archive
archive = Archive(load_config(None, {"patients": 60, "data_dir": sys.argv[1]}, environ={}))
uid = archive.studies_of_target("breast/mammography", 0, 1)[0]
refs = archive.instances(uid)
views = [r for r in refs if r.sop_class_uid.endswith(".1.1.2")]
t = time.perf_counter(); archive.instance_bytes(views[0]); first = time.perf_counter() - t
for ref in refs: archive.instance_bytes(ref)
whole = time.perf_counter() - t
archive.close()
print(json.dumps({"first_s": first, "study_s": whole, "views": len(views), "uid": uid,
                  "series": views[0].series_instance_uid, "sops": [v.sop_instance_uid for v in views]}))
"""

_WARM = r"""
import json, sys, time, statistics, requests
from synthpacs.config import load_config
from synthpacs.server import RunningServer
info = json.loads(sys.argv[2])
server = RunningServer(load_config(None, {"patients": 60, "data_dir": sys.argv[1], "http_port": 0, "dicom_port": 0}, environ={}))
try:
    base = f"{server.base_url}/dicom-web/studies/{info['uid']}/series/{info['series']}/instances"
    times, size = [], 0
    for _ in range(3):
        for sop in info["sops"]:
            t = time.perf_counter()
            r = requests.get(f"{base}/{sop}/frames/1", headers={"Accept": "multipart/related; type=application/octet-stream"}, timeout=60)
            times.append(time.perf_counter() - t); size = len(r.content)
    print(json.dumps({"p50_ms": 1000 * statistics.median(times), "bytes": size}))
finally:
    server.stop()
"""


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        cold = _run(_SCRIPT, tmp)
        warm = _run(_WARM, tmp, json.dumps(cold))
    return [
        ("four-view mammogram study cold in a fresh process: first view (3000x2400, 12 bits)", f"{cold['first_s']:.1f}", "s"),
        (f"four-view mammogram study cold: all {cold['views']} views, 4 SEGs and the SR", f"{cold['study_s']:.1f}", "s"),
        (
            f"a warm MG frame through WADO-RS ({cold['views']} views x 3, {warm['bytes'] / 1e6:.1f} MB each)",
            f"{warm['p50_ms']:.0f}",
            "ms p50",
        ),
    ]
