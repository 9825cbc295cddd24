"""Renditions of instances: 8-bit images for previews, WADO-RS rendered and thumbnails.

PS3.18 8.3.5 (rendered resources) asks for the image as displayed: for a
greyscale image, the Modality LUT (rescale, PS3.3 C.11.1) then the VOI LUT
window (PS3.3 C.11.2.1.2, function LINEAR) to 8 bits; for MONOCHROME1 the
result is inverted so that it displays as intended. A BINARY or FRACTIONAL
segmentation frame renders as black/white (grey for fractions). An instance
without pixels (a structured report) renders as a text card, so that every
instance has a rendition. ``viewport`` scales the result to fit inside
(width, height), keeping the aspect ratio.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import pixel_array

from .ct import WindowCenterWidthExplanationValues
from .ecg import TWELVE_LEAD_ECG_STORAGE

#: Media types :func:`encode_image` writes, and the Pillow format of each.
MEDIA_TYPES = {"image/jpeg": "JPEG", "image/png": "PNG"}
SEGMENTATION_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7"}
CARD_SIZE = (512, 512)
MAX_VIEWPORT = 8192


def _check_viewport(viewport: object) -> tuple[int, int] | None:
    if viewport is None:
        return None
    if not isinstance(viewport, (tuple, list)) or len(viewport) != 2:
        raise TypeError('Argument "viewport" must be a (width, height) pair.')
    width, height = viewport
    for value in (width, height):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError('Argument "viewport" must hold two integers.')
        if not 1 <= value <= MAX_VIEWPORT:
            raise ValueError(f'Argument "viewport" values must be between 1 and {MAX_VIEWPORT}, got {viewport!r}.')
    return int(width), int(height)


def _check_window(window: object) -> tuple[float, float] | None:
    if window is None:
        return None
    if isinstance(window, WindowCenterWidthExplanationValues):
        return window.center, window.width
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise TypeError('Argument "window" must be a (center, width) pair.')
    center, width = (float(v) for v in window)
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ValueError('Argument "window" must hold finite numbers.')
    if width < 1:
        raise ValueError(f'Argument "window" width must be at least 1 (PS3.3 C.11.2.1.2), got {width}.')
    return center, width


def _number_of_frames(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames") or 1)


def _frame_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The functional group item ``sequence`` of frame ``index`` (per-frame, else shared)."""
    for groups, i in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and len(items) > i and sequence in items[i] and items[i][sequence]:
            return items[i][sequence][0]
    return None


def _first(value: float | str | MultiValue | list | tuple) -> float:
    """The first value of a possibly multi-valued DS (Window Center/Width)."""
    if isinstance(value, (MultiValue, list, tuple)):
        return float(value[0])
    return float(value)


def rescale(ds: Dataset, values: np.ndarray, index: int = 0) -> np.ndarray:
    """Apply Rescale Slope/Intercept (PS3.3 C.11.1, or the Pixel Value Transformation functional group)."""
    source: Dataset | None = ds if "RescaleSlope" in ds else _frame_item(ds, index, "PixelValueTransformationSequence")
    if source is None or "RescaleSlope" not in source:
        return values.astype(np.float64)
    slope = float(source.RescaleSlope)
    intercept = float(source.get("RescaleIntercept", 0))
    return values.astype(np.float64) * slope + intercept


def default_window(ds: Dataset, index: int = 0) -> tuple[float, float] | None:
    """The instance's first Window Center/Width (PS3.3 C.11.2, or the Frame VOI LUT functional group)."""
    source: Dataset | None = ds if "WindowCenter" in ds else _frame_item(ds, index, "FrameVOILUTSequence")
    if source is None or "WindowCenter" not in source or "WindowWidth" not in source:
        return None
    center, width = _first(source.WindowCenter), _first(source.WindowWidth)
    if width < 1:
        return None
    return center, width


