"""The :class:`Catalog`: one SQLite file, its connections, the rebuild decision,
and ``find`` over stored and synthetic objects.

Threads: each thread reads through its own connection; writes go through one
connection under a lock (datasette's discipline, without its async API).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom import Dataset

from ...errors import InvalidQuery
from .. import matching, records
from .answers import SyntheticAttributes
from .build import build, load_variants
from .fields import LEVEL_FIELDS, Attributes, Query, QueryLevel, to_dataset, vr_of
from .schema import SCHEMA
from .stored import StoredIndex
from .synthetic import Run, SyntheticIndex

if TYPE_CHECKING:  # the universe imports this package's schema: no import at run time
    from ..universe import Universe

log = logging.getLogger(__name__)


class Catalog:
    """SQLite index of the universe plus stored objects."""

    def __init__(self, path: str | Path, universe: Universe):
        self.path = Path(path)
        self.universe = universe
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.build_seconds = 0.0
        self._ensure_built()
        self.variants = load_variants(self.db, universe.cohorts)
        answers = SyntheticAttributes(universe, self.variants)
        self._synthetic = SyntheticIndex(lambda: self.db, universe, self.variants, answers)
        self._stored = StoredIndex(lambda: self.db, self._write_lock, universe, answers)

    # -- connections ------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
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
        """Build the synthetic tables unless the file already holds this universe (same fingerprint)."""
        with self._write_lock:
            db = self.db
            db.executescript(SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row and row[0] == self.universe.fingerprint:
                return
            started = time.perf_counter()
            build(db, self.universe)
            self.build_seconds = time.perf_counter() - started
            log.info("catalog built: %d patients in %.1f s (%s)", self.universe.n_patients, self.build_seconds, self.path)

    def studies_of_target(self, target: str, offset: int = 0, limit: int = 10) -> list[str]:
        """Study Instance UIDs of a target's performed studies, in catalog order (patient, visit)."""
        chosen = [v.index for v in self.variants.values() if v.exam.target == target]
        if not chosen:
            return []
        marks = ",".join("?" * len(chosen))
        rows = self.db.execute(
            f"SELECT patient_pk, visit, variant FROM study WHERE variant IN ({marks}) ORDER BY pk LIMIT ? OFFSET ?",
            (*chosen, limit, offset),
        )
        uids = self.universe.uids
        return [
            uids.study_instance_uid(r["patient_pk"], records.study_number(r["visit"], self.variants[r["variant"]].exam.index))
            for r in rows
        ]

    # -- figures ----------------------------------------------------------------------

    def figures(self) -> dict[str, int]:
        """The archive in numbers: performed synthetic studies, visits still to come, stored objects."""
        db = self.db
        row = db.execute(
            "SELECT count(*), coalesce(sum(n_studies), 0), coalesce(sum(n_series), 0), coalesce(sum(n_instances), 0) "
            "FROM patient WHERE n_studies > 0"
        ).fetchone()
        (scheduled,) = db.execute("SELECT count(*) FROM scheduled").fetchone()
        stored = db.execute(
            "SELECT (SELECT count(*) FROM stored_study), (SELECT count(*) FROM stored_series), "
            "(SELECT count(*) FROM stored_instance)"
        ).fetchone()
        return {
            "patients": row[0],
            "studies": row[1],
            "series": row[2],
            "instances": row[3],
            "scheduled_visits": scheduled,
            "stored_studies": stored[0],
            "stored_series": stored[1],
            "stored_instances": stored[2],
        }

    # -- queries ----------------------------------------------------------------------

    def find(
        self, level: QueryLevel | str, query: Query, *, fuzzy: bool = False, limit: int | None = None, offset: int = 0
    ) -> Iterator[Dataset]:
        """Match ``query`` at ``level`` (PS3.4 C.2.2.2) and yield one Dataset per match
        (:meth:`find_attributes`, as pydicom Datasets)."""
        return map(to_dataset, self.find_attributes(level, query, fuzzy=fuzzy, limit=limit, offset=offset))

    def find_attributes(
        self, level: QueryLevel | str, query: Query, *, fuzzy: bool = False, limit: int | None = None, offset: int = 0
    ) -> Iterator[Attributes]:
        """Match ``query`` at ``level`` (PS3.4 C.2.2.2) and yield the attributes of each match.

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
        stored = self._stored.matches(level, keys, fuzzy)  # lazy: a page builds only what it shows
        synthetic = self._synthetic.matches(level, keys, fuzzy, self._stored.extras)  # validates eagerly
        return self._page(stored, synthetic, limit, offset)

    @staticmethod
    def _page(stored: Iterator[Attributes], synthetic: Run, limit: int | None, offset: int) -> Iterator[Attributes]:
        remaining, seen = limit, 0
        for ds in stored:
            seen += 1
            if seen <= offset:
                continue
            if remaining is not None and remaining <= 0:
                return
            yield ds
            if remaining is not None:
                remaining -= 1
        yield from synthetic(max(0, offset - seen), remaining)

    @staticmethod
    def _checked_keys(level: QueryLevel, query: Query) -> dict[str, Any]:
        """Validate every key and value; keep those this level can match."""
        fields = {f.keyword: f for f in LEVEL_FIELDS[level]}
        keys: dict[str, Any] = {}
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
            text = "" if value is None else str(value)
            # Validate now (matching raises InvalidQuery for bad dates, times, UIDs).
            matching.match_value(keyword, vr, text, None)
            keys[keyword] = text
        return keys

    # -- lookups for retrieve ---------------------------------------------------------

    def synthetic_study_exists(self, patient: int, visit: int) -> bool:
        return self._synthetic.exists(patient, visit)

    def stored_instance(self, sop_instance_uid: str) -> dict[str, Any] | None:
        return self._stored.instance(sop_instance_uid)

    def stored_instances(self, *, study_uid: str | None = None, series_uid: str | None = None) -> list[dict[str, Any]]:
        return self._stored.instances(study_uid=study_uid, series_uid=series_uid)

    def index_stored(self, ds: Dataset, path: str, size: int, transfer_syntax_uid: str) -> None:
        """Index one stored object (already written to ``path``). Replaces an earlier copy."""
        self._stored.index(ds, path, size, transfer_syntax_uid)
