"""Pixel data for the web: frames as native little-endian bytes, frames and
whole instances in the transfer syntaxes a client asks for.

Synthetic instances are Explicit VR Little Endian already, so a frame is a
slice of Pixel Data. Stored objects may be compressed or big endian: they
are decoded with pydicom's decoders (colour converted to RGB, interleaved),
and the metadata says so (research/viewers.md pitfall 4). RLE Lossless is
encoded by pydicom's own encoder, JPEG 2000 Lossless through
pylibjpeg-openjpeg.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from .errors import NotAcceptable, NotFound
from .media import EXPLICIT_VR_LE, IMPLICIT_VR_LE, JPEG2000_LOSSLESS, RLE_LOSSLESS

log = logging.getLogger(__name__)

PIXEL_DATA = 0x7FE00010
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def transfer_syntax_of(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(ts)) if ts else UID(EXPLICIT_VR_LE)


def has_pixels(ds: Dataset) -> bool:
    return any(k in ds for k in PIXEL_KEYWORDS)


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _is_plain_little_endian(ds: Dataset) -> bool:
    ts = transfer_syntax_of(ds)
    return ts in (EXPLICIT_VR_LE, IMPLICIT_VR_LE) or (not ts.is_compressed and ts.is_little_endian and not ts.is_deflated)


def decoded_photometric(ds: Dataset) -> str | None:
    """The Photometric Interpretation of the frames this server sends for ``ds``.

    Decoded colour is converted to RGB, so a compressed YBR object's frames are RGB.
    """
    photometric = ds.get("PhotometricInterpretation")
    if photometric is None:
        return None
    photometric = str(photometric)
    if not _is_plain_little_endian(ds) and photometric.startswith("YBR") and int(ds.get("SamplesPerPixel", 1)) == 3:
        return "RGB"
    return photometric


def check_frames(ds: Dataset, frames: list[int]) -> None:
    """Raises NotFound naming the first frame number the instance does not have."""
    if not has_pixels(ds):
        raise NotFound(f"instance {ds.get('SOPInstanceUID', '')} has no pixel data, so no frames")
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if k not in ds]
    if "PixelData" in ds and missing:
        raise NotFound(f"instance {ds.get('SOPInstanceUID', '')} has pixel data without {', '.join(missing)}, so no frames")
    count = number_of_frames(ds)
    for n in frames:
        if n > count:
            raise NotFound(f"frame {n} is out of range: the instance has {count} frame{'s' if count != 1 else ''}")


def _frame_geometry(ds: Dataset) -> tuple[int, int, int, int]:
    return int(ds.Rows), int(ds.Columns), int(ds.get("SamplesPerPixel", 1)), int(ds.BitsAllocated)


def native_frame(ds: Dataset, index: int) -> bytes:
    """Frame ``index`` (0-based) as native little-endian bytes (PS3.5 8.2, PlanarConfiguration kept)."""
    if "PixelData" not in ds:
        keyword = next(k for k in PIXEL_KEYWORDS if k in ds)
        data = ds[keyword].value
        size = len(data) // number_of_frames(ds)
        return bytes(data[index * size : (index + 1) * size])
    rows, columns, samples, bits = _frame_geometry(ds)
    if _is_plain_little_endian(ds):
        data = ds.PixelData
        if bits == 1:
            n_bits = rows * columns * samples
            if n_bits % 8 == 0:
                return bytes(data[index * n_bits // 8 : (index + 1) * n_bits // 8])
            allbits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")
            return np.packbits(allbits[index * n_bits : (index + 1) * n_bits], bitorder="little").tobytes()
        size = rows * columns * samples * (bits // 8)
        chunk = bytes(data[index * size : (index + 1) * size])
        if len(chunk) != size:
            raise NotFound(f"frame {index + 1} is missing from the instance's pixel data")
        return chunk
    array = decode_frame(ds, index)
    if bits == 1:
        return np.packbits(array.astype(np.uint8).ravel(), bitorder="little").tobytes()
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def decode_frame(ds: Dataset, index: int) -> np.ndarray:
    """One frame decoded by pydicom (compressed or big-endian data), colour as RGB."""
    from pydicom.pixels import get_decoder

    ts = transfer_syntax_of(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise NotAcceptable(f"pixel data in transfer syntax {ts} cannot be decoded by this server") from None
    try:
        # pydicom annotates **kwargs as DecodeOptions (the TypedDict) rather than Unpack[DecodeOptions]
        array, _ = decoder.as_array(ds, index=index, as_rgb=True)  # type: ignore[arg-type]
    except Exception as exc:  # a missing plugin or broken data: a clear 406, not a 500
        raise NotAcceptable(f"cannot decode frame {index + 1} of transfer syntax {ts}: {exc}") from None
    return array


def encode_frame(ds: Dataset, index: int, transfer_syntax: str) -> bytes:
    """Frame ``index`` (0-based) compressed to RLE Lossless or JPEG 2000 Lossless.

    Raises
    ------
    NotAcceptable
        The frame cannot be encoded that way (1-bit data, an encoder missing).
    """
    from pydicom.pixels import get_encoder

    rows, columns, samples, bits = _frame_geometry(ds)
    if bits == 1 or "PixelData" not in ds:
        raise NotAcceptable(f"{bits}-bit pixel data cannot be sent as {transfer_syntax}; ask for application/octet-stream")
    photometric = decoded_photometric(ds) or "MONOCHROME2"
    kwargs: dict[str, Any] = dict(
        rows=rows,
        columns=columns,
        samples_per_pixel=samples,
        bits_allocated=bits,
        bits_stored=int(ds.get("BitsStored", bits)),
        pixel_representation=int(ds.get("PixelRepresentation", 0)),
        photometric_interpretation=photometric,
        number_of_frames=1,
        planar_configuration=int(ds.get("PlanarConfiguration", 0)) if _is_plain_little_endian(ds) else 0,
    )
    if transfer_syntax == JPEG2000_LOSSLESS and samples == 3:
        kwargs["use_mct"] = False  # keep RGB: the client reads the frame's colour space from the metadata
    try:
        encoder = get_encoder(transfer_syntax)
        return encoder.encode(native_frame(ds, index), **kwargs)
    except NotAcceptable:
        raise
    except Exception as exc:
        raise NotAcceptable(f"cannot encode frame {index + 1} as {transfer_syntax}: {exc}") from None


def transcode(blob: bytes, current: str, wanted: str) -> bytes | None:
    """A Part 10 object re-encoded in ``wanted``; None when that is impossible
    (an object without pixels cannot be encapsulated, 1-bit data has no RLE or
    JPEG 2000 form, a codec is missing)."""
    if wanted == current:
        return blob
    try:
        ds = dcmread(io.BytesIO(blob))
        pixels = has_pixels(ds)
        if wanted in (RLE_LOSSLESS, JPEG2000_LOSSLESS):
            if "PixelData" not in ds or int(ds.get("BitsAllocated", 0)) == 1:
                return None
        if pixels and not _is_plain_little_endian(ds):
            ds.decompress(as_rgb=True)
        if wanted in (EXPLICIT_VR_LE, IMPLICIT_VR_LE):
            ds.file_meta.TransferSyntaxUID = UID(wanted)
        else:
            kwargs: dict[str, Any] = (
                {"use_mct": False} if wanted == JPEG2000_LOSSLESS and int(ds.get("SamplesPerPixel", 1)) == 3 else {}
            )
            ds.compress(wanted, **kwargs)
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()
    except Exception as exc:  # codecs raise many types; a failed transcode falls back, never fails the response
        log.info("cannot transcode %s -> %s: %s", current, wanted, exc)
        return None
