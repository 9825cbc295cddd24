"""QIDO-RS: Search Transaction (PS3.18 10.6) over the catalog.

Translate the query string into an archive query, ask the archive, encode
the matches as DICOM JSON. The rules of DESIGN §5: keys as keywords or tags;
``includefield`` comma-joined, repeated or ``all``; ``,`` or ``\\`` lists;
wildcards and ranges passed to the catalog; ``limit``/``offset`` over its
stable order, ``[]`` past the end; a key that is not a DICOM attribute is
ignored, never a 400.
"""

from __future__ import annotations

import functools
import re

from flask import Blueprint, request
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from ..archive.catalog import RETURN_KEYWORDS, Attributes, QueryLevel
from .common import ROOT, accept_ranges, archive, check_uid, instance_url, json_response, pacs, series_url, study_url
from .dicomjson import keyword_tag_vr, tag_hex, value_json
from .errors import BadRequest, NotFound
from .media import require_json

bp = Blueprint("qido", __name__, url_prefix=ROOT)

CONTROL_PARAMS = {"limit", "offset", "fuzzymatching", "includefield", "accept", "charset", "_"}
LIST_VRS = {"UI", "CS"}  # a comma is a list separator only where it cannot be part of a value
_TAG = re.compile(r"^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$")
MAX_PAGE_NUMBER = 2**53  # limit/offset beyond this cannot mean anything (and SQLite integers stop at 2**63)
WARNING_MORE = (
    '299 SynthPACS "The number of results exceeded the maximum supported by the server. Additional results can be requested."'
)


def attribute_keyword(name: str) -> str | None:
    """A query key (``PatientID``, ``00100020``) -> its keyword; None if it is not a DICOM attribute."""
    name = name.strip()
    match = _TAG.match(name)
    if match:
        keyword = keyword_for_tag(int(match.group(1) + match.group(2), 16))
        return keyword or None
    return name if tag_for_keyword(name) is not None else None


def _tag(keyword: str) -> int:
    """The tag of a dictionary keyword (every keyword here has passed :func:`attribute_keyword`)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword!r} is not a DICOM keyword")
    return tag


def _vr(keyword: str) -> str:
    return dictionary_VR(_tag(keyword))


def parse_query(args) -> tuple[dict, set[str] | None, bool, int | None, int]:
    """Query string -> (query keys, include fields or None for all, fuzzy, limit, offset).

    Raises
    ------
    BadRequest
        A limit, offset or fuzzymatching value that is not one.
    """
    limit = _non_negative(args, "limit")
    offset = _non_negative(args, "offset") or 0
    fuzzy_text = ",".join(args.getlist("fuzzymatching")).strip().lower()
    if fuzzy_text not in ("", "true", "false"):
        raise BadRequest(f"fuzzymatching must be true or false, got {fuzzy_text!r}")
    fuzzy = fuzzy_text == "true"

    include: set[str] | None = set()
    for value in args.getlist("includefield"):
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item.lower() == "all":
                include = None
                break
            keyword = attribute_keyword(item.split(".")[0])
            if keyword and include is not None:
                include.add(keyword)
        if include is None:
            break

    query: dict = {}
    for name in args:
        if name.lower() in CONTROL_PARAMS:
            continue
        values = [v for v in args.getlist(name)]
        if "." in name:
            _sequence_key(query, name, values)
            continue
        keyword = attribute_keyword(name)
        if keyword is None:
            continue  # not a DICOM attribute: ignored (PS3.18 8.3.4, pitfall 8)
        vr = _vr(keyword)
        if vr == "SQ":
            continue  # a bare sequence key carries nothing to match
        pieces: list[str] = []
        for value in values:
            if vr in LIST_VRS:
                pieces.extend(p.strip() for p in value.replace("\\", ",").split(","))
            else:
                pieces.append(value)
        pieces = [p for p in pieces if p != ""] if len(pieces) > 1 else pieces
        query[keyword] = "\\".join(pieces)
    return query, include, fuzzy, limit, offset


def _sequence_key(query: dict, name: str, values: list[str]) -> None:
    """``ProcedureCodeSequence.CodeValue=X`` or ``00081032.00080100=X`` -> sequence matching."""
    first, _, rest = name.partition(".")
    sequence, item_keyword = attribute_keyword(first), attribute_keyword(rest)
    if sequence is None or item_keyword is None or "." in rest or _vr(sequence) != "SQ":
        return
    items = query.setdefault(sequence, [{}])
    if isinstance(items, list) and items:
        items[0][item_keyword] = "\\".join(values)


def _non_negative(args, name: str) -> int | None:
    values = args.getlist(name)
    if not values:
        return None
    text = values[-1].strip()
    if not re.fullmatch(r"\d+", text):
        raise BadRequest(f"{name} must be a non-negative integer, got {text!r}")
    if int(text) > MAX_PAGE_NUMBER:
        raise BadRequest(f"{name} must be at most {MAX_PAGE_NUMBER}, got {text}")
    return int(text)


@functools.lru_cache(maxsize=4096)
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = _tag(keyword)
    return tag, dictionary_VR(tag).split(" ")[0]


def _selection(level: QueryLevel, include: set[str] | None) -> tuple[set[str] | None, dict[str, str]]:
    """What a search's answers carry: the tags to keep (None: every attribute, ``all``) and the
    included attributes' VRs, so that one the catalog does not hold is returned empty, as C-FIND does."""
    if include is None:
        return None, {}
    included = {tag_hex(tag): vr for tag, vr in map(_tag_and_vr, include)}
    return {tag_hex(_tag_and_vr(k)[0]) for k in RETURN_KEYWORDS[level]} | set(included), included