def apply_linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """VOI LUT function LINEAR (PS3.3 C.11.2.1.2.1) to the 8-bit range."""
    low = center - 0.5 - (width - 1) / 2
    scaled = ((values - (center - 0.5)) / max(width - 1, 1e-9) + 0.5) * 255.0
    scaled = np.where(values <= low, 0.0, scaled)
    scaled = np.where(values > center - 0.5 + (width - 1) / 2, 255.0, scaled)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _render_pixels(ds: Dataset, frame: int, window: tuple[float, float] | None) -> Image.Image:
    index = frame - 1
    arr = pixel_array(ds, index=index) if _number_of_frames(ds) > 1 else pixel_array(ds)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if ds.get("SOPClassUID") in SEGMENTATION_SOP_CLASSES and ds.get("SegmentationType") != "LABELMAP":
        if ds.get("SegmentationType") == "FRACTIONAL":
            maximum = float(ds.get("MaximumFractionalValue", 255)) or 255.0
            grey = np.clip(np.rint(arr.astype(np.float64) * 255.0 / maximum), 0, 255).astype(np.uint8)
        else:
            grey = np.where(arr > 0, 255, 0).astype(np.uint8)
        return Image.fromarray(grey, mode="L")
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        rgb = arr if arr.dtype == np.uint8 else np.clip(arr / max(float(arr.max()), 1.0) * 255.0, 0, 255)
        return Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(arr, ds)
        if rgb.dtype != np.uint8:
            rgb = (rgb >> 8).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    values = rescale(ds, arr, index)
    chosen = window or default_window(ds, index)
    if chosen is None:
        low, high = float(values.min()), float(values.max())
        chosen = ((low + high + 1) / 2, max(high - low + 1, 1.0))
    grey = apply_linear_window(values, *chosen)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return Image.fromarray(np.ascontiguousarray(grey), mode="L")


def _content_items(items: Iterable[Dataset] | None) -> Iterator[Dataset]:
    for item in items or []:
        yield item
        yield from _content_items(item.get("ContentSequence"))


def _concept(item: Dataset) -> tuple[str, str]:
    code = item.get("ConceptNameCodeSequence")
    if not code:
        return "", ""
    return str(code[0].get("CodeValue", "")), str(code[0].get("CodeMeaning", ""))


def _card_lines(ds: Dataset) -> list[str]:
    """The text of an SR card: title, context, each tracked lesion's measurement."""
    title = _concept(ds)[1] if "ConceptNameCodeSequence" in ds else ""
    lines = [title or str(ds.get("SeriesDescription", "")) or "DICOM object without pixels"]
    name = ds.get("PatientName")
    context = " ".join(str(v) for v in (name, ds.get("PatientID"), ds.get("StudyDate"), ds.get("ClinicalTrialTimePointID")) if v)
    if context:
        lines.append(context)
    if ds.get("SeriesDescription") and title:
        lines.append(str(ds.SeriesDescription))
    lines.append("")
    for item in _content_items(ds.get("ContentSequence")):
        value, meaning = _concept(item)
        if item.get("ValueType") != "CONTAINER" or value != "125007":  # Measurement Group
            continue
        tracking = ""
        numbers = []
        for child in item.get("ContentSequence", []):
            child_value, child_meaning = _concept(child)
            if child_value == "112039":
                tracking = str(child.get("TextValue", ""))
            elif (
                child.get("ValueType") == "NUM"
                and child.get("RelationshipType") == "CONTAINS"
                and child.get("MeasuredValueSequence")
            ):
                measured = child.MeasuredValueSequence[0]
                unit = measured.MeasurementUnitsCodeSequence[0].CodeValue if measured.get("MeasurementUnitsCodeSequence") else ""
                numbers.append(f"{child_meaning} {float(measured.NumericValue):g} {unit}".strip())
        lines.append(f"{tracking or 'Measurement group'}: {', '.join(numbers) or 'no measurement'}")
    for item in _content_items(ds.get("ContentSequence")):
        if item.get("ValueType") == "TEXT" and _concept(item)[0] == "121106":
            lines.append(str(item.get("TextValue", "")))
    lines.append("")
    lines.append("SYNTHETIC DATA" if ds.get("SyntheticData") == "YES" else "")
    return [line for line in lines if line is not None]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _render_card(ds: Dataset) -> Image.Image:
    image = Image.new("L", CARD_SIZE, 0)
    draw = ImageDraw.Draw(image)
    title_font, font = _font(22), _font(16)
    y = 16
    for i, line in enumerate(_card_lines(ds)):
        chosen = title_font if i == 0 else font
        for chunk in _wrap(draw, line, chosen, CARD_SIZE[0] - 32):
            draw.text((16, y), chunk, fill=255, font=chosen)
            y += 30 if i == 0 else 22
        if y > CARD_SIZE[1] - 24:
            break
    return image


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    if not text:
        return [""]
    words, lines, current = text.split(), [], ""
    for word in words:
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    lines.append(current)
    return lines


