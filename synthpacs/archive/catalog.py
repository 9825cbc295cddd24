"""The catalog: one SQLite file that indexes the synthetic universe and the
objects received by STOW-RS and C-STORE, and answers C-FIND / QIDO queries.

Synthetic rows are compact: patients and studies are tables built from the
seed with vectorised code; series come from a join of studies with their
*plan variant* (the distinct series layouts the targets' study plans give:
which series, instances, frames, rows, columns, descriptions), so nothing in
the catalog knows a modality; instances are enumerated from a series on demand. UIDs
are not stored for synthetic objects: they are minted from each row's path
and decoded back (see :mod:`uids`). That keeps a million patients in a few
hundred MB.

Stored objects live in ``stored_*`` tables of the same file. They are few, so
they are matched in Python with the same rules (:func:`matching.match_value`)
and listed before the synthetic matches, which keeps ``offset`` cheap and the
order stable.

Threads: each thread reads through its own connection; writes go through one
connection under a lock (datasette's discipline, without its async API).
"""

from __future__ import annotations

import enum
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement

from .. import identity
from ..errors import InvalidQuery
from . import matching, records
from .cohorts import Cohort
from .matching import Condition
from .uids import UIDKind
from .universe import Universe

log = logging.getLogger(__name__)

CHUNK = 100_000
REFERRING_PHYSICIAN = identity.REFERRING_PHYSICIAN_NAME


class QueryLevel(str, enum.Enum):
    """Query/Retrieve Level (0008,0052), PS3.4 C.6."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @classmethod
    def parse(cls, value: str) -> QueryLevel:
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise InvalidQuery(f"QueryRetrieveLevel: unknown level {value!r} (use PATIENT, STUDY, SERIES or IMAGE)") from None


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
DROP TABLE IF EXISTS patient; DROP TABLE IF EXISTS study;
CREATE TABLE cohort(idx INTEGER PRIMARY KEY, name TEXT, target TEXT);
CREATE TABLE plan_variant(variant INTEGER PRIMARY KEY, cohort INTEGER, n_series INTEGER, n_instances INTEGER,
    modalities TEXT, sop_classes TEXT);
CREATE TABLE plan_series(variant INTEGER, idx INTEGER, number INTEGER, modality TEXT, sop_class_uid TEXT,
    description TEXT, n_instances INTEGER, frames INTEGER, rows INTEGER, columns INTEGER, PRIMARY KEY(variant, idx));
CREATE TABLE patient(pk INTEGER PRIMARY KEY, patient_id TEXT, patient_name TEXT, sex TEXT, birth_date TEXT,
    cohort INTEGER, site_id TEXT, site_name TEXT, subject_id TEXT, n_studies INTEGER, n_series INTEGER,
    n_instances INTEGER);
CREATE TABLE study(pk INTEGER PRIMARY KEY, patient_pk INTEGER, visit INTEGER, variant INTEGER, study_date TEXT,
    study_time TEXT, accession TEXT, time_point_id TEXT, time_point_description TEXT, patient_age TEXT);
"""

SYNTHETIC_INDEXES = """
CREATE INDEX patient_id_index ON patient(patient_id);
CREATE INDEX patient_name_index ON patient(patient_name);
CREATE INDEX study_patient_index ON study(patient_pk);
CREATE INDEX study_date_index ON study(study_date);
CREATE INDEX study_accession_index ON study(accession);
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


@dataclass(frozen=True)
class Variant:
    """One distinct series layout of a cohort's studies (what the study plan gave)."""

    index: int
    cohort: Cohort
    n_series: int
    n_instances: int
    modalities: tuple[str, ...]
    sop_classes: tuple[str, ...]


@dataclass(frozen=True)
class Field:
    """A matchable attribute: its keyword, VR and SQL expression over the synthetic tables.

    ``expr`` None means the value is constant per plan variant (matched by
    choosing variants in Python) or computed (matched on output only, in Python).
    """

    keyword: str
    vr: str
    expr: str | None
    per_variant: Callable[[Variant], object] | None = None


