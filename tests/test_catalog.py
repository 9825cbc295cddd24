"""The catalog and the universe: coherent metadata, stored objects beside synthetic ones."""

import datetime as dt

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from synthpacs.archive.cohorts import RESPONSES
from synthpacs.errors import NotFound, StoreRefused


def test_counts_equal_the_real_numbers_of_children(shared_archive):
    a = shared_archive
    for patient in a.find("PATIENT", {}, limit=6):
        studies = list(a.find("STUDY", {"PatientID": str(patient.PatientID)}))
        assert patient.NumberOfPatientRelatedStudies == len(studies)
        n_series = n_instances = 0
        for study in studies:
            series = list(a.find("SERIES", {"StudyInstanceUID": study.StudyInstanceUID}))
            assert study.NumberOfStudyRelatedSeries == len(series)
            assert sorted(study.ModalitiesInStudy) == sorted({s.Modality for s in series})
            images = list(a.find("IMAGE", {"StudyInstanceUID": study.StudyInstanceUID}))
            assert study.NumberOfStudyRelatedInstances == len(images)
            for s in series:
                assert s.NumberOfSeriesRelatedInstances == sum(1 for i in images if i.SeriesInstanceUID == s.SeriesInstanceUID)
            assert len(a.instances(study.StudyInstanceUID)) == len(images)
            n_series += len(series)
            n_instances += len(images)
        assert patient.NumberOfPatientRelatedSeries == n_series
        assert patient.NumberOfPatientRelatedInstances == n_instances


def test_dates_follow_the_visit_schedule(shared_archive):
    u = shared_archive._universe
    for p in range(u.n_patients):
        studies = u.studies_of(p)
        cohort = studies[0].patient.cohort
        baseline = dt.datetime.strptime(studies[0].study_date, "%Y%m%d").date()
        first, last = u.baseline_windows[cohort.index]
        assert first <= baseline <= last
        for s in studies[1:]:
            date = dt.datetime.strptime(s.study_date, "%Y%m%d").date()
            planned = baseline + dt.timedelta(days=s.visit * cohort.interval_days)
            assert abs((date - planned).days) <= cohort.window_days
            assert s.time_point_id == f"W{s.visit * 6:02d}"
        assert studies[0].time_point_id == "BL"
        birth = dt.datetime.strptime(studies[0].patient.birth_date, "%Y%m%d").date()
        age = (baseline - birth).days / 365.25
        assert cohort.age_min - 1 <= age <= cohort.age_max + 1


def test_recist_course_drives_lesion_size(shared_archive):
    u = shared_archive._universe
    seen = set()
    for p in range(u.n_patients):
        studies = u.studies_of(p)
        patient = studies[0].patient
        seen.add(patient.response)
        sums = [sum(s.lesion_diameters_mm) for s in studies]
        assert all(d >= 10 for d in studies[0].lesion_diameters_mm), "baseline targets are measurable (>= 10 mm)"
        assert len(studies[0].lesion_diameters_mm) == patient.n_lesions
        if patient.response == "CR":
            assert sums[-1] == 0
        elif patient.response == "PR":
            assert min(sums[1:]) <= 0.7 * sums[0]
        elif patient.response == "SD":
            assert all(0.7 * sums[0] < x < 1.2 * sums[0] for x in sums)
        else:  # PD: the last visit is the progression, >= 20 % and >= 5 mm over the nadir
            nadir = min(sums[:-1])
            assert sums[-1] >= 1.2 * nadir and sums[-1] - nadir >= 5
    assert seen == set(RESPONSES) or len(seen) >= 3


def test_metadata_is_a_pure_function_of_seed(config, tmp_path):
    from synthpacs.archive import Archive

    one = [ds.to_json_dict() for ds in Archive(config).find("STUDY", {}, limit=20)]
    other_dir = config.replace(data_dir=str(tmp_path / "other"))
    assert [ds.to_json_dict() for ds in Archive(other_dir).find("STUDY", {}, limit=20)] == one
    reseeded = config.replace(data_dir=str(tmp_path / "third"), seed=8)
    assert [ds.to_json_dict() for ds in Archive(reseeded).find("STUDY", {}, limit=20)] != one


