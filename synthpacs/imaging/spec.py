"""Typed IOD specifications: what a generator target hands to the builders.

A target never builds a Dataset. It returns specs (this module), and
:mod:`synthpacs.imaging.registry` builds each with the builder registered for
its SOP class. Identity (every UID, every number) comes in through the
context objects, minted by the universe; builders never invent one
(STYLE §3.7). Constructors refuse an invalid spec before any Dataset exists,
naming the field (highdicom's habit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from pydicom.sr.coding import Code

if TYPE_CHECKING:
    from pydicom import Dataset

    from .spatial import VolumeGrid


def _valid_uid(uid: object) -> bool:
    text = str(uid)
    return 0 < len(text) <= 64 and all(part.isdigit() and (part == "0" or not part.startswith("0")) for part in text.split("."))


def _require_uid(name: str, uid: object) -> None:
    if not isinstance(uid, str) or not _valid_uid(uid):
        raise ValueError(f'"{name}" is not a valid UID: {uid!r}.')


@dataclass(frozen=True)
class TrialContext:
    """Clinical Trial Subject / Study / Series attributes (PS3.3 C.7.1.3, C.7.2.3, C.7.3.2)."""

    sponsor_name: str
    protocol_id: str
    protocol_name: str
    site_id: str
    site_name: str
    subject_id: str
    time_point_id: str
    time_point_description: str
    coordinating_center_name: str


@dataclass(frozen=True)
class StudyContext:
    """Patient, General Study and Patient Study attributes of one study (PS3.3 C.7.1.1, C.7.2.1, C.7.2.2).

    ``target`` is the generator target that made the study (Manufacturer's
    Model Name); ``visit`` orders the trial's time points (0 = baseline).
    """

    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    patient_age: str
    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    procedure_code: Code
    body_part_examined: str
    frame_of_reference_uid: str
    target: str
    visit: int
    trial: TrialContext | None = None

    def __post_init__(self) -> None:
        _require_uid("study_instance_uid", self.study_instance_uid)
        _require_uid("frame_of_reference_uid", self.frame_of_reference_uid)
        if self.patient_sex not in ("M", "F", "O"):
            raise ValueError(f'"patient_sex" must be M, F or O, not {self.patient_sex!r}.')


@dataclass(frozen=True)
class SeriesContext:
    """General Series identity of one series and the SOP Instance UIDs of its instances, in order."""

    series_instance_uid: str
    series_number: int
    modality: str
    series_description: str
    series_date: str
    series_time: str
    sop_class_uid: str
    sop_instance_uids: tuple[str, ...]
    dimension_organization_uid: str | None = None

    def __post_init__(self) -> None:
        _require_uid("series_instance_uid", self.series_instance_uid)
        _require_uid("sop_class_uid", self.sop_class_uid)
        if not self.sop_instance_uids:
            raise ValueError(f"series {self.series_instance_uid} has no SOP Instance UIDs.")
        for uid in self.sop_instance_uids:
            _require_uid("sop_instance_uids[]", uid)


@dataclass(frozen=True)
class IODSpec:
    """Base of every spec: the study, the series and the SOP class it is built as."""

    study: StudyContext
    series: SeriesContext

    @property
    def sop_class_uid(self) -> str:
        return self.series.sop_class_uid


# -- images -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CTSeriesSpec(IODSpec):
    """An axial CT series (PS3.3 A.3): Hounsfield units on a voxel grid, one instance per slice.

    ``first_slice`` is the grid index of ``hu[0]``: a slab of a series is a
    spec whose ``hu`` holds slices ``first_slice .. first_slice + len(hu) - 1``
    and gives exactly the bytes those instances have in the whole series.
    """

    hu: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0, 0)))
    grid: VolumeGrid | None = None
    first_slice: int = 0

    def __post_init__(self) -> None:
        if self.grid is None:
            raise TypeError('"grid" is required.')
        if not isinstance(getattr(self.grid, "n_slices", None), (int, np.integer)):
            raise TypeError(f'"grid" must be a voxel grid with an integer n_slices, not {type(self.grid).__name__}.')
        if not isinstance(self.hu, np.ndarray) or self.hu.ndim != 3:
            raise TypeError('"hu" must be a 3-D numpy array (slices, rows, columns).')
        if len(self.series.sop_instance_uids) != self.grid.n_slices:
            raise ValueError(
                f'"series" plans {len(self.series.sop_instance_uids)} instances but "grid" has {self.grid.n_slices} slices.'
            )


@dataclass(frozen=True)
class ColorImageSpec(IODSpec):
    """A single-frame 8-bit RGB photograph (VL Photographic, Ophthalmic Photography, VL Endoscopic).

    ``pixels`` is (rows, columns, 3) uint8, one array per instance of the series.
    ``laterality`` is Image Laterality (0020,0062): R, L, B or U.
    """

    pixels: tuple[np.ndarray, ...] = ()
    laterality: str = "U"
    anatomic_region: Code | None = None
    acquisition_device: str = ""

    def __post_init__(self) -> None:
        if len(self.pixels) != len(self.series.sop_instance_uids):
            raise ValueError(f'"pixels" holds {len(self.pixels)} images for {len(self.series.sop_instance_uids)} instances.')
        for i, image in enumerate(self.pixels):
            if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise TypeError(f'"pixels[{i}]" must be a (rows, columns, 3) uint8 array.')
        if self.laterality not in ("R", "L", "B", "U"):
            raise ValueError(f'"laterality" must be R, L, B or U, not {self.laterality!r}.')


@dataclass(frozen=True)
class MammogramView:
    """The acquisition of one mammographic view (PS3.3 C.8.11.7, C.8.7.8, C.8.11.4)."""

    laterality: str  # Image Laterality: R or L
    view: str  # CC, MLO, ML, LM, XCCL
    pixel_spacing_mm: float  # Imager Pixel Spacing (at the detector)
    kvp: float
    exposure_mas: float
    compression_force_n: float
    thickness_mm: float  # Body Part Thickness: the compressed breast
    organ_dose_dgy: float  # average glandular dose
    entrance_dose_mgy: float
    anode: str = "TUNGSTEN"
    filter: str = "RHODIUM"
    implant: bool = False

    def __post_init__(self) -> None:
        if self.laterality not in ("R", "L"):
            raise ValueError(f'"laterality" must be R or L, not {self.laterality!r}.')
        if self.view not in MAMMOGRAPHY_VIEWS:
            raise ValueError(f'"view" must be one of {", ".join(MAMMOGRAPHY_VIEWS)}, not {self.view!r}.')
        if not 0.01 <= self.pixel_spacing_mm <= 1.0:
            raise ValueError('"pixel_spacing_mm" must lie in 0.01..1 mm.')


#: Mammographic views this builder codes (CID 4014), by their usual abbreviations.
MAMMOGRAPHY_VIEWS = ("CC", "MLO", "ML", "LM", "XCCL")


@dataclass(frozen=True)
class MammographySpec(IODSpec):
    """Digital mammograms For Presentation (PS3.3 A.27): one single-frame instance per view.

    ``pixels`` are (rows, columns) uint16 images, MONOCHROME2 (bright = dense),
    ``bits_stored`` deep, one per instance; ``views`` their acquisitions.
    A part of the series (one view) is a spec whose ``pixels`` and ``views``
    start at instance ``first_instance`` (0-based): the same bytes as in the whole.
    """

    pixels: tuple[np.ndarray, ...] = ()
    views: tuple[MammogramView, ...] = ()
    bits_stored: int = 12
    window: tuple[float, float] | None = None  # (centre, width) of the processed image
    first_instance: int = 0

    def __post_init__(self) -> None:
        n = len(self.series.sop_instance_uids)
        if len(self.pixels) != len(self.views) or not self.pixels:
            raise ValueError(f'"pixels" ({len(self.pixels)}) and "views" ({len(self.views)}) must match, one or more.')
        if not 0 <= self.first_instance <= n - len(self.pixels):
            raise ValueError(
                f"instances {self.first_instance}..{self.first_instance + len(self.pixels) - 1} lie outside the series of {n}."
            )
        if not 10 <= self.bits_stored <= 16:
            raise ValueError('"bits_stored" must lie in 10..16.')
        for i, image in enumerate(self.pixels):
            if not isinstance(image, np.ndarray) or image.dtype != np.uint16 or image.ndim != 2:
                raise TypeError(f'"pixels[{i}]" must be a (rows, columns) uint16 array.')
            if image.size and int(image.max()) >= 1 << self.bits_stored:
                raise ValueError(f'"pixels[{i}]" exceeds {self.bits_stored} bits.')


# -- ground truth -----------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One segment of a SEG (PS3.3 C.8.20.2): a label value of the label map and what it is."""

    label_value: int
    label: str
    tracking_id: str
    tracking_uid: str
    category: Code
    property_type: Code
    anatomic_region: Code
    laterality: Code | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= int(self.label_value) <= 255:
            raise ValueError(f'"label_value" {self.label_value} does not fit a uint8 label map.')
        if not self.tracking_id.strip():
            raise ValueError('"tracking_id" must be a non-empty string.')
        _require_uid("tracking_uid", self.tracking_uid)


