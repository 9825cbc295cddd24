"""SynthPACS beside Orthanc: the same operations against both archives in one run, with their ratio.

Orthanc 1.10 with its DICOMweb plugin (Debian's packages; ``scripts/install-orthanc.sh``
installs them when missing) holds a copy of SynthPACS's study list: one small CT
instance per study with the same Study Instance UID, Patient ID, name and date,
so that every query has the same matches on both sides. A warm 118-slice CT series
of SynthPACS is stored into Orthanc too, for C-GET and C-MOVE. Orthanc cannot be
told to listen on loopback only, so the whole comparison runs in a private network
namespace (``unshare --net``) where loopback is the only interface.

Each operation is timed ``repeats`` times per server, the two servers taking turns,
and reported as p50 (p95) per server and the ratio of the p50s (SynthPACS over
Orthanc: below 1 is faster).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from .dicomweb import HOST, JSON, ROOT, _free_port, _percentile, _Server, stop_process
from .objects import small_ct

ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
ORTHANC_AET, SYNTHPACS_AET, SCP_AET = "ORTHANC", "SYNTHPACS", "BENCHSCP"
Row = tuple[str, str, str]


def run(quick: bool = False) -> list[Row]:
    problem = _orthanc_missing()
    if problem:
        return [("side by side with Orthanc", "not run", problem)]
    inner = [sys.executable, "-m", "benchmarks.versus_orthanc", "--inside", "--quick" if quick else "--full"]
    script = "ip link set lo up && exec " + " ".join(inner)
    for unshare in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        done = subprocess.run([*unshare, "sh", "-c", script], cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            return [tuple(row) for row in json.loads(done.stdout.strip().splitlines()[-1])]
        if "unshare" not in done.stderr and "Operation not permitted" not in done.stderr:
            raise RuntimeError(f"the side-by-side benchmark failed:\n{done.stderr[-3000:]}")
    return [("side by side with Orthanc", "not run", "no private network namespace here (unshare --net)")]


def _orthanc_missing() -> str | None:
    if shutil.which("Orthanc") and ORTHANC_PLUGIN.exists():
        return None
    done = subprocess.run([str(ROOT / "scripts" / "install-orthanc.sh")], capture_output=True, text=True)
    if done.returncode != 0 or not shutil.which("Orthanc"):
        return f"Orthanc is not installed and scripts/install-orthanc.sh failed: {done.stderr.strip()[-200:]}"
    return None


# -- inside the namespace ---------------------------------------------------------------------


def _wait_http(url: str, process: subprocess.Popen, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited: {process.stderr.read()[-2000:] if process.stderr else ''}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


class _Orthanc:
    def __init__(self, folder: Path, scp_port: int):
        self.http, self.dicom_port = _free_port(), _free_port()
        config = {
            "Name": "bench",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AET,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": False,
            "DicomModalities": {SCP_AET: [SCP_AET, HOST, scp_port]},
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomAlwaysAllowMove": True,
            "Plugins": [str(ORTHANC_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "StorageCompression": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
        }
        path = folder / "orthanc.json"
        path.write_text(json.dumps(config))
        self.process = subprocess.Popen(["Orthanc", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.base = f"http://{HOST}:{self.http}"
        _wait_http(f"{self.base}/system", self.process, "Orthanc")

    def close(self) -> None:
        stop_process(self.process)


def _mirror_studies(synthpacs: _Server, orthanc: _Orthanc, session: requests.Session) -> int:
    """Give Orthanc one small CT instance per SynthPACS study, with the study's identifiers."""
    from pydicom.uid import generate_uid

    studies = session.get(f"{synthpacs.base}/dicom-web/studies", headers=JSON, timeout=600).json()
    for item in studies:
        blob = small_ct(
            StudyInstanceUID=item["0020000D"]["Value"][0],
            PatientID=item["00100020"]["Value"][0],
            PatientName=item["00100010"]["Value"][0]["Alphabetic"],
            StudyDate=item.get("00080020", {}).get("Value", [""])[0],
            SeriesInstanceUID=generate_uid(),
            SOPInstanceUID=generate_uid(),
        )
        session.post(f"{orthanc.base}/instances", data=blob, timeout=60).raise_for_status()
    return len(studies)


