"""The Modality Worklist derivation (synthpacs/archive/worklist.py), without a network."""

from __future__ import annotations

import datetime as dt

import pytest

from synthpacs.archive.records import accession_number
from synthpacs.archive.worklist import (
    SCHEDULED,
    Worklist,
    scheduled_study_uid,
    shift_date,
    station_ae_title,
)
from synthpacs.errors import InvalidQuery

pytestmark = pytest.mark.timeout(60)

TODAY = "20250601"


@pytest.fixture(scope="module")
def worklist(shared_archive):
    return Worklist(shared_archive._catalog, TODAY)


def _studies(archive, patient_index):
    rows = archive._catalog.db.execute(
        "SELECT visit, study_date, study_time, accession FROM study WHERE patient_pk = ? ORDER BY visit", (patient_index,)
    )
    return rows.fetchall()


def test_every_study_dated_today_or_later_is_scheduled(worklist, shared_archive):
    steps = worklist.steps()
    performed = {s.study_instance_uid for s in steps if not s.next_visit}
    expected = set()
    for ds in shared_archive.find("STUDY", {"StudyDate": f"{TODAY}-", "StudyInstanceUID": ""}):
        expected.add(str(ds.StudyInstanceUID))
    assert performed == expected and expected
    for step in steps:
        assert step.start_date >= TODAY


def test_next_visit_follows_the_last_study_at_the_protocol_interval(worklist, shared_archive):
    universe = shared_archive._universe
    steps = [s for s in worklist.steps() if s.next_visit]
    assert steps
    for step in steps:
        studies = _studies(shared_archive, step.patient_index)
        assert step.visit == len(studies)
        assert step.start_date == shift_date(studies[-1][1], step.cohort.interval_days)
        assert step.accession_number == accession_number(step.patient_index, step.visit)
        # Not a synthetic UID: what a modality stores under it indexes as a stored study.
        assert universe.uids.decode(step.study_instance_uid) is None
        assert step.study_instance_uid == scheduled_study_uid(universe.key, step.patient_index, step.visit)
        assert len(step.study_instance_uid) <= 64
    # Subjects whose course ended before today have no next visit.
    scheduled = {s.patient_index for s in steps}
    for index in range(universe.n_patients):
        last = _studies(shared_archive, index)[-1][1]
        due = shift_date(last, universe.patient(index).cohort.interval_days)
        assert (index in scheduled) == (due >= TODAY)


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


def test_is_deterministic(shared_archive, worklist):
    again = Worklist(shared_archive._catalog, dt.date(2025, 6, 1))
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
    assert len(ranged) == sum(TODAY <= s.start_date <= late for s in steps)
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
    assert list(worklist.find({"ScheduledProcedureStepSequence": [{"ScheduledProcedureStepStartDate": "-20250101"}]})) == []


def test_bad_keys_raise_at_once(worklist):
    with pytest.raises(InvalidQuery, match="ScheduledProcedureStepStartDate"):
        worklist.find({"ScheduledProcedureStepSequence": [{"ScheduledProcedureStepStartDate": "2025-06-01"}]})
    with pytest.raises(InvalidQuery, match="NoSuchKeyword"):
        worklist.find({"NoSuchKeyword": "x"})


def test_today_defaults_to_the_real_date(shared_archive):
    assert Worklist(shared_archive._catalog).today == dt.date.today().strftime("%Y%m%d")
    with pytest.raises(InvalidQuery):
        Worklist(shared_archive._catalog, "20251399")
