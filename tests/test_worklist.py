"""The Modality Worklist and the calendar of `today` (synthpacs/archive/worklist.py).

Every archive here is anchored on a pinned ``today``: the test cohorts
(tests/data/cohorts, absolute dates) seen mid-trial, and the shipped cohort
(config/cohorts, enrolment relative to today) seen on two different days.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from conftest import make_config
from pydicom import Dataset, dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from synthpacs.archive import Archive
from synthpacs.archive.universe import resolve_today
from synthpacs.archive.worklist import SCHEDULED, Worklist, shift_date, station_ae_title
from synthpacs.errors import ConfigError, InvalidQuery, NotFound

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parent.parent
SHIPPED_COHORTS = ROOT / "config" / "cohorts"
TODAY = "20250601"  # inside the test cohorts' trial: studies before it, visits after it
ROLLING_TODAYS = ("20250601", "20261202")


@pytest.fixture(scope="module")
def trial(tmp_path_factory) -> Archive:
    """The test cohorts (absolute calendar) on TODAY, mid-trial."""
    return Archive(make_config(tmp_path_factory.mktemp("trial") / "data", today=TODAY))


@pytest.fixture(scope="module")
def worklist(trial) -> Worklist:
    return trial.worklist


def rolling_config(data_dir: Path, today: str, **overrides):
    """The shipped cohort (enrolment relative to today) with enough patients for daily work."""
    settings = {"cohorts_dir": str(SHIPPED_COHORTS), "patients": 1000, **overrides}
    return make_config(data_dir, today=today, **settings)


@pytest.fixture(scope="module")
def rolling(tmp_path_factory) -> dict[str, Archive]:
    return {
        today: Archive(rolling_config(tmp_path_factory.mktemp(f"rolling{today}") / "data", today)) for today in ROLLING_TODAYS
    }


def planned_visits(archive: Archive):
    """Every visit of the universe's plan (performed or not), as StudyRecords."""
    u = archive._universe
    return [s for p in range(u.n_patients) for s in u.studies_of(p)]


