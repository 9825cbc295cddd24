"""Media types: parsing ``Accept``, choosing what to send, multipart bodies.

Real clients write the same wish many ways (research/viewers.md §1.3, §2):
quoted and unquoted ``type`` and ``transfer-syntax`` parameters, ``*``,
``*/*``, and several alternatives joined by commas, sometimes the same
header twice (older OHIF appends a frames Accept to the JSON one). Parsing
here is tolerant; a 406 is answered only when no alternative can be served
(PS3.18 8.7.3 and 8.7.4 list the media types and transfer syntaxes).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser
from werkzeug.http import parse_list_header, parse_options_header

from .errors import BadRequest, NotAcceptable, UnsupportedMediaType

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# Transfer syntaxes (PS3.5 A): the ones this server can produce.
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
ANY_TS = "*"  # the client takes any: stored objects go as stored, synthetic ones as Explicit VR LE

DICOM_TRANSFER_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE, RLE_LOSSLESS, JPEG2000_LOSSLESS)
NATIVE_TRANSFER_SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"
JPEG = "image/jpeg"
PNG = "image/png"

# Pixel data media types of frames and bulk data (PS3.18 Table 8.7.3-5).
FRAME_MEDIA_TYPES = {
    OCTET_STREAM: (EXPLICIT_VR_LE,),
    "image/dicom-rle": (RLE_LOSSLESS,),
    "image/x-dicom-rle": (RLE_LOSSLESS,),
    "image/jp2": (JPEG2000_LOSSLESS,),
}


@dataclass(frozen=True)
class MediaRange:
    """One alternative of an Accept header: ``type/subtype`` plus parameters."""

    media_type: str  # lower case, e.g. "multipart/related"
    params: dict = field(default_factory=dict)  # lower-case names, unquoted values (first wins)
    q: float = 1.0

    @property
    def is_multipart(self) -> bool:
        return self.media_type in ("multipart/related", "multipart/*")

    @property
    def part_type(self) -> str | None:
        """The ``type`` parameter of a multipart range, lower case."""
        value = self.params.get("type")
        return value.strip().lower() if value else None

    @property
    def transfer_syntax(self) -> str | None:
        value = self.params.get("transfer-syntax")
        return value.strip() if value else None

    def __str__(self) -> str:
        text = self.media_type
        for name, value in self.params.items():
            text += f'; {name}="{value}"'
        return text


# An unquoted parameter value, or a quoted string to leave alone (scanned left to right).
_UNQUOTED_VALUE = re.compile(r'"(?:[^"\\]|\\.)*"|(;\s*[^\s;,="]+\s*=\s*)([^\s";,]+)')


def _quote_values(text: str) -> str:
    """Every unquoted parameter value quoted. Werkzeug follows RFC 9110, where
    ``/``, ``=`` and ``?`` cannot stand in an unquoted value; clients send
    ``type=application/octet-stream`` (OHIF) and boundaries such as ``----=_Part_1``."""
    return _UNQUOTED_VALUE.sub(lambda m: f'{m.group(1)}"{m.group(2)}"' if m.group(1) else m.group(0), text)


def parse_media_type(text: str) -> MediaRange | None:
    """``type/subtype; name=value ...`` -> MediaRange, or None when it is not one.

    Parsed by :func:`werkzeug.http.parse_options_header`: names are lower
    case, values unquoted; a repeated parameter keeps its last value.
    """
    media_type, params = parse_options_header(_quote_values(text or ""))
    media_type = media_type.strip().lower()
    if media_type == "*":
        media_type = "*/*"  # seen from old clients
    if "/" not in media_type:
        return None
    q = 1.0
    if "q" in params:
        try:
            q = max(0.0, min(1.0, float(params.pop("q"))))
        except ValueError:
            q = 1.0
    return MediaRange(media_type, params, q)


def parse_accept(values: Iterable[str] | str | None) -> list[MediaRange]:
    """Every alternative of one or more Accept header values, best first.

    Alternatives with q=0 are dropped; the order among equal q is kept (the
    client's order decides among equals, PS3.18 8.7.3). The alternatives are
    split by :func:`werkzeug.http.parse_list_header` and each parsed by
    :func:`parse_media_type`; ``parse_accept_header`` itself is not used as
    it reorders equal alternatives by specificity.
    """
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    ranges = []
    for value in values:
        for text in parse_list_header(value):
            parsed = parse_media_type(text)
            if parsed is not None and parsed.q > 0:
                ranges.append(parsed)
    ranges.sort(key=lambda r: -r.q)  # stable
    return ranges


def _matches(pattern: str, media_type: str) -> bool:
    """Does a media range pattern (``*/*``, ``image/*``, exact) cover ``media_type``?"""
    if pattern in ("*/*", media_type):
        return True
    main, _, sub = pattern.partition("/")
    return sub == "*" and media_type.partition("/")[0] == main


# -- decisions -------------------------------------------------------------------------


def accepts_json(ranges: list[MediaRange]) -> bool:
    """QIDO and metadata: JSON unless the client asked only for types that are clearly not JSON.

    A multipart alternative beside the JSON one (older OHIF) or on its own is
    answered with JSON too: the resource has only that form (pitfall 3).
    """
    if not ranges:
        return True
    for r in ranges:
        if r.is_multipart or _matches(r.media_type, DICOM_JSON) or _matches(r.media_type, "application/json"):
            return True
    return False


def require_json(ranges: list[MediaRange]) -> None:
    if not accepts_json(ranges):
        wanted = ", ".join(str(r) for r in ranges)
        raise NotAcceptable(f"this resource is served as {DICOM_JSON} only; the request accepts {wanted}")


@dataclass(frozen=True)
class DicomChoice:
    """How to send Part 10 objects: multipart or single part, and the transfer syntaxes to try in order."""

    multipart: bool
    transfer_syntaxes: tuple[str, ...]


def _dicom_ts(r: MediaRange) -> str | None:
    ts = r.transfer_syntax
    if ts is None:
        return EXPLICIT_VR_LE  # PS3.18 8.7.3.5.2: the default for application/dicom
    if ts == "*":
        return ANY_TS
    return ts if ts in DICOM_TRANSFER_SYNTAXES else None


def negotiate_dicom(ranges: list[MediaRange], *, single_part_allowed: bool = False) -> DicomChoice:
    """Study, series and instance retrieve (PS3.18 8.7.3.5.1).

    Raises
    ------
    NotAcceptable
        No alternative names application/dicom (or a wildcard) with a transfer syntax this server makes.
    """
    if not ranges:
        return DicomChoice(True, (EXPLICIT_VR_LE,))
    multipart: bool | None = None
    syntaxes: list[str] = []
    for r in ranges:
        if r.is_multipart:
            part = r.part_type or DICOM
            if not _matches(part, DICOM):
                continue
            is_multipart = True
        elif _matches(r.media_type, DICOM):
            is_multipart = not (single_part_allowed and r.media_type == DICOM)
        else:
            continue
        ts = _dicom_ts(r)
        if ts is None:
            continue
        if multipart is None:
            multipart = is_multipart
        if ts not in syntaxes:
            syntaxes.append(ts)
    if not syntaxes:
        raise NotAcceptable(
            f"cannot serve {', '.join(str(r) for r in ranges)}: this resource is served as "
            f'multipart/related; type="{DICOM}" with transfer-syntax {", ".join(DICOM_TRANSFER_SYNTAXES)} or *'
        )
    return DicomChoice(bool(multipart), tuple(syntaxes))


@dataclass(frozen=True)
class PixelChoice:
    """How to send frames or bulk data: part media type, transfer syntax, multipart or not."""

    media_type: str
    transfer_syntax: str
    multipart: bool = True


def negotiate_pixels(ranges: list[MediaRange], *, resource: str = "frames") -> PixelChoice:
    """Frames and pixel bulk data (PS3.18 8.7.3.3-4): native little endian unless a
    compressed type is asked for; uncompressed octet-stream for ``*``, ``*/*`` and no TS.

    Raises
    ------
    NotAcceptable
        Nothing asked for can be produced.
    """
    native = PixelChoice(OCTET_STREAM, EXPLICIT_VR_LE)
    if not ranges:
        return native
    for r in ranges:
        if r.is_multipart:
            part, multipart = (r.part_type or OCTET_STREAM), True
        else:
            # Only a plain application/octet-stream (OHIF's "singlepart") gets a body that is not multipart.
            part, multipart = r.media_type, r.media_type != OCTET_STREAM
        ts = r.transfer_syntax
        if part in ("*/*", "application/*", OCTET_STREAM):
            if ts in (None, "*", EXPLICIT_VR_LE, IMPLICIT_VR_LE):
                return PixelChoice(OCTET_STREAM, EXPLICIT_VR_LE, multipart)
            if ts == RLE_LOSSLESS and part != OCTET_STREAM:
                return PixelChoice("image/dicom-rle", RLE_LOSSLESS, multipart)
            if ts == JPEG2000_LOSSLESS and part != OCTET_STREAM:
                return PixelChoice("image/jp2", JPEG2000_LOSSLESS, multipart)
            continue
        if part == "image/*":
            if ts in (None, "*", JPEG2000_LOSSLESS):
                return PixelChoice("image/jp2", JPEG2000_LOSSLESS, multipart)
            if ts == RLE_LOSSLESS:
                return PixelChoice("image/dicom-rle", RLE_LOSSLESS, multipart)
            continue
        syntaxes = FRAME_MEDIA_TYPES.get(part)
        if syntaxes and (ts in (None, "*") or ts in syntaxes):
            return PixelChoice(part, syntaxes[0], multipart)
    raise NotAcceptable(
        f"cannot serve {resource} as {', '.join(str(r) for r in ranges)}: available are "
        f'multipart/related; type="{OCTET_STREAM}" (transfer-syntax {EXPLICIT_VR_LE} or *), '
        f'type="image/dicom-rle" ({RLE_LOSSLESS}) and type="image/jp2" ({JPEG2000_LOSSLESS})'
    )


RENDERED_TYPES = (JPEG, PNG)


@dataclass(frozen=True)
class ImageChoice:
    media_type: str
    multipart: bool = False


def negotiate_image(ranges: list[MediaRange]) -> ImageChoice:
    """Rendered and thumbnail resources (PS3.18 8.7.4): JPEG unless PNG is preferred.

    Raises
    ------
    NotAcceptable
        Neither JPEG nor PNG is acceptable.
    """
    if not ranges:
        return ImageChoice(JPEG)
    for r in ranges:
        pattern, multipart = (r.part_type or "image/*", True) if r.is_multipart else (r.media_type, False)
        for candidate in RENDERED_TYPES:
            if _matches(pattern, candidate):
                return ImageChoice(candidate, multipart)
    raise NotAcceptable(f"cannot render as {', '.join(str(r) for r in ranges)}: available are {JPEG} and {PNG}")


# -- multipart ---------------------------------------------------------------------------


def new_boundary() -> str:
    return uuid.uuid4().hex


def multipart_content_type(part_type: str, boundary: str) -> str:
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def multipart_chunks(parts: Iterable[tuple[str, bytes]], boundary: str) -> Iterator[bytes]:
    """A multipart/related body (RFC 2387) from (Content-Type, bytes) pairs, part by part.

    The body starts with the first delimiter line, no preamble (cornerstone
    needs that), every part has a ``Content-Type`` header and the closing
    delimiter ends it.
    """
    delimiter = f"--{boundary}".encode()
    first = True
    for content_type, data in parts:
        head = (b"" if first else b"\r\n") + delimiter + f"\r\nContent-Type: {content_type}\r\n\r\n".encode()
        first = False
        yield head
        yield data
    if first:  # no part at all: still a well-formed (empty) body
        yield delimiter + b"--\r\n"
        return
    yield b"\r\n" + delimiter + b"--\r\n"


@dataclass
class Part:
    headers: dict[str, str]  # lower-case names
    data: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def boundary_of(content_type: str | None) -> tuple[MediaRange, str]:
    """The multipart/related media type of a request and its boundary.

    Raises
    ------
    UnsupportedMediaType
        The body is not multipart/related.
    BadRequest
        It has no boundary.
    """
    parsed = parse_media_type(content_type or "")
    if parsed is None or parsed.media_type != "multipart/related":
        raise UnsupportedMediaType(
            f'expected a multipart/related request body (type="{DICOM}"), got {content_type or "no Content-Type"}'
        )
    boundary = parsed.params.get("boundary")
    if not boundary:
        raise BadRequest("the multipart/related Content-Type has no boundary parameter")
    return parsed, boundary


MAX_PREAMBLE = 64 * 1024  # bytes before the first delimiter that are skipped (RFC 2046 5.1.1)


class MultipartReader:
    """A multipart body (RFC 2046 5.1.1) read as a stream, with python-multipart.

    Feed it the body in chunks of any size as they arrive. For each part,
    ``open_part(headers)`` is called once its headers are read (names in lower
    case) and returns the function that takes the part's data, piece by piece;
    a part is never held whole here. A preamble (such as the CRLF some
    clients send first) is skipped; :meth:`close` refuses a body that ended
    before its closing delimiter.

    Raises
    ------
    BadRequest
        From :meth:`feed` or :meth:`close`: no delimiter, a malformed part, or a truncated body.
    """

    def __init__(self, boundary: str, open_part: Callable[[dict[str, str]], Callable[[bytes], None]]):
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._open_part = open_part
        self._preamble: bytearray | None = bytearray()
        self._sink: Callable[[bytes], None] | None = None
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()
        self.parts = 0
        self._ended = False
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks=callbacks)

    def _part_begin(self) -> None:
        self._headers, self._sink = {}, None

    def _header_end(self) -> None:
        name = self._field.decode("latin-1").strip().lower()
        if name:
            self._headers[name] = self._value.decode("latin-1").strip()
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        self.parts += 1
        self._sink = self._open_part(self._headers)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        sink = self._sink
        if sink is None:  # the parser reports a part's data only after its headers
            raise BadRequest("the multipart body is malformed: part data before its headers")
        sink(bytes(data[start:end]))

    def _end(self) -> None:
        self._ended = True

    def feed(self, chunk: bytes) -> None:
        if self._preamble is not None:  # skip what precedes the first delimiter
            self._preamble += chunk
            buffer = self._preamble
            if buffer.startswith(self._delimiter):
                start = 0
            else:
                found = buffer.find(b"\r\n" + self._delimiter)
                if found < 0:
                    if len(buffer) > MAX_PREAMBLE:
                        raise BadRequest("the multipart body does not contain its boundary")
                    return
                start = found + 2
            self._preamble = None
            chunk = bytes(buffer[start:])
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(f"the multipart body is malformed: {exc}") from None

    def close(self) -> None:
        if self._preamble is not None:
            raise BadRequest("the multipart body does not contain its boundary")
        if not self._ended:
            raise BadRequest("the multipart body is truncated (no closing boundary)")


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """A whole multipart body -> its parts (see :class:`MultipartReader`).

    Raises
    ------
    BadRequest
        The delimiter never occurs, or the body ends before the closing delimiter.
    """
    collected: list[tuple[dict[str, str], list[bytes]]] = []

    def open_part(headers: dict[str, str]) -> Callable[[bytes], None]:
        chunks: list[bytes] = []
        collected.append((headers, chunks))
        return chunks.append

    reader = MultipartReader(boundary, open_part)
    reader.feed(body)
    reader.close()
    return [Part(headers, b"".join(chunks)) for headers, chunks in collected]
