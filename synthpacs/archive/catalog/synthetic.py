"""Queries over the synthetic studies (PS3.4 C.2.2.2), answered by SQL.

Each key becomes a SQL condition over the synthetic tables where its value
lives in a column; keys whose value is constant per plan variant (study
description, modalities, body part, procedure code, ...) are matched by
choosing the variants (or cohorts) that match, in Python; UID keys are decoded
to (patient, visit, series, instance) paths; computed values (counts, instance
attributes) are matched on output. Instances are enumerated from their series.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from .. import matching, records
from ..matching import Condition
from ..uids import UIDKind, UIDPath
from .answers import Extras, SyntheticAttributes
from .fields import LEVEL_FIELDS, SEQUENCE_ITEM_VRS, UID_KEYWORDS, Attributes, Field, QueryLevel, Variant, post_match
from .schema import PATIENT_COLUMNS, SERIES_COLUMNS, STUDY_COLUMNS

if TYPE_CHECKING:  # the universe imports this package's schema: no import at run time
    from ..universe import Universe

#: A prepared query: run(skip, limit) yields the attributes of the matches of one page.
Run = Callable[[int, "int | None"], Iterator[Attributes]]


class SyntheticIndex:
    """Matching over the synthetic tables of one catalog."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        universe: Universe,
        variants: Mapping[int, Variant],
        build: SyntheticAttributes,
    ):
        self._connect = connect
        self.universe = universe
        self.variants = variants
        self.build = build

    @property
    def db(self) -> sqlite3.Connection:
        return self._connect()

    def exists(self, patient: int, visit: int) -> bool:
        return self.db.execute("SELECT 1 FROM study WHERE pk = ?", (records.study_key(patient, visit),)).fetchone() is not None

    # -- conditions -------------------------------------------------------------------

    def variant_condition(self, keys: dict, fields: dict[str, Field], fuzzy: bool, level: QueryLevel) -> Condition:
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
                if isinstance(constant, list):
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

    def uid_condition(self, keys: dict, level: QueryLevel) -> tuple[Condition, list[UIDPath] | None]:
        """Conditions for Study/Series UID keys; also the instance filter for IMAGE level."""
        conditions: list[Condition] = []
        decode = self.universe.uids.decode

        def paths(keyword: str, kind: UIDKind) -> list[UIDPath] | None:
            value = keys.get(keyword, "")
            if not value:
                return None
            found = []
            for uid in value.split("\\"):
                path = decode(uid.strip())
                if path is not None and path.kind == kind:
                    found.append(path)
            return found

        def series_of(found: list[UIDPath]) -> Condition:
            if not found:
                return matching.FALSE
            ors = " OR ".join("(s.pk = ? AND ps.idx = ?)" for _ in found)
            return Condition(f"({ors})", tuple(x for p in found for x in (records.study_key(p.patient, p.study), p.series)))

        studies = paths("StudyInstanceUID", UIDKind.STUDY)
        if studies is not None:
            conditions.append(matching.sql_list_of_uids("s.pk", [records.study_key(p.patient, p.study) for p in studies]))
        series = paths("SeriesInstanceUID", UIDKind.SERIES) if level in (QueryLevel.SERIES, QueryLevel.IMAGE) else None
        if series is not None:
            conditions.append(series_of(series))
        instances = paths("SOPInstanceUID", UIDKind.INSTANCE) if level == QueryLevel.IMAGE else None
        if instances is not None:
            conditions.append(series_of(instances))
        sql = " AND ".join(f"({c.sql})" for c in conditions) or "1"
        params = tuple(p for c in conditions for p in c.params)
        return Condition(sql, params), instances

    # -- queries ----------------------------------------------------------------------

    def matches(self, level: QueryLevel, keys: dict, fuzzy: bool, extras: Callable[[], Extras]) -> Run:
        """Prepare the query (validating and planning it now) and return its pager."""
        fields = {f.keyword: f for f in LEVEL_FIELDS[level]}
        conditions = [self.variant_condition(keys, fields, fuzzy, level)]
        for keyword, value in keys.items():
            f = fields[keyword]
            if f.expr is not None and f.vr != "SQ":
                conditions.append(matching.sql_condition(keyword, f.vr, f.expr, value, fuzzy=fuzzy))
        instance_paths: list[UIDPath] | None = None
        if level is not QueryLevel.PATIENT:
            uid_condition, instance_paths = self.uid_condition(keys, level)
            conditions.append(uid_condition)
        where = " AND ".join(f"({c.sql})" for c in conditions if c.sql != "1") or "1"
        params = tuple(p for c in conditions for p in c.params)
        # Keys matched on output only (computed values), checked in Python.
        post = {
            k: v for k, v in keys.items() if fields[k].expr is None and fields[k].per_variant is None and k not in UID_KEYWORDS
        }

        build: Callable[[sqlite3.Row, Extras], Attributes]
        if level is QueryLevel.PATIENT:
            # A patient whose baseline is still to come is on the worklist only.
            sql = f"SELECT {PATIENT_COLUMNS} FROM patient p WHERE p.n_studies > 0 AND {where} ORDER BY p.pk"
            build = self.build.patient
        elif level is QueryLevel.STUDY:
            # A date-range query pages in date order, which the date index yields without sorting every
            # match (a week of a million patients' studies is ~50k rows); others in universe order.
            order = "s.study_date, s.pk" if keys.get("StudyDate") else "s.pk"
            sql = f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk WHERE {where} ORDER BY {order}"
            build = self.build.study
        else:
            sql = (
                f"SELECT {SERIES_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk "
                f"JOIN plan_series ps ON ps.variant = s.variant WHERE {where} ORDER BY s.pk, ps.idx"
            )
            build = self.build.series

        def run(skip: int, limit: int | None) -> Iterator[Attributes]:
            if limit is not None and limit <= 0:
                return
            if level is QueryLevel.IMAGE:
                yield from self._image_matches(sql, params, post, instance_paths, fuzzy, skip, limit, extras())
                return
            paged = sql
            if not post:  # SQL can page by itself
                paged += f" LIMIT {-1 if limit is None else int(limit)} OFFSET {int(skip)}"
            found = extras()
            emitted = skipped = 0
            for row in self.db.execute(paged, params):
                ds = build(row, found)
                if post and not post_match(ds, post, fuzzy):
                    continue
                if post and skipped < skip:
                    skipped += 1
                    continue
                yield ds
                emitted += 1
                if limit is not None and emitted >= limit:
                    return

        return run

    def _image_matches(
        self,
        sql: str,
        params: tuple,
        post: dict,
        instance_paths: list[UIDPath] | None,
        fuzzy: bool,
        skip: int,
        limit: int | None,
        extras: Extras,
    ) -> Iterator[Attributes]:
        wanted = None
        if instance_paths is not None:
            wanted = {(records.study_key(p.patient, p.study), p.series, p.instance) for p in instance_paths}
        emitted = skipped = 0
        for row in self.db.execute(sql, params):
            series = self.build.series(row, extras)
            study_pk, series_index = row["study_pk"], row["series_index"]
            for number in range(1, row["series_instances"] + 1):
                if wanted is not None and (study_pk, series_index, number) not in wanted:
                    continue
                ds = self.build.instance(series, row, number)
                if post and not post_match(ds, post, fuzzy):
                    continue
                if skipped < skip:
                    skipped += 1
                    continue
                yield ds
                emitted += 1
                if limit is not None and emitted >= limit:
                    return
