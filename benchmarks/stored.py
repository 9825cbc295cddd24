"""Queries with stored objects beside the synthetic ones: what each costs once a team has stored hundreds of studies.

Runs in a fresh process: an archive of 1,000 synthetic patients into which
800 studies (one CT series of two instances each, pydicom's CT_small with new
UIDs and patients) are stored, then each query is timed many times (p50/p95).
"""

from __future__ import annotations

import json
import subprocess
import sys

from .archive import ROOT

_SCRIPT = r"""
import json, statistics, sys, tempfile, time
from benchmarks.objects import external_study
from synthpacs.config import load_config
from synthpacs.archive import Archive

n_stored, repeats = int(sys.argv[1]), int(sys.argv[2])
config = load_config(None, {"patients": 1000, "data_dir": tempfile.mkdtemp(prefix="synthpacs-bench-stored-")}, environ={})
archive = Archive(config)
for i in range(n_stored):
    for blob in external_study(i, "1.2.826.0.1.3680043.10.1234"):
        archive.store(blob)
synthetic = next(iter(archive.find("STUDY", {"PatientID": "SYN-*"}, limit=1)))
syn_study, syn_pid = str(synthetic.StudyInstanceUID), str(synthetic.PatientID)
some = n_stored // 2
queries = {
    "study level, page of 100": ("STUDY", {}, 100),
    "study level, all matches": ("STUDY", {}, None),
    "study level, ModalitiesInStudy=CT, page of 100": ("STUDY", {"ModalitiesInStudy": "CT"}, 100),
    "study level, exact PatientID of a stored patient": ("STUDY", {"PatientID": f"EXT-{some:05d}"}, None),
    "study level, exact PatientID of a synthetic patient": ("STUDY", {"PatientID": syn_pid}, None),
    "study level, PatientName wildcard on stored names": ("STUDY", {"PatientName": f"EXTERNAL^PATIENT{some // 10:04d}*"}, None),
    "series level under one stored study": ("SERIES", {"StudyInstanceUID": f"1.2.826.0.1.3680043.10.1234.{some + 1}"}, None),
    "series level under one synthetic study": ("SERIES", {"StudyInstanceUID": syn_study}, None),
    "image level under one stored study": ("IMAGE", {"StudyInstanceUID": f"1.2.826.0.1.3680043.10.1234.{some + 1}"}, None),
}
out = {}
for name, (level, query, limit) in queries.items():
    times, found = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        found = sum(1 for _ in archive.find(level, query, limit=limit))
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    out[name] = {"p50": statistics.median(times), "p95": times[max(0, int(0.95 * len(times)) - 1)], "matches": found}
archive.close()
print(json.dumps(out))
"""


def run(quick: bool = False) -> list[tuple[str, str, str]]:
    n_stored, repeats = (200, 10) if quick else (800, 30)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(n_stored), str(repeats)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    return [
        (f"{name} ({r['matches']} matches), {n_stored} stored studies, p50 / p95", f"{r['p50']:.1f} / {r['p95']:.1f}", "ms")
        for name, r in results.items()
    ]
