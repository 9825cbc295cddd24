"""STOW-RS: Store Transaction (PS3.18 10.5).

The whole body is read first (within ``max_upload_mb``; a bigger one is a
413) and split; every part is checked (is it DICOM, does its study match the
URL) before anything is written, so a malformed or oversized request stores
nothing. Each accepted object goes to :meth:`Archive.store`, which writes it
atomically and indexes it: it is searchable and retrievable at once.

The reply is the standard store report (Table 10.5.3-3) with status 200 when
every object was stored, 202 when some were, 409 when none was.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from flask import Blueprint, request
from pydicom import dcmread

from ..errors import StoreRefused
from .common import ROOT, archive, check_uid, instance_url, json_response, pacs, study_url
from .dicomjson import store_report
from .errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from .media import DICOM, Part, boundary_of, parse_media_type, parse_multipart

log = logging.getLogger(__name__)

bp = Blueprint("stow", __name__, url_prefix=ROOT)

# Failure Reasons (PS3.4 Annex B.2.3 statuses, as used by PS3.18 10.5.3).
PROCESSING_FAILURE = 0x0110
STUDY_MISMATCH = 0xA900  # the object's Study Instance UID differs from the target study of the URL
CANNOT_UNDERSTAND = 0xC000
READ_CHUNK = 1 << 20


@dataclass
class Failure:
    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int
    message: str


def read_body(limit: int) -> bytes:
    """The request body, refused with 413 once it exceeds ``limit`` bytes (Content-Length or chunked)."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the request body is {length} bytes; the limit is {limit} bytes (setting max_upload_mb)")
    stream = request.stream
    chunks, total = [], 0
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes (setting max_upload_mb)")
        chunks.append(chunk)
    return b"".join(chunks)


def _parts() -> list[Part]:
    content_type = request.headers.get("Content-Type", "")
    parsed = parse_media_type(content_type)
    limit = pacs().config.max_upload_mb * 2**20
    if parsed is not None and parsed.media_type == DICOM:  # a single object, not multipart (a convenience)
        return [Part({"content-type": DICOM}, read_body(limit))]
    top, boundary = boundary_of(content_type)
    part_type = (top.part_type or DICOM).lower()
    if part_type != DICOM:
        raise UnsupportedMediaType(
            f'only type="{DICOM}" is accepted for STOW-RS (Part 10 objects); got type="{part_type}"')
    parts = parse_multipart(read_body(limit), boundary)
    if not parts:
        raise BadRequest("the multipart body holds no part")
    for part in parts:
        part.headers.setdefault("content-type", DICOM)
    return parts


def _check(part: Part, index: int, study: str | None):
    """A part -> (dataset, None) when it may be stored, else (None, Failure). Writes nothing."""
    media = parse_media_type(part.content_type or DICOM)
    if media is None or media.media_type != DICOM:
        return None, Failure("", "", CANNOT_UNDERSTAND, f"part {index}: {part.content_type} is not {DICOM}")
    try:
        ds = dcmread(io.BytesIO(part.data), stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types for data that is not DICOM
        return None, Failure("", "", CANNOT_UNDERSTAND, f"part {index} is not a DICOM Part 10 object: {exc}")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop_instance = str(ds.get("SOPInstanceUID", "") or "")
    object_study = str(ds.get("StudyInstanceUID", "") or "")
    if study is not None and object_study != study:
        return None, Failure(sop_class, sop_instance, STUDY_MISMATCH,
                             f"part {index}: Study Instance UID {object_study or '(none)'} does not match the URL's {study}")
    return ds, None


@bp.post("/studies")
def store_studies():
    return store(None)


@bp.post("/studies/<study>")
def store_study(study: str):
    check_uid(study, "study")
    return store(study)


def store(study: str | None):
    parts = _parts()
    failures: list[Failure] = []
    accepted = []
    for index, part in enumerate(parts, start=1):
        ds, failure = _check(part, index, study)
        if failure is not None:
            failures.append(failure)
        else:
            accepted.append((part, ds))
    referenced = []
    studies = []
    for part, ds in accepted:
        try:
            result = archive().store(part.data)
        except StoreRefused as exc:
            failures.append(Failure(str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")),
                                    PROCESSING_FAILURE, str(exc)))
            continue
        series = str(ds.SeriesInstanceUID)
        referenced.append({"sop_class_uid": result.sop_class_uid, "sop_instance_uid": result.sop_instance_uid,
                           "retrieve_url": instance_url(result.study_instance_uid, series, result.sop_instance_uid)})
        if result.study_instance_uid not in studies:
            studies.append(result.study_instance_uid)
    for failure in failures:
        log.info("STOW-RS refused an object: %s", failure.message)
    target = study or (studies[0] if len(studies) == 1 else None)
    report = store_report(study_url(target) if target else None, referenced,
                          [f.__dict__ for f in failures])
    status = 200 if not failures else 202 if referenced else 409
    headers = {}
    if failures:
        # The report has no free-text field; the reasons go in Warning headers (PS3.18 8.6.2 uses 299).
        headers["Warning"] = ", ".join(f'299 SynthPACS "{_quoted(f.message)}"' for f in failures[:20])
    return json_response(report, status=status, headers=headers)


def _quoted(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', "'").replace("\r", " ").replace("\n", " ")[:300]
    return text.encode("ascii", "replace").decode("ascii")