def _copy_series(synthpacs: _Server, orthanc: _Orthanc, session: requests.Session) -> tuple[str, str, int]:
    """A CT series of SynthPACS, generated, stored into Orthanc as well: (study, series, instances)."""
    study = session.get(
        f"{synthpacs.base}/dicom-web/studies", params={"ModalitiesInStudy": "CT", "limit": 1}, headers=JSON
    ).json()[0]
    study_uid = study["0020000D"]["Value"][0]
    series = session.get(f"{synthpacs.base}/dicom-web/studies/{study_uid}/series", params={"Modality": "CT"}, headers=JSON).json()
    series_uid = series[0]["0020000E"]["Value"][0]
    metadata = session.get(f"{synthpacs.base}/dicom-web/studies/{study_uid}/series/{series_uid}/metadata", headers=JSON).json()
    for item in metadata:
        sop = item["00080018"]["Value"][0]
        data = session.get(
            f"{synthpacs.base}/dicom-web/studies/{study_uid}/series/{series_uid}/instances/{sop}",
            headers={"Accept": 'multipart/related; type="application/dicom"'},
            timeout=900,
        )
        part = data.content.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
        session.post(f"{orthanc.base}/instances", data=part, timeout=60).raise_for_status()
    return study_uid, series_uid, len(metadata)


def _time(call: Callable[[], object], repeats: int) -> list[float]:
    call()  # warm
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1e3)
    return out


