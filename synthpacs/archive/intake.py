"""Intake: the bytes of an object offered for storage become a fully parsed,
validated data set, or a :class:`StoreRefused` with its reason.

Acceptance means that the object parses completely (DESIGN §2.6: no stored
object is lost to a bad one), for STOW-RS and C-STORE alike:

- it is a Part 10 object (preamble, ``DICM``, File Meta Information);
- every element is read, nested sequences too, and the data set ends exactly
  where its last element does: an object cut inside an element header, a
  value, a sequence or the pixel data is refused;
- native Pixel Data holds exactly the bytes its attributes declare (Rows x
  Columns x Samples per Pixel x Bits Allocated / 8 x Number of Frames, plus
  one pad byte for an odd length); encapsulated Pixel Data is a whole item
  stream (Basic Offset Table item, one or more fragments per frame, sequence
  delimiter), and RLE fragments have a well-formed RLE header;
- an object that declares an image (Photometric Interpretation) carries pixel data;
- its SOP Class, SOP Instance, Study and Series Instance UIDs are present and
  valid, and equal to those the protocol names (``expected``).

pydicom parses each object once. Its reader stops silently where a data set
runs out in the middle of an element header and keeps a short last value, so
the bytes are read through :class:`_TrackedBytes`, which notes every read
that came back short: on a whole object only the final look for a next
element header finds nothing.

The archive's own UID policy (synthetic UIDs) is :meth:`Archive.store`'s.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from pydicom import Dataset, dcmread
from pydicom.encaps import parse_basic_offsets
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID

from ..errors import StoreRefusalValues, StoreRefused
from .uids import is_valid_uid

REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DEFLATED = "1.2.840.10008.1.2.1.99"
DEFAULT_TRANSFER_SYNTAX = "1.2.840.10008.1.2.1"

_ITEM, _SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD


@dataclass(frozen=True)
class Received:
    """An object that passed intake: its data set (fully parsed) and the bytes to keep, as received."""

    dataset: Dataset
    data: bytes

    @property
    def transfer_syntax_uid(self) -> str:
        meta = getattr(self.dataset, "file_meta", None)
        return str(meta.get("TransferSyntaxUID", DEFAULT_TRANSFER_SYNTAX)) if meta is not None else DEFAULT_TRANSFER_SYNTAX

    @property
    def sop_class_uid(self) -> str:
        return str(self.dataset.SOPClassUID)

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def study_instance_uid(self) -> str:
        return str(self.dataset.StudyInstanceUID)

    @property
    def series_instance_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)


def receive(data: bytes, *, expected: Mapping[str, str] | None = None, source: str = "the request") -> Received:
    """Parse and check one object offered for storage; writes nothing.

    ``expected`` maps UID keywords to the values the protocol names (the
    C-STORE command's Affected SOP Instance UID, the STOW-RS URL's study);
    ``source`` names that protocol element in the message.

    Raises
    ------
    StoreRefused
        With ``reason`` NOT_DICOM, INCOMPLETE, MISSING_UID, INVALID_UID or UID_MISMATCH.
    """
    data = bytes(data)
    ds = _parse(data)
    names = _names(ds)
    _check_pixels(ds, names)
    _check_uids(ds, names, expected or {}, source)
    return Received(ds, data)


class _TrackedBytes(io.BytesIO):
    """A byte buffer that records each read that returned less than it was asked for."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.short_reads: list[tuple[int, int]] = []  # (asked, got)

    def read(self, size: int | None = -1) -> bytes:
        out = super().read(size)
        if size is not None and size >= 0 and len(out) < size:
            self.short_reads.append((size, len(out)))
        return out


