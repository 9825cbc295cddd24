"""PS3.4 C.2.2.2 matching: each rule on in-memory SQLite, then each rule at each
level of the catalog against an oracle computed from the universe records."""

import sqlite3

import pytest

from synthpacs.archive import matching
from synthpacs.archive.catalog import QueryLevel
from synthpacs.errors import InvalidQuery

ROWS = [
    ("DOE^JANE", "20240105", "101500", "CT"),
    ("DOE^JOHN", "20240301", "235959", "MR"),
    ("ROE^RICHARD", "20250101", "000000", "CT"),
    ("DOE[1]^X", "20231231", "120000", "US"),
]


@pytest.fixture
def db():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t(name TEXT, date TEXT, time TEXT, modality TEXT)")
    conn.executemany("INSERT INTO t VALUES (?,?,?,?)", ROWS)
    return conn


def names(db, keyword, vr, column, value, fuzzy=False):
    c = matching.sql_condition(keyword, vr, column, value, fuzzy=fuzzy)
    return sorted(r[0] for r in db.execute(f"SELECT name FROM t WHERE {c.sql}", c.params))


@pytest.mark.parametrize(
    "keyword, vr, column, value, expected",
    [
        # single value
        ("PatientName", "PN", "name", "DOE^JANE", ["DOE^JANE"]),
        ("Modality", "CS", "modality", "CT", ["DOE^JANE", "ROE^RICHARD"]),
        # universal
        ("PatientName", "PN", "name", "", ["DOE[1]^X", "DOE^JANE", "DOE^JOHN", "ROE^RICHARD"]),
        ("PatientName", "PN", "name", "*", ["DOE[1]^X", "DOE^JANE", "DOE^JOHN", "ROE^RICHARD"]),
        # wildcard: *, ?, and a literal [ that SQLite GLOB would otherwise treat as a class
        ("PatientName", "PN", "name", "DOE^J*", ["DOE^JANE", "DOE^JOHN"]),
        ("PatientName", "PN", "name", "DOE^J?NE", ["DOE^JANE"]),
        ("PatientName", "PN", "name", "DOE[1]*", ["DOE[1]^X"]),
        # range, closed and open at either end
        ("StudyDate", "DA", "date", "20240101-20241231", ["DOE^JANE", "DOE^JOHN"]),
        ("StudyDate", "DA", "date", "20240301-", ["DOE^JOHN", "ROE^RICHARD"]),
        ("StudyDate", "DA", "date", "-20231231", ["DOE[1]^X"]),
        ("StudyTime", "TM", "time", "1000-1300", ["DOE[1]^X", "DOE^JANE"]),
        ("StudyTime", "TM", "time", "2359-", ["DOE^JOHN"]),
        # multiple values in a non-UID key
        ("Modality", "CS", "modality", "MR\\US", ["DOE[1]^X", "DOE^JOHN"]),
    ],
)
def test_sql_rules(db, keyword, vr, column, value, expected):
    assert names(db, keyword, vr, column, value) == expected
    # The Python twin agrees with SQL on every row.
    index = {"name": 0, "date": 1, "time": 2, "modality": 3}[column]
    assert sorted(r[0] for r in ROWS if matching.match_value(keyword, vr, value, r[index])) == expected


def test_case_insensitive_person_names_only_when_fuzzy(db):
    assert names(db, "PatientName", "PN", "name", "doe^j*") == []
    assert names(db, "PatientName", "PN", "name", "doe^j*", fuzzy=True) == ["DOE^JANE", "DOE^JOHN"]


def test_list_of_uids():
    assert matching.match_value("SOPInstanceUID", "UI", "1.2.3\\1.2.4", "1.2.4")
    assert not matching.match_value("SOPInstanceUID", "UI", "1.2.3\\1.2.4", "1.2.5")


def test_sequence_matching():
    items = [{"CodeValue": "24627-2", "CodingSchemeDesignator": "LN"}]
    vrs = {"CodeValue": "SH", "CodingSchemeDesignator": "SH"}
    assert matching.match_sequence("ProcedureCodeSequence", [{"CodeValue": "24627-2"}], items, vrs)
    assert matching.match_sequence("ProcedureCodeSequence", [{"CodeValue": "2462*"}], items, vrs)
    assert not matching.match_sequence("ProcedureCodeSequence", [{"CodeValue": "X"}], items, vrs)
    assert matching.match_sequence("ProcedureCodeSequence", [], items, vrs)


