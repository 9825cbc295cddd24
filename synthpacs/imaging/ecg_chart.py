"""The standard 12-lead ECG chart of a 12-Lead ECG Waveform instance, as a reader sees it on paper.

Three rows of four 2.5-second columns (I, aVR, V1, V4 / II, aVL, V2, V5 /
III, aVF, V3, V6, each column continuing the time of the one before) and a
10-second lead II rhythm strip, at 25 mm/s and 10 mm/mV on a 1 mm / 5 mm
grid, a 1 mV calibration pulse at the start of every row, and a header with
the patient, the acquisition and the measurements the instance's Waveform
Annotations hold. Leads are found by their CID 3001 codes or meanings, so a
stored ECG from another system draws the same way; a lead it lacks is left
blank.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset

PX_PER_MM = 4
MM_PER_S = 25.0
MM_PER_MV = 10.0
MARGIN_MM = 8
HEADER_MM = 26
CALIBRATION_MM = 10  # room for the pulse at the start of each row
ROW_MM = 37.5
SECONDS = 10.0
ROWS = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
RHYTHM_LEAD = "II"
#: The chart's size in pixels (width, height).
CHART_SIZE = (
    int((2 * MARGIN_MM + CALIBRATION_MM + SECONDS * MM_PER_S) * PX_PER_MM),
    int((HEADER_MM + (len(ROWS) + 1) * ROW_MM + MARGIN_MM) * PX_PER_MM),
)
_MINOR, _MAJOR, _TRACE, _TEXT = (252, 224, 224), (236, 168, 168), (0, 0, 0), (20, 20, 20)
#: Lead names by CID 3001 code value (MDC and the older SCPECG scheme).
_CODE_NAMES = {
    **{f"2:{n}": name for n, name in ((1, "I"), (2, "II"), (61, "III"), (62, "aVR"), (63, "aVL"), (64, "aVF"))},
    **{f"2:{n + 2}": f"V{n}" for n in range(1, 7)},
    **{f"5.6.3-9-{n}": name for n, name in ((1, "I"), (2, "II"), (61, "III"), (62, "aVR"), (63, "aVL"), (64, "aVF"))},
    **{f"5.6.3-9-{n + 2}": f"V{n}" for n in range(1, 7)},
}
#: Header labels of the measurements, by the words their code meanings start with.
_MEASUREMENT_LABELS = (
    ("heart rate", "HR"),
    ("rr interval", "RR"),
    ("pr interval", "PR"),
    ("qrs duration", "QRS"),
    ("qt interval", "QT"),
    ("qtc interval", "QTc"),
)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _lead_name(channel: Dataset) -> str | None:
    source = channel.get("ChannelSourceSequence")
    if not source:
        return None
    code = source[0]
    name = _CODE_NAMES.get(str(code.get("CodeValue", "")))
    if name:
        return name
    meaning = str(code.get("CodeMeaning", "")).replace("Lead ", "").split(",")[0].split(" ")[0].strip()
    return meaning or None


def leads_of(ds: Dataset) -> tuple[dict[str, np.ndarray], float]:
    """The first multiplex group's leads in millivolts, by name, and its sampling frequency."""
    group = ds.WaveformSequence[0]
    values = ds.waveform_array(0)  # (samples, channels), sensitivity applied (units of the channel: uV)
    out: dict[str, np.ndarray] = {}
    for i, channel in enumerate(group.ChannelDefinitionSequence):
        name = _lead_name(channel)
        if name and name not in out:
            units = channel.get("ChannelSensitivityUnitsSequence")
            unit = str(units[0].CodeValue) if units else "uV"
            scale = {"uV": 1e-3, "mV": 1.0, "V": 1e3}.get(unit, 1e-3)
            out[name] = np.asarray(values[:, i], dtype=np.float64) * scale
    return out, float(group.SamplingFrequency)


def _measurements(ds: Dataset) -> tuple[list[str], list[str]]:
    values, statements = [], []
    for item in ds.get("WaveformAnnotationSequence", []):
        if "UnformattedTextValue" in item:
            statements.append(str(item.UnformattedTextValue))
            continue
        if "NumericValue" not in item or "ConceptNameCodeSequence" not in item:
            continue
        meaning = str(item.ConceptNameCodeSequence[0].CodeMeaning)
        label = next((short for words, short in _MEASUREMENT_LABELS if meaning.lower().startswith(words)), meaning)
        if "fridericia" in meaning.lower():
            label = "QTcF"
        elif "bazett" in meaning.lower():
            label = "QTcB"
        unit = str(item.MeasurementUnitsCodeSequence[0].CodeValue) if "MeasurementUnitsCodeSequence" in item else ""
        unit = {"/min": "bpm", "{beats}/min": "bpm"}.get(unit, unit)
        values.append(f"{label} {float(item.NumericValue):g} {unit}".strip())
    return values, statements


