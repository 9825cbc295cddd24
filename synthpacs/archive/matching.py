"""Attribute matching of PS3.4 C.2.2.2, one function per matching type.

Each ``sql_*`` function turns one query key into a SQL condition with bound
parameters over a column expression; :func:`match_value` applies the same
rules in Python to values that live outside SQL (instances enumerated from a
series, items of a sequence). Values are checked first: a malformed date,
time or UID raises :class:`InvalidQuery` naming the key, and the caller's
identifier is never modified.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InvalidQuery
from .uids import is_valid_uid

WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
RANGE_VRS = {"DA", "TM", "DT"}
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(\.\d{1,6})?$")


@dataclass(frozen=True)
class Condition:
    """A SQL condition and its parameters."""

    sql: str
    params: tuple = ()


TRUE = Condition("1")
FALSE = Condition("0")


def matching_type(vr: str, value: str) -> str:
    """Which C.2.2.2 matching type a non-sequence value asks for."""
    if value == "" or (vr != "UI" and value == "*"):
        return "universal"
    if vr == "UI":
        return "uid_list" if "\\" in value else "single"
    if vr in RANGE_VRS and "-" in value:
        return "range"
    if vr in WILDCARD_VRS and ("*" in value or "?" in value):
        return "wildcard"
    return "single"


def _check(keyword: str, vr: str, value: str) -> None:
    if vr == "DA" and not _DA.match(value):
        raise InvalidQuery(f"{keyword}: {value!r} is not a date (YYYYMMDD)")
    if vr == "TM" and not _TM.match(value):
        raise InvalidQuery(f"{keyword}: {value!r} is not a time (HHMMSS)")
    if vr == "UI" and not is_valid_uid(value):
        raise InvalidQuery(f"{keyword}: {value!r} is not a valid UID")
    if vr in ("IS", "US", "UL", "SS", "SL") and not re.match(r"^[+-]?\d+$", value.strip()):
        raise InvalidQuery(f"{keyword}: {value!r} is not an integer")


def _normalise_time(value: str) -> str:
    # Compare times as HHMMSS.ffffff text; a partial time is a prefix.
    return value.split(".")[0].ljust(6, "0") if value else value


def parse_range(keyword: str, vr: str, value: str) -> tuple[str | None, str | None]:
    """``A-B``, ``A-`` or ``-B`` -> (low, high) with None for an open end."""
    if value.count("-") != 1:
        raise InvalidQuery(f"{keyword}: {value!r} is not a range (A-B, A- or -B)")
    low, high = (part.strip() for part in value.split("-"))
    if not low and not high:
        raise InvalidQuery(f"{keyword}: the range {value!r} has no bounds")
    for bound in (low, high):
        if bound:
            try:
                _check(keyword, vr, bound)
            except InvalidQuery:
                raise InvalidQuery(f"{keyword}: {value!r} is not a valid {vr} range (A-B, A- or -B)") from None
    if vr == "TM":
        low = _normalise_time(low) if low else low
        high = high.split(".")[0].ljust(6, "9") if high else high
    if low and high and low > high:
        raise InvalidQuery(f"{keyword}: the range {value!r} ends before it starts")
    return low or None, high or None


def glob_pattern(value: str) -> str:
    """DICOM wildcards to a SQLite GLOB pattern: ``*`` and ``?`` carry over; ``[`` is escaped."""
    return value.replace("[", "[[]")


def sql_universal(expr: str) -> Condition:
    """C.2.2.2.3: an empty value matches everything."""
    return TRUE


def sql_single_value(expr: str, value: str, *, case_insensitive: bool = False) -> Condition:
    """C.2.2.2.1: an exact match (PN case-insensitive when fuzzy matching is asked for)."""
    if case_insensitive:
        return Condition(f"upper({expr}) = upper(?)", (value,))
    return Condition(f"{expr} = ?", (value,))


def sql_list_of_uids(expr: str, uids: Sequence[str | int]) -> Condition:
    """C.2.2.2.2: any of a list of UIDs (or of the integer keys they decode to)."""
    if not uids:
        return FALSE
    return Condition(f"{expr} IN ({','.join('?' * len(uids))})", tuple(uids))


def sql_wildcard(expr: str, value: str, *, case_insensitive: bool = False) -> Condition:
    """C.2.2.2.4: ``*`` any run of characters, ``?`` one character."""
    if case_insensitive:
        return Condition(f"upper({expr}) GLOB upper(?)", (glob_pattern(value),))
    return Condition(f"{expr} GLOB ?", (glob_pattern(value),))


def sql_range(expr: str, low: str | None, high: str | None) -> Condition:
    """C.2.2.2.5: inclusive range, either end may be open."""
    parts, params = [], []
    if low is not None:
        parts.append(f"{expr} >= ?")
        params.append(low)
    if high is not None:
        parts.append(f"{expr} <= ?")
        params.append(high)
    return Condition(" AND ".join(parts), tuple(params))


def sql_condition(keyword: str, vr: str, expr: str, value: str, *, fuzzy: bool = False) -> Condition:
    """The condition for one key of an identifier, by its matching type."""
    kind = matching_type(vr, value)
    case_insensitive = fuzzy and vr == "PN"
    if kind == "universal":
        return sql_universal(expr)
    if kind == "uid_list":
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        for uid in uids:
            _check(keyword, vr, uid)
        return sql_list_of_uids(expr, uids)
    if kind == "range":
        low, high = parse_range(keyword, vr, value)
        if vr == "TM":
            expr = f"substr({expr} || '000000', 1, 6)"
        return sql_range(expr, low, high)
    if kind == "wildcard":
        return sql_wildcard(expr, value, case_insensitive=case_insensitive)
    if vr in ("DA", "TM", "UI") or vr in ("IS", "US", "UL", "SS", "SL"):
        _check(keyword, vr, value)
    if "\\" in value and vr in WILDCARD_VRS | {"DA", "TM"}:
        # A multi-valued key (e.g. Modality CT\MR from some SCUs) matches any value.
        values = [v for v in value.split("\\") if v]
        return Condition("(" + " OR ".join(f"{expr} = ?" for _ in values) + ")", tuple(values))
    if vr == "TM":
        return Condition(f"substr({expr} || '000000', 1, 6) = ?", (_normalise_time(value),))
    return sql_single_value(expr, value, case_insensitive=case_insensitive)


def _wildcard_regex(value: str, flags: int) -> re.Pattern:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in value]
    return re.compile("^" + "".join(parts) + "$", flags | re.DOTALL)


def match_value(keyword: str, vr: str, pattern: str, value: str | None, *, fuzzy: bool = False) -> bool:
    """The same matching rules, applied in Python to one attribute value.

    Multi-valued attributes (``CT\\SEG``) match when any value matches.
    """
    kind = matching_type(vr, pattern)
    if kind == "universal":
        return True
    values = [] if value is None else str(value).split("\\")
    flags = re.IGNORECASE if fuzzy and vr == "PN" else 0
    if kind == "uid_list":
        uids = [u.strip() for u in pattern.split("\\") if u.strip()]
        for uid in uids:
            _check(keyword, vr, uid)
        return any(v in uids for v in values)
    if kind == "range":
        low, high = parse_range(keyword, vr, pattern)
        for v in values:
            v = _normalise_time(v) if vr == "TM" else v
            if v and (low is None or v >= low) and (high is None or v <= high):
                return True
        return False
    if kind == "wildcard":
        regex = _wildcard_regex(pattern, flags)
        return any(regex.match(v) for v in values)
    if vr in ("DA", "TM", "UI"):
        _check(keyword, vr, pattern)
    wanted = pattern.split("\\") if vr != "UI" else [pattern]
    if vr == "TM":
        return any(_normalise_time(v) == _normalise_time(w) for v in values for w in wanted)
    if flags:
        return any(v.upper() == w.upper() for v in values for w in wanted)
    if vr in ("IS", "US", "UL", "SS", "SL", "DS"):
        try:
            return any(float(v) == float(w) for v in values for w in wanted if v)
        except ValueError:
            raise InvalidQuery(f"{keyword}: {pattern!r} is not a number") from None
    return any(v == w for v in values for w in wanted)


def match_sequence(keyword: str, item_query: list[dict], items: list[dict], vrs: dict[str, str], *, fuzzy: bool = False) -> bool:
    """C.2.2.2.6: a sequence matches when one of its items matches every key of
    the query item. An empty query sequence (or an item with no keys) is universal."""
    keys = [(k, v) for q in item_query for k, v in q.items() if not isinstance(v, list)]
    if not keys:
        return True
    for item in items:
        if all(match_value(f"{keyword}>{k}", vrs.get(k, "LO"), v, item.get(k), fuzzy=fuzzy) for k, v in keys):
            return True
    return False