def _code_item(value: str, scheme: str, meaning: str) -> dict:
    return {"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning}


PATIENT_FIELDS = (
    Field("PatientName", "PN", "p.patient_name"),
    Field("PatientID", "LO", "p.patient_id"),
    Field("PatientBirthDate", "DA", "p.birth_date"),
    Field("PatientSex", "CS", "p.sex"),
    Field("ClinicalTrialSponsorName", "LO", None, lambda v: v.cohort.sponsor),
    Field("ClinicalTrialProtocolID", "LO", None, lambda v: v.cohort.protocol_id),
    Field("ClinicalTrialProtocolName", "LO", None, lambda v: v.cohort.protocol_name),
    Field("ClinicalTrialSiteID", "LO", "p.site_id"),
    Field("ClinicalTrialSiteName", "LO", "p.site_name"),
    Field("ClinicalTrialSubjectID", "LO", "p.subject_id"),
    Field("NumberOfPatientRelatedStudies", "IS", None),
    Field("NumberOfPatientRelatedSeries", "IS", None),
    Field("NumberOfPatientRelatedInstances", "IS", None),
)
STUDY_FIELDS = (
    Field("StudyInstanceUID", "UI", None),
    Field("StudyDate", "DA", "s.study_date"),
    Field("StudyTime", "TM", "s.study_time"),
    Field("AccessionNumber", "SH", "s.accession"),
    Field("StudyID", "SH", "printf('V%02d', s.visit)"),
    Field("StudyDescription", "LO", None, lambda v: v.cohort.study_description),
    Field("ReferringPhysicianName", "PN", f"'{REFERRING_PHYSICIAN}'"),
    Field("ModalitiesInStudy", "CS", None, lambda v: "\\".join(v.modalities)),
    Field("SOPClassesInStudy", "UI", None, lambda v: "\\".join(v.sop_classes)),
    Field("ClinicalTrialTimePointID", "LO", "s.time_point_id"),
    Field("ClinicalTrialTimePointDescription", "ST", "s.time_point_description"),
    Field("PatientAge", "AS", "s.patient_age"),
    Field("ProcedureCodeSequence", "SQ", None, lambda v: [_code_item(*v.cohort.procedure_code)]),
    Field("NumberOfStudyRelatedSeries", "IS", None),
    Field("NumberOfStudyRelatedInstances", "IS", None),
)
SERIES_FIELDS = (
    Field("SeriesInstanceUID", "UI", None),
    Field("Modality", "CS", "ps.modality"),
    Field("SeriesNumber", "IS", "ps.number"),
    Field("SeriesDescription", "LO", "ps.description"),
    Field("SeriesDate", "DA", "s.study_date"),
    Field("SeriesTime", "TM", "s.study_time"),
    Field("BodyPartExamined", "CS", None, lambda v: v.cohort.body_part),
    Field("ClinicalTrialCoordinatingCenterName", "LO", None, lambda v: v.cohort.coordinating_center),
    Field("NumberOfSeriesRelatedInstances", "IS", None),
)
IMAGE_FIELDS = (
    Field("SOPInstanceUID", "UI", None),
    Field("SOPClassUID", "UI", None),
    Field("InstanceNumber", "IS", None),
    Field("Rows", "US", None),
    Field("Columns", "US", None),
    Field("NumberOfFrames", "IS", None),
)

LEVEL_FIELDS = {
    QueryLevel.PATIENT: PATIENT_FIELDS,
    QueryLevel.STUDY: PATIENT_FIELDS + STUDY_FIELDS,
    QueryLevel.SERIES: PATIENT_FIELDS + STUDY_FIELDS + SERIES_FIELDS,
    QueryLevel.IMAGE: PATIENT_FIELDS + STUDY_FIELDS + SERIES_FIELDS + IMAGE_FIELDS,
}
# What a response at each level carries (its own attributes plus the unique
# keys above it); a study response also carries the patient's (Study Root).
RETURN_KEYWORDS = {
    QueryLevel.PATIENT: [f.keyword for f in PATIENT_FIELDS],
    QueryLevel.STUDY: [f.keyword for f in PATIENT_FIELDS if not f.keyword.startswith("NumberOf")]
    + [f.keyword for f in STUDY_FIELDS],
    QueryLevel.SERIES: ["StudyInstanceUID"] + [f.keyword for f in SERIES_FIELDS],
    QueryLevel.IMAGE: ["StudyInstanceUID", "SeriesInstanceUID"] + [f.keyword for f in IMAGE_FIELDS],
}
SEQUENCE_ITEM_VRS = {"CodeValue": "SH", "CodingSchemeDesignator": "SH", "CodeMeaning": "LO"}

Query = dict  # keyword -> str value, or list of item dicts for a sequence


@functools.cache
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    return tag, dictionary_VR(tag)


def put(ds: Dataset, keyword: str, value) -> None:
    """Set an attribute without pydicom's per-value validation: the catalog's
    values are already valid, and validation dominates the cost of a result."""
    tag, vr = _tag_vr(keyword)
    ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)


def element_text(ds: Dataset, keyword: str) -> str | None:
    """An attribute's value as DICOM text (multiple values joined by a backslash), None if absent."""
    if keyword not in ds:
        return None
    element = ds[keyword]
    if element.value is None:
        return ""
    if element.VM > 1:
        return "\\".join(str(v) for v in element.value)
    return str(element.value)


def vr_of(keyword: str) -> str:
    try:
        return dictionary_VR(tag_for_keyword(keyword))
    except (KeyError, TypeError):
        raise InvalidQuery(f"unknown attribute {keyword!r}") from None