def _grid(width: int, height: int, top: int) -> np.ndarray:
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    for step, colour in ((1, _MINOR), (5, _MAJOR)):
        xs = np.arange(0, width, step * PX_PER_MM)
        ys = np.arange(top, height, step * PX_PER_MM)
        image[top:, xs] = colour
        image[ys, :] = colour
    return image


def _trace(draw: ImageDraw.ImageDraw, signal_mv: np.ndarray, x0: float, baseline: float, hz: float) -> None:
    if not len(signal_mv):
        return
    x = x0 + np.arange(len(signal_mv)) / hz * MM_PER_S * PX_PER_MM
    y = baseline - np.clip(signal_mv, -3.5, 3.5) * MM_PER_MV * PX_PER_MM
    draw.line(list(zip(x.tolist(), y.tolist())), fill=_TRACE, width=2)


def _calibration(draw: ImageDraw.ImageDraw, x0: float, baseline: float) -> None:
    mm, high = PX_PER_MM, baseline - MM_PER_MV * PX_PER_MM
    points = [(x0, baseline), (x0 + 2 * mm, baseline), (x0 + 2 * mm, high), (x0 + 7 * mm, high), (x0 + 7 * mm, baseline)]
    draw.line([*points, (x0 + 9 * mm, baseline)], fill=_TRACE, width=2)


def draw_ecg(ds: Dataset) -> Image.Image:
    """The chart of a 12-lead ECG instance, :data:`CHART_SIZE` pixels, RGB."""
    leads, hz = leads_of(ds)
    name = str(ds.get("PatientName", "")).replace("^", " ")
    when = f"{ds.get('AcquisitionDateTime', '')}"[:14]
    when = f"{when[:4]}-{when[4:6]}-{when[6:8]} {when[8:10]}:{when[10:12]}" if len(when) >= 12 else when
    trial = " ".join(
        str(ds.get(k, "")) for k in ("ClinicalTrialProtocolID", "ClinicalTrialSubjectID", "ClinicalTrialTimePointDescription")
    )
    values, statements = _measurements(ds)
    channel = ds.WaveformSequence[0].ChannelDefinitionSequence[0]
    filters = f"{channel.get('FilterLowFrequency', '')}-{channel.get('FilterHighFrequency', '')} Hz"
    return draw_chart(
        leads,
        hz,
        title=f"{name}   ID {ds.get('PatientID', '')}   {ds.get('PatientSex', '')} {ds.get('PatientAge', '')}",
        corner=f"{when}   {trial}",
        values=values,
        statements=statements,
        filters=filters,
    )


def draw_chart(
    leads: dict[str, np.ndarray], hz: float, *, title: str = "", corner: str = "", values=(), statements=(), filters: str = ""
) -> Image.Image:
    """The standard chart of leads in millivolts (by name), with a header; :data:`CHART_SIZE` pixels, RGB."""
    width, height = CHART_SIZE
    top = int(HEADER_MM * PX_PER_MM)
    image = Image.fromarray(_grid(width, height, top))
    draw = ImageDraw.Draw(image)
    big, small = _font(20), _font(15)
    mm = PX_PER_MM
    draw.text((MARGIN_MM * mm, 2 * mm), title, fill=_TEXT, font=big)
    corner_width = draw.textlength(corner, font=small)
    draw.text((max(width / 2, width - MARGIN_MM * mm - corner_width), 9.5 * mm), corner, fill=_TEXT, font=small)
    draw.text((width / 2, 2.5 * mm), "   ".join(values[:3]), fill=_TEXT, font=big)
    draw.text((MARGIN_MM * mm, 9 * mm), "   ".join(values[3:]), fill=_TEXT, font=big)
    draw.text((MARGIN_MM * mm, 15.5 * mm), "; ".join(statements)[:160], fill=_TEXT, font=small)
    draw.text(
        (MARGIN_MM * mm, 20.5 * mm), f"{MM_PER_S:g} mm/s   {MM_PER_MV:g} mm/mV   {filters}   {hz:g} Hz", fill=_TEXT, font=small
    )

    x_start = (MARGIN_MM + CALIBRATION_MM) * mm
    column_s = SECONDS / 4
    for r, row in enumerate((*ROWS, (RHYTHM_LEAD,))):
        baseline = top + (r + 0.6) * ROW_MM * mm
        _calibration(draw, MARGIN_MM * mm, baseline)
        for c, lead in enumerate(row):
            span = SECONDS if len(row) == 1 else column_s
            x0 = x_start + c * column_s * MM_PER_S * mm
            signal = leads.get(lead)
            if signal is not None:
                first, last = int(round(c * column_s * hz)), int(round((c * column_s + span) * hz))
                _trace(draw, signal[first:last], x0, baseline, hz)
            if c:
                draw.line([(x0, baseline - 3 * mm), (x0, baseline + 3 * mm)], fill=_TRACE, width=2)
            draw.text((x0 + 2 * mm, baseline - 13 * mm), lead, fill=_TEXT, font=big)
    return image