def _parse(data: bytes) -> Dataset:
    fp = _TrackedBytes(data)
    try:
        ds = dcmread(fp, force=False)
    except InvalidDicomError as exc:
        raise StoreRefused(StoreRefusalValues.NOT_DICOM, f"not a DICOM Part 10 object: {exc}") from None
    except Exception as exc:  # pydicom raises many types for data that ends early or is garbled
        raise StoreRefused(StoreRefusalValues.INCOMPLETE, _incomplete(fp, exc), **_names_of_meta(fp)) from None
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        raise StoreRefused(StoreRefusalValues.NOT_DICOM, "not a DICOM Part 10 object: it has no File Meta Information")
    # A whole object: the only short read is the last look for a next element header, at the end.
    # (A deflated data set is read whole and inflated by pydicom; zlib refuses a cut stream.)
    deflated = str(ds.file_meta.TransferSyntaxUID) == DEFLATED
    if fp.short_reads != ([] if deflated else [(8, 0)]) or fp.tell() != len(data):
        raise StoreRefused(StoreRefusalValues.INCOMPLETE, _incomplete(fp, None), **_names(ds))
    try:
        for _ in ds.iterall():  # converts every raw element, sequence items included
            pass
    except Exception as exc:
        raise StoreRefused(
            StoreRefusalValues.INCOMPLETE, f"incomplete object: an element cannot be read: {exc}", **_names(ds)
        ) from None
    return ds


def _incomplete(fp: _TrackedBytes, exc: Exception | None) -> str:
    size = len(fp.getbuffer())
    text = f"incomplete object: it ends inside an element (after {size} bytes)"
    if exc is not None and not fp.short_reads:
        text = f"incomplete object: it cannot be parsed ({type(exc).__name__}: {exc})"
    return text[:300]


def _names(ds: Dataset) -> dict[str, str]:
    """SOP Class and Instance UIDs as far as they can be read (for a refusal's report)."""
    out = {}
    for keyword, name, meta_keyword in (
        ("SOPClassUID", "sop_class_uid", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "sop_instance_uid", "MediaStorageSOPInstanceUID"),
    ):
        try:
            value = ds.get(keyword) or getattr(ds, "file_meta", Dataset()).get(meta_keyword) or ""
            out[name] = str(value).strip()
        except Exception:
            out[name] = ""
    return out


def _names_of_meta(fp: _TrackedBytes) -> dict[str, str]:
    """The names in the File Meta Information of an object pydicom could not read whole."""
    try:
        buffer = io.BytesIO(fp.getvalue())
        read_preamble(buffer, False)
        meta = Dataset()
        meta.file_meta = _read_file_meta_info(buffer)
        return _names(meta)
    except Exception:
        return {}


def _check_uids(ds: Dataset, names: dict[str, str], expected: Mapping[str, str], source: str) -> None:
    for keyword in REQUIRED_UIDS:
        value = str(ds.get(keyword, "") or "")
        if not value:
            raise StoreRefused(StoreRefusalValues.MISSING_UID, f"the object has no {keyword}", keyword=keyword, **names)
        if not is_valid_uid(value):
            raise StoreRefused(
                StoreRefusalValues.INVALID_UID, f"{keyword} {value!r} is not a valid UID", keyword=keyword, **names
            )
    for keyword, want in expected.items():
        value = str(ds.get(keyword, "") or "")
        if value != want:
            raise StoreRefused(
                StoreRefusalValues.UID_MISMATCH,
                f"{keyword} differs from {source} ({value or 'none'} vs {want})",
                keyword=keyword,
                **names,
            )


# -- pixel data ---------------------------------------------------------------------------


def _check_pixels(ds: Dataset, names: dict[str, str]) -> None:
    present = [k for k in PIXEL_KEYWORDS if k in ds]
    if not present:
        # An image without pixels is an object cut short between two elements.
        sop_class = UID(str(ds.get("SOPClassUID", "") or ""))
        if "PhotometricInterpretation" in ds or "Image Storage" in sop_class.name:
            raise StoreRefused(
                StoreRefusalValues.INCOMPLETE,
                f"incomplete object: an image ({sop_class.name or 'PhotometricInterpretation'}) without Pixel Data",
                keyword="PixelData",
                **names,
            )
        return
    keyword = present[0]
    value = ds[keyword].value or b""
    transfer_syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", DEFAULT_TRANSFER_SYNTAX)))
    try:
        if keyword == "PixelData" and transfer_syntax.is_encapsulated:
            _check_encapsulated(ds, value, transfer_syntax)
        else:
            _check_native(ds, keyword, value)
    except StoreRefused as exc:
        raise StoreRefused(exc.reason, str(exc), keyword=keyword, **names) from None