def _fit(image: Image.Image, viewport: tuple[int, int]) -> Image.Image:
    width, height = viewport
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR)


def render_frame(
    ds: Dataset,
    frame: int = 1,
    *,
    window: tuple[float, float] | WindowCenterWidthExplanationValues | None = None,
    viewport: tuple[int, int] | None = None,
) -> Image.Image:
    """Render one frame of an instance as an 8-bit image (PS3.18 8.3.5 rendered media).

    Parameters
    ----------
    ds: pydicom.Dataset
        The instance.
    frame: int, optional
        Frame number, starting at 1 (PS3.18 frame lists); 1 for single-frame
        instances and for instances without pixels.
    window: tuple[float, float] | WindowCenterWidthExplanationValues | None, optional
        (center, width) VOI window in rescaled units (e.g. HU) for greyscale
        images, or a named CT window (``WindowCenterWidthExplanationValues.LUNG``);
        default the instance's first Window Center/Width, else the frame's
        full range.
    viewport: tuple[int, int] | None, optional
        (width, height): scale to fit inside, keeping the aspect ratio.

    Returns
    -------
    PIL.Image.Image
        Mode "L" (greyscale, segmentation, SR card) or "RGB".

    Raises
    ------
    TypeError
        When ``ds`` is not a Dataset, or ``window``/``viewport`` are not pairs of numbers.
    ValueError
        When ``frame`` is out of range, the window width is below 1 or a
        viewport dimension is not positive.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f'Argument "ds" must be a pydicom Dataset, not {type(ds).__name__}.')
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise TypeError(f'Argument "frame" must be an integer, not {type(frame).__name__}.')
    window = _check_window(window)
    viewport = _check_viewport(viewport)
    has_pixels = "PixelData" in ds
    frames = _number_of_frames(ds) if has_pixels else 1
    if not 1 <= frame <= frames:
        raise ValueError(f'Argument "frame" must be between 1 and {frames}, got {frame}.')
    if has_pixels:
        image = _render_pixels(ds, int(frame), window)
    elif "WaveformSequence" in ds and ds.SOPClassUID == TWELVE_LEAD_ECG_STORAGE:
        from .ecg_chart import draw_ecg

        image = draw_ecg(ds)
    else:
        image = _render_card(ds)
    if viewport is not None:
        image = _fit(image, viewport)
    return image


def encode_image(image: Image.Image, media_type: str = "image/jpeg", quality: int = 90) -> bytes:
    """Encode a rendition as JPEG or PNG bytes (PS3.18 8.7.4 rendered media types).

    Parameters
    ----------
    image: PIL.Image.Image
        The rendition (from :func:`render_frame`).
    media_type: str, optional
        "image/jpeg" (default) or "image/png".
    quality: int, optional
        JPEG quality, 1 to 100 (ignored for PNG).

    Raises
    ------
    TypeError
        When ``image`` is not a PIL image or ``quality`` not an integer.
    ValueError
        When ``media_type`` is not supported or ``quality`` is outside 1..100.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f'Argument "image" must be a PIL.Image.Image, not {type(image).__name__}.')
    media = media_type.split(";")[0].strip().lower() if isinstance(media_type, str) else media_type
    if media not in MEDIA_TYPES:
        raise ValueError(f'Argument "media_type" must be one of {sorted(MEDIA_TYPES)}, not {media_type!r}.')
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)):
        raise TypeError(f'Argument "quality" must be an integer, not {type(quality).__name__}.')
    if not 1 <= quality <= 100:
        raise ValueError(f'Argument "quality" must be between 1 and 100, got {quality}.')
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB" if image.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA") else "L")
    buffer = io.BytesIO()
    if media == "image/jpeg":
        image.save(buffer, format="JPEG", quality=int(quality))
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()