def catalog_rows(archive: Archive) -> dict[str, list[tuple]]:
    db = archive._catalog.db
    return {
        table: [tuple(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY 1")]
        for table in ("patient", "study", "scheduled", "plan_variant", "plan_series", "cohort")
    }


# -- the calendar: performed studies up to today, scheduled steps after it ----------------------


def test_visits_up_to_today_are_studies_later_ones_scheduled_steps(trial, worklist):
    visits = planned_visits(trial)
    performed = {s.study_instance_uid for s in visits if s.study_date <= TODAY}
    later = {s.study_instance_uid: s for s in visits if s.study_date > TODAY}
    assert performed and later
    assert all(trial._universe.is_performed(s) == (s.study_instance_uid in performed) for s in visits)
    # C-FIND / QIDO see the performed studies, and only those.
    found = {str(ds.StudyInstanceUID) for ds in trial.find("STUDY", {"StudyInstanceUID": ""})}
    assert found == performed
    assert trial.figures()["studies"] == len(performed)
    assert trial.figures()["scheduled_visits"] == len(later)
    # The worklist holds every visit from today on: today's studies and every later visit.
    steps = worklist.steps()
    todays = {s.study_instance_uid for s in visits if s.study_date == TODAY}
    assert {s.study_instance_uid for s in steps} == todays | set(later)
    for step in steps:
        assert step.start_date >= TODAY
        planned = later.get(step.study_instance_uid)
        if planned is not None:  # the UID, accession number, date and time the study will have
            assert (step.accession_number, step.start_date, step.start_time, step.visit) == (
                planned.accession_number,
                planned.study_date,
                planned.study_time,
                planned.visit,
            )


def test_a_study_after_today_is_absent_from_c_find_and_qido_but_on_the_worklist(trial):
    future = min((s for s in planned_visits(trial) if s.study_date > TODAY), key=lambda s: (s.study_date, s.study_time))
    uid, accession = future.study_instance_uid, future.accession_number
    assert list(trial.find("STUDY", {"StudyInstanceUID": uid})) == []
    assert list(trial.find("STUDY", {"AccessionNumber": accession})) == []
    assert list(trial.find("SERIES", {"StudyInstanceUID": uid})) == []
    assert list(trial.find("IMAGE", {"StudyInstanceUID": uid})) == []
    from synthpacs.app import SynthPACS

    client = SynthPACS(trial.config).http_app().test_client()
    assert client.get(f"/dicom-web/studies?StudyInstanceUID={uid}").json in ([], None)
    assert client.get(f"/dicom-web/studies?AccessionNumber={accession}").json in ([], None)
    assert client.get(f"/dicom-web/studies/{uid}/series").status_code == 404
    with pytest.raises(NotFound):
        trial.instances(uid)
    with pytest.raises(NotFound):
        trial.study_request(uid)
    # ... but a scheduled procedure step with its planned UID, accession number and date.
    (item,) = trial.find_worklist({"StudyInstanceUID": uid})
    assert str(item.AccessionNumber) == accession
    step = item.ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepStartDate == future.study_date
    assert step.ScheduledProcedureStepStartTime == future.study_time
    assert step.ScheduledProcedureStepStatus == SCHEDULED
    assert item.ClinicalTrialTimePointID == future.time_point_id


def test_todays_studies_are_the_days_work(trial, worklist):
    todays = worklist.steps(TODAY, TODAY)
    studies = list(trial.find("STUDY", {"StudyDate": TODAY}))
    assert sorted(s.accession_number for s in todays) == sorted(str(d.AccessionNumber) for d in studies)


def test_a_step_stored_into_joins_a_stored_study_found_at_once(tmp_path):
    archive = Archive(make_config(tmp_path / "data", today=TODAY))
    (step, *_) = [s for s in archive.worklist.steps() if s.start_date > TODAY]
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = step.study_instance_uid, generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID, ds.AccessionNumber = step.patient_id, step.accession_number
    archive.store(ds)
    (found,) = archive.find("STUDY", {"StudyInstanceUID": step.study_instance_uid})
    assert int(found.NumberOfStudyRelatedInstances) == 1
    assert [r.sop_instance_uid for r in archive.instances(step.study_instance_uid)] == [ds.SOPInstanceUID]


def test_a_subject_before_its_baseline_is_on_the_worklist_only(tmp_path):
    folder = tmp_path / "cohorts"
    folder.mkdir()
    text = (SHIPPED_COHORTS / "lung_cancer.yaml").read_text().replace("last_baseline: -30", "last_baseline: 60")
    (folder / "lung_cancer.yaml").write_text(text)
    archive = Archive(rolling_config(tmp_path / "data", TODAY, cohorts_dir=str(folder), patients=300))
    u = archive._universe
    waiting = [p for p in range(u.n_patients) if not u.is_performed(u.study(p, 0))]
    assert waiting
    patient_id = u.patient(waiting[0]).patient_id
    assert list(archive.find("PATIENT", {"PatientID": patient_id})) == []
    assert list(archive.find("STUDY", {"PatientID": patient_id})) == []
    items = list(archive.find_worklist({"PatientID": patient_id}))
    assert items and items[0].ClinicalTrialTimePointID == "BL"
    assert archive.figures()["patients"] == u.n_patients - len(waiting)


# -- today's work, wherever the calendar stands --------------------------------------------------


def _mwl_query(port: int, today: str, station: str = "") -> list[Dataset]:
    """What ``findscu -W -k ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=<today>`` asks."""
    ae = AE("FINDSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(ModalityWorklistInformationFind)
    identifier = Dataset()
    for keyword in ("PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID", "RequestedProcedureID"):
        setattr(identifier, keyword, "")
    item = Dataset()
    item.ScheduledStationAETitle = station
    item.ScheduledProcedureStepStartDate = today
    item.ScheduledProcedureStepStartTime = ""
    item.Modality = "CT"
    item.ScheduledProcedureStepID = ""
    identifier.ScheduledProcedureStepSequence = [item]
    assoc = ae.associate("127.0.0.1", port, ae_title="SYNTHPACS")
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_find(identifier, ModalityWorklistInformationFind))
    finally:
        assoc.release()
    assert responses[-1][0].Status == 0x0000
    return [ds for status, ds in responses if status.Status in (0xFF00, 0xFF01)]


def test_a_worklist_query_for_today_finds_the_days_steps_on_two_different_days(tmp_path):
    from synthpacs.server import RunningServer

    accessions = {}
    for today in ROLLING_TODAYS:
        server = RunningServer(rolling_config(tmp_path / today, today))
        try:
            found = _mwl_query(server.dicom_port, today)
            archive = server.pacs.archive
        finally:
            server.stop()
        assert found, f"no steps for today {today}"
        for ds in found:
            step = ds.ScheduledProcedureStepSequence[0]
            assert step.ScheduledProcedureStepStartDate == today and step.Modality == "CT"
            assert ds.StudyInstanceUID and ds.AccessionNumber and step.ScheduledProcedureStepID
        # The day's CT steps are that day's CT studies (performed as the day ends) ...
        studies = {str(d.AccessionNumber) for d in archive.find("STUDY", {"StudyDate": today, "ModalitiesInStudy": "CT"})}
        assert {str(d.AccessionNumber) for d in found} == studies
        # ... and the work to come exists too.
        assert any(s.start_date > today for s in archive.worklist.steps())
        accessions[today] = sorted(str(d.AccessionNumber) for d in found)
    # Enrolment relative to today: the trial rolls, and each day sees the same visits due.
    assert accessions[ROLLING_TODAYS[0]] == accessions[ROLLING_TODAYS[1]]


def test_a_relative_schedule_rolls_with_today(rolling):
    first, second = (rolling[t] for t in ROLLING_TODAYS)
    shift = (dt.date.fromisoformat(ROLLING_TODAYS[1]) - dt.date.fromisoformat(ROLLING_TODAYS[0])).days
    for patient in (0, 1, 2):
        for a, b in zip(first._universe.studies_of(patient), second._universe.studies_of(patient)):
            assert b.study_instance_uid == a.study_instance_uid and b.accession_number == a.accession_number
            assert b.study_date == shift_date(a.study_date, shift)
    for today, archive in rolling.items():
        cohorts = archive._universe.cohorts
        window = archive._universe.baseline_windows[next(c.index for c in cohorts if c.name == "lung-cancer")]
        assert window == (
            dt.date.fromisoformat(today) - dt.timedelta(days=900),
            dt.date.fromisoformat(today) - dt.timedelta(days=30),
        )
    assert first._universe.fingerprint != second._universe.fingerprint


# -- determinism -------------------------------------------------------------------------------


def test_the_same_today_gives_the_same_catalog(tmp_path, trial):
    again = Archive(make_config(tmp_path / "again", today=TODAY))
    assert again._universe.fingerprint == trial._universe.fingerprint
    assert catalog_rows(again) == catalog_rows(trial)
    assert [ds.to_json_dict() for ds in again.find("STUDY", {})] == [ds.to_json_dict() for ds in trial.find("STUDY", {})]
    assert [s.dataset() for s in again.worklist.steps()] == [s.dataset() for s in trial.worklist.steps()]


def test_another_today_rebuilds_the_catalog_and_keys_another_cache(tmp_path):
    data = tmp_path / "data"
    first = Archive(rolling_config(data, ROLLING_TODAYS[0], patients=50))
    assert first.catalog_build_seconds > 0
    first_dates = {str(d.StudyInstanceUID): str(d.StudyDate) for d in first.find("STUDY", {})}
    first.close()
    reopened = Archive(rolling_config(data, ROLLING_TODAYS[0], patients=50))
    assert reopened.catalog_build_seconds == 0  # same day: the catalog file is reused
    reopened.close()
    later = Archive(rolling_config(data, ROLLING_TODAYS[1], patients=50))
    assert later.catalog_build_seconds > 0  # another day: rebuilt, never stale
    later_dates = {str(d.StudyInstanceUID): str(d.StudyDate) for d in later.find("STUDY", {})}
    assert later_dates.keys() == first_dates.keys() and later_dates != first_dates
    assert later.cache_folder != first.cache_folder  # the instance cache folder is keyed by the fingerprint
    stamp = sqlite3.connect(data / "catalog.sqlite").execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
    assert stamp[0] == later._universe.fingerprint


# -- the worklist's items and matching ---------------------------------------------------------


def test_items_carry_the_worklist_return_keys(worklist):
    ds = next(iter(worklist.find({})))
    step = ds.ScheduledProcedureStepSequence[0]
    for keyword in (
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "Modality",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepID",
        "ScheduledProtocolCodeSequence",
        "ScheduledStationName",
    ):
        assert keyword in step and step[keyword].value not in (None, ""), keyword
    assert step.ScheduledProcedureStepStatus == SCHEDULED
    for keyword in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "AccessionNumber",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
        "RequestedProcedureCodeSequence",
        "ClinicalTrialSubjectID",
    ):
        assert ds[keyword].value not in (None, ""), keyword
    assert step.ScheduledStationAETitle == station_ae_title(ds.ClinicalTrialSiteID, "CT")


def test_is_deterministic(trial, worklist):
    again = Worklist(trial._catalog)
    assert [s.dataset() for s in again.steps()] == [s.dataset() for s in worklist.steps()]


def test_matches_station_date_range_modality_and_patient_keys(worklist):
    steps = worklist.steps()
    target = steps[len(steps) // 2]
    station = station_ae_title(target.site_id, "CT")
    day = target.start_date
    found = list(
        worklist.find(
            {
                "ScheduledProcedureStepSequence": [
                    {"ScheduledStationAETitle": station, "ScheduledProcedureStepStartDate": day, "Modality": "CT"}
                ]
            }
        )
    )
    expected = [s for s in steps if s.site_id == target.site_id and s.start_date == day]
    assert [str(d.AccessionNumber) for d in found] == [s.accession_number for s in expected]
    # A date range, open-ended too.
    late = shift_date(TODAY, 60)
    ranged = list(worklist.find({"ScheduledProcedureStepSequence": [{"ScheduledProcedureStepStartDate": f"{TODAY}-{late}"}]}))
    assert len(ranged) == sum(TODAY <= s.start_date <= late for s in steps) > 0
    assert len(list(worklist.find({"ScheduledProcedureStepSequence": [{"ScheduledProcedureStepStartDate": f"{late}-"}]}))) == sum(
        s.start_date >= late for s in steps
    )
    # Patient keys: wildcard and single value; another modality matches nothing.
    family = target.patient_name.split("^")[0]
    by_name = list(worklist.find({"PatientName": f"{family}^*"}))
    assert by_name and all(str(d.PatientName).startswith(family + "^") for d in by_name)
    assert [str(d.PatientID) for d in worklist.find({"PatientID": target.patient_id})] == [
        s.patient_id for s in steps if s.patient_id == target.patient_id
    ]
    assert list(worklist.find({"ScheduledProcedureStepSequence": [{"Modality": "MR"}]})) == []
    # Before today nothing is scheduled.
    before = shift_date(TODAY, -1)
    assert list(worklist.find({"ScheduledProcedureStepSequence": [{"ScheduledProcedureStepStartDate": f"-{before}"}]})) == []


def test_bad_keys_raise_at_once(worklist):
    with pytest.raises(InvalidQuery, match="ScheduledProcedureStepStartDate"):
        worklist.find({"ScheduledProcedureStepSequence": [{"ScheduledProcedureStepStartDate": "2025-06-01"}]})
    with pytest.raises(InvalidQuery, match="NoSuchKeyword"):
        worklist.find({"NoSuchKeyword": "x"})


# -- the today setting ---------------------------------------------------------------------------


def test_today_is_the_setting_else_the_real_date_at_start_up(trial, tmp_path):
    assert trial.worklist.today == TODAY == trial._universe.today_text
    assert resolve_today(None) == dt.date.today()
    assert resolve_today(dt.date(2026, 6, 1)) == dt.date(2026, 6, 1)
    # The deprecated worklist_today still sets today, unless today is set.
    assert resolve_today(None, dt.date(2025, 6, 1)) == dt.date(2025, 6, 1)
    assert resolve_today(dt.date(2026, 6, 1), dt.date(2025, 6, 1)) == dt.date(2026, 6, 1)
    legacy = Archive(make_config(tmp_path / "legacy", worklist_today=int(TODAY)))
    assert legacy.worklist.today == TODAY


def test_a_bad_today_stops_start_up_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="invalid today in flag --today"):
        make_config(tmp_path, today="20251399")
    with pytest.raises(ConfigError, match="invalid today in flag --today"):
        make_config(tmp_path, today="tomorrow")
    with pytest.raises(ConfigError, match="invalid worklist_today in flag --worklist-today"):
        make_config(tmp_path, worklist_today="2025061")
