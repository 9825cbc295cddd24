"""Rendered and thumbnail resources (PS3.18 8.3.5, 8.7.4; thumbnails PS3.18 10.4.1.1.4):
consumer-ready JPEG or PNG images, drawn by :mod:`synthpacs.imaging.render`
(an instance without pixels, such as an SR, renders as a text card).

Query parameters (PS3.18 8.3.5.1): ``viewport=vw,vh`` (fit within),
``window=center,width[,function]``, ``quality=1..100``. A bad value is a 400
naming it. Weasis asks for ``/series/{se}/thumbnail?viewport=64,64`` and falls
back to ``/instances/{sop}/rendered`` (research/viewers.md §3).
"""

from __future__ import annotations

import math
import re

from flask import Blueprint, Response, request
from pydicom import Dataset

from ..archive.api import InstanceRef
from .common import ROOT, accept_ranges, instance_dataset, instance_refs, multipart_response
from .errors import BadRequest, NotAcceptable
from .media import ImageChoice, negotiate_image
from .pixels import check_frames, has_pixels, number_of_frames
from .wado import parse_frame_list

bp = Blueprint("rendered", __name__, url_prefix=ROOT)

MAX_VIEWPORT = 8192
DEFAULT_THUMBNAIL = (128, 128)
DEFAULT_QUALITY = 90
WINDOW_FUNCTIONS = {"linear", "linear_exact", "linear-exact", "sigmoid"}

_NUMBER = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"


class RenderParams:
    """The rendering parameters of one request, validated."""

    def __init__(self, args, *, thumbnail: bool = False):
        self.viewport = _viewport(args.get("viewport")) or (DEFAULT_THUMBNAIL if thumbnail else None)
        self.window = _window(args.get("window"))
        self.quality = _quality(args.get("quality"))


def _viewport(text: str | None) -> tuple[int, int] | None:
    if text is None or text == "":
        return None
    pieces = [p.strip() for p in text.split(",")]
    if len(pieces) != 2 or not all(re.fullmatch(r"\d+", p) for p in pieces):
        raise BadRequest(f"viewport must be two positive integers vw,vh; got {text!r}")
    width, height = int(pieces[0]), int(pieces[1])
    if not (1 <= width <= MAX_VIEWPORT and 1 <= height <= MAX_VIEWPORT):
        raise BadRequest(f"viewport must be between 1 and {MAX_VIEWPORT} pixels each way; got {text!r}")
    return width, height


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None or text == "":
        return None
    pieces = [p.strip() for p in text.split(",")]
    if len(pieces) not in (2, 3) or not all(re.fullmatch(_NUMBER, p) for p in pieces[:2]):
        raise BadRequest(f"window must be center,width[,function] with numbers; got {text!r}")
    center, width = float(pieces[0]), float(pieces[1])
    if not (math.isfinite(center) and math.isfinite(width)):
        raise BadRequest(f"window values must be finite numbers; got {text!r}")
    if width < 1:
        raise BadRequest(f"window width must be at least 1 (PS3.3 C.11.2.1.2); got {text!r}")
    if len(pieces) == 3 and pieces[2].lower() not in WINDOW_FUNCTIONS:
        raise BadRequest(f"window function must be linear, linear-exact or sigmoid; got {pieces[2]!r}")
    return center, width