def _json_item(match: Attributes, wanted: set[str] | None, included: dict[str, str]) -> dict:
    """One match as DICOM JSON: the level's return keys (PS3.18 Table 10.6.3-3/4/5) plus the
    included ones (see :func:`_selection`)."""
    item = {"00080005": {"vr": "CS", "Value": ["ISO_IR 192"]}}
    for keyword, value in match.items():
        tag, vr = keyword_tag_vr(keyword)
        if wanted is None or tag in wanted:
            item[tag] = value_json(vr, value)
    for tag, vr in included.items():
        item.setdefault(tag, {"vr": vr})
    return item


def _retrieve_url(match: Attributes, level: QueryLevel) -> str | None:
    study = match.get("StudyInstanceUID")
    if not study:
        return None
    if level is QueryLevel.STUDY:
        return study_url(str(study))
    series = match.get("SeriesInstanceUID")
    if not series:
        return None
    if level is QueryLevel.SERIES:
        return series_url(str(study), str(series))
    sop = match.get("SOPInstanceUID")
    return instance_url(str(study), str(series), str(sop)) if sop else None


def search(level: QueryLevel, fixed: dict[str, str]):
    """Run one search: ``fixed`` holds the UIDs of the path (nested resources)."""
    require_json(accept_ranges())
    query, include, fuzzy, limit, offset = parse_query(request.args)
    query.update(fixed)
    cap = pacs().config.qido_limit
    wanted = cap if limit is None or limit == 0 else min(limit, cap)
    matches = list(archive().find_attributes(level, query, fuzzy=fuzzy, limit=wanted + 1, offset=offset))
    study_uid = query.get("StudyInstanceUID")
    if isinstance(study_uid, str) and study_uid and "\\" not in study_uid and matches:
        # A viewer that opens a study asks for its series next, then their metadata and
        # pixels: start generating it now.
        archive().prefetch(study_uid)
    headers = {}
    if len(matches) > wanted:
        matches = matches[:wanted]
        if limit is None or limit > cap:
            headers["Warning"] = WARNING_MORE
    out = []
    wanted, included = _selection(level, include)
    for match in matches:
        item = _json_item(match, wanted, included)
        url = _retrieve_url(match, level)
        if url:
            item["00081190"] = {"vr": "UR", "Value": [url]}
        out.append(dict(sorted(item.items())))
    return json_response(out, headers=headers)


def _require_study(study_uid: str) -> None:
    check_uid(study_uid, "study")
    if next(archive().find(QueryLevel.STUDY, {"StudyInstanceUID": study_uid}, limit=1), None) is None:
        raise NotFound(f"no such study {study_uid}")


def _require_series(study_uid: str, series_uid: str) -> None:
    _require_study(study_uid)
    check_uid(series_uid, "series")
    found = archive().find(QueryLevel.SERIES, {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}, limit=1)
    if next(found, None) is None:
        raise NotFound(f"no such series {series_uid} in study {study_uid}")


@bp.get("/studies")
def search_studies():
    return search(QueryLevel.STUDY, {})


@bp.get("/series")
def search_series():
    return search(QueryLevel.SERIES, {})


@bp.get("/instances")
def search_instances():
    return search(QueryLevel.IMAGE, {})


@bp.get("/studies/<study>/series")
def search_study_series(study: str):
    _require_study(study)
    return search(QueryLevel.SERIES, {"StudyInstanceUID": study})


@bp.get("/studies/<study>/instances")
def search_study_instances(study: str):
    _require_study(study)
    return search(QueryLevel.IMAGE, {"StudyInstanceUID": study})


@bp.get("/studies/<study>/series/<series>/instances")
def search_series_instances(study: str, series: str):
    _require_series(study, series)
    return search(QueryLevel.IMAGE, {"StudyInstanceUID": study, "SeriesInstanceUID": series})
