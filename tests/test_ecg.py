"""The heart/ecg target: a resting 12-lead ECG beside every trial subject's imaging.

Proved against independent readers: pydicom's ``waveform_array`` reads the
stored leads, neurokit2 (called here, not through the target) delineates
them again, dciodvfy checks the IOD, dcmtk's findscu and getscu and the
Python dicomweb-client query and retrieve it.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import requests
import torch
import yaml
from conftest import TESTS, make_config, require_tool
from dicom_validation import dciodvfy_errors
from PIL import Image
from pydicom import dcmread

from synthpacs.archive import Archive
from synthpacs.archive.cohorts import parse_cohort
from synthpacs.errors import ConfigError
from synthpacs.generation import registry
from synthpacs.generation.contract import GeneratorOptions

ECG_COHORTS = TESTS / "data" / "cohorts_ecg"
ECG_VISITS = (0, 1, 2, 4)
LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def ecg_config(data_dir, **overrides):
    return make_config(data_dir, cohorts_dir=str(ECG_COHORTS), renderer="teacher", patients=30, **overrides)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return Archive(ecg_config(tmp_path_factory.mktemp("ecg") / "data"))


@pytest.fixture(scope="module")
def ecg_file(archive):
    study = next(iter(archive.find("STUDY", {"ModalitiesInStudy": "ECG"}, limit=1)))
    (ref,) = archive.instances(str(study.StudyInstanceUID))
    return dcmread(io.BytesIO(archive.instance_bytes(ref))), study


def leads_of(ds) -> dict[str, np.ndarray]:
    values = ds.waveform_array(0)
    names = [str(ch.ChannelSourceSequence[0].CodeMeaning) for ch in ds.WaveformSequence[0].ChannelDefinitionSequence]
    short = [n.replace("Lead ", "").split(",")[0] for n in names]
    return {name: values[:, i] for i, name in enumerate(short)}


def annotation_values(ds) -> dict[str, float]:
    return {
        str(item.ConceptNameCodeSequence[0].CodeMeaning): float(item.NumericValue)
        for item in ds.WaveformAnnotationSequence
        if "NumericValue" in item
    }


# -- in the universe ----------------------------------------------------------------------


def test_every_subject_has_ecg_studies_at_the_cohort_visits(archive):
    u = archive._universe
    checked = 0
    for patient in range(u.n_patients):
        studies = [s for s in u.studies_of(patient) if u.is_performed(s)]
        imaging = {s.visit: s for s in studies if s.exam.index == 0}
        ecgs = {s.visit: s for s in studies if s.exam.index == 1}
        assert set(ecgs) == {v for v in imaging if v in ECG_VISITS}
        for visit, ecg in ecgs.items():
            ct = imaging[visit]
            assert ecg.study_instance_uid != ct.study_instance_uid and ecg.accession_number != ct.accession_number
            assert (ecg.study_date, ecg.time_point_id, ecg.patient.subject_id) == (
                ct.study_date,
                ct.time_point_id,
                ct.patient.subject_id,
            )
            assert ecg.study_time < ct.study_time or ecg.study_time == "070000"  # the ECG first on the day
            assert [s.modality for s in ecg.series] == ["ECG"]
            checked += 1
    assert checked > 30


def test_queries_counts_and_worklist_include_the_ecgs(archive, tmp_path):
    patient = next(iter(archive.find("PATIENT", {"PatientID": "", "NumberOfPatientRelatedStudies": ""}, limit=1)))
    studies = list(archive.find("STUDY", {"PatientID": str(patient.PatientID), "ModalitiesInStudy": ""}))
    assert int(patient.NumberOfPatientRelatedStudies) == len(studies)
    assert any("ECG" in s.ModalitiesInStudy for s in studies) and any("CT" in s.ModalitiesInStudy for s in studies)
    ecg = [s for s in studies if "ECG" in s.ModalitiesInStudy][0]
    assert ecg.StudyDescription == "ECG 12-LEAD RESTING" and int(ecg.NumberOfStudyRelatedInstances) == 1
    assert ecg.ProcedureCodeSequence[0].CodeValue == "11524-6"
    (series,) = archive.find("SERIES", {"StudyInstanceUID": str(ecg.StudyInstanceUID), "BodyPartExamined": ""})
    assert series.Modality == "ECG" and series.BodyPartExamined == "HEART"
    early = Archive(ecg_config(tmp_path / "early", today="2024-03-01"))  # most visits still to come
    steps = [s for s in early.worklist.steps() if s.modality == "ECG"]
    assert steps and all(s.exam.study_description == "ECG 12-LEAD RESTING" for s in steps)
    ds = steps[0].dataset()
    assert ds.ScheduledProcedureStepSequence[0].Modality == "ECG" and ds.StudyDescription == "ECG 12-LEAD RESTING"


# -- the waveform -----------------------------------------------------------------------


def test_the_iod_is_a_12_lead_ecg_that_dciodvfy_accepts(ecg_file, tmp_path):
    ds, _ = ecg_file
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.9.1.1" and ds.Modality == "ECG" and ds.SyntheticData == "YES"
    group = ds.WaveformSequence[0]
    assert (group.NumberOfWaveformChannels, group.NumberOfWaveformSamples, float(group.SamplingFrequency)) == (12, 5000, 500.0)
    assert tuple(leads_of(ds)) == LEADS
    channel = group.ChannelDefinitionSequence[0]
    assert channel.ChannelSensitivityUnitsSequence[0].CodeValue == "uV"
    assert (float(channel.FilterLowFrequency), float(channel.FilterHighFrequency)) == (0.05, 150.0)
    assert ds.ClinicalTrialProtocolID == "SYN-LC-001" and ds.ClinicalTrialSubjectID
    texts = [str(i.UnformattedTextValue) for i in ds.WaveformAnnotationSequence if "UnformattedTextValue" in i]
    assert any("Fridericia" in t for t in texts)
    require_tool("dciodvfy")
    path = tmp_path / "ecg.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert dciodvfy_errors(path) == []


def test_limb_leads_follow_einthoven_and_goldberger_to_the_sample(ecg_file):
    leads = {k: np.rint(v).astype(np.int64) for k, v in leads_of(ecg_file[0]).items()}
    i, ii = leads["I"], leads["II"]
    assert np.array_equal(leads["III"], ii - i)
    assert np.array_equal(2 * leads["aVR"], -(i + ii))
    assert np.array_equal(2 * leads["aVL"], 2 * i - ii)
    assert np.array_equal(2 * leads["aVF"], 2 * ii - i)
    assert np.abs(ii).max() > 200  # a real trace, not a flat line


def _delineate(lead: np.ndarray) -> dict[str, float]:
    """neurokit2 called directly on the stored lead (the target's own code is not used)."""
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean = nk.ecg_clean(lead, sampling_rate=500)
        _, info = nk.ecg_peaks(clean, sampling_rate=500)
        _, waves = nk.ecg_delineate(clean, info["ECG_R_Peaks"], sampling_rate=500, method="prominence")
        _, pan = nk.ecg_peaks(nk.ecg_clean(lead, sampling_rate=500, method="pantompkins1985"), 500, method="pantompkins1985")

    def median(a: str, b: str) -> float:
        x, y = np.asarray(waves[a], float), np.asarray(waves[b], float)
        return float(np.nanmedian(y - x) * 2)

    return {
        "rate_pan_tompkins": 60_000 / float(np.median(np.diff(pan["ECG_R_Peaks"])) * 2),
        "pr": median("ECG_P_Onsets", "ECG_R_Onsets"),
        "qrs": median("ECG_R_Onsets", "ECG_R_Offsets"),
        "qt": median("ECG_R_Onsets", "ECG_T_Offsets"),
    }


def test_the_annotated_measurements_are_what_an_independent_delineation_finds(archive):
    checked = 0
    for study in archive.find("STUDY", {"ModalitiesInStudy": "ECG"}, limit=4):
        (ref,) = archive.instances(str(study.StudyInstanceUID))
        ds = dcmread(io.BytesIO(archive.instance_bytes(ref)))
        stated = annotation_values(ds)
        found = _delineate(leads_of(ds)["II"].astype(np.float64))
        assert abs(found["rate_pan_tompkins"] - stated["Heart rate"]) < 3
        assert abs(60_000 / stated["RR Interval"] - stated["Heart rate"]) < 1
        assert abs(found["pr"] - stated["PR Interval"]) < 12
        assert abs(found["qrs"] - stated["QRS Duration"]) < 12
        assert abs(found["qt"] - stated["QT Interval"]) < 12
        rr = stated["RR Interval"] / 1000
        assert abs(stated["QTc Interval"] - stated["QT Interval"] / rr ** (1 / 3)) < 1
        assert 35 <= stated["Heart rate"] <= 160 and 60 <= stated["QRS Duration"] <= 130
        checked += 1
    assert checked == 4


def test_a_subjects_qtc_course_follows_the_drug_effect(archive):
    """Responders' QTcF rises with the cohort's effect (30 ms, onset one visit); others' stays put."""
    from generators.heart.ecg.rhythm import drug_effect

    gen = archive.generator("heart/ecg")
    rises: dict[bool, list[float]] = {True: [], False: []}
    for patient in range(12):
        studies = [s for s in archive._universe.studies_of(patient) if s.exam.index == 1]
        if len(studies) < 3:
            continue
        made = [gen.make(archive.study_request(s.study_instance_uid)) for s in studies]
        base = made[0].measurements.qtcf_ms
        for study, ecg in zip(studies[1:], made[1:]):
            rise = ecg.measurements.qtcf_ms - base
            rises[ecg.rhythm.responder].append(rise)
            if ecg.rhythm.responder:  # the subject's own effect is 0.6-1.4x the cohort's
                assert 0.6 * drug_effect(study.visit, 30, 1.0) - 22 < rise < 1.4 * drug_effect(study.visit, 30, 1.0) + 22
    assert rises[True] and rises[False]
    assert np.mean(rises[True]) > 15 and abs(np.mean(rises[False])) < 10


def test_the_same_study_gives_the_same_waveform_in_another_process(ecg_file, tmp_path):
    ds, study = ecg_file
    code = (
        "import hashlib, io, sys; sys.path.insert(0, 'tests');"
        "from test_ecg import ecg_config; from synthpacs.archive import Archive; from pydicom import dcmread;"
        f"a = Archive(ecg_config({str(tmp_path / 'other')!r}));"
        f"(ref,) = a.instances({str(study.StudyInstanceUID)!r});"
        "print(hashlib.sha256(dcmread(io.BytesIO(a.instance_bytes(ref))).WaveformSequence[0].WaveformData).hexdigest())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={"PYTHONHASHSEED": "123", "PATH": ""}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == hashlib.sha256(ds.WaveformSequence[0].WaveformData).hexdigest()


# -- served -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    from synthpacs.server import RunningServer

    server = RunningServer(ecg_config(tmp_path_factory.mktemp("ecg-served") / "data"))
    yield server
    server.stop()


@pytest.mark.integration
def test_rendered_chart_and_thumbnail(running):
    from synthpacs.imaging.ecg_chart import CHART_SIZE

    archive = running.pacs.archive
    study = next(iter(archive.find("STUDY", {"ModalitiesInStudy": "ECG"}, limit=1)))
    (ref,) = archive.instances(str(study.StudyInstanceUID))
    base = f"{running.base_url}/dicom-web/studies/{ref.study_instance_uid}/series/{ref.series_instance_uid}"
    rendered = requests.get(f"{base}/instances/{ref.sop_instance_uid}/rendered", headers={"Accept": "image/jpeg"}, timeout=120)
    assert rendered.status_code == 200 and rendered.headers["Content-Type"] == "image/jpeg"
    image = Image.open(io.BytesIO(rendered.content))
    assert image.size == CHART_SIZE and image.mode == "RGB"
    pixels = np.asarray(image.convert("L"))
    assert (pixels < 60).mean() > 0.005  # the traces are drawn
    thumbnail = requests.get(f"{base}/thumbnail", timeout=60)
    assert thumbnail.status_code == 200
    small = Image.open(io.BytesIO(thumbnail.content))
    assert max(small.size) < max(CHART_SIZE) and abs(small.size[0] / small.size[1] - CHART_SIZE[0] / CHART_SIZE[1]) < 0.02


@pytest.mark.integration
def test_findscu_and_getscu_of_an_ecg_study(running, tmp_path):
    require_tool("findscu")
    require_tool("getscu")
    port = str(running.dicom_port)
    found = tmp_path / "found"
    found.mkdir()
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", "ModalitiesInStudy=ECG", "-k", "StudyInstanceUID", "-k", "StudyDescription"]
    result = subprocess.run(
        ["findscu", "-S", "-aec", "SYNTHPACS", "-X", "-od", str(found), *keys, "127.0.0.1", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answers = [dcmread(p) for p in sorted(found.glob("rsp*.dcm"))]
    assert answers and all(a.StudyDescription == "ECG 12-LEAD RESTING" for a in answers)
    got = tmp_path / "got"
    got.mkdir()
    uid = str(answers[0].StudyInstanceUID)
    result = subprocess.run(
        [
            "getscu",
            "-S",
            "-aec",
            "SYNTHPACS",
            "-od",
            str(got),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={uid}",
            "127.0.0.1",
            port,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    (file,) = list(got.iterdir())
    ds = dcmread(file)
    assert ds.Modality == "ECG" and ds.waveform_array(0).shape == (5000, 12)


@pytest.mark.integration
def test_dicomweb_client_retrieves_an_ecg_and_its_metadata(running):
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=f"{running.base_url}/dicom-web")
    (study,) = client.search_for_studies(search_filters={"ModalitiesInStudy": "ECG"}, limit=1)
    uid = study["0020000D"]["Value"][0]
    (series,) = client.search_for_series(uid)
    series_uid = series["0020000E"]["Value"][0]
    (metadata,) = client.retrieve_series_metadata(uid, series_uid)
    assert metadata["00080060"]["Value"] == ["ECG"] and "54000100" in metadata  # Waveform Sequence
    (instance,) = client.retrieve_series(uid, series_uid)
    assert instance.waveform_array(0).shape == (5000, 12)
    chart = client.retrieve_instance_rendered(uid, series_uid, str(instance.SOPInstanceUID), media_types=("image/jpeg",))
    from synthpacs.imaging.ecg_chart import CHART_SIZE

    assert Image.open(io.BytesIO(chart)).size == CHART_SIZE


# -- bad input ----------------------------------------------------------------------------


def _cohort_with(**acquisition):
    data = yaml.safe_load((ECG_COHORTS / "lung_cancer_ecg.yaml").read_text())
    data["exams"][0]["acquisition"].update(acquisition)
    return data


def test_an_out_of_range_heart_rate_names_the_file_and_key():
    with pytest.raises(ConfigError) as error:
        parse_cohort(_cohort_with(heart_rate_bpm=[20, 300]), "cohort.yaml", 0, registry.discover())
    assert "cohort.yaml: exams: 0: acquisition: heart_rate_bpm" in str(error.value) and "beats/min" in str(error.value)
    data = _cohort_with()
    data["exams"][0]["target"] = "heart/no-such"
    with pytest.raises(ConfigError, match="cohort.yaml: exams: 0: target: unknown target 'heart/no-such'"):
        parse_cohort(data, "cohort.yaml", 0, registry.discover())
    data = _cohort_with()
    data["exams"][0]["visits"] = [0, 40]
    with pytest.raises(ConfigError, match="visit 40 is past schedule.max_followups"):
        parse_cohort(data, "cohort.yaml", 0, registry.discover())


def test_a_missing_or_mismatched_checkpoint_names_the_file(tmp_path):
    from generators.heart.ecg.network import load_network

    wrong = tmp_path / "wrong.pt"
    torch.save({"stat_dict": {"conv_1.weight": torch.zeros(3, 3)}}, wrong)
    with pytest.raises(ConfigError, match=r"wrong\.pt: not a Pulse2Pulse generator checkpoint \(missing: "):
        load_network(wrong)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pt: not a readable torch checkpoint"):
        load_network(junk)
    with pytest.raises(ConfigError, match="stat_dict"):
        torch.save({"weights": 1}, wrong)
        load_network(wrong)


def test_an_unknown_lead_and_cuda_without_cuda_are_clear_errors():
    from generators.heart.ecg.leads import lead_code
    from generators.heart.ecg.target import ECGGenerator

    with pytest.raises(ValueError, match="unknown ECG lead 'V7'"):
        lead_code("V7")
    if torch.cuda.is_available():  # where CUDA is, --device cuda runs the network there
        on_gpu = ECGGenerator(GeneratorOptions(device="cuda", device_source="flag --device"))
        assert on_gpu.device.type == "cuda" and on_gpu.raw(on_gpu.noise(np.random.default_rng(0))).shape == (1, 8, 5000)
        return
    with pytest.raises(ConfigError, match="flag --device.*asks for CUDA, but none is available"):
        ECGGenerator(GeneratorOptions(device="cuda", device_source="flag --device"))


# -- the seed's interface, evaluation and training, as a user runs them ---------------------


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "synthpacs", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _common(tmp_path):
    return ["--data-dir", str(tmp_path / "data"), "--patients", "30"]


@pytest.fixture
def ecg_cohorts(monkeypatch):
    monkeypatch.setenv("SYNTHPACS_COHORTS_DIR", str(ECG_COHORTS))


def test_generate_target_writes_dicom_asc_files_and_measurements(tmp_path, ecg_cohorts):
    out = tmp_path / "out"
    result = _cli(
        "generate", *_common(tmp_path), "--target", "heart/ecg", "-n", "2", "--start-id", "5", "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.asc")) == ["5.asc", "6.asc"]
    table = np.loadtxt(out / "5.asc", dtype=np.int64)
    assert table.shape == (5000, 8)
    rows = (out / "measurements.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("id,patient_id,subject_id,time_point,study_instance_uid")
    (dicom,) = (out / "000005").rglob("*.dcm")
    ds = dcmread(dicom)
    leads = leads_of(ds)
    assert np.array_equal(table[:, 0], np.rint(leads["I"]).astype(np.int64))  # .asc lead I is the stored lead I
    assert str(ds.StudyInstanceUID) in rows[1] and list((out / "000005").rglob("*.jpg"))
    walk = _cli(
        "generate",
        *_common(tmp_path),
        "--target",
        "heart/ecg",
        "--interpolate",
        "0,3",
        "--frames",
        "3",
        "--out",
        str(tmp_path / "walk.gif"),
        cwd=tmp_path,
    )
    assert walk.returncode == 0, walk.stderr
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 4  # 3 forward, 1 back
    both = _cli("generate", *_common(tmp_path), "--out", str(out), cwd=tmp_path)
    assert both.returncode != 0 and "give either --study UID or --target NAME" in both.stderr


def test_evaluate_reports_delineation_intervals_and_distance_to_the_real_ecg(tmp_path, ecg_cohorts):
    result = _cli("evaluate", "heart/ecg", *_common(tmp_path), "--samples", "8", "--json", str(tmp_path / "r.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["delineated_share"] >= 0.75 and report["retimed_share"] >= 0.75
    assert 40 < report["intervals"]["heart_rate_bpm"]["mean"] < 120 and 0 < report["diversity_1_minus_r"] < 1
    assert 0.3 < report["median_beat_r_to_real"]["mean"] <= 1 and "median beat r to the real ECG" in result.stdout


def test_train_fine_tunes_on_the_users_ecgs_and_the_run_is_served(tmp_path, ecg_cohorts):
    data = tmp_path / "mine"
    data.mkdir()
    out = tmp_path / "gen"
    made = _cli("generate", *_common(tmp_path), "--target", "heart/ecg", "-n", "2", "--no-jpeg", "--out", str(out), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    for path in out.glob("*.asc"):
        (data / path.name).write_bytes(path.read_bytes())
    (data / "real.dcm").write_bytes(open(__import__("pydicom").data.get_testdata_file("waveform_ecg.dcm"), "rb").read())
    run = tmp_path / "run"
    result = _cli("train", "heart/ecg", "--data", str(data), "--steps", "2", "--batch", "2", "--out", str(run), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (run / "g_stat.pt").is_file() and len((run / "stats.jsonl").read_text().splitlines()) >= 1
    options = json.loads((run / "training_options.json").read_text())
    assert len(options["files"]) == 3
    served = _cli(
        "generate",
        *_common(tmp_path),
        "--weights",
        str(run),
        "--target",
        "heart/ecg",
        "-n",
        "1",
        "--no-jpeg",
        "--out",
        str(tmp_path / "tuned"),
        cwd=tmp_path,
    )
    assert served.returncode == 0, served.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "short.csv").write_text("I,II,V1,V2,V3,V4,V5,V6\n" + "1,2,3,4,5,6,7,8\n" * 100)
    refused = _cli("train", "heart/ecg", "--data", str(bad), "--steps", "1", "--out", str(tmp_path / "r2"), cwd=tmp_path)
    assert refused.returncode != 0 and "short.csv: 0.20 s of ECG; 10 s are needed" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_warm_ecg_retrieve_imports_neither_torch_nor_neurokit2(ecg_file, archive, tmp_path):
    _, study = ecg_file  # generated and cached by the fixture
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "from conftest import make_config; from synthpacs.archive import Archive;"  # not test_ecg: it imports torch
        f"a = Archive(make_config({str(archive.config.data_dir)!r}, cohorts_dir={str(ECG_COHORTS)!r}, renderer='teacher', patients=30));"
        f"(ref,) = a.instances({str(study.StudyInstanceUID)!r}); data = a.instance_bytes(ref);"
        "assert a.studies_generated == 0, 'not warm';"
        "print('torch' in sys.modules, 'neurokit2' in sys.modules, len(data))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    torch_imported, neurokit_imported, size = result.stdout.split()
    assert (torch_imported, neurokit_imported) == ("False", "False") and int(size) > 100_000