@pytest.mark.parametrize(
    "keyword, vr, value, message",
    [
        ("StudyDate", "DA", "2025-13", "not a valid DA range"),
        ("StudyDate", "DA", "20250", "not a date"),
        ("StudyDate", "DA", "20250102-20250101", "ends before it starts"),
        ("StudyTime", "TM", "25:00", "not a time"),
        ("StudyInstanceUID", "UI", "1.02.3", "not a valid UID"),
        ("StudyInstanceUID", "UI", "1.2.3\\x", "not a valid UID"),
        ("InstanceNumber", "IS", "three", "not an integer"),
        ("StudyDate", "DA", "-", "no bounds"),
    ],
)
def test_malformed_values_are_named(keyword, vr, value, message):
    with pytest.raises(InvalidQuery, match=message) as info:
        matching.sql_condition(keyword, vr, "x", value)
    assert keyword in str(info.value)


# -- the catalog, level by level, against an oracle -----------------------------------


@pytest.fixture(scope="module")
def oracle(shared_archive):
    u = shared_archive._universe
    studies = [s for p in range(u.n_patients) for s in u.studies_of(p)]
    return studies


def uids(results, keyword):
    return sorted(str(ds[keyword].value) for ds in results)


def patient_ids(results):
    return sorted({str(ds.PatientID) for ds in results})


def case_list(oracle):
    s0 = oracle[0]
    s_other = oracle[-1]
    p0 = s0.patient
    family = p0.patient_name.split("^")[0]
    ct, seg, sr = s0.series
    return [
        # (level, query, expected-function over oracle studies, key to compare)
        (
            "PATIENT single value",
            QueryLevel.PATIENT,
            {"PatientID": p0.patient_id},
            lambda s: s.patient.patient_id == p0.patient_id,
            "patients",
        ),
        ("PATIENT universal", QueryLevel.PATIENT, {"PatientName": ""}, lambda s: True, "patients"),
        (
            "PATIENT wildcard *",
            QueryLevel.PATIENT,
            {"PatientName": family + "*"},
            lambda s: s.patient.patient_name.startswith(family),
            "patients",
        ),
        (
            "PATIENT wildcard ?",
            QueryLevel.PATIENT,
            {"PatientName": "?" + p0.patient_name[1:]},
            lambda s: s.patient.patient_name[1:] == p0.patient_name[1:],
            "patients",
        ),
        (
            "PATIENT range",
            QueryLevel.PATIENT,
            {"PatientBirthDate": "19500101-19591231"},
            lambda s: "19500101" <= s.patient.birth_date <= "19591231",
            "patients",
        ),
        (
            "STUDY single value",
            QueryLevel.STUDY,
            {"AccessionNumber": s0.accession_number},
            lambda s: s.accession_number == s0.accession_number,
            "studies",
        ),
        ("STUDY universal", QueryLevel.STUDY, {"StudyDate": "", "AccessionNumber": ""}, lambda s: True, "studies"),
        (
            "STUDY wildcard",
            QueryLevel.STUDY,
            {"PatientName": family + "*", "ClinicalTrialTimePointID": "W*"},
            lambda s: s.patient.patient_name.startswith(family) and s.time_point_id.startswith("W"),
            "studies",
        ),
        (
            "STUDY date range",
            QueryLevel.STUDY,
            {"StudyDate": "20240601-20241231"},
            lambda s: "20240601" <= s.study_date <= "20241231",
            "studies",
        ),
        ("STUDY open range", QueryLevel.STUDY, {"StudyDate": "20250601-"}, lambda s: s.study_date >= "20250601", "studies"),
        ("STUDY time range", QueryLevel.STUDY, {"StudyTime": "-0900"}, lambda s: s.study_time <= "090059", "studies"),
        (
            "STUDY UID list",
            QueryLevel.STUDY,
            {"StudyInstanceUID": f"{s0.study_instance_uid}\\{s_other.study_instance_uid}"},
            lambda s: s in (s0, s_other),
            "studies",
        ),
        (
            "STUDY sequence",
            QueryLevel.STUDY,
            {"ProcedureCodeSequence": [{"CodeValue": "24627-2"}], "PatientID": p0.patient_id},
            lambda s: s.patient.patient_id == p0.patient_id,
            "studies",
        ),
        (
            "STUDY sequence no match",
            QueryLevel.STUDY,
            {"ProcedureCodeSequence": [{"CodeValue": "99999-9"}]},
            lambda s: False,
            "studies",
        ),
        (
            "STUDY modalities",
            QueryLevel.STUDY,
            {"ModalitiesInStudy": "SEG", "PatientID": p0.patient_id},
            lambda s: s.patient.patient_id == p0.patient_id,
            "studies",
        ),
        (
            "SERIES single value",
            QueryLevel.SERIES,
            {"StudyInstanceUID": s0.study_instance_uid, "Modality": "SEG"},
            lambda s: s is s0,
            "seg",
        ),
        (
            "SERIES wildcard",
            QueryLevel.SERIES,
            {"StudyInstanceUID": s0.study_instance_uid, "SeriesDescription": "Chest*"},
            lambda s: s is s0,
            "ct",
        ),
        (
            "SERIES UID list",
            QueryLevel.SERIES,
            {"SeriesInstanceUID": f"{ct.series_instance_uid}\\{sr.series_instance_uid}"},
            None,
            [ct.series_instance_uid, sr.series_instance_uid],
        ),
        (
            "SERIES range",
            QueryLevel.SERIES,
            {"SeriesDate": f"{s0.study_date}-{s0.study_date}", "Modality": "SR"},
            lambda s: s.study_date == s0.study_date,
            "sr",
        ),
        ("IMAGE single value", QueryLevel.IMAGE, {"SeriesInstanceUID": ct.series_instance_uid, "InstanceNumber": "3"}, None, 1),
        (
            "IMAGE universal",
            QueryLevel.IMAGE,
            {"SeriesInstanceUID": ct.series_instance_uid, "SOPInstanceUID": ""},
            None,
            ct.n_instances,
        ),
        (
            "IMAGE UID list",
            QueryLevel.IMAGE,
            {
                "StudyInstanceUID": s0.study_instance_uid,
                "SOPInstanceUID": "\\".join(f"{u}" for u in (_sop(s0, 0, 1), _sop(s0, 0, 2), _sop(s0, 1, 1))),
            },
            None,
            3,
        ),
    ]