def _check_native(ds: Dataset, keyword: str, value: bytes) -> None:
    try:
        expected = int(get_expected_length(ds, unit="bytes"))
    except Exception as exc:  # absent or malformed Rows, Columns, BitsAllocated...
        raise StoreRefused(
            StoreRefusalValues.INCOMPLETE, f"incomplete object: {keyword} without the attributes that give its size ({exc})"
        ) from None
    if len(value) != expected and not (expected % 2 and len(value) == expected + 1):
        raise StoreRefused(
            StoreRefusalValues.INCOMPLETE,
            f"incomplete object: {keyword} holds {len(value)} bytes; Rows, Columns, SamplesPerPixel, "
            f"BitsAllocated and NumberOfFrames declare {expected}",
        )


def _frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _check_encapsulated(ds: Dataset, value: bytes, transfer_syntax: UID) -> None:
    """Basic Offset Table item, then fragment items that fill the value exactly (PS3.5 A.4).

    pydicom has found the sequence delimiter already (the reader fails without
    one); the value holds the items before it.
    """
    endian = "<" if transfer_syntax.is_little_endian else ">"

    def refuse(text: str):
        return StoreRefused(StoreRefusalValues.INCOMPLETE, f"incomplete object: encapsulated Pixel Data {text}")

    try:
        offsets = parse_basic_offsets(value, endianness=endian)
    except (ValueError, struct.error) as exc:
        raise refuse(f"has no valid Basic Offset Table item ({exc})") from None
    position = 8 + 4 * len(offsets)
    fragments: list[tuple[int, int]] = []  # (offset of the item from the end of the table, length)
    head = struct.Struct(f"{endian}HHL")
    while position < len(value):
        if len(value) - position < 8:
            raise refuse(f"ends inside an item header at byte {position}")
        group, element, length = head.unpack_from(value, position)
        tag = group << 16 | element
        if tag == _SEQUENCE_DELIMITER:
            raise refuse(f"has a sequence delimiter before its end (byte {position})")
        if tag != _ITEM:
            raise refuse(f"has {group:04X},{element:04X} where a fragment item belongs (byte {position})")
        if length == 0xFFFFFFFF or position + 8 + length > len(value):
            raise refuse(f"fragment {len(fragments) + 1} is cut short: its item declares {length} bytes")
        fragments.append((position - 8 - 4 * len(offsets), length))
        position += 8 + length
    frames = _frames(ds)
    if len(fragments) < frames:
        raise refuse(f"has {len(fragments)} fragment(s) for {frames} frame(s)")
    if offsets:
        starts = {start for start, _ in fragments}
        if len(offsets) != frames or any(o not in starts for o in offsets) or offsets != sorted(offsets):
            raise refuse("has a Basic Offset Table that does not point at its frames")
    if transfer_syntax == RLE_LOSSLESS:
        _check_rle(ds, value, fragments, 8 + 4 * len(offsets), frames, refuse)


def _check_rle(ds: Dataset, value: bytes, fragments, base: int, frames: int, refuse) -> None:
    """One fragment per frame, each with an RLE header (PS3.5 G.3.1): a segment count of
    Samples per Pixel x Bits Allocated / 8, the first segment at 64, increasing offsets inside it."""
    if len(fragments) != frames:
        raise refuse(f"(RLE Lossless) has {len(fragments)} fragments for {frames} frame(s); each frame is one fragment")
    try:
        segments = int(ds.SamplesPerPixel) * ((int(ds.BitsAllocated) + 7) // 8)
    except (AttributeError, TypeError, ValueError):
        raise refuse("(RLE Lossless) lacks SamplesPerPixel or BitsAllocated") from None
    for number, (start, length) in enumerate(fragments, start=1):
        if length < 64:
            raise refuse(f"(RLE Lossless) fragment {number} is shorter than its 64-byte RLE header")
        header = struct.unpack_from("<16L", value, base + start + 8)
        count, offsets = header[0], [o for o in header[1:] if o][: header[0]]
        if (
            count != segments
            or len(offsets) != count
            or offsets[0] != 64
            or offsets != sorted(set(offsets))
            or offsets[-1] >= length
        ):
            raise refuse(
                f"(RLE Lossless) fragment {number} has an RLE header that does not fit it "
                f"({count} segments of {segments}, {length} bytes)"
            )
