"""DICOMweb: QIDO-RS study search latency, series metadata of a whole CT
series, frame retrieval cold (the request waits for the slab holding its
frame) and warm (from the cache), and series retrieve throughput.

The server runs as ``synthpacs serve`` in its own process (its own GIL, as
deployed) on a free loopback port; this process is the client (requests,
one connection kept alive, as a viewer does). ``--quick`` uses the tests'
small cohort (128x128, 10 mm slices) and 1,000 patients; the full run uses
the shipped cohorts at their real size and 100,000 patients.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
Row = tuple[str, str, str]
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax="*"'  # OHIF's
JSON = {"Accept": "application/dicom+json"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class _Server:
    """``synthpacs serve`` in a subprocess."""

    def __init__(self, quick: bool, patients: int, dicom_port: int = 0, settings: dict[str, str] | None = None):
        self.tmp = tempfile.TemporaryDirectory(prefix="synthpacs-bench-dicomweb-")
        self.port = _free_port()
        self.dicom_port = dicom_port
        env = dict(
            os.environ, SYNTHPACS_LOG_LEVEL="WARNING", **{f"SYNTHPACS_{k.upper()}": v for k, v in (settings or {}).items()}
        )
        if quick:
            env["SYNTHPACS_COHORTS_DIR"] = str(ROOT / "tests" / "data" / "cohorts")
        started = time.perf_counter()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "synthpacs",
                "serve",
                "--data-dir",
                str(Path(self.tmp.name) / "data"),
                "--patients",
                str(patients),
                "--http-port",
                str(self.port),
                "--dicom-port",
                str(dicom_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.base = f"http://{HOST}:{self.port}"
        self.session = requests.Session()
        self.session.trust_env = False
        deadline = time.monotonic() + 600
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"synthpacs serve exited: {self.process.stderr.read()[-2000:]}")
            try:
                if self.session.get(f"{self.base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("synthpacs serve did not become ready")
            time.sleep(0.2)
        self.startup = time.perf_counter() - started

    def get(self, path: str, **kwargs) -> requests.Response:
        response = self.session.get(self.base + path, timeout=900, **kwargs)
        response.raise_for_status()
        return response

    def close(self) -> None:
        stop_process(self.process)
        self.tmp.cleanup()


def stop_process(process: subprocess.Popen) -> None:
    """Terminate a server process, killing it if it does not stop within 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _value(item: dict, tag: str):
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _ct_series(server: _Server, offset: int) -> tuple[str, str, list[str]]:
    found = server.get(
        "/dicom-web/studies", params={"limit": 1, "offset": offset, "ModalitiesInStudy": "CT"}, headers=JSON
    ).json()
    study = _value(found[0], "0020000D")
    series = server.get(f"/dicom-web/studies/{study}/series", params={"Modality": "CT"}, headers=JSON).json()
    se = _value(series[0], "0020000E")
    instances = server.get(f"/dicom-web/studies/{study}/series/{se}/instances", headers=JSON).json()
    sops = [_value(i, "00080018") for i in sorted(instances, key=lambda i: _value(i, "00200013"))]
    return study, se, sops


