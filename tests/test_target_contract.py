"""The target contract, proved with targets that live only under tests/targets.

A 2-D colour target (two photographs and their SEGs) and a waveform-only
target (one 12-lead ECG) are served through DIMSE and DICOMweb beside lung CT
with correct counts, metadata and retrieves, and no line of synthpacs/ names
them. The coherence test compares every attribute that a query answer and
the retrieved file both hold, for every target.
"""

from __future__ import annotations

import io
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import TESTS, make_config, require_tool
from dicom_validation import dciodvfy_errors
from pydicom import dcmread
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet

from synthpacs.archive import Archive
from synthpacs.archive.catalog import element_text
from synthpacs.errors import ConfigError

ROOT = TESTS.parent
MULTI = {
    "cohorts_dir": str(TESTS / "data" / "cohorts_multi"),
    "generator_paths": [str(TESTS / "targets")],
    "renderer": "teacher",
    "patients": 30,
}
PROTOCOLS = {"chest/lung-ct": "SYN-LC-001", "eye/test-photo": "SYN-PH-001", "heart/test-ecg": "SYN-EC-001"}
STORAGE = (
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.66.4",
    "1.2.840.10008.5.1.4.1.1.88.33",
    "1.2.840.10008.5.1.4.1.1.77.1.4",
    "1.2.840.10008.5.1.4.1.1.9.1.1",
)


@pytest.fixture(scope="module")
def multi_config(tmp_path_factory):
    return make_config(tmp_path_factory.mktemp("multi") / "data", **MULTI)


@pytest.fixture(scope="module")
def archive(multi_config):
    return Archive(multi_config)


@pytest.fixture(scope="module")
def running(multi_config):
    from synthpacs.server import RunningServer

    server = RunningServer(multi_config)
    yield server
    server.stop()


def first_study(archive, target: str, index: int = 0):
    studies = list(archive.find("STUDY", {"ClinicalTrialProtocolID": PROTOCOLS[target]}, limit=index + 1))
    assert len(studies) > index, f"the test universe has no study of {target}"
    return studies[index]


def test_the_core_names_no_target():
    """No target name, and no IOD SOP class outside imaging/, is written in synthpacs/."""
    names = [name for name in PROTOCOLS] + ["test-photo", "test-ecg", "heart/ecg", "breast/mammography"]
    for path in (ROOT / "synthpacs").rglob("*.py"):
        text = path.read_text()
        for name in names:
            assert name not in text or name == "chest/lung-ct" and _only_in_docs(text, name), f"{path} names {name}"
        if "imaging" not in path.relative_to(ROOT / "synthpacs").parts:
            assert not re.search(r"1\.2\.840\.10008\.5\.1\.4\.1\.1\.\d", text), f"{path} names a storage SOP class"


def _only_in_docs(text: str, name: str) -> bool:
    """Examples in docstrings and help texts may mention the zoo's first target; code may not."""
    return all("e.g." in line or "``" in line or "(synthpacs" in line for line in text.splitlines() if name in line)


def test_every_target_is_discovered_and_planned(archive):
    assert set(archive.targets) == set(PROTOCOLS)
    assert archive.targets["eye/test-photo"].modalities == ("SEG", "XC")
    assert archive.targets["heart/test-ecg"].modalities == ("ECG",)
    figures = archive.figures()
    total = 0
    for study in archive.find("STUDY", {}):
        total += int(study.NumberOfStudyRelatedInstances)
    assert total == figures["instances"]


@pytest.mark.parametrize("target,modalities,instances", [("eye/test-photo", ["SEG", "XC"], 4), ("heart/test-ecg", ["ECG"], 1)])
def test_counts_come_from_the_plan_and_match_the_retrieve(archive, target, modalities, instances):
    study = first_study(archive, target)
    assert element_text(study, "ModalitiesInStudy").split("\\") == modalities
    assert int(study.NumberOfStudyRelatedInstances) == instances
    refs = archive.generate_study(str(study.StudyInstanceUID))
    assert len(refs) == instances
    series = list(archive.find("SERIES", {"StudyInstanceUID": str(study.StudyInstanceUID)}))
    assert sum(int(s.NumberOfSeriesRelatedInstances) for s in series) == instances


def test_every_new_iod_passes_dciodvfy(archive, tmp_path):
    require_tool("dciodvfy")
    for target in ("eye/test-photo", "heart/test-ecg"):
        study = first_study(archive, target)
        for ref in archive.generate_study(str(study.StudyInstanceUID)):
            path = tmp_path / f"{ref.sop_instance_uid}.dcm"
            path.write_bytes(archive.instance_bytes(ref))
            assert dciodvfy_errors(path) == [], f"{target} {ref.sop_class_uid}"


