"""DIMSE: C-FIND latency and throughput at study level; C-MOVE and C-GET of
one CT series, cold (generated on the request) and warm (from the cache).

The server runs as ``synthpacs serve`` in its own process (its own GIL, as
deployed) on free loopback ports; this process is the SCU (pynetdicom, with
the project's hardened associations). C-MOVE goes to a dcmtk ``storescp
--ignore`` (receives everything, writes nothing). ``--quick`` uses the
tests' small cohort (128x128, 10 mm slices); the full run uses the shipped
cohorts at their real size.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pydicom import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from synthpacs.dimse import transport

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
DESTINATION = "BENCHSCP"
Row = tuple[str, str, str]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _identifier(**keys) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


class _Server:
    """``synthpacs serve`` in a subprocess, and a storescp to move to."""

    def __init__(self, quick: bool, patients: int):
        self.tmp = Path(tempfile.mkdtemp(prefix="synthpacs-bench-dimse-"))
        self.port, store_port = _free_port(), _free_port()
        self.storescp = None
        if shutil.which("storescp"):
            self.storescp = subprocess.Popen(
                ["storescp", "--ignore", "-aet", DESTINATION, str(store_port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        env = dict(os.environ, SYNTHPACS_LOG_LEVEL="WARNING")
        if quick:  # the tests' cohort and renderer: small slices, no GAN weights needed
            env["SYNTHPACS_COHORTS_DIR"] = str(ROOT / "tests" / "data" / "cohorts")
            env["SYNTHPACS_RENDERER"] = "teacher"
        self.log = self.tmp / "serve.log"  # a file, not a pipe: nobody reads it while the server runs
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "synthpacs",
                    "serve",
                    "--data-dir",
                    str(self.tmp / "data"),
                    "--patients",
                    str(patients),
                    "--http-port",
                    "0",
                    "--dicom-port",
                    str(self.port),
                    "--peer",
                    f"{DESTINATION}={HOST}:{store_port}",
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.ae = AE("BENCHSCU")
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 600
        for context in (
            Verification,
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelGet,
        ):
            self.ae.add_requested_context(context)
        deadline = time.monotonic() + 300
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"synthpacs serve exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("synthpacs serve did not answer C-ECHO in 300 s")
            try:
                assoc = self.associate()
            except Exception:
                time.sleep(0.2)
                continue
            if assoc.is_established:
                ok = assoc.send_c_echo().get("Status") == 0
                assoc.release()
                if ok:
                    break
            time.sleep(0.2)

    def associate(self, ae: AE | None = None, **kwargs):
        return transport.associate(ae or self.ae, HOST, self.port, "SYNTHPACS", **kwargs)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.storescp is not None:
            self.storescp.terminate()
            self.storescp.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _find_latency(server: _Server, rounds: int) -> list[Row]:
    assoc = server.associate()
    studies = [
        ds
        for s, ds in assoc.send_c_find(
            _identifier(QueryRetrieveLevel="STUDY", PatientID="", StudyInstanceUID=""), StudyRootQueryRetrieveInformationModelFind
        )
        if s.Status == 0xFF00
    ]
    patients = sorted({str(ds.PatientID) for ds in studies})
    echoes = []
    for _ in range(rounds):
        t = time.perf_counter()
        assoc.send_c_echo()
        echoes.append((time.perf_counter() - t) * 1000)
    echo = statistics.median(echoes)
    latencies = []
    keys = dict(
        QueryRetrieveLevel="STUDY",
        StudyInstanceUID="",
        StudyDate="",
        PatientName="",
        AccessionNumber="",
        ModalitiesInStudy="",
        NumberOfStudyRelatedInstances="",
    )
    started = time.perf_counter()
    for i in range(rounds):
        t = time.perf_counter()
        responses = list(
            assoc.send_c_find(
                _identifier(PatientID=patients[(i * 7919) % len(patients)], **keys), StudyRootQueryRetrieveInformationModelFind
            )
        )
        latencies.append((time.perf_counter() - t) * 1000)
        assert responses[-1][0].Status == 0x0000
    elapsed = time.perf_counter() - started
    # Streaming: every study of the universe in one query.
    t = time.perf_counter()
    matches = sum(
        1 for s, _ in assoc.send_c_find(_identifier(**keys), StudyRootQueryRetrieveInformationModelFind) if s.Status == 0xFF00
    )
    stream = time.perf_counter() - t
    assoc.release()
    latencies.sort()
    # Throughput with 4 associations in parallel.
    parallel = _parallel_finds(server, patients, keys, clients=4, per_client=max(10, rounds // 4))
    return [
        ("C-ECHO, p50", f"{echo:.1f}", "ms"),
        ("C-FIND study level (one patient), p50", f"{statistics.median(latencies):.1f}", "ms"),
        ("C-FIND study level (one patient), p95", f"{latencies[int(0.95 * len(latencies)) - 1]:.1f}", "ms"),
        ("C-FIND study level, 1 association", f"{rounds / elapsed:.0f}", "queries/s"),
        ("C-FIND study level, 4 associations", f"{parallel:.0f}", "queries/s"),
        (f"C-FIND study level, all {matches} studies streamed", f"{matches / stream:.0f}", "matches/s"),
    ]


def _parallel_finds(server: _Server, patients: list[str], keys: dict, clients: int, per_client: int) -> float:
    def client(n: int) -> None:
        assoc = server.associate()
        for i in range(per_client):
            list(
                assoc.send_c_find(
                    _identifier(PatientID=patients[(n * 31 + i * 7919) % len(patients)], **keys),
                    StudyRootQueryRetrieveInformationModelFind,
                )
            )
        assoc.release()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return clients * per_client / (time.perf_counter() - started)


def _ct_series(server: _Server, skip: int) -> tuple[str, str, int]:
    """(study, CT series, instances) of the ``skip``-th synthetic study with a CT series."""
    assoc = server.associate()
    series = [
        ds
        for s, ds in assoc.send_c_find(
            _identifier(
                QueryRetrieveLevel="SERIES",
                StudyInstanceUID="",
                SeriesInstanceUID="",
                Modality="CT",
                NumberOfSeriesRelatedInstances="",
            ),
            StudyRootQueryRetrieveInformationModelFind,
        )
        if s.Status == 0xFF00
    ]
    assoc.release()
    ds = series[skip * 3 % len(series)]
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), int(ds.NumberOfSeriesRelatedInstances)


def _move(server: _Server, study: str, series: str) -> tuple[float, int]:
    assoc = server.associate()
    t = time.perf_counter()
    final = [
        s
        for s, _ in assoc.send_c_move(
            _identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=study, SeriesInstanceUID=series),
            DESTINATION,
            StudyRootQueryRetrieveInformationModelMove,
        )
    ][-1]
    elapsed = time.perf_counter() - t
    assoc.release()
    if final.get("Status") != 0x0000:
        raise RuntimeError(f"C-MOVE ended with 0x{final.get('Status', 0):04X} {final.get('ErrorComment', '')}")
    return elapsed, int(final.NumberOfCompletedSuboperations)


def _get(server: _Server, study: str, series: str) -> tuple[float, int]:
    received = [0]

    def on_store(event):
        received[0] += 1
        return 0x0000

    ae = AE("BENCHGET")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 600
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    assoc = server.associate(ae, ext_neg=[build_role(CTImageStorage, scp_role=True)], evt_handlers=[(evt.EVT_C_STORE, on_store)])
    t = time.perf_counter()
    final = [
        s
        for s, _ in assoc.send_c_get(
            _identifier(QueryRetrieveLevel="SERIES", StudyInstanceUID=study, SeriesInstanceUID=series),
            StudyRootQueryRetrieveInformationModelGet,
        )
    ][-1]
    elapsed = time.perf_counter() - t
    assoc.release()
    if final.get("Status") != 0x0000:
        raise RuntimeError(f"C-GET ended with 0x{final.get('Status', 0):04X} {final.get('ErrorComment', '')}")
    return elapsed, received[0]


def _retrieve_rows(server: _Server) -> list[Row]:
    rows: list[Row] = []
    for name, retrieve, skip in (("C-MOVE", _move, 0), ("C-GET", _get, 1)):
        if name == "C-MOVE" and server.storescp is None:
            rows.append(("C-MOVE of one CT series", "n/a", "dcmtk storescp is not installed"))
            continue
        study, series, n = _ct_series(server, skip)
        try:
            cold, count = retrieve(server, study, series)
        except Exception as exc:  # generation unavailable and the like: say so in the table
            causes = [line.split(": ", 2)[-1] for line in server.log.read_text().splitlines() if "cannot make instance" in line]
            why = causes[-1] if causes else f"{type(exc).__name__}: {exc}"
            rows.append((f"{name} of one CT series ({n} instances)", "n/a", why[:100]))
            continue
        warm = min(retrieve(server, study, series)[0] for _ in range(2))
        rows.append((f"{name} of one CT series ({count} instances), cold: generated", f"{count / cold:.1f}", "instances/s"))
        rows.append((f"{name} of one CT series ({count} instances), warm: cached", f"{count / warm:.0f}", "instances/s"))
    return rows


def run(quick: bool = False) -> list[Row]:
    server = _Server(quick, patients=200 if quick else 1000)
    try:
        rows = _find_latency(server, rounds=100 if quick else 400)
        rows += _retrieve_rows(server)
    finally:
        server.close()
    return rows


if __name__ == "__main__":
    from tabulate import tabulate

    print(tabulate(run(quick="--quick" in sys.argv), headers=["benchmark", "result", "unit"], tablefmt="github"))