def _quality(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_QUALITY
    if not re.fullmatch(r"\d+", text.strip()) or not 1 <= int(text) <= 100:
        raise BadRequest(f"quality must be an integer from 1 to 100; got {text!r}")
    return int(text)


def render(ds: Dataset, frame: int, params: RenderParams, media_type: str) -> bytes:
    """One frame (1-based) as JPEG or PNG bytes."""
    from ..imaging.render import encode_image, render_frame

    try:
        image = render_frame(ds, frame=frame, window=params.window, viewport=params.viewport)
    except (ValueError, NotImplementedError) as exc:  # pixels this renderer cannot draw (a stored object's)
        raise NotAcceptable(f"instance {ds.get('SOPInstanceUID', '')} cannot be rendered: {exc}") from None
    return encode_image(image, media_type, params.quality)


def _image_response(images: list[bytes], choice: ImageChoice) -> Response:
    if len(images) == 1 and not choice.multipart:
        return Response(images[0], content_type=choice.media_type)
    return multipart_response(((choice.media_type, data) for data in images), choice.media_type)


def is_image(ref: InstanceRef) -> bool:
    from ..imaging.registry import renders

    return renders(ref.sop_class_uid)


def representative(refs: list[InstanceRef]) -> InstanceRef:
    """The instance that stands for a series or study: the middle image of the first image series
    (the first instance when nothing is an image)."""
    images = [r for r in refs if is_image(r)] or refs[:1]
    series = images[0].series_instance_uid
    members = [r for r in images if r.series_instance_uid == series]
    return members[(len(members) - 1) // 2]


def _representative_frame(ds: Dataset) -> int:
    return (number_of_frames(ds) + 1) // 2 if has_pixels(ds) else 1


# -- rendered ----------------------------------------------------------------------------


@bp.get("/studies/<study>/series/<series>/instances/<instance>/rendered")
def instance_rendered(study: str, series: str, instance: str):
    params = RenderParams(request.args)
    choice = negotiate_image(accept_ranges())
    ds = instance_dataset(instance_refs(study, series, instance)[0])
    return _image_response([render(ds, 1, params, choice.media_type)], choice)


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<frame_list>/rendered")
def frames_rendered(study: str, series: str, instance: str, frame_list: str):
    frames = parse_frame_list(frame_list)
    params = RenderParams(request.args)
    choice = negotiate_image(accept_ranges())
    ds = instance_dataset(instance_refs(study, series, instance)[0])
    check_frames(ds, frames)
    return _image_response([render(ds, n, params, choice.media_type) for n in frames], choice)


@bp.get("/studies/<study>/series/<series>/rendered")
def series_rendered(study: str, series: str):
    """One image (the representative one) unless a multipart of every image is asked for."""
    params = RenderParams(request.args)
    choice = negotiate_image(accept_ranges())
    refs = instance_refs(study, series)
    if not choice.multipart:
        ds = instance_dataset(representative(refs))
        return _image_response([render(ds, _representative_frame(ds), params, choice.media_type)], choice)
    images = [r for r in refs if is_image(r)] or refs
    parts = ((choice.media_type, render(instance_dataset(r), 1, params, choice.media_type)) for r in images)
    return multipart_response(parts, choice.media_type)


# -- thumbnails --------------------------------------------------------------------------


def _thumbnail(refs: list[InstanceRef]) -> Response:
    params = RenderParams(request.args, thumbnail=True)
    choice = negotiate_image(accept_ranges())
    ds = instance_dataset(representative(refs))
    return Response(render(ds, _representative_frame(ds), params, choice.media_type), content_type=choice.media_type)


@bp.get("/studies/<study>/thumbnail")
def study_thumbnail(study: str):
    return _thumbnail(instance_refs(study))


@bp.get("/studies/<study>/series/<series>/thumbnail")
def series_thumbnail(study: str, series: str):
    return _thumbnail(instance_refs(study, series))


@bp.get("/studies/<study>/series/<series>/instances/<instance>/thumbnail")
def instance_thumbnail(study: str, series: str, instance: str):
    return _thumbnail(instance_refs(study, series, instance))


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<frame_list>/thumbnail")
def frame_thumbnail(study: str, series: str, instance: str, frame_list: str):
    frames = parse_frame_list(frame_list)
    params = RenderParams(request.args, thumbnail=True)
    choice = negotiate_image(accept_ranges())
    ds = instance_dataset(instance_refs(study, series, instance)[0])
    check_frames(ds, frames[:1])
    return Response(render(ds, frames[0], params, choice.media_type), content_type=choice.media_type)