def run(quick: bool) -> list[Row]:
    patients = 1_000 if quick else 100_000
    server = _Server(quick, patients)
    rows: list[Row] = [(f"server start, {patients:,} patients (catalog build included)", f"{server.startup:.1f}", "s")]
    try:
        # QIDO-RS: the OHIF study list query, with a patient filter that changes every request.
        latencies = []
        for i in range(200 if quick else 400):
            params = {
                "limit": 101,
                "offset": 0,
                "fuzzymatching": "false",
                "includefield": "00081030,00080060,00080090,00100030",
                "00100020": f"*{i % 1000:03d}*",
            }
            started = time.perf_counter()
            server.get("/dicom-web/studies", params=params, headers=JSON).json()
            latencies.append(time.perf_counter() - started)
        rows.append(
            ("QIDO-RS study search p50 (OHIF list query, PatientID wildcard)", f"{statistics.median(latencies) * 1e3:.1f}", "ms")
        )
        rows.append(("QIDO-RS study search p95", f"{_percentile(latencies, 0.95) * 1e3:.1f}", "ms"))
        page = []
        for offset in range(0, 2000, 100):
            started = time.perf_counter()
            server.get("/dicom-web/studies", params={"limit": 100, "offset": offset}, headers=JSON).json()
            page.append(time.perf_counter() - started)
        rows.append(("QIDO-RS study page of 100 (offset 0..1900) p50", f"{statistics.median(page) * 1e3:.1f}", "ms"))

        # Frames, cold: the first frame request of a study waits for the slab that holds it (the
        # series QIDO that found it, naming the study, started a prefetch: as when OHIF opens it).
        study, series, sops = _ct_series(server, offset=3)
        frame_path = f"/dicom-web/studies/{study}/series/{series}/instances/{{}}/frames/1"
        started = time.perf_counter()
        server.get(frame_path.format(sops[len(sops) // 2]), headers={"Accept": FRAME_ACCEPT})
        rows.append(
            (
                f"frame retrieval cold, middle slice of {len(sops)} (waits for its slab only)",
                f"{time.perf_counter() - started:.2f}",
                "s",
            )
        )
        warm = []
        for _ in range(3 if quick else 2):
            for sop in sops:
                started = time.perf_counter()
                server.get(frame_path.format(sop), headers={"Accept": FRAME_ACCEPT})
                warm.append(time.perf_counter() - started)
        rows.append(("frame retrieval warm p50 (one GET per frame, as OHIF)", f"{statistics.median(warm) * 1e3:.1f}", "ms"))
        rows.append(("frame retrieval warm p95", f"{_percentile(warm, 0.95) * 1e3:.1f}", "ms"))

        # Series metadata of the whole CT series: the study is in the instance cache now; the first
        # request encodes every instance, later ones come from the metadata cache.
        started = time.perf_counter()
        server.get(f"/dicom-web/studies/{study}/series/{series}/metadata", headers=JSON)
        rows.append(
            (
                f"series metadata, full CT series ({len(sops)} instances), first request (encoded)",
                f"{(time.perf_counter() - started) * 1e3:.0f}",
                "ms",
            )
        )
        times = []
        for _ in range(5):
            started = time.perf_counter()
            body = server.get(f"/dicom-web/studies/{study}/series/{series}/metadata", headers=JSON).content
            times.append(time.perf_counter() - started)
        rows.append(
            (
                f"series metadata, full CT series ({len(body) / 1e6:.1f} MB JSON), repeated p50",
                f"{statistics.median(times) * 1e3:.0f}",
                "ms",
            )
        )
        study2, series2, sops2 = _ct_series(server, offset=5)
        started = time.perf_counter()
        server.get(f"/dicom-web/studies/{study2}/series/{series2}/metadata", headers=JSON)
        rows.append(
            (
                f"series metadata, cold ({len(sops2)} instances, from the series headers: no pixels)",
                f"{(time.perf_counter() - started) * 1e3:.0f}",
                "ms",
            )
        )

        # Instance retrieve throughput: the whole CT series as one multipart response, then instance by instance.
        best = None
        for _ in range(3):
            started = time.perf_counter()
            size = len(
                server.get(
                    f"/dicom-web/studies/{study}/series/{series}",
                    headers={"Accept": 'multipart/related; type="application/dicom"'},
                ).content
            )
            elapsed = time.perf_counter() - started
            best = elapsed if best is None else min(best, elapsed)
        rows.append(("series retrieve (multipart, warm)", f"{len(sops) / best:.0f}", "instances/s"))
        rows.append(("series retrieve (multipart, warm)", f"{size / best / 1e6:.0f}", "MB/s"))
        started = time.perf_counter()
        for sop in sops:
            server.get(
                f"/dicom-web/studies/{study}/series/{series}/instances/{sop}",
                headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
            )
        rows.append(
            (
                "instance retrieve, one request per instance (warm)",
                f"{len(sops) / (time.perf_counter() - started):.0f}",
                "instances/s",
            )
        )
        started = time.perf_counter()
        server.get(
            f"/dicom-web/studies/{study}/series/{series}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'},
        )
        rows.append(
            (
                "series retrieve as JPEG 2000 Lossless (transcoded per request)",
                f"{len(sops) / (time.perf_counter() - started):.0f}",
                "instances/s",
            )
        )
    finally:
        server.close()
    return rows


if __name__ == "__main__":
    from tabulate import tabulate

    print(tabulate(run(quick="--quick" in sys.argv), headers=["benchmark", "result", "unit"], tablefmt="github"))