def test_synthetic_names_and_ids_look_synthetic(shared_archive):
    for ds in shared_archive.find("PATIENT", {}):
        assert str(ds.PatientID).startswith("SYN-")
        assert str(ds.ClinicalTrialSponsorName).endswith("(synthetic)")


def test_catalog_is_reused_when_the_universe_is_unchanged(config):
    from synthpacs.archive import Archive

    first = Archive(config)
    assert first.catalog_build_seconds > 0
    assert Archive(config).catalog_build_seconds == 0


def test_universe_scales_vectorised(shared_archive):
    u = shared_archive._universe
    pa = u.patient_arrays(np.arange(200_000))
    sa = u.study_arrays(pa)
    assert len(sa["visit"]) == pa["n_visits"].sum()
    # The scalar record is the vectorised row of one.
    index = 123_456 % u.n_patients
    one = u.patient_arrays(np.array([index]))
    ((_, _, _, plan),) = u.plans(one, u.study_arrays(one))
    assert u.study(index, 0).series[0].n_instances == int(plan.n_instances[0, 0])


def test_stored_objects_are_findable_and_retrievable(archive):
    path = get_testdata_file("CT_small.dcm")
    blob = open(path, "rb").read()
    result = archive.store(blob)
    ds = dcmread(path)
    studies = list(archive.find("STUDY", {"StudyInstanceUID": str(ds.StudyInstanceUID)}))
    assert len(studies) == 1 and studies[0].NumberOfStudyRelatedInstances == 1
    assert studies[0].ModalitiesInStudy == "CT"
    assert [str(x.SOPInstanceUID) for x in archive.find("IMAGE", {"SOPInstanceUID": str(ds.SOPInstanceUID)})] == [
        result.sop_instance_uid
    ]
    # Stored objects come first, then synthetic ones: paging stays stable.
    assert str(next(iter(archive.find("STUDY", {}, limit=1))).StudyInstanceUID) == str(ds.StudyInstanceUID)
    ref = archive.instance_ref(str(ds.SOPInstanceUID))
    assert archive.instance_bytes(ref) == blob
    # Storing again replaces, it does not duplicate.
    assert archive.store(blob).replaced
    assert len(list(archive.find("IMAGE", {"StudyInstanceUID": str(ds.StudyInstanceUID)}))) == 1


def test_stored_objects_survive_a_restart(archive, config):
    from synthpacs.archive import Archive

    archive.store(open(get_testdata_file("MR_small.dcm"), "rb").read())
    again = Archive(config)
    assert len(list(again.find("SERIES", {"Modality": "MR"}))) == 1


def test_a_stored_object_can_join_a_synthetic_study(archive):
    study = next(iter(archive.find("STUDY", {}, limit=1)))
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID = study.StudyInstanceUID
    ds.SeriesInstanceUID = "1.2.3.4.5.6.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.1"
    archive.store(ds)
    again = next(iter(archive.find("STUDY", {"StudyInstanceUID": study.StudyInstanceUID})))
    assert again.NumberOfStudyRelatedSeries == study.NumberOfStudyRelatedSeries + 1
    assert again.NumberOfStudyRelatedInstances == study.NumberOfStudyRelatedInstances + 1
    assert len(list(archive.find("SERIES", {"StudyInstanceUID": study.StudyInstanceUID}))) == study.NumberOfStudyRelatedSeries + 1


def _stored_like(archive, n: int, **values):
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.10.77.{n}", f"1.2.826.0.1.3680043.10.77.{n}.1"
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.10.77.{n}.1.1"
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    archive.store(ds)
    return ds


