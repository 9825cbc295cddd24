"""Mixed load: many clients at once on a server that holds stored studies beside the synthetic ones.

``synthpacs serve`` runs with 1,000 synthetic patients (4,830 studies) and, stored
through STOW-RS before the load starts, 1,000 studies of two small CT instances each.
Two synthetic CT series are generated first (warm). Then, for a fixed time, 16 HTTP
clients loop over QIDO-RS searches, series metadata and frames of the warm series,
and 4 DIMSE clients over C-ECHO and C-FIND, all in this process (threads; the client's
own share of the two cores is part of every figure). Reported: p50 and p95 latency
and the number of calls per operation, and any failed call.
"""

from __future__ import annotations

import io
import random
import statistics
import threading
import time
import uuid
from collections import defaultdict

import requests
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification  # type: ignore[attr-defined]

from .dicomweb import FRAME_ACCEPT, HOST, JSON, _free_port, _percentile, _Server, _value
from .objects import external_study

Row = tuple[str, str, str]
STORED_STUDIES = 1_000


def _stow(server: _Server, n_studies: int) -> None:
    """Store ``n_studies`` studies of two instances each through STOW-RS, 50 studies per request."""
    boundary = uuid.uuid4().hex
    for start in range(0, n_studies, 50):
        body = io.BytesIO()
        for i in range(start, min(start + 50, n_studies)):
            for part in external_study(i, "1.2.826.0.1.3680043.10.4321"):
                body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n")
        body.write(f"--{boundary}--".encode())
        response = server.session.post(
            f"{server.base}/dicom-web/studies",
            data=body.getvalue(),
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}', **JSON},
            timeout=600,
        )
        response.raise_for_status()


def _warm_series(server: _Server, n: int) -> list[tuple[str, str, list[str]]]:
    """(study, series, SOP instance UIDs) of ``n`` synthetic CT series, generated whole."""
    studies = server.get("/dicom-web/studies", params={"ModalitiesInStudy": "CT", "PatientID": "SYN-*", "limit": n}, headers=JSON)
    out = []
    for item in studies.json():
        study = _value(item, "0020000D")
        series = _value(
            server.get(f"/dicom-web/studies/{study}/series", params={"Modality": "CT"}, headers=JSON).json()[0], "0020000E"
        )
        server.get(
            f"/dicom-web/studies/{study}/series/{series}", headers={"Accept": 'multipart/related; type="application/dicom"'}
        )
        metadata = server.get(f"/dicom-web/studies/{study}/series/{series}/metadata", headers=JSON).json()
        out.append((study, series, [_value(m, "00080018") for m in metadata]))
    return out


def run(quick: bool = False) -> list[Row]:
    seconds = 10 if quick else 30
    dicom_port = _free_port()
    server = _Server(quick, 1_000, dicom_port=dicom_port)
    latencies: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    try:
        _stow(server, 200 if quick else STORED_STUDIES)
        warm = _warm_series(server, 2)
        patients = [
            _value(item, "00100020") for item in server.get("/dicom-web/studies", params={"limit": 200}, headers=JSON).json()
        ]
        stop = time.monotonic() + seconds

        def timed(name: str, call, *args, **kwargs) -> None:
            started = time.perf_counter()
            try:
                call(*args, **kwargs)
            except Exception:
                with lock:
                    failures[name] += 1
                return
            with lock:
                latencies[name].append((time.perf_counter() - started) * 1e3)

        def http_client(seed: int) -> None:
            rng = random.Random(seed)
            session = requests.Session()
            session.trust_env = False

            def get(path: str, accept: dict = JSON, **params) -> bytes:
                response = session.get(server.base + path, params=params, headers=accept, timeout=120)
                response.raise_for_status()
                return response.content

            while time.monotonic() < stop:
                study, series, sops = rng.choice(warm)
                choice = rng.random()
                if choice < 0.25:
                    timed("QIDO-RS studies, page of 100", get, "/dicom-web/studies", limit=100)
                elif choice < 0.4:
                    timed("QIDO-RS studies, exact PatientID", get, "/dicom-web/studies", PatientID=rng.choice(patients))
                elif choice < 0.5:
                    timed("QIDO-RS series of one study", get, f"/dicom-web/studies/{study}/series")
                elif choice < 0.65:
                    timed("series metadata (warm, 118 instances)", get, f"/dicom-web/studies/{study}/series/{series}/metadata")
                else:
                    frame = f"/dicom-web/studies/{study}/series/{series}/instances/{rng.choice(sops)}/frames/1"
                    timed("frame (warm)", get, frame, {"Accept": FRAME_ACCEPT})

        def dimse_client(seed: int) -> None:
            from synthpacs.dimse import transport

            rng = random.Random(seed)
            ae = AE("LOADSCU")
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
            ae.add_requested_context(Verification)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            assoc = transport.associate(ae, HOST, dicom_port, "SYNTHPACS")

            def find(identifier: Dataset) -> None:
                for status, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                    _check(status)

            try:
                while time.monotonic() < stop:
                    if rng.random() < 0.3:
                        timed("C-ECHO", lambda: _check(assoc.send_c_echo()))
                        continue
                    identifier = Dataset()
                    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", ""
                    identifier.PatientID, identifier.PatientName, identifier.StudyDate = rng.choice(patients), "", ""
                    timed("C-FIND studies, exact PatientID", find, identifier)
            finally:
                assoc.release()

        threads = [threading.Thread(target=http_client, args=(i,)) for i in range(16)]
        threads += [threading.Thread(target=dimse_client, args=(100 + i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.close()
    rows: list[Row] = []
    for name in sorted(set(latencies) | set(failures)):
        samples = latencies.get(name, [])
        p50 = statistics.median(samples) if samples else float("nan")
        p95 = _percentile(samples, 0.95) if samples else float("nan")
        rows.append((f"{name}: p50 / p95 ({len(samples)} calls, {failures.get(name, 0)} failed)", f"{p50:.0f} / {p95:.0f}", "ms"))
    return rows


def _check(status) -> None:
    if status is None or "Status" not in status or status.Status not in (0x0000, 0xFF00, 0xFF01):
        raise RuntimeError(f"DIMSE status {status}")
