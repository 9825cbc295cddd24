"""CT Image Storage instances (PS3.3 A.3 CT Image IOD), built with pydicom.

highdicom has no CT Image constructor, so :func:`build_ct_series` writes
every mandatory module of PS3.3 A.3 itself, plus the user-optional modules
that carry the trial context and the display windows:

=============================  ==========  =====
Module                         PS3.3       Usage
=============================  ==========  =====
Patient                        C.7.1.1     M
Clinical Trial Subject         C.7.1.3     U
General Study                  C.7.2.1     M
Patient Study                  C.7.2.2     U
Clinical Trial Study           C.7.2.3     U
General Series                 C.7.3.1     M
Clinical Trial Series          C.7.3.2     U
Frame of Reference             C.7.4.1     M
General Equipment              C.7.5.1     M
General Acquisition            C.7.10.1    M
General Image                  C.7.6.1     M
Image Plane                    C.7.6.2     M
Image Pixel                    C.7.6.3     M
Contrast/Bolus                 C.7.6.4     C (contrast was given)
CT Image                       C.8.2.1     M
VOI LUT                        C.11.2      U
SOP Common                     C.12.1      M
=============================  ==========  =====

Pixels are stored unsigned (Pixel Representation 0) in 16-bit words with
12 bits stored; Rescale Slope 1 and Rescale Intercept -1024 give Hounsfield
units, so the representable range is -1024..3071 HU (values outside are
clipped, as a scanner's reconstruction does).
"""

from __future__ import annotations

import copy
import enum
from typing import Protocol, runtime_checkable

import numpy as np
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from . import common
from .headers import SeriesHeaders
from .spec import CTSeriesSpec

#: Rescale Intercept (0028,1052): stored value 0 is -1024 HU.
RESCALE_INTERCEPT = -1024
RESCALE_SLOPE = 1
BITS_STORED = 12
MIN_HU = RESCALE_INTERCEPT
MAX_HU = RESCALE_INTERCEPT + (1 << BITS_STORED) - 1  # 3071
KVP = 120
CONTRAST_BOLUS_AGENT = "Iodinated contrast (synthetic)"
CONVOLUTION_KERNEL = "STANDARD"


class WindowCenterWidthExplanationValues(enum.Enum):
    """Window Center & Width Explanation (0028,1055) of a chest CT and its window (PS3.3 C.11.2).

    Each member's value is (Window Center, Window Width, explanation) in HU.
    """

    LUNG = (-600.0, 1500.0, "LUNG")
    MEDIASTINUM = (40.0, 400.0, "MEDIASTINUM")

    @property
    def center(self) -> float:
        return self.value[0]

    @property
    def width(self) -> float:
        return self.value[1]

    @property
    def explanation(self) -> str:
        return self.value[2]


#: Windows written to every CT instance, in order; the first is the default rendition.
CT_WINDOWS = (WindowCenterWidthExplanationValues.LUNG, WindowCenterWidthExplanationValues.MEDIASTINUM)


@runtime_checkable
class CTGeometry(Protocol):
    """The voxel grid of a CT series (the geometry stage's grid).

    ``position_mm(k, r, c)`` returns the (x, y, z) patient coordinates (DICOM
    LPS, mm) of the centre of voxel (slice k, row r, column c): column index
    runs along +x, row index along +y and slice k sits at z = -k * spacing
    (slice 0 most superior).
    """

    # Read-only properties, so that frozen dataclasses (VolumeGrid) match too.
    @property
    def rows(self) -> int: ...
    @property
    def columns(self) -> int: ...
    @property
    def n_slices(self) -> int: ...
    @property
    def pixel_spacing_mm(self) -> float: ...
    @property
    def slice_spacing_mm(self) -> float: ...

    def position_mm(self, k: int, r: int, c: int) -> tuple[float, float, float]: ...


def _ds_number(value: float) -> str:
    """A Decimal String (PS3.5 6.2, at most 16 characters) for a float, without float noise."""
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    if len(text) > 16:
        text = f"{float(value):.10g}"
    return text


def _pixel_spacing(grid: CTGeometry) -> tuple[float, float]:
    """(row spacing, column spacing) in mm from a scalar or a pair."""
    spacing = grid.pixel_spacing_mm
    if isinstance(spacing, (tuple, list)):
        if len(spacing) != 2:
            raise ValueError('"grid.pixel_spacing_mm" must be a number or a (row, column) pair.')
        return float(spacing[0]), float(spacing[1])
    return float(spacing), float(spacing)