@dataclass(frozen=True)
class SegmentationSpec(IODSpec):
    """A BINARY Segmentation (PS3.3 A.51) of the source series' label map, one segment per item.

    ``labels`` holds one frame per source instance used: all of the source
    series, or those at ``source_instances`` (0-based), e.g. one photograph
    of a series (highdicom segments images without a Frame of Reference one
    at a time). ``instance_index`` says which SOP instance of the SEG series
    this spec builds.
    """

    source_series_uid: str = ""
    labels: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    segments: tuple[Segment, ...] = ()
    algorithm_name: str = "SynthPACS geometry stage"
    content_label: str = "GROUND_TRUTH"
    source_instances: tuple[int, ...] | None = None
    instance_index: int = 0

    def __post_init__(self) -> None:
        _require_uid("source_series_uid", self.source_series_uid)
        if not 0 <= self.instance_index < len(self.series.sop_instance_uids):
            raise ValueError(f'"instance_index" {self.instance_index} is outside the SEG series.')
        if not isinstance(self.labels, np.ndarray) or self.labels.dtype != np.uint8:
            raise TypeError('"labels" must be a uint8 numpy array.')
        if not self.segments:
            raise ValueError('"segments" must describe at least one segment.')
        values = [s.label_value for s in self.segments]
        if len(set(values)) != len(values):
            raise ValueError('"segments" gives two segments the same label value.')
        uids = [s.tracking_uid for s in self.segments]
        if len(set(uids)) != len(uids):
            raise ValueError('"segments" repeats a tracking UID.')