STORED_QUERIES = [
    ("STUDY", {"PatientName": "doe^*"}, True, {1, 2}),  # fuzzy: case-insensitive
    ("STUDY", {"PatientName": "doe^*"}, False, set()),
    ("STUDY", {"PatientName": "D?e^J*"}, False, {1, 2}),
    ("STUDY", {"PatientName": "Müller^Jürgen"}, False, {3}),
    ("STUDY", {"PatientName": "müller^jürgen"}, True, {3}),  # Unicode case folding, not SQLite's ASCII upper
    ("STUDY", {"PatientID": "EXT-2"}, False, {2}),
    ("STUDY", {"StudyDate": "20240101-20240131"}, False, {1, 3}),
    ("STUDY", {"StudyTime": "0900-1000"}, False, {1}),
    ("STUDY", {"StudyTime": "0930"}, False, {1}),
    ("STUDY", {"AccessionNumber": "ACC[1]"}, False, {3}),  # [ is a character, not a GLOB class
    ("STUDY", {"ModalitiesInStudy": "MR"}, False, {2}),
    ("STUDY", {"ModalitiesInStudy": "CT\\MR"}, False, {1, 2, 3}),
    ("STUDY", {"SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.4"}, False, {2}),
    ("STUDY", {"StudyInstanceUID": "1.2.826.0.1.3680043.10.77.1\\1.2.826.0.1.3680043.10.77.3"}, False, {1, 3}),
    ("SERIES", {"PatientID": "EXT-1", "Modality": "CT"}, False, {1}),
    ("SERIES", {"StudyDate": "20240205"}, False, {2}),
    ("IMAGE", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.4"}, False, {2}),
    ("IMAGE", {"PatientName": "*Jane*", "InstanceNumber": "1"}, False, {1}),
    ("IMAGE", {"PatientName": "*Jane*", "InstanceNumber": "01"}, False, {1}),  # numbers compare as numbers
]


@pytest.mark.parametrize("level, query, fuzzy, expected", STORED_QUERIES)
def test_stored_objects_are_matched_by_the_rules_of_every_key(archive, level, query, fuzzy, expected):
    _stored_like(
        archive,
        1,
        PatientName="Doe^Jane",
        PatientID="EXT-1",
        StudyDate="20240110",
        StudyTime="093000.123",
        AccessionNumber="A1",
        InstanceNumber=1,
    )
    mr = dcmread(get_testdata_file("MR_small.dcm"))
    _stored_like(
        archive,
        2,
        PatientName="Doe^John",
        PatientID="EXT-2",
        StudyDate="20240205",
        StudyTime="140000",
        AccessionNumber="A2",
        Modality="MR",
        SOPClassUID=mr.SOPClassUID,
    )
    _stored_like(
        archive,
        3,
        PatientName="Müller^Jürgen",
        PatientID="EXT-3",
        StudyDate="20240120",
        StudyTime="",
        AccessionNumber="ACC[1]",
        SpecificCharacterSet="ISO_IR 192",
    )
    found = {
        int(str(ds.StudyInstanceUID).rsplit(".", 1)[1])
        for ds in archive.find(level, query, fuzzy=fuzzy)
        if str(ds.StudyInstanceUID).startswith("1.2.826.0.1.3680043.10.77.")
    }
    assert found == expected


def test_stored_matches_page_before_the_synthetic_ones(archive):
    for n in range(1, 6):
        _stored_like(archive, n, PatientID=f"EXT-{n}")
    everything = [str(ds.StudyInstanceUID) for ds in archive.find("STUDY", {}, limit=12)]
    assert [uid.rsplit(".", 1)[1] for uid in everything[:5]] == ["1", "2", "3", "4", "5"]
    for offset, limit in [(0, 3), (3, 2), (4, 3), (5, 4), (7, 2)]:
        page = [str(ds.StudyInstanceUID) for ds in archive.find("STUDY", {}, limit=limit, offset=offset)]
        assert page == everything[offset : offset + limit]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda ds, syn: setattr(ds, "SOPInstanceUID", syn), "belongs to a synthetic instance"),
        (lambda ds, syn: setattr(ds, "StudyInstanceUID", "1.02.3"), "not a valid UID"),
        (lambda ds, syn: delattr(ds, "SeriesInstanceUID"), "has no SeriesInstanceUID"),
    ],
)
def test_store_refusals_write_nothing(archive, mutate, message):
    synthetic_sop = archive.instances(str(next(iter(archive.find("STUDY", {}, limit=1))).StudyInstanceUID))[0].sop_instance_uid
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    mutate(ds, synthetic_sop)
    with pytest.raises(StoreRefused, match=message):
        archive.store(ds)
    assert not archive.stored_root.exists() or not any(archive.stored_root.rglob("*.dcm"))