def _check_grid(grid: CTGeometry) -> None:
    for name in ("rows", "columns", "n_slices", "pixel_spacing_mm", "slice_spacing_mm", "position_mm"):
        if not hasattr(grid, name):
            raise TypeError(f'Argument "grid" has no attribute "{name}" (see CTGeometry).')
    for name in ("rows", "columns", "n_slices"):
        value = getattr(grid, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f'"grid.{name}" must be a positive integer, got {value!r}.')
    if grid.rows > 65535 or grid.columns > 65535:
        raise ValueError('"grid.rows" and "grid.columns" must fit Rows/Columns (US, at most 65535).')
    row_spacing, column_spacing = _pixel_spacing(grid)
    if not (np.isfinite(row_spacing) and np.isfinite(column_spacing) and row_spacing > 0 and column_spacing > 0):
        raise ValueError('"grid.pixel_spacing_mm" must be positive.')
    if not (np.isfinite(grid.slice_spacing_mm) and grid.slice_spacing_mm > 0):
        raise ValueError('"grid.slice_spacing_mm" must be positive.')


def _check_hu(hu: object, grid: CTGeometry, first_slice: int = 0) -> np.ndarray:
    if not isinstance(hu, np.ndarray):
        raise TypeError(f'Argument "hu" must be a numpy.ndarray, not {type(hu).__name__}.')
    if not (np.issubdtype(hu.dtype, np.integer) or np.issubdtype(hu.dtype, np.floating)):
        raise TypeError(f'Argument "hu" must have an integer or floating point dtype, not {hu.dtype}.')
    if hu.ndim != 3 or hu.shape[1:] != (grid.rows, grid.columns) or not 0 <= first_slice <= grid.n_slices - len(hu):
        raise ValueError(
            f'Argument "hu" has shape {hu.shape} from slice {first_slice}; the grid has '
            f"(n_slices, rows, columns) = {(grid.n_slices, grid.rows, grid.columns)}."
        )
    if np.issubdtype(hu.dtype, np.floating) and not np.all(np.isfinite(hu)):
        raise ValueError('Argument "hu" holds NaN or infinite values.')
    return hu


def hu_to_stored(hu: np.ndarray) -> np.ndarray:
    """Stored pixel values (uint16, 12 bits) of Hounsfield units, clipped to -1024..3071."""
    values = np.rint(hu) if np.issubdtype(hu.dtype, np.floating) else hu
    values = np.clip(values, MIN_HU, MAX_HU)
    return (values - RESCALE_INTERCEPT).astype(np.uint16)


def build_ct_series(spec: CTSeriesSpec) -> list[Dataset]:
    """Build the CT Image Storage instances of one axial series (or of a slab of it).

    One single-frame instance per slice of ``spec.grid`` (PS3.3 A.3 CT Image
    IOD; the modules are listed in this module's docstring), Explicit VR
    Little Endian, with complete File Meta Information so that
    ``pydicom.dcmwrite(path, ds, enforce_file_format=True)`` works. A slab
    (``spec.first_slice`` > 0 or fewer slices than the grid) gives exactly
    the instances the whole series has at those positions.

    Parameters
    ----------
    spec: synthpacs.imaging.spec.CTSeriesSpec
        The study and series contexts (modality CT, one SOP Instance UID per
        grid slice), Hounsfield units of shape ``(slices, grid.rows,
        grid.columns)`` (integer or floating point: rounded to the nearest
        integer; values outside -1024..3071 are clipped) and the voxel grid:
        Image Position (Patient) of slice k is ``grid.position_mm(k, 0, 0)``,
        orientation is axial [1,0,0,0,1,0].

    Returns
    -------
    list[pydicom.Dataset]
        The instances in slice order (grid slice k has Instance Number k + 1).

    Raises
    ------
    TypeError
        When ``spec`` is not a CTSeriesSpec, ``grid`` lacks an attribute or
        ``hu`` is not an integer or float array.
    ValueError
        When the series' modality is not CT, the grid is degenerate, or
        ``hu`` has the wrong shape, lies outside the grid or holds non-finite values.
    """
    if not isinstance(spec, CTSeriesSpec):
        raise TypeError(f'Argument "spec" must be a CTSeriesSpec, not {type(spec).__name__}.')
    study, series, grid, hu = spec.study, spec.series, spec.grid, spec.hu
    common.check_contexts(study, series)
    if series.modality != "CT" or series.sop_class_uid != CTImageStorage:
        raise ValueError(f'Argument "series" must be a CT Image Storage series, not modality {series.modality!r}.')
    if grid is None:  # CTSeriesSpec refuses this already
        raise TypeError('"spec.grid" is required.')
    _check_grid(grid)
    _check_hu(hu, grid, spec.first_slice)

    base = _series_template(study, series, grid)
    datasets = []
    for offset in range(len(hu)):
        ds = copy.deepcopy(base)
        k = spec.first_slice + offset
        ds.file_meta = _file_meta(series, k)
        ds.update(_instance_attributes(series, grid, k))
        # Image Pixel (C.7.6.3)
        # Slice by slice, so a series costs one slice of working memory. No Smallest/Largest
        # Image Pixel Value: every attribute but Pixel Data is known before the pixels are.
        ds.PixelData = hu_to_stored(hu[offset]).astype("<u2", copy=False).tobytes()
        datasets.append(ds)
    return datasets