def _inside(quick: bool) -> list[Row]:
    from pydicom import Dataset
    from pynetdicom import AE, AllStoragePresentationContexts, build_role, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
        Verification,
    )

    from synthpacs.dimse import transport

    repeats = 10 if quick else 30
    received = {"n": 0}
    lock = threading.Lock()

    def on_store(event) -> int:
        with lock:
            received["n"] += 1
        return 0x0000

    scp_ae = AE(SCP_AET)
    scp_ae.supported_contexts = AllStoragePresentationContexts
    scp_port = _free_port()
    scp = scp_ae.start_server((HOST, scp_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    folder = Path(tempfile.mkdtemp(prefix="synthpacs-bench-orthanc-"))
    settings = {"peers": f"{SCP_AET}={HOST}:{scp_port}", "qido_limit": "100000"}  # all matches, as Orthanc answers
    synthpacs = _Server(False, 60 if quick else 210, dicom_port=_free_port(), settings=settings)
    orthanc = _Orthanc(folder, scp_port)
    session = requests.Session()
    session.trust_env = False
    rows: list[Row] = []
    try:
        n_studies = _mirror_studies(synthpacs, orthanc, session)
        study_uid, series_uid, n_instances = _copy_series(synthpacs, orthanc, session)
        patient = session.get(
            f"{synthpacs.base}/dicom-web/studies", params={"limit": 1, "offset": n_studies // 2}, headers=JSON
        ).json()
        patient_id = patient[0]["00100020"]["Value"][0]
        servers = {"SynthPACS": (synthpacs, SYNTHPACS_AET), "Orthanc": (orthanc, ORTHANC_AET)}

        def both(
            name: str,
            make: Callable[[object, str], Callable[[], object]],
            expected: Callable[[object], int] | None = None,
            times: int = repeats,
        ):
            samples = {}
            counts = {}
            for label, (server, aet) in servers.items():
                call = make(server, aet)
                samples[label] = _time(call, times)
                if expected is not None:
                    counts[label] = expected(call())
            if counts and len(set(counts.values())) != 1:
                raise RuntimeError(f"{name}: the two archives answered differently: {counts}")
            s, o = statistics.median(samples["SynthPACS"]), statistics.median(samples["Orthanc"])
            rows.append(
                (
                    name,
                    f"{s:.1f} ({_percentile(samples['SynthPACS'], 0.95):.1f}) / {o:.1f} ({_percentile(samples['Orthanc'], 0.95):.1f}) = {s / o:.2f}",
                    "ms, p50 (p95) SynthPACS / Orthanc = ratio",
                )
            )

        def qido(params: dict):
            def make(server, aet):
                return lambda: session.get(f"{server.base}/dicom-web/studies", params=params, headers=JSON, timeout=120).json()

            return make

        both(f"QIDO-RS studies, a page of 100 (of {n_studies})", qido({"limit": 100}), len)
        both(f"QIDO-RS studies, all {n_studies} matches", qido({}), len)
        both("QIDO-RS studies, exact PatientID", qido({"PatientID": patient_id}), len)

        def association(server, aet, contexts):
            # The same client for both: pynetdicom with SynthPACS's socket fixes (TCP_NODELAY, quick ACKs),
            # without which every round trip waits on Nagle's algorithm whichever server answers.
            ae = AE("BENCHSCU")
            for context in contexts:
                ae.add_requested_context(context)
            roles = []
            if StudyRootQueryRetrieveInformationModelGet in contexts:
                ae.add_requested_context(CTImageStorage)
                roles = [build_role(CTImageStorage, scp_role=True)]
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
            assoc = transport.associate(
                ae, HOST, server.dicom_port, aet, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]
            )
            if not assoc.is_established:
                raise RuntimeError(f"{aet} refused an association for {[str(c) for c in contexts]}")
            return assoc

        open_associations = []

        def echo_open(server, aet):
            assoc = association(server, aet, [Verification])
            open_associations.append(assoc)
            return lambda: assoc.send_c_echo()

        def echo_new(server, aet):
            def call():
                assoc = association(server, aet, [Verification])
                assoc.send_c_echo()
                assoc.release()

            return call

        def find(identifier_keys: dict):
            def make(server, aet):
                assoc = association(server, aet, [StudyRootQueryRetrieveInformationModelFind])
                open_associations.append(assoc)
                identifier = Dataset()
                for keyword, value in identifier_keys.items():
                    setattr(identifier, keyword, value)

                def call():
                    return [
                        ds
                        for status, ds in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
                        if status and status.Status in (0xFF00, 0xFF01)
                    ]

                return call

            return make

        study_keys = {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "", "PatientName": "", "StudyDate": ""}
        both("C-ECHO on an open association", echo_open)
        both("associate, C-ECHO, release", echo_new)
        both("C-FIND studies, exact PatientID", find({**study_keys, "PatientID": patient_id}), len)
        both(f"C-FIND studies, all {n_studies}", find({**study_keys, "PatientID": ""}), len)

        def retrieve(kind: str):
            def make(server, aet):
                model = StudyRootQueryRetrieveInformationModelGet if kind == "get" else StudyRootQueryRetrieveInformationModelMove
                assoc = association(server, aet, [model])
                open_associations.append(assoc)
                identifier = Dataset()
                identifier.QueryRetrieveLevel, identifier.StudyInstanceUID = "SERIES", study_uid
                identifier.SeriesInstanceUID = series_uid

                def call():
                    before = received["n"]
                    responses = (
                        assoc.send_c_get(identifier, model) if kind == "get" else assoc.send_c_move(identifier, SCP_AET, model)
                    )
                    for status, _ in responses:
                        if status is None or "Status" not in status:
                            raise RuntimeError(f"C-{kind.upper()} broke off")
                    return received["n"] - before

                return call

            return make

        few = 3 if quick else 5
        both(f"C-GET of a warm {n_instances}-instance CT series", retrieve("get"), int, few)
        both(f"C-MOVE of a warm {n_instances}-instance CT series", retrieve("move"), int, few)
        for assoc in open_associations:
            assoc.release()
    finally:
        synthpacs.close()
        orthanc.close()
        scp.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    return rows


if __name__ == "__main__":
    if "--inside" in sys.argv:
        print(json.dumps(_inside(quick="--quick" in sys.argv)))