def test_not_dicom_is_refused(archive):
    with pytest.raises(StoreRefused, match="not a DICOM"):
        archive.store(b"hello, I am not DICOM")


@pytest.mark.parametrize(
    "args, message",
    [
        (("1.2.3",), "no such study 1.2.3"),
        (("1.2.3x",), "not a valid study UID"),
    ],
)
def test_unknown_uids_are_not_found(archive, args, message):
    with pytest.raises(NotFound, match=message):
        archive.instances(*args)


def test_unknown_series_and_instance(archive):
    study = str(next(iter(archive.find("STUDY", {}, limit=1))).StudyInstanceUID)
    with pytest.raises(NotFound, match="no such series"):
        archive.instances(study, "1.2.3")
    with pytest.raises(NotFound, match="no such instance 1.2.3"):
        archive.instance_ref("1.2.3")


def test_a_catalog_open_elsewhere_is_rebuilt_for_another_universe(config):
    from synthpacs.archive import Archive

    first = Archive(config)  # stays open, as a server's archive would
    stored = first.store(open(get_testdata_file("CT_small.dcm"), "rb").read())
    reseeded = Archive(config.replace(seed=8))
    assert reseeded.catalog_build_seconds > 0
    assert reseeded.figures()["studies"] > 0
    # Stored objects survive the rebuild.
    assert [str(ds.SOPInstanceUID) for ds in reseeded.find("IMAGE", {"SOPInstanceUID": stored.sop_instance_uid})] == [
        stored.sop_instance_uid
    ]


def test_another_today_rebuilds_a_catalog_that_is_open_elsewhere(config):
    from synthpacs.archive import Archive

    first = Archive(config)  # stays open, as a server's archive would
    stored = first.store(open(get_testdata_file("CT_small.dcm"), "rb").read())
    assert all(str(ds.StudyDate) <= "20261231" for ds in first.find("STUDY", {}))
    earlier = Archive(config.replace(today="20250601"))
    assert earlier.catalog_build_seconds > 0
    dates = [str(ds.StudyDate) for ds in earlier.find("STUDY", {}) if earlier.is_synthetic_uid(str(ds.StudyInstanceUID))]
    assert dates and max(dates) <= "20250601"
    assert earlier.figures()["scheduled_visits"] > 0
    # Stored objects survive the rebuild.
    assert [str(ds.SOPInstanceUID) for ds in earlier.find("IMAGE", {"SOPInstanceUID": stored.sop_instance_uid})] == [
        stored.sop_instance_uid
    ]


@pytest.mark.parametrize("level", ["PATIENT", "STUDY", "SERIES", "IMAGE"])
def test_answers_as_json_equal_the_json_of_their_datasets(archive, level):
    """QIDO encodes a match's plain attributes straight to DICOM JSON; it must be what the
    pydicom Dataset of the same match encodes to, element by element."""
    from synthpacs.archive.catalog import to_dataset
    from synthpacs.dicomweb.dicomjson import attributes_json, dataset_json

    _stored_like(
        archive,
        1,
        PatientName="Doe^Jane=ドウ^ジェーン",
        PatientID="EXT-1",
        SeriesNumber="",
        InstanceNumber="7",
        SpecificCharacterSet="ISO_IR 192",
    )
    study = next(iter(archive.find("STUDY", {"PatientID": "SYN-*"}, limit=1)))
    query = {} if level == "PATIENT" else {"StudyInstanceUID": f"{study.StudyInstanceUID}\\1.2.826.0.1.3680043.10.77.1"}
    matches = list(archive.find_attributes(level, query, limit=40))
    assert len(matches) >= 2
    for match in matches:
        assert attributes_json(match) == dataset_json(to_dataset(match))
