"""The catalog's SQLite layout: tables, indexes, the joined columns read by
name, and the layout version that is part of the universe fingerprint.

Stored objects (``stored_*``) and ``meta`` survive a rebuild; the synthetic
tables are dropped and rebuilt whenever the universe fingerprint changes.

``study`` holds the performed studies (visits dated on or before the
universe's today); ``scheduled`` has the same columns for the visits after
it, which are procedure steps on the worklist and not yet studies. A
patient's ``n_studies``, ``n_series`` and ``n_instances`` count performed
studies only; a patient with none yet (enrolled, baseline still to come) is
found by no query but the worklist.
"""

from __future__ import annotations

#: Bump when the catalog's tables or the universe's rules change shape: it is part
#: of :attr:`Universe.fingerprint`, so an older catalog file is rebuilt.
LAYOUT_VERSION = 4

#: Patients built (and inserted) per vectorised chunk.
CHUNK = 20_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS stored_study(
    study_instance_uid TEXT PRIMARY KEY, patient_id TEXT, patient_name TEXT, patient_birth_date TEXT,
    patient_sex TEXT, study_date TEXT, study_time TEXT, accession_number TEXT, study_id TEXT,
    study_description TEXT, referring_physician_name TEXT);
CREATE TABLE IF NOT EXISTS stored_series(
    series_instance_uid TEXT PRIMARY KEY, study_instance_uid TEXT, modality TEXT, series_number TEXT,
    series_description TEXT, series_date TEXT, series_time TEXT, body_part_examined TEXT);
CREATE INDEX IF NOT EXISTS stored_series_study ON stored_series(study_instance_uid);
CREATE TABLE IF NOT EXISTS stored_instance(
    sop_instance_uid TEXT PRIMARY KEY, series_instance_uid TEXT, study_instance_uid TEXT, sop_class_uid TEXT,
    instance_number TEXT, rows INTEGER, columns INTEGER, number_of_frames TEXT, transfer_syntax_uid TEXT,
    path TEXT, size INTEGER, received REAL);
CREATE INDEX IF NOT EXISTS stored_instance_series ON stored_instance(series_instance_uid);
CREATE INDEX IF NOT EXISTS stored_instance_study ON stored_instance(study_instance_uid);
"""

SYNTHETIC_SCHEMA = """
DROP TABLE IF EXISTS cohort; DROP TABLE IF EXISTS plan_variant; DROP TABLE IF EXISTS plan_series;
DROP TABLE IF EXISTS patient; DROP TABLE IF EXISTS study; DROP TABLE IF EXISTS scheduled;
CREATE TABLE cohort(idx INTEGER PRIMARY KEY, name TEXT, target TEXT);
CREATE TABLE plan_variant(variant INTEGER PRIMARY KEY, cohort INTEGER, exam INTEGER, n_series INTEGER, n_instances INTEGER,
    modalities TEXT, sop_classes TEXT);
CREATE TABLE plan_series(variant INTEGER, idx INTEGER, number INTEGER, modality TEXT, sop_class_uid TEXT,
    description TEXT, n_instances INTEGER, frames INTEGER, rows INTEGER, columns INTEGER, PRIMARY KEY(variant, idx));
CREATE TABLE patient(pk INTEGER PRIMARY KEY, patient_id TEXT, patient_name TEXT, sex TEXT, birth_date TEXT,
    cohort INTEGER, site_id TEXT, site_name TEXT, subject_id TEXT, n_studies INTEGER, n_series INTEGER,
    n_instances INTEGER);
CREATE TABLE study(pk INTEGER PRIMARY KEY, patient_pk INTEGER, visit INTEGER, variant INTEGER, study_date TEXT,
    study_time TEXT, accession TEXT, time_point_id TEXT, time_point_description TEXT, patient_age TEXT);
CREATE TABLE scheduled(pk INTEGER PRIMARY KEY, patient_pk INTEGER, visit INTEGER, variant INTEGER, study_date TEXT,
    study_time TEXT, accession TEXT, time_point_id TEXT, time_point_description TEXT, patient_age TEXT);
"""

SYNTHETIC_INDEXES = """
CREATE INDEX patient_id_index ON patient(patient_id);
CREATE INDEX patient_name_index ON patient(patient_name);
CREATE INDEX study_patient_index ON study(patient_pk);
CREATE INDEX study_date_index ON study(study_date);
CREATE INDEX study_accession_index ON study(accession);
CREATE INDEX scheduled_date_index ON scheduled(study_date);
CREATE INDEX scheduled_patient_index ON scheduled(patient_pk);
"""

# The columns of a joined synthetic row, by level (read by name, never by position).
PATIENT_COLUMNS = (
    "p.pk AS patient_pk, p.patient_id, p.patient_name, p.sex, p.birth_date, p.cohort, p.site_id, "
    "p.site_name, p.subject_id, p.n_studies, p.n_series AS patient_series, "
    "p.n_instances AS patient_instances"
)
STUDY_COLUMNS = (
    PATIENT_COLUMNS + ", s.pk AS study_pk, s.visit, s.variant, s.study_date, s.study_time, s.accession, "
    "s.time_point_id, s.time_point_description, s.patient_age"
)
SERIES_COLUMNS = (
    STUDY_COLUMNS + ", ps.idx AS series_index, ps.number AS series_number, ps.modality, "
    "ps.sop_class_uid, ps.description AS series_description, ps.n_instances AS series_instances, "
    "ps.frames, ps.rows, ps.columns"
)