def ct_series_headers(spec: CTSeriesSpec) -> SeriesHeaders:
    """The instances :func:`build_ct_series` makes of ``spec``, without their pixels (``spec.hu``
    gives only the number of slices): the series template, and each slice's own attributes."""
    if not isinstance(spec, CTSeriesSpec):
        raise TypeError(f'Argument "spec" must be a CTSeriesSpec, not {type(spec).__name__}.')
    study, series, grid = spec.study, spec.series, spec.grid
    common.check_contexts(study, series)
    if grid is None:  # CTSeriesSpec refuses this already
        raise TypeError('"spec.grid" is required.')
    _check_grid(grid)
    first = spec.first_slice
    own = tuple(_instance_attributes(series, grid, first + i) for i in range(len(spec.hu)))
    template = _series_template(study, series, grid)
    return SeriesHeaders(
        template, own, lambda i: _file_meta(series, first + i), ExplicitVRLittleEndian, "OW", 2 * grid.rows * grid.columns
    )


def _file_meta(series, k: int):
    return common.file_meta(CTImageStorage, series.sop_instance_uids[k], ExplicitVRLittleEndian)


def _instance_attributes(series, grid: CTGeometry, k: int) -> Dataset:
    """What slice ``k`` of the series has of its own (but its file meta); the rest is the template's."""
    ds = Dataset()
    # SOP Common (C.12.1): identity of this instance.
    ds.SOPInstanceUID = series.sop_instance_uids[k]
    # General Image (C.7.6.1)
    ds.InstanceNumber = k + 1
    # Image Plane (C.7.6.2)
    x, y, z = (float(v) for v in grid.position_mm(k, 0, 0))
    ds.ImagePositionPatient = [_ds_number(x), _ds_number(y), _ds_number(z)]
    ds.SliceLocation = _ds_number(z)
    return ds


def _series_template(study, series, grid: CTGeometry) -> Dataset:
    """Every attribute that is the same on all instances of the series, in one dataset."""
    ds = Dataset()
    common.add_sop_common_module(ds, study, CTImageStorage, series.sop_instance_uids[0])  # set per slice
    common.add_patient_study_modules(ds, study)
    common.add_clinical_trial_modules(ds, study, series)
    common.add_general_series_module(ds, study, series)
    # Frame of Reference (C.7.4.1): one per study, shared by CT and SEG.
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    common.add_general_equipment_module(ds, study.target)
    # General Acquisition (C.7.10.1)
    ds.AcquisitionNumber = 1
    ds.AcquisitionDate = series.series_date
    ds.AcquisitionTime = series.series_time
    # General Image (C.7.6.1)
    ds.ContentDate = series.series_date
    ds.ContentTime = series.series_time
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = "Synthetic image: fabricated by SynthPACS, no real patient"
    # Image Plane (C.7.6.2)
    row_spacing, column_spacing = _pixel_spacing(grid)
    ds.PixelSpacing = [_ds_number(row_spacing), _ds_number(column_spacing)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    thickness = float(getattr(grid, "slice_thickness_mm", grid.slice_spacing_mm))
    ds.SliceThickness = _ds_number(thickness)
    ds.SpacingBetweenSlices = _ds_number(grid.slice_spacing_mm)
    # Image Pixel (C.7.6.3) and CT Image (C.8.2.1)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = grid.rows
    ds.Columns = grid.columns
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = RESCALE_SLOPE
    ds.RescaleType = "HU"
    ds.KVP = KVP
    ds.ScanOptions = "HELICAL MODE"
    ds.DataCollectionDiameter = 500
    ds.ReconstructionDiameter = _ds_number(column_spacing * grid.columns)
    ds.GantryDetectorTilt = 0
    ds.TableHeight = 150
    ds.RotationDirection = "CW"
    ds.ExposureTime = 500
    ds.XRayTubeCurrent = 200
    ds.Exposure = 100
    ds.FilterType = "BODY FILTER"
    ds.ConvolutionKernel = CONVOLUTION_KERNEL
    ds.RevolutionTime = 0.5
    ds.SpiralPitchFactor = 1
    # Contrast/Bolus (C.7.6.4): a contrast-enhanced chest CT.
    ds.ContrastBolusAgent = CONTRAST_BOLUS_AGENT
    ds.ContrastBolusRoute = "IV"
    ds.ContrastBolusVolume = 80
    ds.ContrastBolusIngredient = "IODINE"
    ds.ContrastBolusIngredientConcentration = 350
    # VOI LUT (C.11.2)
    ds.WindowCenter = [_ds_number(w.center) for w in CT_WINDOWS]
    ds.WindowWidth = [_ds_number(w.width) for w in CT_WINDOWS]
    ds.WindowCenterWidthExplanation = [w.explanation for w in CT_WINDOWS]
    ds.VOILUTFunction = "LINEAR"
    return ds
