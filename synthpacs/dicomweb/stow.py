"""STOW-RS: Store Transaction (PS3.18 10.5).

The body is read as a stream (chunked uploads too) and split into parts by
:class:`~.media.MultipartReader` as it arrives; each part's bytes go to one
temporary spool file, so memory holds about one part, never the whole
request. A body bigger than ``max_upload_mb`` (a 413), malformed or
truncated (a 400) stores nothing. Once the body is whole, each part is
checked and parsed once by :func:`~synthpacs.archive.intake.receive` (is it
DICOM, complete, does its study match the URL) and handed to
:meth:`Archive.store`, which applies the UID policy, writes it atomically
and indexes it: it is searchable and retrievable at once. A refused part
harms neither the others nor an earlier copy of the same object.

The reply is the standard store report (Table 10.5.3-3) with status 200 when
every object was stored, 202 when some were, 409 when none was; the
reasons go in ``Warning`` headers.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from flask import Blueprint, request

from ..archive.intake import receive
from ..errors import StoreRefusalValues, StoreRefused
from .common import ROOT, archive, check_uid, instance_url, json_response, pacs, study_url
from .dicomjson import store_report
from .errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from .media import DICOM, MultipartReader, boundary_of, parse_media_type

log = logging.getLogger(__name__)

bp = Blueprint("stow", __name__, url_prefix=ROOT)

# Failure Reasons (PS3.4 Annex B.2.3 statuses, as used by PS3.18 10.5.3).
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900  # a required UID is missing or invalid, or the study differs from the URL's
CANNOT_UNDERSTAND = 0xC000
READ_CHUNK = 1 << 20
SPOOL_IN_MEMORY = 8 << 20  # parts are spooled in memory up to this many bytes in all, then on disk

# The archive's refusals as Failure Reasons.
FAILURE_REASONS = {
    StoreRefusalValues.NOT_DICOM: CANNOT_UNDERSTAND,
    StoreRefusalValues.INCOMPLETE: CANNOT_UNDERSTAND,
    StoreRefusalValues.CANNOT_ENCODE: CANNOT_UNDERSTAND,
    StoreRefusalValues.MISSING_UID: DOES_NOT_MATCH,
    StoreRefusalValues.INVALID_UID: DOES_NOT_MATCH,
    StoreRefusalValues.UID_MISMATCH: DOES_NOT_MATCH,
    StoreRefusalValues.SYNTHETIC_UID: PROCESSING_FAILURE,
    StoreRefusalValues.SYNTHETIC_SERIES: PROCESSING_FAILURE,
    StoreRefusalValues.KIND_MISMATCH: PROCESSING_FAILURE,
}


@dataclass
class Failure:
    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int
    message: str


@dataclass
class SpooledPart:
    """One part of the body: its headers, and where its bytes lie in the spool."""

    headers: dict[str, str]  # lower-case names
    spool: IO[bytes]
    offset: int
    length: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type") or DICOM

    def data(self) -> bytes:
        self.spool.seek(self.offset)
        return self.spool.read(self.length)


def body_chunks(limit: int) -> Iterator[bytes]:
    """The request body as it arrives, refused with 413 once it exceeds ``limit`` bytes (Content-Length or chunked)."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"the request body is {length} bytes; the limit is {limit} bytes (setting max_upload_mb)")
    stream = request.stream
    total = 0
    while True:
        chunk = stream.read(READ_CHUNK)
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes (setting max_upload_mb)")
        yield chunk


@contextmanager
def spooled_parts() -> Iterator[list[SpooledPart]]:
    """The parts of the request, each spooled as it streams in; the spool is removed afterwards.

    Raises
    ------
    PayloadTooLarge, UnsupportedMediaType, BadRequest
        Before any part is stored.
    """
    content_type = request.headers.get("Content-Type", "")
    parsed = parse_media_type(content_type)
    limit = pacs().config.max_upload_mb * 2**20
    folder = pacs().config.data_path
    with tempfile.SpooledTemporaryFile(
        max_size=SPOOL_IN_MEMORY, prefix=".stow-", dir=folder if folder.is_dir() else None
    ) as spool:
        parts: list[SpooledPart] = []

        def open_part(headers: dict[str, str]) -> Callable[[bytes], None]:
            part = SpooledPart(headers, spool, spool.tell())
            parts.append(part)

            def take(data: bytes) -> None:
                spool.write(data)
                part.length += len(data)

            return take

        if parsed is not None and parsed.media_type == DICOM:  # a single object, not multipart (a convenience)
            take = open_part({"content-type": DICOM})
            for chunk in body_chunks(limit):
                take(chunk)
        else:
            top, boundary = boundary_of(content_type)
            part_type = (top.part_type or DICOM).lower()
            if part_type != DICOM:
                raise UnsupportedMediaType(
                    f'only type="{DICOM}" is accepted for STOW-RS (Part 10 objects); got type="{part_type}"'
                )
            reader = MultipartReader(boundary, open_part)
            for chunk in body_chunks(limit):
                reader.feed(chunk)
            reader.close()
            if not parts:
                raise BadRequest("the multipart body holds no part")
        yield parts


def _store_part(part: SpooledPart, index: int, study: str | None):
    """One part -> (the store result and its series UID, None), or (None, Failure)."""
    media = parse_media_type(part.content_type)
    if media is None or media.media_type != DICOM:
        return None, Failure("", "", CANNOT_UNDERSTAND, f"part {index}: {part.content_type} is not {DICOM}")
    try:
        received = receive(part.data(), expected={"StudyInstanceUID": study} if study else None, source="the study of the URL")
        return (archive().store(received), received.series_instance_uid), None
    except StoreRefused as exc:
        return None, Failure(exc.sop_class_uid, exc.sop_instance_uid, FAILURE_REASONS[exc.reason], f"part {index}: {exc}")
    except OSError as exc:
        log.error("STOW-RS could not write part %d: %s", index, exc)
        return None, Failure("", "", OUT_OF_RESOURCES, f"part {index} could not be written: {exc.strerror or exc}")


@bp.post("/studies")
def store_studies():
    return store(None)


@bp.post("/studies/<study>")
def store_study(study: str):
    check_uid(study, "study")
    return store(study)


def store(study: str | None):
    failures: list[Failure] = []
    referenced = []
    studies = []
    with spooled_parts() as parts:
        for index, part in enumerate(parts, start=1):
            stored, failure = _store_part(part, index, study)
            if failure is not None:
                failures.append(failure)
                continue
            result, series = stored
            referenced.append(
                {
                    "sop_class_uid": result.sop_class_uid,
                    "sop_instance_uid": result.sop_instance_uid,
                    "retrieve_url": instance_url(result.study_instance_uid, series, result.sop_instance_uid),
                }
            )
            if result.study_instance_uid not in studies:
                studies.append(result.study_instance_uid)
    for failure in failures:
        log.info("STOW-RS refused an object: %s", failure.message)
    target = study or (studies[0] if len(studies) == 1 else None)
    report = store_report(study_url(target) if target else None, referenced, [f.__dict__ for f in failures])
    status = 200 if not failures else 202 if referenced else 409
    headers = {}
    if failures:
        # The report has no free-text field; the reasons go in Warning headers (PS3.18 8.6.2 uses 299).
        headers["Warning"] = ", ".join(f'299 SynthPACS "{_quoted(f.message)}"' for f in failures[:20])
    return json_response(report, status=status, headers=headers)


def _quoted(text: str) -> str:
    text = text.replace("\\", "\\\\").replace('"', "'").replace("\r", " ").replace("\n", " ")[:300]
    return text.encode("ascii", "replace").decode("ascii")