@dataclass(frozen=True)
class CodedEvaluation:
    """One TID 1501 Qualitative Evaluation: a coded concept and its coded value
    (e.g. Calcification Type: Punctate calcification)."""

    name: Code
    value: Code


@dataclass(frozen=True)
class Quantity:
    """One more TID 300 measurement of a finding, without image coordinates (e.g. Distance from nipple, mm)."""

    name: Code
    value: float
    unit: Code

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.value)):
            raise ValueError(f'"value" of {self.name.meaning} must be a finite number, got {self.value!r}.')


@dataclass(frozen=True)
class LinearMeasurement:
    """One measured finding of a TID 1500 report (TID 1501): a length on one source frame.

    ``frame`` indexes the source series' instances (None when the finding has
    gone, with value 0); ``points`` are two (row, column) voxel indices.
    ``finding_type`` overrides the report's; ``evaluations`` and ``quantities``
    add coded descriptors and other numbers to the finding's group.
    """

    tracking_id: str
    tracking_uid: str
    value_mm: float
    finding_site: Code
    laterality: Code | None
    frame: int | None
    points: tuple[tuple[float, float], tuple[float, float]] | None
    finding_type: Code | None = None
    evaluations: tuple[CodedEvaluation, ...] = ()
    quantities: tuple[Quantity, ...] = ()

    def __post_init__(self) -> None:
        _require_uid("tracking_uid", self.tracking_uid)
        if not self.tracking_id.strip():
            raise ValueError('"tracking_id" must be a non-empty string.')
        if not math.isfinite(float(self.value_mm)) or float(self.value_mm) < 0:
            raise ValueError(f'"value_mm" must be a finite number >= 0, got {self.value_mm!r}.')
        if float(self.value_mm) == 0 and (self.frame is not None or self.points is not None):
            raise ValueError('a measurement of 0 mm (finding gone) has no "frame" and no "points".')
        if float(self.value_mm) > 0:
            if self.frame is None or self.points is None:
                raise ValueError('a measurement above 0 mm needs "frame" and "points".')
            if tuple(self.points[0]) == tuple(self.points[1]):
                raise ValueError('"points" are one point; a length needs two distinct end points.')