def _get(port: int, study_uid: str) -> tuple[int, list]:
    received = []

    def on_store(event):
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="CONTRACT")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for uid in STORAGE:
        ae.add_requested_context(uid)
    roles = [build_role(uid, scp_role=True) for uid in STORAGE]
    assoc = ae.associate("127.0.0.1", port, ae_title="SYNTHPACS", ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    from pydicom import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    last = None
    for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
        last = status
    assoc.release()
    return int(last.Status), received


@pytest.mark.integration
@pytest.mark.parametrize("target", ["eye/test-photo", "heart/test-ecg"])
def test_served_through_dimse(running, target):
    archive = running.pacs.archive
    study = first_study(archive, target)
    ae = AE(ae_title="CONTRACT")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", running.dicom_port, ae_title="SYNTHPACS")
    from pydicom import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = str(study.StudyInstanceUID)
    query.Modality = ""
    query.NumberOfSeriesRelatedInstances = ""
    found = [
        ds
        for status, ds in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        if status and status.Status in (0xFF00, 0xFF01)
    ]
    assoc.release()
    planned = sum(int(ds.NumberOfSeriesRelatedInstances) for ds in found)
    assert planned == int(study.NumberOfStudyRelatedInstances)
    status, received = _get(running.dicom_port, str(study.StudyInstanceUID))
    assert status == 0x0000
    assert len(received) == planned
    assert {ds.Modality for ds in received} == set(element_text(study, "ModalitiesInStudy").split("\\"))


@pytest.mark.integration
@pytest.mark.parametrize("target", ["eye/test-photo", "heart/test-ecg"])
def test_served_through_dicomweb(running, target):
    archive = running.pacs.archive
    study = first_study(archive, target)
    base = f"{running.base_url}/dicom-web/studies/{study.StudyInstanceUID}"
    series = requests.get(f"{base}/series", headers={"Accept": "application/dicom+json"}, timeout=60).json()
    assert sum(s["00201209"]["Value"][0] for s in series) == int(study.NumberOfStudyRelatedInstances)
    metadata = requests.get(f"{base}/metadata", timeout=120).json()
    assert len(metadata) == int(study.NumberOfStudyRelatedInstances)
    response = requests.get(base, headers={"Accept": 'multipart/related; type="application/dicom"'}, timeout=120)
    assert response.status_code == 200
    boundary = response.headers["Content-Type"].split("boundary=")[1].strip('"')
    parts = [p for p in response.content.split(b"--" + boundary.encode()) if b"\r\n\r\n" in p]
    assert len(parts) == int(study.NumberOfStudyRelatedInstances)
    if target == "eye/test-photo":
        thumbnail = requests.get(f"{base}/thumbnail", timeout=60)
        assert thumbnail.status_code == 200 and thumbnail.headers["Content-Type"] == "image/jpeg"


# -- coherence -------------------------------------------------------------------------------

SKIP = {"QueryRetrieveLevel", "RetrieveAETitle", "InstanceAvailability", "SpecificCharacterSet"}


def _compare(answer, file, where: str) -> int:
    compared = 0
    for element in answer:
        keyword = element.keyword
        if not keyword or keyword in SKIP or keyword not in file:
            continue
        if element.VR == "SQ":
            assert len(element.value) == len(file[keyword].value), f"{where}: {keyword}"
            for a, b in zip(element.value, file[keyword].value):
                compared += _compare(a, b, f"{where}: {keyword}")
            continue
        assert element_text(answer, keyword) == element_text(file, keyword), f"{where}: {keyword}"
        compared += 1
    return compared


def test_query_answers_and_files_agree_for_every_target(archive):
    """For a random sample of studies, series and instances of every target: equal where both hold a value."""
    rng = random.Random(8)
    for target in PROTOCOLS:
        studies = list(archive.find("STUDY", {"ClinicalTrialProtocolID": PROTOCOLS[target]}))
        for study in rng.sample(studies, min(3, len(studies))):
            uid = str(study.StudyInstanceUID)
            refs = archive.instances(uid)
            sample = rng.sample(refs, min(4, len(refs)))
            compared = 0
            for ref in sample:
                file = dcmread(io.BytesIO(archive.instance_bytes(ref)))
                compared += _compare(study, file, f"{target} study {uid}")
                (series,) = archive.find("SERIES", {"StudyInstanceUID": uid, "SeriesInstanceUID": ref.series_instance_uid})
                compared += _compare(series, file, f"{target} series {ref.series_instance_uid}")
                (image,) = archive.find(
                    "IMAGE",
                    {
                        "StudyInstanceUID": uid,
                        "SeriesInstanceUID": ref.series_instance_uid,
                        "SOPInstanceUID": ref.sop_instance_uid,
                    },
                )
                compared += _compare(image, file, f"{target} instance {ref.sop_instance_uid}")
            assert compared > 20 * len(sample)


def test_patient_age_is_the_calendar_age_in_query_and_file(archive):
    """The age one has on one's birthday: a query answer and a file never disagree near birthdays."""
    import numpy as np

    from synthpacs.archive.records import calendar_age

    days = np.array(
        [
            (np.datetime64("1940-03-01") - np.datetime64("1970-01-01")).astype(int),
            (np.datetime64("1960-02-29") - np.datetime64("1970-01-01")).astype(int),
        ]
    )
    then = np.array(
        [
            (np.datetime64("2025-03-01") - np.datetime64("1970-01-01")).astype(int),
            (np.datetime64("2021-02-28") - np.datetime64("1970-01-01")).astype(int),
        ]
    )
    assert calendar_age(days, then).tolist() == [85, 60]
    for study in archive.find("STUDY", {}, limit=60):
        birth, date = str(study.PatientBirthDate), str(study.StudyDate)
        years = int(date[:4]) - int(birth[:4]) - (date[4:] < birth[4:])
        assert study.PatientAge == f"{years:03d}Y"


# -- a warm retrieve stays light --------------------------------------------------------------

WARM = """
import sys
sys.path.insert(0, {tests!r})
from conftest import make_config
from synthpacs.archive import Archive
from pathlib import Path
archive = Archive(make_config(Path({data!r}), **{settings!r}))
ref = archive.instances({study!r})[0]
data = archive.instance_bytes(ref)
assert archive.studies_generated == 0, "the retrieve was not warm"
print("torch" in sys.modules, len(data))
"""


def test_a_warm_retrieve_imports_neither_torch_nor_a_model(tmp_path):
    settings = {"patients": 20, "renderer": ""}  # the default renderer: the lung-CT GAN
    archive = Archive(make_config(tmp_path / "data", **settings))
    study = str(next(archive.find("STUDY", {})).StudyInstanceUID)
    archive.generate_study(study)
    archive.close()
    script = WARM.format(tests=str(TESTS), data=str(tmp_path / "data"), settings=settings, study=study)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    imported, size = done.stdout.split()
    assert imported == "False" and int(size) > 0


def test_a_builder_version_is_part_of_the_cache_key(tmp_path, monkeypatch):
    from synthpacs.imaging import registry

    a = Archive(make_config(tmp_path / "a", renderer="teacher"))
    key = a._cache_key("chest/lung-ct")
    bumped = tuple(
        b if b.build is not registry._ct else registry.Builder(b.sop_class_uids, b.version + 1, b.build)
        for b in registry.BUILDERS
    )
    monkeypatch.setattr(registry, "_BY_SOP_CLASS", {uid: b for b in bumped for uid in b.sop_class_uids})
    b = Archive(make_config(tmp_path / "b", renderer="teacher"))
    assert b._cache_key("chest/lung-ct") != key


# -- bad cohort files -------------------------------------------------------------------------


def _cohort_dir(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "cohorts"
    folder.mkdir()
    text = (TESTS / "data" / "cohorts" / "lung_cancer_small.yaml").read_text()
    (folder / "bad.yaml").write_text(edit(text))
    return folder


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda t: t.replace("target: chest/lung-ct", "target: chest/lung-cx"), "target: unknown target 'chest/lung-cx'"),
        (lambda t: t.replace("  rows: 128", "  rows: 128\n  colour: red"), "acquisition: colour: unknown key"),
        (lambda t: t.replace("  rows: 128", "  rows: many"), "acquisition: rows:"),
        (lambda t: t.replace("interval_days: 42", "interval_days: -3"), "schedule: interval_days:"),
        (lambda t: t.replace("  rows: 128\n  columns: 128", "  rows: 17\n  columns: 17"), "divisible by 8"),
        (lambda t: t.replace("response: {CR: 0.05", "response: {CR: 0.5"), "add up to 1"),
    ],
)
def test_a_bad_cohort_file_names_file_key_and_problem(tmp_path, edit, message):
    folder = _cohort_dir(tmp_path, edit)
    with pytest.raises(ConfigError) as caught:
        Archive(make_config(tmp_path / "data", cohorts_dir=str(folder)))
    assert str(folder / "bad.yaml") in str(caught.value)
    assert message in str(caught.value)


def test_a_bad_cohort_file_stops_serve_with_status_2(tmp_path):
    folder = _cohort_dir(tmp_path, lambda t: t.replace("target: chest/lung-ct", "target: chest/lung-cx"))
    done = subprocess.run(
        [sys.executable, "-m", "synthpacs", "info", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "SYNTHPACS_COHORTS_DIR": str(folder), "HOME": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "bad.yaml: target: unknown target" in done.stderr
