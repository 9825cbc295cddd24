"""On demand: what a client sees on a study nobody has retrieved yet, and the server's memory meanwhile.

The server runs as ``synthpacs serve`` in its own process with its defaults
(the GAN, prefetch on); this process is the client. Every study is cold
(never retrieved) and is opened as OHIF opens one: a QIDO of its series,
then the series metadata, then the middle slice's frame. Other cold studies
are retrieved whole (WADO-RS multipart, and C-MOVE into a pynetdicom
storage SCP here), timing the first part and the last. Memory is the
server's resident set (VmRSS) and its peak (VmHWM) from /proc.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

from pydicom import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove

from .dicomweb import FRAME_ACCEPT, HOST, JSON, _free_port, _Server, _value

Row = tuple[str, str, str]
DICOM_MULTIPART = 'multipart/related; type="application/dicom"'
CT = "1.2.840.10008.5.1.4.1.1.2"


def _settled(server) -> float:
    """Wait until the server generates nothing (prefetches done); the seconds waited."""
    started = time.perf_counter()
    deadline = time.monotonic() + 300
    while server.session.get(f"{server.base}/healthz", timeout=30).json()["studies_generating"]:
        if time.monotonic() > deadline:
            raise RuntimeError("the server was still generating after 300 s")
        time.sleep(0.2)
    return time.perf_counter() - started


def _memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _studies(server: _Server, n: int) -> list[str]:
    """Study UIDs from a study-level QIDO (which names no study, so prefetches nothing)."""
    items = server.get("/dicom-web/studies", params={"limit": n, "ModalitiesInStudy": "CT"}, headers=JSON).json()
    return [_value(item, "0020000D") for item in items]


def _ct_series_of(server: _Server, study: str) -> str:
    series = server.get(f"/dicom-web/studies/{study}/series", params={"Modality": "CT"}, headers=JSON).json()
    return _value(series[0], "0020000E")


def _open_as_ohif(server: _Server, study: str) -> tuple[float, float, int]:
    """(series metadata s, middle frame s, slices) of a cold study."""
    series = _ct_series_of(server, study)
    started = time.perf_counter()
    metadata = server.get(f"/dicom-web/studies/{study}/series/{series}/metadata", headers=JSON).json()
    metadata_s = time.perf_counter() - started
    ordered = sorted(metadata, key=lambda item: _value(item, "00200013"))
    middle = _value(ordered[len(ordered) // 2], "00080018")
    started = time.perf_counter()
    server.get(f"/dicom-web/studies/{study}/series/{series}/instances/{middle}/frames/1", headers={"Accept": FRAME_ACCEPT})
    return metadata_s, time.perf_counter() - started, len(ordered)


def _retrieve_whole(server: _Server, study: str) -> tuple[float, float, int]:
    """(first part s, whole series s, bytes) of a cold WADO-RS multipart series retrieve."""
    series = _ct_series_of(server, study)
    started = time.perf_counter()
    first = None
    size = 0
    response = server.session.get(
        f"{server.base}/dicom-web/studies/{study}/series/{series}", headers={"Accept": DICOM_MULTIPART}, stream=True, timeout=900
    )
    response.raise_for_status()
    for chunk in response.iter_content(1 << 16):
        if first is None and b"DICM" in chunk:
            first = time.perf_counter() - started
        size += len(chunk)
    return first or 0.0, time.perf_counter() - started, size


class _StoreSCP:
    """A pynetdicom storage SCP here, the C-MOVE destination."""

    def __init__(self):
        self.port = _free_port()
        self.received = 0
        self._lock = threading.Lock()
        ae = AE("BENCHSCP")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server((HOST, self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event) -> int:
        with self._lock:
            self.received += 1
        return 0x0000

    def close(self) -> None:
        self.server.shutdown()


def _move(server: _Server, study: str) -> tuple[float, float, float, int]:
    """(first pending s, first instance stored s, final s, instances) of a cold study C-MOVE."""
    ae = AE("BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10  # as an impatient modality tool
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate(HOST, server.dicom_port, ae_title="SYNTHPACS")
    identifier = Dataset()
    identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "STUDY", study
    started = time.perf_counter()
    first_pending = first_stored = None
    completed = 0
    try:
        for status, _ in assoc.send_c_move(identifier, "BENCHSCP", StudyRootQueryRetrieveInformationModelMove):
            now = time.perf_counter() - started
            if status is None or "Status" not in status:
                raise RuntimeError("C-MOVE timed out or the association broke")
            if status.Status == 0xFF00:
                first_pending = first_pending if first_pending is not None else now
                if first_stored is None and status.NumberOfCompletedSuboperations:
                    first_stored = now
            else:
                completed = int(status.NumberOfCompletedSuboperations)
                if status.Status != 0x0000:
                    raise RuntimeError(f"C-MOVE ended with status 0x{status.Status:04X}")
    finally:
        assoc.release()
    return first_pending or 0.0, first_stored or 0.0, time.perf_counter() - started, completed


def _one_study_alone(quick: bool) -> tuple[float, float]:
    """(whole series s, server peak RSS MiB) of one cold study retrieved by a fresh server with prefetch off,
    so that nothing but that study's generation runs."""
    server = _Server(quick, 1_000, settings={"prefetch": "false"})
    try:
        study = _studies(server, 1)[0]
        _, whole, _ = _retrieve_whole(server, study)
        return whole, _memory_mib(server.process.pid)[1]
    finally:
        server.close()