class Catalog:
    """SQLite index of the universe plus stored objects."""

    def __init__(self, path: str | Path, universe: Universe):
        self.path = Path(path)
        self.universe = universe
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._stored_version = 0
        self._extras_cache: tuple[int, dict] | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.build_seconds = 0.0
        self._ensure_built()
        self.variants = self._load_variants()

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- build ------------------------------------------------------------------------

    def _ensure_built(self) -> None:
        with self._write_lock:
            db = self.db
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row and row[0] == self.universe.fingerprint:
                return
            started = time.perf_counter()
            self._build(db)
            self.build_seconds = time.perf_counter() - started
            log.info("catalog built: %d patients in %.1f s (%s)", self.universe.n_patients, self.build_seconds, self.path)

    def _build(self, db: sqlite3.Connection) -> None:
        u = self.universe
        db.execute("PRAGMA journal_mode=OFF")  # a failed build is simply redone: the fingerprint is written last
        db.execute("DELETE FROM meta WHERE key = 'fingerprint'")
        db.commit()
        db.executescript(SYNTHETIC_SCHEMA)
        db.executemany("INSERT INTO cohort VALUES (?,?,?)", [(c.index, c.name, c.target) for c in u.cohorts])
        variants: dict[tuple, int] = {}
        for start in range(0, u.n_patients, CHUNK):
            p = np.arange(start, min(start + CHUNK, u.n_patients))
            pa = u.patient_arrays(p)
            sa = u.study_arrays(pa)
            variant = self._plan_variants(db, pa, sa, variants)
            study_rows = self._study_rows(pa, sa, variant)
            db.executemany("INSERT INTO study VALUES (?,?,?,?,?,?,?,?,?,?)", study_rows)
            db.executemany("INSERT INTO patient VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", self._patient_rows(db, pa))
        db.executescript(SYNTHETIC_INDEXES)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('fingerprint', ?)", (u.fingerprint,))
        db.commit()
        db.execute("PRAGMA journal_mode=WAL")

    def _plan_variants(self, db: sqlite3.Connection, pa: dict, sa: dict, variants: dict[tuple, int]) -> np.ndarray:
        """The plan variant of every study row; new variants are inserted (deduplicated across chunks)."""
        u = self.universe
        out = np.zeros(len(sa["visit"]), dtype=np.int64)
        for cohort, rows, plan in u.plans(pa, sa):
            slots = u.target_of(cohort).slots
            # Distinct layouts within the chunk first (vectorised), then a dictionary across chunks.
            descriptions, codes = np.unique(plan.descriptions.astype(str), return_inverse=True)
            codes = codes.reshape(plan.descriptions.shape)
            layout = np.concatenate([plan.n_instances, plan.frames, plan.rows, plan.columns, codes], axis=1)
            distinct, inverse = np.unique(layout, axis=0, return_inverse=True)
            local = np.empty(len(distinct), dtype=np.int64)
            n = len(slots)
            for j, row in enumerate(distinct):
                counts, frames, n_rows, n_columns, text = (row[i * n : (i + 1) * n] for i in range(5))
                key = (cohort.index, tuple(int(x) for x in row[: 4 * n]), tuple(str(descriptions[t]) for t in text))
                if key not in variants:
                    index = variants[key] = len(variants)
                    present = [i for i in range(n) if counts[i] > 0]
                    db.execute(
                        "INSERT INTO plan_variant VALUES (?,?,?,?,?,?)",
                        (
                            index,
                            cohort.index,
                            len(present),
                            int(sum(counts[i] for i in present)),
                            "\\".join(sorted({slots[i].modality for i in present})),
                            "\\".join(sorted({slots[i].sop_class_uid for i in present})),
                        ),
                    )
                    db.executemany(
                        "INSERT INTO plan_series VALUES (?,?,?,?,?,?,?,?,?,?)",
                        [
                            (
                                index,
                                i,
                                slots[i].number,
                                slots[i].modality,
                                slots[i].sop_class_uid,
                                str(descriptions[text[i]]),
                                int(counts[i]),
                                int(frames[i]),
                                int(n_rows[i]),
                                int(n_columns[i]),
                            )
                            for i in present
                        ],
                    )
                local[j] = variants[key]
            out[rows] = local[inverse.reshape(-1)]
        return out

    def _patient_rows(self, db: sqlite3.Connection, pa: dict) -> Iterator[tuple]:
        from .universe import FAMILY_NAMES, GIVEN_NAMES_F, GIVEN_NAMES_M

        cohorts = self.universe.cohorts
        birth = records.date_strings(pa["birth_day"])
        first, last = int(pa["index"][0]), int(pa["index"][-1])
        totals = {
            r["patient_pk"]: (r["n_series"], r["n_instances"])
            for r in db.execute(
                "SELECT s.patient_pk, sum(v.n_series) AS n_series, sum(v.n_instances) AS n_instances FROM study s "
                "JOIN plan_variant v ON v.variant = s.variant WHERE s.patient_pk BETWEEN ? AND ? GROUP BY s.patient_pk",
                (first, last),
            )
        }
        for i in range(len(pa["index"])):
            c = cohorts[int(pa["cohort"][i])]
            site = c.sites[int(pa["site"][i])]
            given = (GIVEN_NAMES_F if pa["female"][i] else GIVEN_NAMES_M)[int(pa["given"][i])]
            index = int(pa["index"][i])
            n_series, n_instances = totals[index]
            yield (
                index,
                records.patient_id(index),
                f"{FAMILY_NAMES[int(pa['family'][i])]}^{given}",
                "F" if pa["female"][i] else "M",
                birth[i],
                c.index,
                site.id,
                site.name,
                records.subject_id(c.protocol_id, site.id, index),
                int(pa["n_visits"][i]),
                n_series,
                n_instances,
            )

    def _study_rows(self, pa: dict, sa: dict, variant: np.ndarray) -> list[tuple]:
        cohorts = self.universe.cohorts
        dates = records.date_strings(sa["day"])
        rows, visits, minutes, seconds, ages = sa["patient_row"], sa["visit"], sa["minute"], sa["second"], sa["age"]
        out = []
        for i in range(len(visits)):
            r = int(rows[i])
            index, visit = int(pa["index"][r]), int(visits[i])
            c = cohorts[int(pa["cohort"][r])]
            time_point_id, time_point_description = records.time_point(visit, c.interval_days)
            m = int(minutes[i])
            out.append(
                (
                    records.study_key(index, visit),
                    index,
                    visit,
                    int(variant[i]),
                    dates[i],
                    f"{m // 60:02d}{m % 60:02d}{int(seconds[i]):02d}",
                    records.accession_number(index, visit),
                    time_point_id,
                    time_point_description,
                    records.age_string(int(ages[i])),
                )
            )
        return out

    def _load_variants(self) -> dict[int, Variant]:
        cohorts = self.universe.cohorts
        return {
            r["variant"]: Variant(
                r["variant"],
                cohorts[r["cohort"]],
                r["n_series"],
                r["n_instances"],
                tuple(r["modalities"].split("\\")),
                tuple(r["sop_classes"].split("\\")),
            )
            for r in self.db.execute("SELECT * FROM plan_variant")
        }

    # -- figures ----------------------------------------------------------------------

    def figures(self) -> dict[str, int]:
        """The universe in numbers (synthetic and stored)."""
        db = self.db
        row = db.execute(
            "SELECT count(*), coalesce(sum(n_studies), 0), coalesce(sum(n_series), 0), coalesce(sum(n_instances), 0) FROM patient"
        ).fetchone()
        stored = db.execute(
            "SELECT (SELECT count(*) FROM stored_study), (SELECT count(*) FROM stored_series), "
            "(SELECT count(*) FROM stored_instance)"
        ).fetchone()
        return {
            "patients": row[0],
            "studies": row[1],
            "series": row[2],
            "instances": row[3],
            "stored_studies": stored[0],
            "stored_series": stored[1],
            "stored_instances": stored[2],
        }

    # -- queries ----------------------------------------------------------------------

    def find(
        self, level: QueryLevel | str, query: Query, *, fuzzy: bool = False, limit: int | None = None, offset: int = 0
    ) -> Iterator[Dataset]:
        """Match ``query`` at ``level`` (PS3.4 C.2.2.2) and yield one Dataset per match.

        Stored objects come first (in the order received), then synthetic
        ones in universe order; ``limit``/``offset`` page over that order.

        Raises
        ------
        InvalidQuery
            An unknown attribute or a malformed value; raised before the
            first result, so a front end can answer with a failure status.
        """
        level = level if isinstance(level, QueryLevel) else QueryLevel.parse(level)
        if offset < 0 or (limit is not None and limit < 0):
            raise InvalidQuery("limit and offset must not be negative")
        keys = self._checked_keys(level, query)
        stored = list(self._stored_matches(level, keys, fuzzy))
        synthetic = self._synthetic_matches(level, keys, fuzzy)  # validates eagerly (a generator's first step)
        return self._page(stored, synthetic, limit, offset)

    @staticmethod
    def _page(stored: list, synthetic, limit: int | None, offset: int) -> Iterator[Dataset]:
        remaining = limit
        for ds in stored[offset:]:
            if remaining is not None and remaining <= 0:
                return
            yield ds
            if remaining is not None:
                remaining -= 1
        skip = max(0, offset - len(stored))
        yield from synthetic(skip, remaining)

    def _checked_keys(self, level: QueryLevel, query: Query) -> dict:
        """Validate every key and value; keep those this level can match."""
        fields = {f.keyword: f for f in LEVEL_FIELDS[level]}
        keys = {}
        for keyword, value in query.items():
            vr = vr_of(keyword)
            if keyword not in fields:
                continue  # an attribute we do not index: returned empty, never matched
            if vr == "SQ":
                if not isinstance(value, list):
                    raise InvalidQuery(f"{keyword}: a sequence key needs a list of items")
                keys[keyword] = value
                continue
            if isinstance(value, (list, tuple)):
                value = "\\".join(str(v) for v in value)
            value = "" if value is None else str(value)
            # Validate now (matching raises InvalidQuery for bad dates, times, UIDs).
            matching.match_value(keyword, vr, value, None)
            keys[keyword] = value
        return keys

    # Synthetic side ------------------------------------------------------------------

    def _variant_condition(self, keys: dict, fields: dict[str, Field], fuzzy: bool, level: QueryLevel) -> Condition:
        """Keys whose value is constant per plan variant, matched by choosing variants (or cohorts)."""
        if not any(f.per_variant is not None for k, f in fields.items() if k in keys):
            return matching.TRUE
        chosen = []
        for v in self.variants.values():
            ok = True
            for keyword, value in keys.items():
                f = fields.get(keyword)
                if f is None or f.per_variant is None:
                    continue
                constant = f.per_variant(v)
                if f.vr == "SQ":
                    ok = matching.match_sequence(keyword, value, constant, SEQUENCE_ITEM_VRS, fuzzy=fuzzy)
                else:
                    ok = matching.match_value(keyword, f.vr, value, constant, fuzzy=fuzzy)
                if not ok:
                    break
            if ok:
                chosen.append(v)
        if len(chosen) == len(self.variants):
            return matching.TRUE
        if not chosen:
            return matching.FALSE
        if level is QueryLevel.PATIENT:  # patient-level constants are per cohort
            return matching.sql_list_of_uids("p.cohort", sorted({v.cohort.index for v in chosen}))
        return matching.sql_list_of_uids("s.variant", [v.index for v in chosen])

    def _uid_condition(self, keys: dict, level: QueryLevel) -> tuple[Condition, list | None]:
        """Conditions for Study/Series UID keys; also the instance filter for IMAGE level."""
        conditions, params = [], []
        decode = self.universe.uids.decode

        def paths(keyword: str, kind: UIDKind) -> list | None:
            value = keys.get(keyword, "")
            if not value:
                return None
            found = []
            for uid in value.split("\\"):
                path = decode(uid.strip())
                if path is not None and path.kind == kind:
                    found.append(path)
            return found

        studies = paths("StudyInstanceUID", UIDKind.STUDY)
        if studies is not None:
            conditions.append(matching.sql_list_of_uids("s.pk", [records.study_key(p.patient, p.study) for p in studies]))
        series = paths("SeriesInstanceUID", UIDKind.SERIES) if level in (QueryLevel.SERIES, QueryLevel.IMAGE) else None
        if series is not None:
            if not series:
                conditions.append(matching.FALSE)
            else:
                ors = " OR ".join("(s.pk = ? AND ps.idx = ?)" for _ in series)
                conditions.append(
                    Condition(f"({ors})", tuple(x for p in series for x in (records.study_key(p.patient, p.study), p.series)))
                )
        instances = paths("SOPInstanceUID", UIDKind.INSTANCE) if level == QueryLevel.IMAGE else None
        if instances is not None:
            if not instances:
                conditions.append(matching.FALSE)
            else:
                ors = " OR ".join("(s.pk = ? AND ps.idx = ?)" for _ in instances)
                conditions.append(
                    Condition(f"({ors})", tuple(x for p in instances for x in (records.study_key(p.patient, p.study), p.series)))
                )
        sql = " AND ".join(f"({c.sql})" for c in conditions) or "1"
        for c in conditions:
            params.extend(c.params)
        return Condition(sql, tuple(params)), instances

    def _synthetic_matches(self, level: QueryLevel, keys: dict, fuzzy: bool):
        fields = {f.keyword: f for f in LEVEL_FIELDS[level]}
        conditions = [self._variant_condition(keys, fields, fuzzy, level)]
        for keyword, value in keys.items():
            f = fields[keyword]
            if f.expr is not None and f.vr != "SQ":
                conditions.append(matching.sql_condition(keyword, f.vr, f.expr, value, fuzzy=fuzzy))
        if level is not QueryLevel.PATIENT:
            uid_condition, instance_paths = self._uid_condition(keys, level)
            conditions.append(uid_condition)
        else:
            instance_paths = None
        where = " AND ".join(f"({c.sql})" for c in conditions if c.sql != "1") or "1"
        params = tuple(p for c in conditions for p in c.params)
        # Keys matched on output only (computed values), checked in Python.
        post = {
            k: v
            for k, v in keys.items()
            if fields[k].expr is None
            and fields[k].per_variant is None
            and k not in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
        }

        if level is QueryLevel.PATIENT:
            sql = f"SELECT {PATIENT_COLUMNS} FROM patient p WHERE {where} ORDER BY p.pk"
            build = self._patient_dataset
        elif level is QueryLevel.STUDY:
            # A date-range query pages in date order, which the date index yields without sorting every
            # match (a week of a million patients' studies is ~50k rows); others in universe order.
            order = "s.study_date, s.pk" if keys.get("StudyDate") else "s.pk"
            sql = f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk WHERE {where} ORDER BY {order}"
            build = self._study_dataset
        else:
            sql = (
                f"SELECT {SERIES_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk "
                f"JOIN plan_series ps ON ps.variant = s.variant WHERE {where} ORDER BY s.pk, ps.idx"
            )
            build = self._series_dataset

        def run(skip: int, limit: int | None) -> Iterator[Dataset]:
            if limit is not None and limit <= 0:
                return
            if level is QueryLevel.IMAGE:
                yield from self._image_matches(sql, params, keys, post, instance_paths, fuzzy, skip, limit)
                return
            paged = sql
            if not post:  # SQL can page by itself
                paged += f" LIMIT {-1 if limit is None else int(limit)} OFFSET {int(skip)}"
            extras = self._stored_extras()
            emitted = skipped = 0
            for row in self.db.execute(paged, params):
                ds = build(row, extras)
                if post and not self._post_match(ds, post, fuzzy):
                    continue
                if post and skipped < skip:
                    skipped += 1
                    continue
                yield ds
                emitted += 1
                if limit is not None and emitted >= limit:
                    return

        return run

    def _post_match(self, ds: Dataset, post: dict, fuzzy: bool) -> bool:
        for keyword, value in post.items():
            if isinstance(value, list):
                continue
            if not matching.match_value(keyword, vr_of(keyword), value, element_text(ds, keyword), fuzzy=fuzzy):
                return False
        return True

    # Row -> Dataset -------------------------------------------------------------------

    def _patient_dataset(self, row: sqlite3.Row, extras: dict | None = None) -> Dataset:
        c = self.universe.cohorts[row["cohort"]]
        ds = Dataset()
        put(ds, "PatientName", row["patient_name"])
        put(ds, "PatientID", row["patient_id"])
        put(ds, "PatientBirthDate", row["birth_date"])
        put(ds, "PatientSex", row["sex"])
        put(ds, "ClinicalTrialSponsorName", c.sponsor)
        put(ds, "ClinicalTrialProtocolID", c.protocol_id)
        put(ds, "ClinicalTrialProtocolName", c.protocol_name)
        put(ds, "ClinicalTrialSiteID", row["site_id"])
        put(ds, "ClinicalTrialSiteName", row["site_name"])
        put(ds, "ClinicalTrialSubjectID", row["subject_id"])
        put(ds, "NumberOfPatientRelatedStudies", row["n_studies"])
        put(ds, "NumberOfPatientRelatedSeries", row["patient_series"])
        put(ds, "NumberOfPatientRelatedInstances", row["patient_instances"])
        return ds

    def _study_dataset(self, row: sqlite3.Row, extras: dict) -> Dataset:
        variant = self.variants[row["variant"]]
        c = variant.cohort
        ds = self._patient_dataset(row)
        for keyword in ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"):
            del ds[keyword]
        uid = self.universe.uids.study_instance_uid(row["patient_pk"], row["visit"])
        put(ds, "StudyInstanceUID", uid)
        put(ds, "StudyDate", row["study_date"])
        put(ds, "StudyTime", row["study_time"])
        put(ds, "AccessionNumber", row["accession"])
        put(ds, "StudyID", records.study_id(row["visit"]))
        put(ds, "StudyDescription", c.study_description)
        put(ds, "ReferringPhysicianName", REFERRING_PHYSICIAN)
        n_series, n_instances = variant.n_series, variant.n_instances
        modalities, sop_classes = set(variant.modalities), set(variant.sop_classes)
        if uid in extras:
            more_series, more_instances, more_modalities, more_classes = extras[uid]
            n_series += more_series
            n_instances += more_instances
            modalities |= more_modalities
            sop_classes |= more_classes
        put(ds, "ModalitiesInStudy", sorted(modalities))
        put(ds, "SOPClassesInStudy", sorted(sop_classes))
        put(ds, "ClinicalTrialTimePointID", row["time_point_id"])
        put(ds, "ClinicalTrialTimePointDescription", row["time_point_description"])
        put(ds, "PatientAge", row["patient_age"])
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = c.procedure_code
        put(ds, "ProcedureCodeSequence", [code])
        put(ds, "NumberOfStudyRelatedSeries", n_series)
        put(ds, "NumberOfStudyRelatedInstances", n_instances)
        return ds

    def _series_dataset(self, row: sqlite3.Row, extras: dict) -> Dataset:
        c = self.variants[row["variant"]].cohort
        ds = self._study_dataset(row, extras)
        put(ds, "SeriesInstanceUID", self.universe.uids.series_instance_uid(row["patient_pk"], row["visit"], row["series_index"]))
        put(ds, "Modality", row["modality"])
        put(ds, "SeriesNumber", row["series_number"])
        put(ds, "SeriesDescription", row["series_description"])
        put(ds, "SeriesDate", row["study_date"])
        put(ds, "SeriesTime", row["study_time"])
        put(ds, "BodyPartExamined", c.body_part)
        put(ds, "ClinicalTrialCoordinatingCenterName", c.coordinating_center)
        put(ds, "NumberOfSeriesRelatedInstances", row["series_instances"])
        return ds

    def _image_matches(self, sql, params, keys, post, instance_paths, fuzzy, skip, limit) -> Iterator[Dataset]:
        wanted = None
        if instance_paths is not None:
            wanted = {(records.study_key(p.patient, p.study), p.series, p.instance) for p in instance_paths}
        extras = self._stored_extras()
        emitted = skipped = 0
        for row in self.db.execute(sql, params):
            series = self._series_dataset(row, extras)
            study_pk, series_index = row["study_pk"], row["series_index"]
            for number in range(1, row["series_instances"] + 1):
                if wanted is not None and (study_pk, series_index, number) not in wanted:
                    continue
                ds = Dataset()
                put(ds, "StudyInstanceUID", series.StudyInstanceUID)
                put(ds, "SeriesInstanceUID", series.SeriesInstanceUID)
                put(
                    ds,
                    "SOPInstanceUID",
                    self.universe.uids.sop_instance_uid(row["patient_pk"], row["visit"], series_index, number),
                )
                put(ds, "SOPClassUID", row["sop_class_uid"])
                put(ds, "InstanceNumber", number)
                if row["rows"]:
                    put(ds, "Rows", row["rows"])
                    put(ds, "Columns", row["columns"])
                if row["frames"]:
                    put(ds, "NumberOfFrames", row["frames"])
                for keyword in ("Modality", "SeriesNumber", "PatientID", "PatientName"):
                    ds[keyword] = series[keyword]
                if post and not self._post_match(ds, post, fuzzy):
                    continue
                if skipped < skip:
                    skipped += 1
                    continue
                yield ds
                emitted += 1
                if limit is not None and emitted >= limit:
                    return

    # Stored side ----------------------------------------------------------------------

    def _stored_extras(self) -> dict:
        """Stored series and instances that belong to synthetic studies: {study uid: counts}."""
        cached = self._extras_cache
        if cached and cached[0] == self._stored_version:
            return cached[1]
        extras: dict = {}
        rows = self.db.execute(
            "SELECT se.study_instance_uid, se.modality, i.sop_class_uid, count(i.sop_instance_uid) FROM stored_series se "
            "LEFT JOIN stored_instance i ON i.series_instance_uid = se.series_instance_uid "
            "WHERE se.study_instance_uid NOT IN (SELECT study_instance_uid FROM stored_study) "
            "GROUP BY se.series_instance_uid"
        ).fetchall()
        for study_uid, modality, sop_class, count in rows:
            n_series, n_instances, modalities, classes = extras.get(study_uid, (0, 0, set(), set()))
            extras[study_uid] = (n_series + 1, n_instances + count, modalities | {modality}, classes | {sop_class} - {None})
        self._extras_cache = (self._stored_version, extras)
        return extras

    def _stored_matches(self, level: QueryLevel, keys: dict, fuzzy: bool) -> Iterator[Dataset]:
        db = self.db
        if not db.execute("SELECT 1 FROM stored_instance LIMIT 1").fetchone():
            return
        study_cols = [d[1] for d in db.execute("PRAGMA table_info(stored_study)")]
        series_cols = [d[1] for d in db.execute("PRAGMA table_info(stored_series)")]
        inst_cols = [d[1] for d in db.execute("PRAGMA table_info(stored_instance)")]
        studies = {r[0]: dict(zip(study_cols, r)) for r in db.execute("SELECT * FROM stored_study ORDER BY rowid")}
        if level is QueryLevel.PATIENT:
            seen = {}
            for st in studies.values():
                seen.setdefault(st["patient_id"], []).append(st)
            for pid, sts in seen.items():
                if self._synthetic_patient(pid):
                    continue
                ds = self._stored_patient_dataset(sts)
                if self._post_match(ds, {k: v for k, v in keys.items() if not isinstance(v, list)}, fuzzy):
                    yield ds
            return
        if level is QueryLevel.STUDY:
            for st in studies.values():
                ds = self._stored_study_dataset(st)
                if self._post_match(ds, {k: v for k, v in keys.items() if not isinstance(v, list)}, fuzzy):
                    yield ds
            return
        series_sql, params = "SELECT * FROM stored_series", ()
        if keys.get("SeriesInstanceUID"):
            uids = keys["SeriesInstanceUID"].split("\\")
            series_sql += f" WHERE series_instance_uid IN ({','.join('?' * len(uids))})"
            params = tuple(uids)
        for row in db.execute(series_sql + " ORDER BY rowid", params).fetchall():
            se = dict(zip(series_cols, row))
            study_ds = self._parent_study_dataset(se["study_instance_uid"], studies)
            if study_ds is None:
                continue
            ds = self._stored_series_dataset(se, study_ds)
            if level is QueryLevel.SERIES:
                if self._post_match(ds, {k: v for k, v in keys.items() if not isinstance(v, list)}, fuzzy):
                    yield ds
                continue
            inst_keys = {k: v for k, v in keys.items() if not isinstance(v, list)}
            for irow in db.execute(
                "SELECT * FROM stored_instance WHERE series_instance_uid = ? ORDER BY rowid", (se["series_instance_uid"],)
            ).fetchall():
                inst = dict(zip(inst_cols, irow))
                ids = Dataset()
                ids.update(ds)
                put(ids, "SOPInstanceUID", inst["sop_instance_uid"])
                put(ids, "SOPClassUID", inst["sop_class_uid"])
                if inst["instance_number"] not in (None, ""):
                    put(ids, "InstanceNumber", inst["instance_number"])
                if inst["rows"]:
                    ids.Rows, ids.Columns = inst["rows"], inst["columns"]
                if inst["number_of_frames"] not in (None, ""):
                    put(ids, "NumberOfFrames", inst["number_of_frames"])
                if self._post_match(ids, inst_keys, fuzzy):
                    yield ids

    def _synthetic_patient(self, pid: str) -> bool:
        return self.db.execute("SELECT 1 FROM patient WHERE patient_id = ?", (pid,)).fetchone() is not None

    def _parent_study_dataset(self, study_uid: str, studies: dict) -> Dataset | None:
        if study_uid in studies:
            return self._stored_study_dataset(studies[study_uid])
        path = self.universe.uids.decode(study_uid)
        if path is None or path.kind != UIDKind.STUDY:
            return None
        row = self.db.execute(
            f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk WHERE s.pk = ?",
            (records.study_key(path.patient, path.study),),
        ).fetchone()
        return self._study_dataset(row, self._stored_extras()) if row else None

    def _stored_counts(self, study_uid: str) -> tuple[int, int, list[str], list[str]]:
        row = self.db.execute(
            "SELECT count(DISTINCT se.series_instance_uid), count(i.sop_instance_uid) FROM stored_series se "
            "LEFT JOIN stored_instance i ON i.series_instance_uid = se.series_instance_uid WHERE se.study_instance_uid = ?",
            (study_uid,),
        ).fetchone()
        modalities = [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT modality FROM stored_series WHERE study_instance_uid = ? ORDER BY modality", (study_uid,)
            )
            if r[0]
        ]
        classes = [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT sop_class_uid FROM stored_instance WHERE study_instance_uid = ? ORDER BY 1", (study_uid,)
            )
            if r[0]
        ]
        return row[0], row[1], modalities, classes

    def _stored_patient_dataset(self, studies: list[dict]) -> Dataset:
        st = studies[0]
        ds = Dataset()
        put(ds, "PatientName", st["patient_name"] or "")
        put(ds, "PatientID", st["patient_id"] or "")
        put(ds, "PatientBirthDate", st["patient_birth_date"] or "")
        put(ds, "PatientSex", st["patient_sex"] or "")
        n_series = n_instances = 0
        for s in studies:
            a, b, _, _ = self._stored_counts(s["study_instance_uid"])
            n_series, n_instances = n_series + a, n_instances + b
        put(ds, "NumberOfPatientRelatedStudies", len(studies))
        put(ds, "NumberOfPatientRelatedSeries", n_series)
        put(ds, "NumberOfPatientRelatedInstances", n_instances)
        return ds

    def _stored_study_dataset(self, st: dict) -> Dataset:
        ds = Dataset()
        put(ds, "PatientName", st["patient_name"] or "")
        put(ds, "PatientID", st["patient_id"] or "")
        put(ds, "PatientBirthDate", st["patient_birth_date"] or "")
        put(ds, "PatientSex", st["patient_sex"] or "")
        put(ds, "StudyInstanceUID", st["study_instance_uid"])
        put(ds, "StudyDate", st["study_date"] or "")
        put(ds, "StudyTime", st["study_time"] or "")
        put(ds, "AccessionNumber", st["accession_number"] or "")
        put(ds, "StudyID", st["study_id"] or "")
        put(ds, "StudyDescription", st["study_description"] or "")
        put(ds, "ReferringPhysicianName", st["referring_physician_name"] or "")
        n_series, n_instances, modalities, classes = self._stored_counts(st["study_instance_uid"])
        put(ds, "ModalitiesInStudy", modalities)
        put(ds, "SOPClassesInStudy", classes)
        put(ds, "NumberOfStudyRelatedSeries", n_series)
        put(ds, "NumberOfStudyRelatedInstances", n_instances)
        return ds

    def _stored_series_dataset(self, se: dict, study: Dataset) -> Dataset:
        ds = Dataset()
        ds.update(study)
        put(ds, "SeriesInstanceUID", se["series_instance_uid"])
        put(ds, "Modality", se["modality"] or "")
        put(ds, "SeriesNumber", se["series_number"] or "")
        put(ds, "SeriesDescription", se["series_description"] or "")
        put(ds, "SeriesDate", se["series_date"] or "")
        put(ds, "SeriesTime", se["series_time"] or "")
        put(ds, "BodyPartExamined", se["body_part_examined"] or "")
        (n,) = self.db.execute(
            "SELECT count(*) FROM stored_instance WHERE series_instance_uid = ?", (se["series_instance_uid"],)
        ).fetchone()
        put(ds, "NumberOfSeriesRelatedInstances", n)
        return ds

    # -- lookups for retrieve ---------------------------------------------------------

    def synthetic_study_exists(self, patient: int, visit: int) -> bool:
        return self.db.execute("SELECT 1 FROM study WHERE pk = ?", (records.study_key(patient, visit),)).fetchone() is not None

    def stored_instance(self, sop_instance_uid: str) -> dict | None:
        cur = self.db.execute("SELECT * FROM stored_instance WHERE sop_instance_uid = ?", (sop_instance_uid,))
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row)) if row else None

    def stored_instances(self, *, study_uid: str | None = None, series_uid: str | None = None) -> list[dict]:
        if series_uid is not None:
            cur = self.db.execute("SELECT * FROM stored_instance WHERE series_instance_uid = ? ORDER BY rowid", (series_uid,))
        elif study_uid is not None:
            cur = self.db.execute("SELECT * FROM stored_instance WHERE study_instance_uid = ? ORDER BY rowid", (study_uid,))
        else:
            raise ValueError("study_uid or series_uid is needed")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def index_stored(self, ds: Dataset, path: str, size: int, transfer_syntax_uid: str) -> None:
        """Index one stored object (already written to ``path``). Replaces an earlier copy."""
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        synthetic_parent = self.universe.uids.decode(study_uid) is not None

        def text(keyword: str) -> str:
            value = ds.get(keyword)
            return "" if value is None else str(value)

        with self._write_lock:
            db = self.db
            with db:
                if not synthetic_parent:
                    db.execute(
                        "INSERT OR REPLACE INTO stored_study VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            study_uid,
                            text("PatientID"),
                            text("PatientName"),
                            text("PatientBirthDate"),
                            text("PatientSex"),
                            text("StudyDate"),
                            text("StudyTime"),
                            text("AccessionNumber"),
                            text("StudyID"),
                            text("StudyDescription"),
                            text("ReferringPhysicianName"),
                        ),
                    )
                db.execute(
                    "INSERT OR REPLACE INTO stored_series VALUES (?,?,?,?,?,?,?,?)",
                    (
                        series_uid,
                        study_uid,
                        text("Modality"),
                        text("SeriesNumber"),
                        text("SeriesDescription"),
                        text("SeriesDate"),
                        text("SeriesTime"),
                        text("BodyPartExamined"),
                    ),
                )
                db.execute(
                    "INSERT OR REPLACE INTO stored_instance VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        str(ds.SOPInstanceUID),
                        series_uid,
                        study_uid,
                        str(ds.SOPClassUID),
                        text("InstanceNumber"),
                        int(ds.get("Rows") or 0),
                        int(ds.get("Columns") or 0),
                        text("NumberOfFrames"),
                        transfer_syntax_uid,
                        path,
                        size,
                        time.time(),
                    ),
                )
            self._stored_version += 1
