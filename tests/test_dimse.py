"""The DIMSE front end, driven through real peers: dcmtk's echoscu, findscu,
movescu (into a dcmtk storescp), getscu and storescu, and pynetdicom where a
test needs to see statuses (C-CANCEL, C-GET without a SEG context, bad input).

Every server binds 127.0.0.1 on a free port and is stopped by its test.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import make_config, require_tool
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, DEFAULT_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import (
    CTImageStorage,
    ModalityWorklistInformationFind,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from synthpacs.dimse import transport
from synthpacs.errors import StartupError
from synthpacs.server import RunningServer

pytestmark = pytest.mark.timeout(120)

HOST = "127.0.0.1"
TODAY = "20260301"
STORE_AET = "STORESCP"


# -- helpers (also used by test_dimse_concurrency.py) ------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port}")


@contextlib.contextmanager
def storescp(directory: Path, *extra: str, aet: str = STORE_AET):
    """A dcmtk storescp on a free loopback port, writing into ``directory``."""
    require_tool("storescp")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        ["storescp", "-aet", aet, "-od", str(directory), *extra, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def dcmtk(tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    require_tool(tool)
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def serve(data_dir: Path, **overrides):
    """A RunningServer on free loopback ports, stopped on exit.

    Synthetic studies are drawn by the teacher renderer (fast, no weights):
    these tests are about the protocol, not the GAN. The environment variable
    covers generator code that reads the process configuration itself.
    """
    settings = {
        "dicom_acse_timeout": 5,
        "dicom_dimse_timeout": 15,
        "dicom_connection_timeout": 2,
        "today": int(TODAY),
        "renderer": "teacher",
    }
    settings.update(overrides)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNTHPACS_RENDERER", str(settings["renderer"]))
        server = RunningServer(make_config(data_dir, **settings))
        try:
            yield server
        finally:
            server.stop()


def scu(port: int, *contexts, ae_title: str = "PYSCU", **kwargs):
    """A pynetdicom association to the server (TCP_NODELAY and the exact reactor pause)."""
    ae = AE(ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for context in contexts or (Verification,):
        ae.add_requested_context(context)
    assoc = transport.associate(ae, HOST, port, "SYNTHPACS", **kwargs)
    assert assoc.is_established, "the server did not accept the association"
    return assoc


def find_with_findscu(port: int, model: str, keys: dict, tmp_path: Path) -> list[Dataset]:
    """findscu -P/-S/-W with -k keys; the responses it extracts, read back."""
    out = tmp_path / f"find-{time.monotonic_ns()}"
    out.mkdir()
    args = [model, "-aec", "SYNTHPACS", "-X", "-od", str(out)]
    for key, value in keys.items():
        args += ["-k", key if value is None else f"{key}={value}"]
    result = dcmtk("findscu", *args, HOST, str(port))
    assert result.returncode == 0, result.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def make_series(
    n: int,
    *,
    patient_id: str,
    patient_name: str,
    study_uid: str | None = None,
    modality: str = "CT",
    study_date: str = "20240301",
) -> list[Dataset]:
    """A small CT (or MR) series built with pydicom: objects the project did not make."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    out = []
    for i in range(1, n + 1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, patient_id, "19700101", "O"
        ds.StudyDate = ds.SeriesDate = study_date
        ds.StudyTime = ds.SeriesTime = "101500"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "EXT0001", "1", ""
        ds.StudyDescription, ds.SeriesDescription = "EXTERNAL TEST STUDY", f"External {modality}"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, i
        ds.ImagePositionPatient = [0, 0, 5.0 * i]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 5.0
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = bytes(range(128))
        out.append(ds)
    return out


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_files(datasets: list[Dataset], directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = directory / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(part10(ds))
        paths.append(str(path))
    return paths


def query(**keys) -> Dataset:
    ds = Dataset()
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def require_generation(archive, study_uid: str) -> None:
    """Generate a synthetic study up front (so a test times the protocol, not the GAN)."""
    archive.generate_study(study_uid)


def smallest_synthetic_study(archive) -> Dataset:
    studies = [
        ds
        for ds in archive.find("STUDY", {"StudyInstanceUID": "", "NumberOfStudyRelatedInstances": ""})
        if archive.is_synthetic_uid(str(ds.StudyInstanceUID))
    ]
    return min(studies, key=lambda ds: int(ds.NumberOfStudyRelatedInstances))


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One server for the read-mostly tests, with a storescp as C-MOVE destination
    and a few stored objects the project did not make."""
    root = tmp_path_factory.mktemp("dimse")
    with storescp(root / "received") as store_port:
        peers = [f"{STORE_AET}=127.0.0.1:{store_port}", f"DEADEND=127.0.0.1:{free_port()}"]
        with serve(root / "data", peers=peers) as server:
            archive = server.pacs.archive
            external = make_series(3, patient_id="EXT-0001", patient_name="EXTERNAL^CT")
            mr = make_series(
                2, patient_id="EXT-0001", patient_name="EXTERNAL^CT", modality="MR", study_uid=str(external[0].StudyInstanceUID)
            )
            for ds in external + mr:
                archive.store(part10(ds))
            for name in ("CT_small.dcm", "MR_small.dcm"):
                archive.store(Path(get_testdata_file(name)).read_bytes())
            yield {
                "server": server,
                "port": server.dicom_port,
                "archive": archive,
                "received": root / "received",
                "external": external,
                "mixed_study": str(external[0].StudyInstanceUID),
                "mr": mr,
            }


# -- verification, query ------------------------------------------------------------------------


def test_echoscu(env):
    result = dcmtk("echoscu", "-aec", "SYNTHPACS", HOST, str(env["port"]))
    assert result.returncode == 0, result.stderr
    assert env["server"].pacs.ready


STUDY_KEYS = {
    "StudyInstanceUID": None,
    "PatientID": None,
    "PatientName": None,
    "StudyDate": None,
    "NumberOfStudyRelatedInstances": None,
    "ModalitiesInStudy": None,
}


def _uids(datasets, keyword) -> list[str]:
    return [str(ds[keyword].value) for ds in datasets]


@pytest.mark.parametrize("model", ["-S", "-P"])
def test_findscu_study_level_wildcard_range_and_uid_list(env, tmp_path, model):
    archive, port = env["archive"], env["port"]
    everything = [
        ds
        for ds in archive.find("STUDY", {"StudyDate": "", "PatientName": ""})
        if archive.is_synthetic_uid(str(ds.StudyInstanceUID))
    ]
    first_name = str(everything[5].PatientName)
    wildcard = first_name[:3] + "*"
    keys = dict(STUDY_KEYS, QueryRetrieveLevel="STUDY", PatientName=wildcard, StudyDate="20240101-20241231")
    found = find_with_findscu(port, model, keys, tmp_path)
    expected = list(archive.find("STUDY", {"PatientName": wildcard, "StudyDate": "20240101-20241231"}))
    assert _uids(found, "StudyInstanceUID") == _uids(expected, "StudyInstanceUID") and found
    for ds in found:
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert ds.QueryRetrieveLevel == "STUDY"
        assert str(ds.PatientName).startswith(first_name[:3])
        assert "20240101" <= ds.StudyDate <= "20241231"
        assert int(ds.NumberOfStudyRelatedInstances) > 0
    # A list of UIDs, and an open-ended range.
    uids = _uids(everything[:3], "StudyInstanceUID")
    by_list = find_with_findscu(
        port, model, dict(STUDY_KEYS, QueryRetrieveLevel="STUDY", StudyInstanceUID="\\".join(uids)), tmp_path
    )
    assert sorted(_uids(by_list, "StudyInstanceUID")) == sorted(uids)
    late = find_with_findscu(port, model, dict(STUDY_KEYS, QueryRetrieveLevel="STUDY", StudyDate="20260101-"), tmp_path)
    assert len(late) == len(list(archive.find("STUDY", {"StudyDate": "20260101-"}))) > 0


def test_findscu_patient_root_patient_level(env, tmp_path):
    archive = env["archive"]
    found = find_with_findscu(
        env["port"],
        "-P",
        {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN-000001?", "PatientName": None, "NumberOfPatientRelatedStudies": None},
        tmp_path,
    )
    expected = list(archive.find("PATIENT", {"PatientID": "SYN-000001?"}))
    assert _uids(found, "PatientID") == _uids(expected, "PatientID") and len(found) == 10
    assert all(int(ds.NumberOfPatientRelatedStudies) > 0 for ds in found)
    born = find_with_findscu(
        env["port"], "-P", {"QueryRetrieveLevel": "PATIENT", "PatientBirthDate": "19500101-19601231", "PatientID": None}, tmp_path
    )
    expected = list(archive.find("PATIENT", {"PatientBirthDate": "19500101-19601231"}))
    assert _uids(born, "PatientID") == _uids(expected, "PatientID") and born
    # Study Root has no PATIENT level: a failure with an Error Comment, no match.
    result = dcmtk(
        "findscu",
        "-v",
        "-S",
        "-aec",
        "SYNTHPACS",
        "-k",
        "QueryRetrieveLevel=PATIENT",
        "-k",
        "PatientID=*",
        HOST,
        str(env["port"]),
    )
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in result.stdout + result.stderr


@pytest.mark.parametrize("model", ["-S", "-P"])
def test_findscu_series_and_image_levels(env, tmp_path, model):
    archive, port = env["archive"], env["port"]
    study = next(
        ds
        for ds in archive.find("STUDY", {"StudyInstanceUID": "", "StudyDate": ""})
        if archive.is_synthetic_uid(str(ds.StudyInstanceUID))
    )
    study_uid, patient_id = str(study.StudyInstanceUID), str(study.PatientID)
    base = {"PatientID": patient_id} if model == "-P" else {}
    series_date = f"{study.StudyDate}-{study.StudyDate}"
    series = find_with_findscu(
        port,
        model,
        dict(
            base,
            QueryRetrieveLevel="SERIES",
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=None,
            Modality="C*",
            SeriesNumber=None,
            SeriesDate=series_date,
            NumberOfSeriesRelatedInstances=None,
        ),
        tmp_path,
    )
    expected = list(archive.find("SERIES", {"StudyInstanceUID": study_uid, "Modality": "C*", "SeriesDate": series_date}))
    assert _uids(series, "SeriesInstanceUID") == _uids(expected, "SeriesInstanceUID") and series
    assert all(ds.Modality == "CT" and ds.StudyInstanceUID == study_uid for ds in series)
    ct_series = str(series[0].SeriesInstanceUID)
    images = find_with_findscu(
        port,
        model,
        dict(
            base,
            QueryRetrieveLevel="IMAGE",
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=ct_series,
            SOPInstanceUID=None,
            InstanceNumber=None,
            SOPClassUID=None,
        ),
        tmp_path,
    )
    assert len(images) == int(series[0].NumberOfSeriesRelatedInstances)
    assert all(ds.SOPClassUID == CTImageStorage for ds in images)
    picked = _uids(images[:2], "SOPInstanceUID")
    two = find_with_findscu(
        port,
        model,
        dict(
            base,
            QueryRetrieveLevel="IMAGE",
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=ct_series,
            SOPInstanceUID="\\".join(picked),
        ),
        tmp_path,
    )
    assert sorted(_uids(two, "SOPInstanceUID")) == sorted(picked)


def test_specific_character_set_utf8_in_and_out(tmp_path):
    """Weasis and dcm4che query in ISO_IR 192; stored objects may use another character set."""
    with serve(tmp_path / "data") as server:
        utf8 = make_series(1, patient_id="CS-1", patient_name="Müller^Jürgen")[0]
        utf8.SpecificCharacterSet = "ISO_IR 192"
        latin1 = make_series(1, patient_id="CS-2", patient_name="Gärtner^Anna")[0]
        latin1.SpecificCharacterSet = "ISO_IR 100"
        for ds in (utf8, latin1):
            server.pacs.archive.store(part10(ds))
        assoc = scu(server.dicom_port, StudyRootQueryRetrieveInformationModelFind)
        try:
            names = {}
            for wanted in ("Müller*", "Gärtner^Anna"):
                identifier = query(
                    QueryRetrieveLevel="STUDY", SpecificCharacterSet="ISO_IR 192", PatientName=wanted, PatientID=""
                )
                names[wanted] = [
                    (str(ds.PatientName), ds.SpecificCharacterSet)
                    for status, ds in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
                    if status.Status == 0xFF00
                ]
        finally:
            assoc.release()
    assert names == {"Müller*": [("Müller^Jürgen", "ISO_IR 192")], "Gärtner^Anna": [("Gärtner^Anna", "ISO_IR 192")]}


def test_find_returns_every_requested_key(env):
    """Known attributes filled, unknown ones returned empty, unique keys and server keys added."""
    assoc = scu(env["port"], StudyRootQueryRetrieveInformationModelFind)
    try:
        identifier = query(
            QueryRetrieveLevel="SERIES",
            SpecificCharacterSet="ISO_IR 192",
            PatientName="",
            SeriesDescription="",
            InstitutionName="",
            ProtocolName="",
            RetrieveAETitle="",
            Modality="SEG",
            NumberOfSeriesRelatedInstances="",
        )
        identifier.add_new(0x00091001, "LO", "")  # a private tag without a creator
        responses = list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    final, matches = responses[-1][0], [ds for status, ds in responses if status.Status == 0xFF00]
    assert final.Status == 0x0000 and matches
    for ds in matches:
        assert ds.Modality == "SEG" and ds.SeriesDescription and ds.PatientName
        assert ds.InstitutionName in (None, "") and ds.ProtocolName in (None, "")
        assert ds.RetrieveAETitle == "SYNTHPACS" and ds.SpecificCharacterSet == "ISO_IR 192"
        assert ds.StudyInstanceUID and ds.SeriesInstanceUID  # unique keys, asked or not
        assert ds.NumberOfSeriesRelatedInstances == 1


def test_find_returns_a_requested_sequence_whole_or_restricted_to_its_item_keys(env):
    assoc = scu(env["port"], StudyRootQueryRetrieveInformationModelFind)
    try:
        whole = query(QueryRetrieveLevel="STUDY", PatientID="SYN-*", ModalitiesInStudy="CT", ProcedureCodeSequence=[])
        restricted = query(
            QueryRetrieveLevel="STUDY", PatientID="SYN-*", ModalitiesInStudy="CT", ProcedureCodeSequence=[query(CodeValue="")]
        )
        answers = [
            [
                ds
                for status, ds in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind)
                if status.Status == 0xFF00
            ]
            for identifier in (whole, restricted)
        ]
    finally:
        assoc.release()
    assert answers[0] and len(answers[0]) == len(answers[1])
    for ds in answers[0][:3]:
        (code,) = ds.ProcedureCodeSequence
        assert code.CodeValue and code.CodingSchemeDesignator and code.CodeMeaning
        assert "CT" in ds.ModalitiesInStudy and ds.StudyInstanceUID and ds.QueryRetrieveLevel == "STUDY"
    for ds in answers[1][:3]:
        (code,) = ds.ProcedureCodeSequence
        assert code.CodeValue and "CodeMeaning" not in code


@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")
@pytest.mark.parametrize(
    "identifier, where",
    [
        (dict(PatientName="*"), "QueryRetrieveLevel"),
        (dict(QueryRetrieveLevel="EVERYTHING"), "EVERYTHING"),
        (dict(QueryRetrieveLevel="STUDY", StudyDate="last week"), "StudyDate"),
        (dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.03"), "StudyInstanceUID"),
        (dict(QueryRetrieveLevel="PATIENT"), "PATIENT"),
    ],
)
def test_find_refuses_a_bad_identifier_with_an_error_comment(env, identifier, where):
    assoc = scu(env["port"], StudyRootQueryRetrieveInformationModelFind)
    try:
        responses = list(assoc.send_c_find(query(**identifier), StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
    assert len(responses) == 1
    status = responses[0][0]
    assert status.Status == 0xA900
    assert where in status.ErrorComment and len(status.ErrorComment) <= 64


def test_c_cancel_stops_a_query_promptly(env):
    archive = env["archive"]
    total = sum(1 for _ in archive.find("IMAGE", {}))
    assoc = scu(env["port"], StudyRootQueryRetrieveInformationModelFind, Verification)
    try:
        context_id = next(
            cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelFind
        )
        pending, final = 0, None
        for status, _ in assoc.send_c_find(
            query(QueryRetrieveLevel="IMAGE", SOPInstanceUID=""), StudyRootQueryRetrieveInformationModelFind, msg_id=7
        ):
            if status.Status == 0xFF00:
                pending += 1
                if pending == 1:
                    assoc.send_c_cancel(7, context_id)
            else:
                final = status.Status
        assert final == 0xFE00
        assert pending < min(200, total / 4), f"{pending} of {total} matches sent before C-CANCEL took effect"
        assert assoc.send_c_echo().Status == 0x0000  # the association carries on
    finally:
        assoc.release()
    # dcmtk's findscu --cancel too.
    result = dcmtk(
        "findscu",
        "-S",
        "-aec",
        "SYNTHPACS",
        "--cancel",
        "2",
        "-k",
        "QueryRetrieveLevel=IMAGE",
        "-k",
        "SOPInstanceUID",
        HOST,
        str(env["port"]),
    )
    assert result.returncode == 0, result.stderr


# -- retrieve -----------------------------------------------------------------------------------


def _received(env, uids) -> set[str]:
    names = {p.name for p in env["received"].iterdir()}
    return {uid for uid in uids if any(name.endswith(uid) for name in names)}


def test_movescu_of_stored_studies_by_a_list_of_uids(env):
    mixed = env["mixed_study"]
    ct_small = str(dcmread(get_testdata_file("CT_small.dcm")).StudyInstanceUID)
    result = dcmtk(
        "movescu",
        "-S",
        "-aec",
        "SYNTHPACS",
        "-aem",
        STORE_AET,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={mixed}\\{ct_small}",
        HOST,
        str(env["port"]),
    )
    assert result.returncode == 0, result.stderr
    wanted = [str(ds.SOPInstanceUID) for ds in env["external"] + env["mr"]]
    wanted.append(str(dcmread(get_testdata_file("CT_small.dcm")).SOPInstanceUID))
    assert _received(env, wanted) == set(wanted)


def test_move_reports_sub_operation_counts_in_pending_responses(env):
    mixed = env["mixed_study"]
    assoc = scu(env["port"], StudyRootQueryRetrieveInformationModelMove)
    try:
        responses = list(
            assoc.send_c_move(
                query(
                    QueryRetrieveLevel="SERIES",
                    StudyInstanceUID=mixed,
                    SeriesInstanceUID=str(env["external"][0].SeriesInstanceUID),
                ),
                STORE_AET,
                StudyRootQueryRetrieveInformationModelMove,
            )
        )
    finally:
        assoc.release()
    statuses = [status for status, _ in responses]
    pending = [s for s in statuses if s.Status == 0xFF00]
    assert [s.NumberOfRemainingSuboperations for s in pending] == [3, 2, 1]
    assert [s.NumberOfCompletedSuboperations for s in pending] == [0, 1, 2]
    final = statuses[-1]
    assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 3 and final.NumberOfFailedSuboperations == 0


def test_move_refusals_carry_an_error_comment(env):
    assoc = scu(env["port"], StudyRootQueryRetrieveInformationModelMove)
    try:

        def move(identifier, destination=STORE_AET):
            return [s for s, _ in assoc.send_c_move(identifier, destination, StudyRootQueryRetrieveInformationModelMove)]

        unknown = move(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=env["mixed_study"]), "NOBODY")
        assert unknown[-1].Status == 0xA801 and "NOBODY" in unknown[-1].ErrorComment
        nothing = move(query(QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3.4.5.6\\1.2.3.4.5.7"))
        assert len(nothing) == 1 and nothing[0].Status == 0x0000
        assert nothing[0].NumberOfCompletedSuboperations == 0 and nothing[0].NumberOfFailedSuboperations == 0
        universal = move(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""))
        assert universal[-1].Status == 0xA900 and "StudyInstanceUID" in universal[-1].ErrorComment
        no_level = move(query(StudyInstanceUID=env["mixed_study"]))
        assert no_level[-1].Status == 0xA900 and "QueryRetrieveLevel" in no_level[-1].ErrorComment
        unreachable = move(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=env["mixed_study"]), "DEADEND")
        assert unreachable[-1].Status == 0xA702 and "DEADEND" in unreachable[-1].ErrorComment
        assert unreachable[-1].NumberOfFailedSuboperations == 5
    finally:
        assoc.release()


def test_getscu_of_a_stored_study(env, tmp_path):
    out = tmp_path / "got"
    out.mkdir()
    mr_small = dcmread(get_testdata_file("MR_small.dcm"))
    result = dcmtk(
        "getscu",
        "-S",
        "-aec",
        "SYNTHPACS",
        "-od",
        str(out),
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={mr_small.StudyInstanceUID}",
        HOST,
        str(env["port"]),
    )
    assert result.returncode == 0, result.stderr
    files = list(out.iterdir())
    assert len(files) == 1 and dcmread(files[0]).SOPInstanceUID == mr_small.SOPInstanceUID
    assert dcmread(files[0]).PixelData == mr_small.PixelData


def _get(port, identifier, *storage_classes, transfer_syntaxes=None):
    """C-GET with pynetdicom offering SCP role for ``storage_classes`` only."""
    received: list[Dataset] = []

    def on_store(event):
        received.append(event.dataset)
        return 0x0000

    ae = AE("GETSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in storage_classes:
        ae.add_requested_context(sop_class, transfer_syntaxes or DEFAULT_TRANSFER_SYNTAXES)
    roles = [build_role(sop_class, scp_role=True) for sop_class in storage_classes]
    assoc = transport.associate(ae, HOST, port, "SYNTHPACS", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        statuses = [s for s, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)]
    finally:
        assoc.release()
    return statuses, received


def test_get_counts_unaccepted_sop_classes_as_failed_and_sends_the_rest(env):
    """Weasis offers no SEG or Comprehensive SR context: here the requestor offers CT only."""
    mixed = env["mixed_study"]
    statuses, received = _get(env["port"], query(QueryRetrieveLevel="STUDY", StudyInstanceUID=mixed), CTImageStorage)
    final = statuses[-1]
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(str(ds.SOPInstanceUID) for ds in env["external"])
    assert final.Status == 0xB000
    assert final.NumberOfCompletedSuboperations == 3 and final.NumberOfFailedSuboperations == 2


def test_get_converts_to_the_transfer_syntax_the_peer_accepts(env):
    """Stored explicit VR objects go to a peer that accepts only implicit VR."""
    series = env["external"]
    statuses, received = _get(
        env["port"],
        query(
            QueryRetrieveLevel="SERIES", StudyInstanceUID=env["mixed_study"], SeriesInstanceUID=str(series[0].SeriesInstanceUID)
        ),
        CTImageStorage,
        transfer_syntaxes=[ImplicitVRLittleEndian],
    )
    assert statuses[-1].Status == 0x0000 and len(received) == len(series)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in series}
    for ds in received:
        assert ds.PixelData == by_uid[str(ds.SOPInstanceUID)].PixelData
        assert ds.PatientName == "EXTERNAL^CT"


def test_storescu_of_foreign_files_then_findscu_finds_them(env, tmp_path):
    series = make_series(4, patient_id="EXT-STORE-1", patient_name="STORED^VIA^STORESCU", study_date="20230505")
    paths = write_files(series, tmp_path / "out")
    paths.append(get_testdata_file("rtplan.dcm"))  # implicit VR little endian, another SOP class
    result = dcmtk("storescu", "-aec", "SYNTHPACS", HOST, str(env["port"]), *paths)
    assert result.returncode == 0, result.stderr
    study_uid = str(series[0].StudyInstanceUID)
    studies = find_with_findscu(
        env["port"],
        "-S",
        {
            "QueryRetrieveLevel": "STUDY",
            "PatientID": "EXT-STORE-1",
            "StudyInstanceUID": None,
            "NumberOfStudyRelatedInstances": None,
            "PatientName": None,
        },
        tmp_path,
    )
    assert _uids(studies, "StudyInstanceUID") == [study_uid]
    assert int(studies[0].NumberOfStudyRelatedInstances) == 4 and str(studies[0].PatientName) == "STORED^VIA^STORESCU"
    images = find_with_findscu(
        env["port"], "-S", {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": study_uid, "SOPInstanceUID": None}, tmp_path
    )
    assert sorted(_uids(images, "SOPInstanceUID")) == sorted(str(ds.SOPInstanceUID) for ds in series)
    rtplan = dcmread(get_testdata_file("rtplan.dcm"))
    assert [str(ds.SOPInstanceUID) for ds in env["archive"].find("IMAGE", {"SOPInstanceUID": str(rtplan.SOPInstanceUID)})] == [
        str(rtplan.SOPInstanceUID)
    ]
    # Stored bytes come back unchanged by C-GET.
    _, received = _get(
        env["port"],
        query(
            QueryRetrieveLevel="IMAGE",
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=str(series[0].SeriesInstanceUID),
            SOPInstanceUID=str(series[1].SOPInstanceUID),
        ),
        CTImageStorage,
    )
    assert len(received) == 1 and received[0].PixelData == series[1].PixelData


def _send_raw_store(assoc, sop_class: str, sop_uid: str, data_set: bytes) -> Dataset:
    """A C-STORE whose data set bytes are sent as given (malformed on purpose)."""
    context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == sop_class)
    request = C_STORE()
    request.MessageID, request.Priority = 11, 0
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = sop_class, sop_uid
    request.DataSet = io.BytesIO(data_set)
    transport.pause_reactor(assoc)
    try:
        assoc.dimse.send_msg(request, context.context_id)
        _, rsp = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    status = Dataset()
    status.Status = rsp.Status
    if rsp.ErrorComment:
        status.ErrorComment = rsp.ErrorComment
    return status


def test_store_refuses_malformed_and_synthetic_uid_objects_and_harms_nothing_else(env):
    archive = env["archive"]
    before = archive.figures()["stored_instances"]
    assoc = scu(env["port"], CTImageStorage, Verification)
    try:
        garbage = _send_raw_store(assoc, CTImageStorage, generate_uid(), b"\x10\x00\x10\x00PN\xff\xff" + os.urandom(64))
        assert (garbage.Status >> 8) in (0xA9, 0xC0) and garbage.ErrorComment  # cannot understand / does not match
        no_uid = make_series(1, patient_id="EXT-BAD", patient_name="BAD^OBJECT")[0]
        sop_uid = no_uid.SOPInstanceUID
        del no_uid.StudyInstanceUID
        status = assoc.send_c_store(no_uid)
        assert status.Status == 0xA901 and "StudyInstanceUID" in status.ErrorComment
        # A synthetic SOP Instance UID is refused by the UID policy.
        synthetic = archive.instances(str(smallest_synthetic_study(archive).StudyInstanceUID))[0]
        clash = make_series(1, patient_id="EXT-BAD", patient_name="BAD^OBJECT")[0]
        clash.SOPInstanceUID = synthetic.sop_instance_uid
        status = assoc.send_c_store(clash)
        assert status.Status == 0x0124 and "synthetic" in status.ErrorComment
        assert archive.figures()["stored_instances"] == before
        # A good object on the same association is stored; storing it again replaces it.
        good = make_series(1, patient_id="EXT-GOOD", patient_name="GOOD^OBJECT")[0]
        assert assoc.send_c_store(good).Status == 0x0000
        good.SeriesDescription = "replaced"
        assert assoc.send_c_store(good).Status == 0x0000
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    assert archive.figures()["stored_instances"] == before + 1
    found = list(archive.find("SERIES", {"SeriesInstanceUID": str(good.SeriesInstanceUID), "SeriesDescription": ""}))
    assert [str(ds.SeriesDescription) for ds in found] == ["replaced"]
    assert str(sop_uid) not in {str(ds.SOPInstanceUID) for ds in archive.find("IMAGE", {"PatientID": "EXT-BAD"})}


# -- worklist ------------------------------------------------------------------------------------


def test_worklist_query_with_findscu(env, tmp_path):
    worklist = env["server"].dimse.worklist
    late = "20260501"
    keys = {
        "ScheduledProcedureStepSequence[0].ScheduledStationAETitle": "S01_CT",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate": f"{TODAY}-{late}",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime": None,
        "ScheduledProcedureStepSequence[0].Modality": "CT",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID": None,
        "PatientName": None,
        "PatientID": None,
        "AccessionNumber": None,
        "StudyInstanceUID": None,
        "RequestedProcedureID": None,
        "RequestedProcedureDescription": None,
    }
    found = find_with_findscu(env["port"], "-W", keys, tmp_path)
    expected = list(
        worklist.find(
            {
                "ScheduledProcedureStepSequence": [
                    {"ScheduledStationAETitle": "S01_CT", "ScheduledProcedureStepStartDate": f"{TODAY}-{late}", "Modality": "CT"}
                ]
            }
        )
    )
    assert _uids(found, "AccessionNumber") == _uids(expected, "AccessionNumber") and found
    for ds in found:
        step = ds.ScheduledProcedureStepSequence[0]
        assert step.ScheduledStationAETitle == "S01_CT" and TODAY <= step.ScheduledProcedureStepStartDate <= late
        assert step.ScheduledProcedureStepStartTime and step.ScheduledProcedureStepID
        assert ds.PatientName and ds.StudyInstanceUID and ds.RequestedProcedureID
        assert "ScheduledStationName" not in step  # only what was asked for
    # A pynetdicom worklist query by patient.
    assoc = scu(env["port"], ModalityWorklistInformationFind)
    try:
        identifier = query(PatientID=str(found[0].PatientID), PatientName="", AccessionNumber="")
        identifier.ScheduledProcedureStepSequence = [query(ScheduledProcedureStepStartDate="", Modality="")]
        responses = list(assoc.send_c_find(identifier, ModalityWorklistInformationFind))
    finally:
        assoc.release()
    assert responses[-1][0].Status == 0x0000
    assert {str(ds.PatientID) for s, ds in responses if s.Status == 0xFF00} == {str(found[0].PatientID)}


# -- synthetic retrieve (needs the pixel pipeline) ------------------------------------------------


def test_movescu_of_a_synthetic_study_arrives_whole_and_valid(env):
    from dicom_validation import dciodvfy_errors

    archive = env["archive"]
    study = smallest_synthetic_study(archive)
    require_generation(archive, str(study.StudyInstanceUID))
    refs = archive.instances(str(study.StudyInstanceUID))
    result = dcmtk(
        "movescu",
        "-S",
        "-aec",
        "SYNTHPACS",
        "-aem",
        STORE_AET,
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study.StudyInstanceUID}",
        HOST,
        str(env["port"]),
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    wanted = {ref.sop_instance_uid for ref in refs}
    assert _received(env, wanted) == wanted and len(wanted) == int(study.NumberOfStudyRelatedInstances)
    errors = {}
    for path in env["received"].iterdir():
        if any(path.name.endswith(uid) for uid in wanted):
            problems = dciodvfy_errors(path)
            if problems:
                errors[path.name] = problems[:3]
    assert not errors, errors


def test_get_of_a_synthetic_study_without_seg_or_sr_contexts(env):
    archive = env["archive"]
    study = smallest_synthetic_study(archive)
    require_generation(archive, str(study.StudyInstanceUID))
    refs = archive.instances(str(study.StudyInstanceUID))
    statuses, received = _get(
        env["port"], query(QueryRetrieveLevel="STUDY", StudyInstanceUID=str(study.StudyInstanceUID)), CTImageStorage
    )
    ct = [ref for ref in refs if ref.sop_class_uid == CTImageStorage]
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(ref.sop_instance_uid for ref in ct)
    final = statuses[-1]
    assert final.Status == 0xB000 and final.NumberOfFailedSuboperations == len(refs) - len(ct) > 0


# -- transport and operations -------------------------------------------------------------------


def test_tcp_nodelay_and_quick_ack_on_every_dimse_socket(env):
    server = env["server"]
    assoc = scu(env["port"], Verification)
    try:
        assert assoc.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        served = [a for a in server.dimse.active_associations if a.is_acceptor]
        assert served and all(
            a.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            for a in served
            if a.dul.socket and a.dul.socket.socket
        )
        assert all(isinstance(a._reactor_checkpoint, transport.ReactorCheckpoint) for a in served)
        if hasattr(socket, "TCP_QUICKACK"):
            assert all(getattr(a.dul.socket, "_synthpacs_quick_ack", False) for a in served)
    finally:
        assoc.release()
    # The association the server opens for C-MOVE sub-operations goes through the same helper.
    sub = transport.associate(
        server.dimse.ae, HOST, env["server"].dicom_port, "SYNTHPACS", contexts=[transport_context(Verification)]
    )
    try:
        assert sub.is_established
        assert sub.dul.socket.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert isinstance(sub._reactor_checkpoint, transport.ReactorCheckpoint)
    finally:
        sub.release()


def transport_context(sop_class):
    from pynetdicom.presentation import build_context

    return build_context(sop_class)


class _FakeReactor(threading.Thread):
    """pynetdicom 3.0's reactor loop (Association._run_reactor), with the thread
    descheduled for a moment right after ``checkpoint.wait()``, as happens
    under load. It takes whatever is on the queue, like the real reactor."""

    def __init__(self, checkpoint_factory):
        super().__init__(daemon=True)
        self._kill = False
        self._is_paused = False
        self._reactor_checkpoint = checkpoint_factory(self)
        self.queue: list[str] = []
        self.stolen: list[str] = []

    def run(self):
        while not self._kill:
            time.sleep(0.001)
            self._is_paused = True
            self._reactor_checkpoint.wait()
            time.sleep(0.02)  # descheduled in the window
            self._is_paused = False
            if self.queue:
                self.stolen.append(self.queue.pop())


def _race(checkpoint_factory, rounds: int = 10) -> list[str]:
    reactor = _FakeReactor(checkpoint_factory)
    reactor.start()
    lost = []
    for i in range(rounds):
        time.sleep(0.003)
        # What Association.send_c_echo does around its exchange.
        reactor._reactor_checkpoint.clear()
        while not reactor._is_paused:
            time.sleep(0.0001)
        reactor.queue.append(f"response {i}")
        time.sleep(0.03)  # the response is on the queue while the sender waits for it
        if not reactor.queue:
            lost.append(f"response {i}")
        reactor.queue.clear()
        reactor._reactor_checkpoint.set()
    reactor._kill = True
    reactor._reactor_checkpoint.set()
    reactor.join(2)
    return lost


def test_reactor_checkpoint_closes_the_lost_response_race():
    """With a plain Event (pynetdicom 3.0) the reactor takes the response that
    a send_* call is waiting for; with ReactorCheckpoint it never does."""
    stock = _race(lambda reactor: _set_event())
    assert stock, "the stock checkpoint should lose responses in this schedule"
    assert _race(transport.ReactorCheckpoint) == []


def _set_event() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


def test_allow_list_rejects_other_calling_ae_titles(tmp_path, caplog):
    with serve(tmp_path / "data", dicom_allowed_aets="GOODSCU") as server:
        port = str(server.dicom_port)
        with caplog.at_level(logging.INFO, logger="synthpacs.dimse"):
            assert dcmtk("echoscu", "-aet", "GOODSCU", "-aec", "SYNTHPACS", HOST, port).returncode == 0
            refused = dcmtk("echoscu", "-aet", "EVILSCU", "-aec", "SYNTHPACS", HOST, port)
            assert refused.returncode != 0 and "Rejected" in refused.stdout + refused.stderr
            _wait(lambda: any("EVILSCU" in r.getMessage() and "rejected" in r.getMessage() for r in caplog.records))


def _wait(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_maximum_associations_and_pdu(tmp_path):
    with serve(tmp_path / "data", dicom_max_associations=1, dicom_max_pdu=16384) as server:
        first = scu(server.dicom_port)
        try:
            assert first.acceptor.maximum_length == 16384
            ae = AE("SECOND")
            ae.add_requested_context(Verification)
            second = transport.associate(ae, HOST, server.dicom_port, "SYNTHPACS")
            assert second.is_rejected
        finally:
            first.release()
        _wait(lambda: not server.dimse.active_associations)
        third = scu(server.dicom_port)
        assert third.send_c_echo().Status == 0x0000
        third.release()


def test_port_in_use_is_a_clear_startup_error(tmp_path):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=f"cannot listen for DICOM on 127.0.0.1:{port}"):
            RunningServer(make_config(tmp_path / "data", dicom_port=port))
    # Nothing was left running: the same configuration starts once the port is free.
    with serve(tmp_path / "data", dicom_port=port) as server:
        assert server.dicom_port == port


def _resources() -> tuple[int, int]:
    import psutil

    process = psutil.Process()
    return threading.active_count(), process.num_fds()


def test_garbage_aborts_and_silent_peers_never_hurt_the_server(tmp_path, caplog):
    with serve(tmp_path / "data", dicom_acse_timeout=0.5, dicom_network_timeout=1, dicom_dimse_timeout=1) as server:
        port = server.dicom_port
        assert dcmtk("echoscu", "-aec", "SYNTHPACS", HOST, str(port)).returncode == 0
        # One whole query first: what serving a query keeps open for good (the catalog's files)
        # is in the baseline, so that what follows counts only what the bad peers leave behind.
        warm = scu(port, StudyRootQueryRetrieveInformationModelFind)
        list(warm.send_c_find(query(QueryRetrieveLevel="STUDY", StudyInstanceUID=""), StudyRootQueryRetrieveInformationModelFind))
        warm.release()
        _wait(lambda: not server.dimse.active_associations, timeout=8)
        time.sleep(0.3)
        threads, fds = _resources()
        # Malformed PDUs: an unknown type, then a length that never arrives. The
        # server drops the connection (it does not wait for this peer to close it).
        with socket.create_connection((HOST, port)) as s:
            s.sendall(b"\x09\x00\x00\x00\x00\x04abcd" + b"\x01\x00\x7f\xff\xff\xff" + os.urandom(32))
            s.settimeout(5)
            started = time.monotonic()
            with contextlib.suppress(OSError):
                while s.recv(1024):
                    pass
            assert time.monotonic() - started < 4
        # A peer that connects and says nothing: closed after the ACSE timeout.
        with socket.create_connection((HOST, port)) as s:
            s.settimeout(5)
            started = time.monotonic()
            assert s.recv(1024) == b""
            assert time.monotonic() - started < 4
        # A peer that associates, then goes silent: aborted after the network timeout.
        idle = scu(port)
        _wait(lambda: not idle.is_established, timeout=6)
        # A peer that aborts in the middle of a query.
        assoc = scu(port, StudyRootQueryRetrieveInformationModelFind)
        responses = assoc.send_c_find(
            query(QueryRetrieveLevel="IMAGE", SOPInstanceUID=""), StudyRootQueryRetrieveInformationModelFind
        )
        next(responses)
        assoc.abort()
        # Still serving, and back to the resources it held before.
        assert dcmtk("echoscu", "-aec", "SYNTHPACS", HOST, str(port)).returncode == 0
        _wait(lambda: not server.dimse.active_associations, timeout=8)
        _wait(lambda: _resources()[0] <= threads and _resources()[1] <= fds, timeout=8)


def test_one_log_line_per_association_and_request(tmp_path, caplog):
    with serve(tmp_path / "data") as server:
        with caplog.at_level(logging.INFO, logger="synthpacs.dimse"):
            assoc = scu(server.dicom_port, StudyRootQueryRetrieveInformationModelFind, Verification)
            assoc.send_c_echo()
            list(
                assoc.send_c_find(
                    query(QueryRetrieveLevel="STUDY", PatientID="SYN-0000001"), StudyRootQueryRetrieveInformationModelFind
                )
            )
            list(assoc.send_c_find(query(QueryRetrieveLevel="NOPE"), StudyRootQueryRetrieveInformationModelFind))
            assoc.release()
            _wait(lambda: any("released" in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records if r.name == "synthpacs.dimse"]
    requests = [line for line in lines if " from PYSCU" in line and "#" in line]
    assert len(requests) == 3, lines
    assert "C-ECHO" in requests[0] and "Success 0x0000" in requests[0]
    assert "C-FIND" in requests[1] and "STUDY" in requests[1] and "matches" in requests[1]
    assert "Failure 0xA900" in requests[2] and "NOPE" in requests[2]
    associations = [line for line in lines if "association from PYSCU" in line]
    assert len(associations) == 1 and "released" in associations[0] and "3 requests" in associations[0]


def test_move_sub_associations_offer_one_syntax_per_context_so_no_instance_is_re_encoded():
    """An acceptor picks a context's syntax in its own order (pynetdicom: implicit VR first);
    with one syntax per context it can accept explicit VR too, and stored bytes go out as they are."""
    from pynetdicom import AE as Acceptor
    from pynetdicom.presentation import negotiate_as_acceptor

    from synthpacs.archive.api import InstanceRef
    from synthpacs.dimse.retrieve import requested_contexts

    ct, jpeg = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.4.50"
    refs = [
        InstanceRef("1.2.3", "1.2.3.1", "1.2.3.1.1", ct, 1, "a.dcm", str(ExplicitVRLittleEndian)),
        InstanceRef("1.2.3", "1.2.3.1", "1.2.3.1.2", ct, 2, "b.dcm", jpeg),
    ]
    offered = requested_contexts(refs)
    assert [cx.transfer_syntax for cx in offered] == [[ExplicitVRLittleEndian], [ImplicitVRLittleEndian], [jpeg]]
    for i, cx in enumerate(offered):
        cx.context_id = 2 * i + 1
    scp = Acceptor()
    scp.add_supported_context(ct)  # pynetdicom's defaults: implicit VR first, no JPEG
    accepted, _ = negotiate_as_acceptor(offered, scp.supported_contexts)
    assert {str(cx.transfer_syntax[0]) for cx in accepted if cx.result == 0} == {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