def _p50(samples: list[float]) -> float:
    return statistics.median(samples)


def run(quick: bool = False) -> list[Row]:
    opened_n, whole_n, moved_n = (3, 2, 2) if quick else (5, 5, 3)
    scp = _StoreSCP()
    dicom_port = _free_port()
    server = _Server(quick, 1_000, dicom_port=dicom_port, settings={"peers": f"BENCHSCP={HOST}:{scp.port}"})
    rows: list[Row] = []
    try:
        studies = _studies(server, opened_n + whole_n + moved_n)
        idle_rss, _ = _memory_mib(server.process.pid)
        opened = [_open_as_ohif(server, study) for study in studies[:opened_n]]
        slices = opened[0][2]
        rows.append(
            (
                f"series metadata of a cold CT series ({slices} slices), p50 of {opened_n}",
                f"{_p50([o[0] for o in opened]) * 1e3:.0f}",
                "ms",
            )
        )
        rows.append(
            (
                f"first frame of a cold series (the middle slice, after its metadata), p50 of {opened_n}",
                f"{_p50([o[1] for o in opened]):.2f}",
                "s",
            )
        )
        wholes = [_retrieve_whole(server, study) for study in studies[opened_n : opened_n + whole_n]]
        rows.append(
            (f"cold series retrieve, WADO-RS multipart: first part, p50 of {whole_n}", f"{_p50([w[0] for w in wholes]):.2f}", "s")
        )
        rows.append(
            (
                f"cold series retrieve, WADO-RS multipart: whole series, p50 of {whole_n}",
                f"{_p50([w[1] for w in wholes]):.1f}",
                "s",
            )
        )
        moves = [_move(server, study) for study in studies[opened_n + whole_n :]]
        rows.append(
            (f"cold study C-MOVE: first pending response, p50 of {moved_n}", f"{_p50([m[0] for m in moves]) * 1e3:.0f}", "ms")
        )
        rows.append((f"cold study C-MOVE: first instance stored, p50 of {moved_n}", f"{_p50([m[1] for m in moves]):.2f}", "s"))
        rows.append(
            (
                f"cold study C-MOVE ({moves[0][3]} instances): final response, p50 of {moved_n}",
                f"{_p50([m[2] for m in moves]):.1f}",
                "s",
            )
        )
        # Warm: the first opened study again (its frames are in the cache by now).
        warm = [_open_as_ohif(server, studies[0])[1] for _ in range(5)]
        rows.append(("first frame of the same series, warm, p50 of 5", f"{_p50(warm) * 1e3:.1f}", "ms"))
        _settled(server)  # "after": the prefetches the opened studies started have finished
        rss, peak = _memory_mib(server.process.pid)
        cold = opened_n + whole_n + moved_n
        rows.append(("server RSS before any retrieve", f"{idle_rss:.0f}", "MiB"))
        rows.append((f"server RSS after {cold} cold studies (memory cache cap 512 MiB)", f"{rss:.0f}", "MiB"))
        rows.append((f"server peak RSS over the {cold} cold studies (2 generating at once)", f"{peak:.0f}", "MiB"))
    finally:
        server.close()
        scp.close()
    whole, peak = _one_study_alone(quick)
    rows.append(("one cold study alone (fresh server, prefetch off): whole CT series, WADO-RS", f"{whole:.1f}", "s"))
    rows.append(("one cold study alone: server peak RSS", f"{peak:.0f}", "MiB"))
    return rows
