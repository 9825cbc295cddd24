"""The index of stored objects (STOW-RS, C-STORE) in the ``stored_*`` tables,
and their queries.

Stored objects are few, so they are matched in Python with the same rules
(:func:`~.fields.post_match`) and listed before the synthetic matches. An
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

from .. import records
from ..uids import UIDKind
from . import datasets
from .datasets import Extras, StoredCounts, SyntheticDatasets
from .fields import QueryLevel, post_match
from .schema import STUDY_COLUMNS

if TYPE_CHECKING:  # the universe imports this package's schema: no import at run time
    from ..universe import Universe

Row = dict[str, Any]


def _rows(cur: sqlite3.Cursor) -> list[Row]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _scalar_keys(keys: dict) -> dict:
    return {k: v for k, v in keys.items() if not isinstance(v, list)}


class StoredIndex:
    """Stored objects: written under one lock, read through each thread's connection."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        write_lock: threading.Lock,
        universe: Universe,
        synthetic: SyntheticDatasets,
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

    def counts(self, study_uid: str) -> StoredCounts:
        """Series, instances, modalities and SOP classes of one stored study."""
        db = self.db
        n_series, n_instances = db.execute(
            "SELECT count(DISTINCT se.series_instance_uid), count(i.sop_instance_uid) FROM stored_series se "
            "LEFT JOIN stored_instance i ON i.series_instance_uid = se.series_instance_uid WHERE se.study_instance_uid = ?",
            (study_uid,),
        ).fetchone()
        modalities = [
            r[0]
            for r in db.execute(
                "SELECT DISTINCT modality FROM stored_series WHERE study_instance_uid = ? ORDER BY modality", (study_uid,)
            )
            if r[0]
        ]
        classes = [
            r[0]
            for r in db.execute(
                "SELECT DISTINCT sop_class_uid FROM stored_instance WHERE study_instance_uid = ? ORDER BY 1", (study_uid,)
            )
            if r[0]
        ]
        return StoredCounts(n_series, n_instances, frozenset(modalities), frozenset(classes))

    def _series_instances(self, series_uid: str) -> int:
        (n,) = self.db.execute("SELECT count(*) FROM stored_instance WHERE series_instance_uid = ?", (series_uid,)).fetchone()
        return int(n)

    # -- queries ----------------------------------------------------------------------

    def matches(self, level: QueryLevel, keys: dict, fuzzy: bool) -> Iterator[Dataset]:
        """Stored objects at ``level`` matching the checked ``keys``, in the order received."""
        db = self.db
        if not db.execute("SELECT 1 FROM stored_instance LIMIT 1").fetchone():
            return
        scalar = _scalar_keys(keys)
        studies = {st["study_instance_uid"]: st for st in _rows(db.execute("SELECT * FROM stored_study ORDER BY rowid"))}
        if level is QueryLevel.PATIENT:
            by_patient: dict[str, list[Row]] = {}
            for st in studies.values():
                by_patient.setdefault(st["patient_id"], []).append(st)
            for pid, sts in by_patient.items():
                if self._synthetic_patient(pid):
                    continue
                counts = [self.counts(s["study_instance_uid"]) for s in sts]
                ds = datasets.stored_patient(
                    sts[0], len(sts), sum(c.n_series for c in counts), sum(c.n_instances for c in counts)
                )
                if post_match(ds, scalar, fuzzy):
                    yield ds
            return
        if level is QueryLevel.STUDY:
            for st in studies.values():
                ds = datasets.stored_study(st, self.counts(st["study_instance_uid"]))
                if post_match(ds, scalar, fuzzy):
                    yield ds
            return
        series_sql, params = "SELECT * FROM stored_series", ()
        if keys.get("SeriesInstanceUID"):
            uids = keys["SeriesInstanceUID"].split("\\")
            series_sql += f" WHERE series_instance_uid IN ({','.join('?' * len(uids))})"
            params = tuple(uids)
        for se in _rows(db.execute(series_sql + " ORDER BY rowid", params)):
            study_ds = self._parent_study_dataset(se["study_instance_uid"], studies)
            if study_ds is None:
                continue
            ds = datasets.stored_series(se, study_ds, self._series_instances(se["series_instance_uid"]))
            if level is QueryLevel.SERIES:
                if post_match(ds, scalar, fuzzy):
                    yield ds
                continue
            for inst in _rows(
                db.execute(
                    "SELECT * FROM stored_instance WHERE series_instance_uid = ? ORDER BY rowid", (se["series_instance_uid"],)
                )
            ):
                ids = datasets.stored_instance(ds, inst)
                if post_match(ids, scalar, fuzzy):
                    yield ids

    def _synthetic_patient(self, pid: str) -> bool:
        return self.db.execute("SELECT 1 FROM patient WHERE patient_id = ? AND n_studies > 0", (pid,)).fetchone() is not None

    def _parent_study_dataset(self, study_uid: str, studies: dict[str, Row]) -> Dataset | None:
        if study_uid in studies:
            return datasets.stored_study(studies[study_uid], self.counts(study_uid))
        path = self.universe.uids.decode(study_uid)
        if path is None or path.kind != UIDKind.STUDY:
            return None
        row = self.db.execute(
            f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk WHERE s.pk = ?",
            (records.study_key(path.patient, path.study),),
        ).fetchone()
        return self.synthetic.study(row, self.extras()) if row else None