def _sop(study, series, number):
    from synthpacs.archive.uids import UIDFactory
    from synthpacs.keyed import universe_key

    return UIDFactory(universe_key(7)).sop_instance_uid(study.patient.index, study.visit, series, number)


def test_every_rule_at_every_level(shared_archive, oracle):
    for name, level, query, predicate, kind in case_list(oracle):
        results = list(shared_archive.find(level, query))
        if kind == "patients":
            assert patient_ids(results) == sorted({s.patient.patient_id for s in oracle if predicate(s)}), name
        elif kind == "studies":
            assert uids(results, "StudyInstanceUID") == sorted(s.study_instance_uid for s in oracle if predicate(s)), name
        elif kind in ("ct", "seg", "sr"):
            index = ("ct", "seg", "sr").index(kind)
            expected = sorted(s.series[index].series_instance_uid for s in oracle if predicate(s))
            assert uids(results, "SeriesInstanceUID") == expected, name
        elif isinstance(kind, list):
            assert uids(results, "SeriesInstanceUID") == sorted(kind), name
        else:
            assert len(results) == kind, name
        assert results or kind in ("studies",) or name.endswith("no match"), f"{name}: the case must match something"


def test_limit_and_offset_page_a_stable_order(shared_archive):
    everything = [str(ds.StudyInstanceUID) for ds in shared_archive.find("STUDY", {})]
    pages = []
    offset = 0
    while True:
        page = [str(ds.StudyInstanceUID) for ds in shared_archive.find("STUDY", {}, limit=7, offset=offset)]
        if not page:
            break
        pages.extend(page)
        offset += 7
    assert pages == everything
    assert list(shared_archive.find("STUDY", {}, limit=5, offset=len(everything) + 10)) == []


def test_malformed_queries_raise_before_results(shared_archive):
    with pytest.raises(InvalidQuery, match="unknown attribute 'NotAKeyword'"):
        shared_archive.find("STUDY", {"NotAKeyword": "x"})
    with pytest.raises(InvalidQuery, match="StudyDate"):
        shared_archive.find("STUDY", {"StudyDate": "yesterday"})
    with pytest.raises(InvalidQuery, match="unknown level 'FRAME'"):
        shared_archive.find("FRAME", {})
