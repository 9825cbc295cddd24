"""WADO-URI (PS3.18 9, formerly PS3.18 "WADO"): one object by its three UIDs in the query string.

``GET /wado?requestType=WADO&studyUID=&seriesUID=&objectUID=&contentType=``
serves the Part 10 object (``application/dicom``, with ``transferSyntax``)
or a rendered JPEG/PNG (``rows``, ``columns``, ``windowCenter``,
``windowWidth``, ``frameNumber``, ``imageQuality``). OHIF uses it when
``imageRendering`` is ``wadouri``; Weasis falls back to it for thumbnails.
It is served at ``/wado`` and, for clients configured with one root, at
``/dicom-web/wado``.
"""

from __future__ import annotations

import math
import re

from flask import Blueprint, Response, request

from .common import ROOT, archive, instance_dataset, instance_refs
from .errors import BadRequest, NotAcceptable
from .media import ANY_TS, DICOM, DICOM_TRANSFER_SYNTAXES, EXPLICIT_VR_LE, JPEG, PNG, parse_accept
from .pixels import check_frames, has_pixels
from .render import DEFAULT_QUALITY, MAX_VIEWPORT, RenderParams, render
from .wado import encode_instance

bp = Blueprint("wado_uri", __name__)

CONTENT_TYPES = (DICOM, JPEG, PNG)


def _required(name: str) -> str:
    value = request.args.get(name, "").strip()
    if not value:
        raise BadRequest(f"WADO-URI needs the {name} parameter")
    return value


def _int_param(name: str, low: int, high: int) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}; got {value!r}")
    return int(value)


def _float_param(name: str) -> float | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number; got {value!r}") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number; got {value!r}")
    return number


def _content_type() -> str:
    """The first servable type of ``contentType`` (a comma list, q values allowed; PS3.18 9.1.2.1.4),
    image/jpeg when absent. Every instance renders (an SR as a text card)."""
    text = request.args.get("contentType", "").strip()
    if not text:
        return JPEG
    for r in parse_accept(text):
        for candidate in CONTENT_TYPES:
            if r.media_type in (candidate, "*/*") or (r.media_type == "image/*" and candidate != DICOM):
                return candidate
    raise NotAcceptable(f"contentType {text!r} cannot be served: use {DICOM}, {JPEG} or {PNG}")


def wado_uri():
    request_type = _required("requestType")
    if request_type != "WADO":
        raise BadRequest(f"requestType must be WADO; got {request_type!r}")
    study, series, sop = _required("studyUID"), _required("seriesUID"), _required("objectUID")
    ref = instance_refs(study, series, sop)[0]
    ds = instance_dataset(ref)
    content_type = _content_type()
    if content_type == DICOM:
        wanted = request.args.get("transferSyntax", "").strip() or EXPLICIT_VR_LE
        if wanted != ANY_TS and wanted not in DICOM_TRANSFER_SYNTAXES:
            raise NotAcceptable(f"transferSyntax {wanted} is not offered; use {', '.join(DICOM_TRANSFER_SYNTAXES)} or *")
        ts, data = encode_instance(ref, archive().instance_bytes(ref), (wanted,))
        return Response(data, content_type=DICOM, headers={"Content-Disposition": f'inline; filename="{sop}.dcm"'})
    rows = _int_param("rows", 1, MAX_VIEWPORT)
    columns = _int_param("columns", 1, MAX_VIEWPORT)
    center, width = _float_param("windowCenter"), _float_param("windowWidth")
    if (center is None) != (width is None):
        raise BadRequest("windowCenter and windowWidth go together")
    if width is not None and width < 1:
        raise BadRequest(f"windowWidth must be at least 1; got {width}")
    frame = _int_param("frameNumber", 1, 1_000_000) or 1
    if has_pixels(ds) or frame != 1:
        check_frames(ds, [frame])
    params = RenderParams({})
    if rows or columns:
        params.viewport = (columns or rows, rows or columns)
    params.window = (center, width) if center is not None else None
    params.quality = _int_param("imageQuality", 1, 100) or DEFAULT_QUALITY
    return Response(render(ds, frame, params, content_type), content_type=content_type)


bp.add_url_rule("/wado", "wado_uri", wado_uri, methods=["GET"])
bp.add_url_rule(f"{ROOT}/wado", "wado_uri_under_root", wado_uri, methods=["GET"])