@dataclass(frozen=True)
class QualitativeFinding:
    """A TID 1501 group that is described, not measured: a finding with its coded evaluations
    (a calcification cluster's type and distribution, a breast's assessment category)."""

    tracking_id: str
    tracking_uid: str
    finding_type: Code
    finding_site: Code
    laterality: Code | None
    evaluations: tuple[CodedEvaluation, ...]

    def __post_init__(self) -> None:
        _require_uid("tracking_uid", self.tracking_uid)
        if not self.tracking_id.strip():
            raise ValueError('"tracking_id" must be a non-empty string.')
        if not self.evaluations:
            raise ValueError(f'finding "{self.tracking_id}" needs at least one evaluation.')


@dataclass(frozen=True)
class MeasurementReportSpec(IODSpec):
    """A Comprehensive SR (PS3.3 A.35.3) TID 1500 Measurement Report over a source series:
    measured findings, then findings described by coded evaluations only."""

    source_series_uid: str = ""
    measurements: tuple[LinearMeasurement, ...] = ()
    findings: tuple[QualitativeFinding, ...] = ()
    measurement_name: Code | None = None
    finding_type: Code | None = None
    finding_category: Code | None = None
    method: Code | None = None
    summary: str | None = None  # a TID 1500 Qualitative Evaluations comment, e.g. the RECIST sum
    observer_name: str = "SynthPACS geometry stage"

    def __post_init__(self) -> None:
        _require_uid("source_series_uid", self.source_series_uid)
        if not self.measurements:
            raise ValueError('"measurements" must hold at least one measurement.')
        uids = [m.tracking_uid for m in self.measurements] + [f.tracking_uid for f in self.findings]
        if len(set(uids)) != len(uids):
            raise ValueError('"measurements" and "findings" repeat a tracking UID.')


# -- waveforms --------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveformAnnotation:
    """One Waveform Annotation (PS3.3 C.10.10) of the whole multiplex group: a coded
    measurement (``concept``, ``value``, ``unit``), a coded fiducial point (``concept`` and
    a 1-based ``sample_position``) or a free-text statement (``text`` alone)."""

    concept: Code | None = None
    value: float | None = None
    unit: Code | None = None
    text: str | None = None
    sample_position: int | None = None

    def __post_init__(self) -> None:
        if (self.concept is None) == (self.text is None):
            raise ValueError("a waveform annotation has either a concept or a text")
        if (self.value is None) != (self.unit is None):
            raise ValueError("a waveform annotation's value and unit go together")


@dataclass(frozen=True)
class WaveformSpec(IODSpec):
    """A 12-lead ECG (PS3.3 A.34.3): one multiplex group of leads sampled together.

    ``samples`` is (leads, samples) in microvolts; ``leads`` are the lead
    codes in that order (CID 3001, e.g. ``Code("2:1", "MDC", "Lead I")``).
    ``intervals_ms`` holds measured global intervals (PR, QRS, QT, ...) in ms;
    ``annotations`` any other measurements, statements and fiducial points;
    both are written as Waveform Annotations. The filters are the ones the
    samples have passed (Hz; 0 for none).
    """

    samples: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    leads: tuple[Code, ...] = ()
    sampling_frequency_hz: float = 500.0
    intervals_ms: tuple[tuple[Code, float], ...] = ()
    annotations: tuple[WaveformAnnotation, ...] = ()
    filter_low_hz: float = 0.05
    filter_high_hz: float = 150.0
    notch_hz: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.samples, np.ndarray) or self.samples.ndim != 2:
            raise TypeError('"samples" must be a (leads, samples) numpy array.')
        if self.samples.shape[0] != len(self.leads):
            raise ValueError(f'"samples" has {self.samples.shape[0]} leads but "leads" names {len(self.leads)}.')
        if not 1 <= len(self.leads) <= 13:
            raise ValueError("a 12-lead ECG multiplex group holds 1 to 13 leads.")
        if not 0 < self.sampling_frequency_hz <= 1000:
            raise ValueError('"sampling_frequency_hz" must be in (0, 1000] for a 12-lead ECG.')
        if len(self.series.sop_instance_uids) != 1:
            raise ValueError("a waveform series holds one instance.")


@dataclass
class BuiltSeries:
    """What the builders made so far, by series UID: later specs (SEG, SR) reference earlier ones."""

    datasets: dict[str, list[Dataset]] = field(default_factory=dict)

    def source(self, series_uid: str) -> list[Dataset]:
        try:
            return self.datasets[series_uid]
        except KeyError:
            raise ValueError(f"source series {series_uid} must be built before the objects that reference it") from None
