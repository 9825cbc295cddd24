"""The index of stored objects (STOW-RS, C-STORE) in the ``stored_*`` tables,
and their queries.

Indexed SQL over the stored columns narrows a query to its candidates, and
the candidates are matched in Python with the synthetic side's rules
(:func:`~.fields.post_match`), lazily, so that a page builds only what it
shows; stored matches are listed before the synthetic ones. An
object stored into a synthetic study (its Study Instance UID is synthetic)
has no ``stored_study`` row: it is counted into that study's answers
(:meth:`StoredIndex.extras`) and listed under it at the SERIES and IMAGE levels.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydicom import Dataset

from .. import matching, records
from ..uids import UIDKind
from . import answers
from .answers import Extras, StoredCounts, SyntheticAttributes
from .fields import Attributes, QueryLevel, post_match, vr_of
from .schema import STUDY_COLUMNS

if TYPE_CHECKING:  # the universe imports this package's schema: no import at run time
    from ..universe import Universe

Row = dict[str, Any]


def _rows(cur: sqlite3.Cursor) -> list[Row]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _scalar_keys(keys: dict) -> dict:
    return {k: v for k, v in keys.items() if not isinstance(v, list)}


# Where a matchable key lives in the stored tables (the text as received). Keys not named
# here (numbers, computed counts, trial attributes) are matched in Python only.
_PATIENT_KEYS = {
    "PatientID": "st.patient_id",
    "PatientName": "st.patient_name",
    "PatientBirthDate": "st.patient_birth_date",
    "PatientSex": "st.patient_sex",
}
_PARENT_KEYS = _PATIENT_KEYS | {
    "StudyDate": "st.study_date",
    "StudyTime": "st.study_time",
    "AccessionNumber": "st.accession_number",
    "StudyID": "st.study_id",
    "StudyDescription": "st.study_description",
    "ReferringPhysicianName": "st.referring_physician_name",
}
_STUDY_KEYS = _PARENT_KEYS | {"StudyInstanceUID": "st.study_instance_uid"}
_SERIES_KEYS = {
    "StudyInstanceUID": "se.study_instance_uid",
    "SeriesInstanceUID": "se.series_instance_uid",
    "Modality": "se.modality",
    "SeriesDescription": "se.series_description",
    "SeriesDate": "se.series_date",
    "SeriesTime": "se.series_time",
    "BodyPartExamined": "se.body_part_examined",
}
_IMAGE_KEYS = {"SOPInstanceUID": "i.sop_instance_uid", "SOPClassUID": "i.sop_class_uid"}
_CHUNK = 256


def _prefilter(columns: dict[str, str], keys: dict, fuzzy: bool) -> tuple[str, tuple]:
    """A SQL condition that keeps every row the Python match could accept (and few others).

    A value holding a backslash (several values) is always kept: the Python
    match splits it. Fuzzy person names are left to Python, whose case folding
    is Unicode's, not SQLite's ASCII ``upper``.
    """
    parts: list[str] = []
    params: list = []
    for keyword, value in keys.items():
        expr = columns.get(keyword)
        if expr is None:
            continue
        vr = vr_of(keyword)
        if fuzzy and vr == "PN":
            continue
        condition = matching.sql_condition(keyword, vr, expr, value)
        if condition.sql == matching.TRUE.sql:
            continue
        parts.append(f"(instr({expr}, '\\') > 0 OR {condition.sql})")
        params.extend(condition.params)
    return (" AND ".join(parts) or "1"), tuple(params)


def _children_prefilters(keys: dict, fuzzy: bool) -> Iterator[tuple[str, tuple]]:
    """Study-level keys on what the study holds (ModalitiesInStudy, SOPClassesInStudy) as EXISTS conditions."""
    children = {
        "ModalitiesInStudy": ("stored_series c", "c.modality"),
        "SOPClassesInStudy": ("stored_instance c", "c.sop_class_uid"),
    }
    for keyword, (table, column) in children.items():
        if keyword not in keys:
            continue
        where, params = _prefilter({keyword: column}, keys, fuzzy)
        if where != "1":
            yield f"EXISTS (SELECT 1 FROM {table} WHERE c.study_instance_uid = st.study_instance_uid AND {where})", params


def _chunks(rows: list[Row]) -> Iterator[list[Row]]:
    for start in range(0, len(rows), _CHUNK):
        yield rows[start : start + _CHUNK]


def _set_of(concatenated: str | None) -> frozenset[str]:
    return frozenset(v for v in (concatenated or "").split(",") if v)


class StoredIndex:
    """Stored objects: written under one lock, read through each thread's connection."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        write_lock: threading.Lock,
        universe: Universe,
        synthetic: SyntheticAttributes,
    ):
        self._connect = connect
        self._write_lock = write_lock
        self.universe = universe
        self.synthetic = synthetic
        self._version = 0
        self._extras_cache: tuple[int, Extras] | None = None

    @property
    def db(self) -> sqlite3.Connection:
        return self._connect()

    # -- lookups for retrieve ---------------------------------------------------------

    def instance(self, sop_instance_uid: str) -> Row | None:
        found = _rows(self.db.execute("SELECT * FROM stored_instance WHERE sop_instance_uid = ?", (sop_instance_uid,)))
        return found[0] if found else None

    def instances(self, *, study_uid: str | None = None, series_uid: str | None = None) -> list[Row]:
        if series_uid is not None:
            cur = self.db.execute("SELECT * FROM stored_instance WHERE series_instance_uid = ? ORDER BY rowid", (series_uid,))
        elif study_uid is not None:
            cur = self.db.execute("SELECT * FROM stored_instance WHERE study_instance_uid = ? ORDER BY rowid", (study_uid,))
        else:
            raise ValueError("study_uid or series_uid is needed")
        return _rows(cur)

    # -- writing ----------------------------------------------------------------------

    def index(self, ds: Dataset, path: str, size: int, transfer_syntax_uid: str) -> None:
        """Index one stored object (already written to ``path``). Replaces an earlier copy."""
        study_uid, series_uid = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
        # Into a performed synthetic study it joins that study; under the planned UID of a visit
        # still to come (a worklist step) it is a stored study of its own, found at once.
        parent = self.universe.uids.decode(study_uid)
        synthetic_parent = (
            parent is not None
            and parent.kind == UIDKind.STUDY
            and self.db.execute("SELECT 1 FROM study WHERE pk = ?", (records.study_key(parent.patient, parent.study),)).fetchone()
            is not None
        )

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
            self._version += 1

    # -- counts -----------------------------------------------------------------------

    def extras(self) -> Extras:
        """Stored series and instances that belong to synthetic studies, by study UID."""
        cached = self._extras_cache
        if cached and cached[0] == self._version:
            return cached[1]
        extras: dict[str, StoredCounts] = {}
        rows = self.db.execute(
            "SELECT se.study_instance_uid, se.modality, i.sop_class_uid, count(i.sop_instance_uid) FROM stored_series se "
            "LEFT JOIN stored_instance i ON i.series_instance_uid = se.series_instance_uid "
            "WHERE se.study_instance_uid NOT IN (SELECT study_instance_uid FROM stored_study) "
            "GROUP BY se.series_instance_uid"
        ).fetchall()
        for study_uid, modality, sop_class, count in rows:
            had = extras.get(study_uid) or StoredCounts(0, 0, frozenset(), frozenset())
            extras[study_uid] = StoredCounts(
                had.n_series + 1,
                had.n_instances + count,
                had.modalities | {modality},
                had.sop_classes | ({sop_class} - {None}),
            )
        self._extras_cache = (self._version, extras)
        return extras

    def _series_instances(self, series_uid: str) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM stored_instance WHERE series_instance_uid = ?", (series_uid,)).fetchone()
        return int(n)

    # -- queries ----------------------------------------------------------------------

    def matches(self, level: QueryLevel, keys: dict, fuzzy: bool) -> Iterator[Attributes]:
        """Stored objects at ``level`` matching the checked ``keys``, in the order received.

        Indexed SQL narrows the rows (:func:`_prefilter`) and the same rules as
        the synthetic side decide in Python on the few that are left, so a query
        costs its candidates, not every stored object.
        """
        db = self.db
        if not db.execute("SELECT 1 FROM stored_instance LIMIT 1").fetchone():
            return
        scalar = _scalar_keys(keys)
        if level is QueryLevel.PATIENT:
            yield from self._patients(scalar, fuzzy)
        elif level is QueryLevel.STUDY:
            yield from self._studies(scalar, fuzzy)
        else:
            yield from self._series_or_images(level, scalar, fuzzy)

    def _patients(self, keys: dict, fuzzy: bool) -> Iterator[Attributes]:
        where, params = _prefilter(_PATIENT_KEYS, keys, fuzzy)
        wanted = _rows(
            self.db.execute(
                "SELECT * FROM stored_study WHERE patient_id IN "
                f"(SELECT patient_id FROM stored_study st WHERE {where}) ORDER BY rowid",
                params,
            )
        )
        by_patient: dict[str, list[Row]] = {}
        for st in wanted:
            by_patient.setdefault(st["patient_id"], []).append(st)
        for pid, sts in by_patient.items():
            if self._synthetic_patient(pid):
                continue
            counts = self.counts([s["study_instance_uid"] for s in sts])
            n_series = sum(counts[s["study_instance_uid"]].n_series for s in sts)
            n_instances = sum(counts[s["study_instance_uid"]].n_instances for s in sts)
            ds = answers.stored_patient(sts[0], len(sts), n_series, n_instances)
            if post_match(ds, keys, fuzzy):
                yield ds

    def _studies(self, keys: dict, fuzzy: bool) -> Iterator[Attributes]:
        where, params = _prefilter(_STUDY_KEYS, keys, fuzzy)
        for where_more, params_more in _children_prefilters(keys, fuzzy):
            where, params = f"{where} AND {where_more}", params + params_more
        rows = _rows(self.db.execute(f"SELECT * FROM stored_study st WHERE {where} ORDER BY rowid", params))
        for chunk in _chunks(rows):
            counts = self.counts([st["study_instance_uid"] for st in chunk])
            for st in chunk:
                ds = answers.stored_study(st, counts[st["study_instance_uid"]])
                if post_match(ds, keys, fuzzy):
                    yield ds

    def _series_or_images(self, level: QueryLevel, keys: dict, fuzzy: bool) -> Iterator[Attributes]:
        where, params = _prefilter(_SERIES_KEYS, keys, fuzzy)
        # Keys on the patient and study narrow stored parents in SQL; a synthetic parent is matched in Python.
        parent_where, parent_params = _prefilter(_PARENT_KEYS, keys, fuzzy)
        if parent_where != "1":
            where = f"{where} AND (st.study_instance_uid IS NULL OR ({parent_where}))"
            params = params + parent_params
        image_where, image_params = _prefilter(_IMAGE_KEYS, keys, fuzzy) if level is QueryLevel.IMAGE else ("1", ())
        if image_where != "1":
            where += f" AND EXISTS (SELECT 1 FROM stored_instance i WHERE i.series_instance_uid = se.series_instance_uid AND {image_where})"
            params = params + image_params
        series = _rows(
            self.db.execute(
                "SELECT se.* FROM stored_series se LEFT JOIN stored_study st ON st.study_instance_uid = se.study_instance_uid "
                f"WHERE {where} ORDER BY se.rowid",
                params,
            )
        )
        parents: dict[str, Attributes | None] = {}
        for se in series:
            study_uid = se["study_instance_uid"]
            if study_uid not in parents:
                parents[study_uid] = self._parent_study(study_uid)
            study_ds = parents[study_uid]
            if study_ds is None:
                continue
            series_ds = answers.stored_series(se, study_ds, self._series_instances(se["series_instance_uid"]))
            if level is QueryLevel.SERIES:
                if post_match(series_ds, keys, fuzzy):
                    yield series_ds
                continue
            instances = self.db.execute(
                f"SELECT * FROM stored_instance i WHERE i.series_instance_uid = ? AND {image_where} ORDER BY rowid",
                (se["series_instance_uid"], *image_params),
            )
            for inst in _rows(instances):
                ds = answers.stored_instance(series_ds, inst)
                if post_match(ds, keys, fuzzy):
                    yield ds

    def counts(self, study_uids: list[str]) -> dict[str, StoredCounts]:
        """Series, instances, modalities and SOP classes of stored studies, in one query."""
        found = {uid: StoredCounts(0, 0, frozenset(), frozenset()) for uid in study_uids}
        if not study_uids:
            return found
        marks = ",".join("?" * len(study_uids))
        for uid, n_series, n_instances, modalities, classes in self.db.execute(
            "SELECT se.study_instance_uid, count(DISTINCT se.series_instance_uid), count(i.sop_instance_uid), "
            "group_concat(DISTINCT se.modality), group_concat(DISTINCT i.sop_class_uid) FROM stored_series se "
            "LEFT JOIN stored_instance i ON i.series_instance_uid = se.series_instance_uid "
            f"WHERE se.study_instance_uid IN ({marks}) GROUP BY se.study_instance_uid",
            study_uids,
        ):
            found[uid] = StoredCounts(n_series, n_instances, _set_of(modalities), _set_of(classes))
        return found

    def _synthetic_patient(self, pid: str) -> bool:
        return self.db.execute("SELECT 1 FROM patient WHERE patient_id = ? AND n_studies > 0", (pid,)).fetchone() is not None

    def _parent_study(self, study_uid: str) -> Attributes | None:
        stored = _rows(self.db.execute("SELECT * FROM stored_study WHERE study_instance_uid = ?", (study_uid,)))
        if stored:
            return answers.stored_study(stored[0], self.counts([study_uid])[study_uid])
        path = self.universe.uids.decode(study_uid)
        if path is None or path.kind != UIDKind.STUDY:
            return None
        row = self.db.execute(
            f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk WHERE s.pk = ?",
            (records.study_key(path.patient, path.study),),
        ).fetchone()
        return self.synthetic.study(row, self.extras()) if row else None
