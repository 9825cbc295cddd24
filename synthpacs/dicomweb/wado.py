"""WADO-RS: Retrieve Transaction (PS3.18 10.4): instances, metadata, frames and bulk data.

Instances go out as streamed ``multipart/related; type="application/dicom"``
bodies, one part per Part 10 object, each labelled with its transfer
syntax; frames and bulk data as native little-endian octet-stream parts
unless a compressed form is asked for (research/viewers.md §1.4, §6).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flask import Blueprint, Response, stream_with_context
from pydicom import Dataset

from ..archive.api import InstanceRef
from .common import (
    ROOT,
    accept_ranges,
    archive,
    instance_dataset,
    instance_refs,
    multipart_response,
)
from .errors import BadRequest, NotFound
from .media import (
    ANY_TS,
    DICOM,
    DICOM_JSON,
    EXPLICIT_VR_LE,
    OCTET_STREAM,
    DicomChoice,
    PixelChoice,
    negotiate_dicom,
    negotiate_pixels,
    require_json,
)
from .metadata import metadata_bytes
from .pixels import (
    PIXEL_DATA,
    check_frames,
    encode_frame,
    has_pixels,
    native_frame,
    number_of_frames,
    transcode,
)

bp = Blueprint("wado", __name__, url_prefix=ROOT)


# -- instances ---------------------------------------------------------------------------


def encode_instance(ref: InstanceRef, blob: bytes, syntaxes: tuple[str, ...]) -> tuple[str, bytes]:
    """The object in the first of ``syntaxes`` it can take: (transfer syntax, Part 10 bytes).

    An object that fits none (an SR asked for as RLE, 1-bit SEG pixels asked
    for as JPEG 2000) goes as Explicit VR Little Endian, labelled so.
    """
    current = ref.transfer_syntax_uid or EXPLICIT_VR_LE
    for ts in syntaxes:
        if ts in (ANY_TS, current):
            return current, blob
        out = transcode(blob, current, ts)
        if out is not None:
            return ts, out
    out = transcode(blob, current, EXPLICIT_VR_LE)
    return (EXPLICIT_VR_LE, out) if out is not None else (current, blob)


def _instance_parts(refs: list[InstanceRef], choice: DicomChoice) -> Iterator[tuple[str, bytes]]:
    store = archive()
    for ref in refs:
        ts, data = encode_instance(ref, store.instance_bytes(ref), choice.transfer_syntaxes)
        yield f"{DICOM}; transfer-syntax={ts}", data


def retrieve(refs: list[InstanceRef], *, single_part_allowed: bool = False) -> Response:
    choice = negotiate_dicom(accept_ranges(), single_part_allowed=single_part_allowed)
    if not choice.multipart and len(refs) == 1:
        ts, data = encode_instance(refs[0], archive().instance_bytes(refs[0]), choice.transfer_syntaxes)
        return Response(data, content_type=f"{DICOM}; transfer-syntax={ts}")
    return multipart_response(_instance_parts(refs, choice), DICOM)


@bp.get("/studies/<study>")
def retrieve_study(study: str):
    return retrieve(instance_refs(study))


@bp.get("/studies/<study>/series/<series>")
def retrieve_series(study: str, series: str):
    return retrieve(instance_refs(study, series))


@bp.get("/studies/<study>/series/<series>/instances/<instance>")
def retrieve_instance(study: str, series: str, instance: str):
    return retrieve(instance_refs(study, series, instance), single_part_allowed=True)


# -- metadata ----------------------------------------------------------------------------


def metadata(refs: list[InstanceRef]) -> Response:
    require_json(accept_ranges())
    first = metadata_bytes(refs[0])  # an error on the first instance is a proper error response

    def chunks():
        yield b"[" + first
        for ref in refs[1:]:
            yield b"," + metadata_bytes(ref)
        yield b"]"

    return Response(stream_with_context(chunks()), content_type=DICOM_JSON)


@bp.get("/studies/<study>/metadata")
def study_metadata(study: str):
    return metadata(instance_refs(study))


@bp.get("/studies/<study>/series/<series>/metadata")
def series_metadata(study: str, series: str):
    return metadata(instance_refs(study, series))


@bp.get("/studies/<study>/series/<series>/instances/<instance>/metadata")
def instance_metadata_view(study: str, series: str, instance: str):
    return metadata(instance_refs(study, series, instance))


# -- frames ------------------------------------------------------------------------------


def parse_frame_list(text: str) -> list[int]:
    """``1`` or ``1,2,3`` (PS3.18 8.3.3.1.2: 1-based); raises BadRequest otherwise."""
    frames = []
    for piece in text.split(","):
        piece = piece.strip()
        if not re.fullmatch(r"\d+", piece) or int(piece) < 1:
            raise BadRequest(f"frame numbers are positive integers separated by commas, got {text!r}")
        frames.append(int(piece))
    return frames


def _frame_part(ds: Dataset, index: int, choice: PixelChoice) -> tuple[str, bytes]:
    if choice.transfer_syntax == EXPLICIT_VR_LE:
        data = native_frame(ds, index)
    else:
        data = encode_frame(ds, index, choice.transfer_syntax)
    return f"{choice.media_type}; transfer-syntax={choice.transfer_syntax}", data


def _pixel_response(ds: Dataset, indexes: list[int], choice: PixelChoice) -> Response:
    if not choice.multipart and len(indexes) == 1:
        content_type, data = _frame_part(ds, indexes[0], choice)
        return Response(data, content_type=content_type)
    parts = (_frame_part(ds, i, choice) for i in indexes)
    return multipart_response(parts, choice.media_type)


@bp.get("/studies/<study>/series/<series>/instances/<instance>/frames/<frame_list>")
def retrieve_frames(study: str, series: str, instance: str, frame_list: str):
    frames = parse_frame_list(frame_list)
    choice = negotiate_pixels(accept_ranges())
    ref = instance_refs(study, series, instance)[0]
    # Frame numbers are checked on the headers, so a frame that does not exist starts no generation.
    check_frames(archive().metadata_dataset(ref, prefetch=False), frames)
    ds = instance_dataset(ref)
    return _pixel_response(ds, [n - 1 for n in frames], choice)


# -- bulk data ---------------------------------------------------------------------------


def parse_bulk_path(text: str) -> tuple:
    """``7FE00010`` or ``00540016/0/00181074`` -> (tag, index, tag...)."""
    pieces = [p for p in text.split("/") if p]
    if not pieces or len(pieces) % 2 == 0:
        raise BadRequest(f"bulk data path {text!r} must be a tag, or tag/item/.../tag")
    path: list[int] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            if not re.fullmatch(r"[0-9A-Fa-f]{8}", piece):
                raise BadRequest(f"bulk data path {text!r}: {piece!r} is not a tag (8 hex digits)")
            path.append(int(piece, 16))
        else:
            if not piece.isdigit():
                raise BadRequest(f"bulk data path {text!r}: {piece!r} is not an item number")
            path.append(int(piece))
    return tuple(path)


@bp.get("/studies/<study>/series/<series>/instances/<instance>/bulk/<path:tag_path>")
def retrieve_bulkdata(study: str, series: str, instance: str, tag_path: str):
    path = parse_bulk_path(tag_path)
    choice = negotiate_pixels(accept_ranges(), resource="bulk data")
    ref = instance_refs(study, series, instance)[0]
    ds = instance_dataset(ref)
    if path == (PIXEL_DATA,) and has_pixels(ds):
        # All frames, native (or one compressed part per frame when asked).
        indexes = list(range(number_of_frames(ds)))
        if choice.transfer_syntax == EXPLICIT_VR_LE:
            data = b"".join(native_frame(ds, i) for i in indexes)
            return _bulk_response(data, choice)
        return _pixel_response(ds, indexes, choice)
    node: Dataset = ds
    for i in range(0, len(path) - 1, 2):
        tag, item = path[i], path[i + 1]
        if tag not in node or node[tag].VR != "SQ" or item >= len(node[tag].value):
            raise NotFound(f"no bulk data at {tag_path} in instance {instance}")
        node = node[tag].value[item]
    tag = path[-1]
    if tag not in node or not isinstance(node[tag].value, (bytes, bytearray)):
        raise NotFound(f"no bulk data at {tag_path} in instance {instance}")
    return _bulk_response(bytes(node[tag].value), PixelChoice(OCTET_STREAM, EXPLICIT_VR_LE, choice.multipart))


def _bulk_response(data: bytes, choice: PixelChoice) -> Response:
    content_type = f"{OCTET_STREAM}; transfer-syntax={EXPLICIT_VR_LE}"
    if not choice.multipart:
        return Response(data, content_type=OCTET_STREAM)
    return multipart_response([(content_type, data)], OCTET_STREAM)
