"""The lung-CT study plan: one axial CT series, its SEG and its TID 1500 SR.

The acquisition (slice thickness, scan length, field of view) is drawn per
patient, so that every follow-up compares with its baseline; the number of
slices follows from it. :func:`acquisition_arrays` is the one place these
values are drawn: the catalog's plan and the generator's grid both call it.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydicom.uid import CTImageStorage

from synthpacs.generation.contract import PlanDraws, SeriesSlot, StudyPlan

from .geometry import CTGrid

COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

SLOTS = (
    SeriesSlot(role="image", number=2, modality="CT", sop_class_uid=CTImageStorage),
    SeriesSlot(role="segmentation", number=300, modality="SEG", sop_class_uid=SEGMENTATION_STORAGE),
    SeriesSlot(role="measurements", number=400, modality="SR", sop_class_uid=COMPREHENSIVE_SR_STORAGE),
)
IMAGE, SEGMENTATION, MEASUREMENTS = range(3)


class LungCTAcquisition(BaseModel):
    """The ``acquisition:`` block of a lung-CT cohort."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    slice_thickness_mm: tuple[float, ...] = Field(min_length=1)
    scan_length_mm: tuple[float, float]
    fov_mm: tuple[float, float]
    rows: int = Field(512, ge=16, le=2048)
    columns: int = Field(512, ge=16, le=2048)
    series_description: str = "Chest {thickness} mm axial"
    segmentation_description: str = "Target lesions (ground truth)"
    measurements_description: str = "RECIST 1.1 measurements (ground truth)"

    @field_validator("slice_thickness_mm")
    @classmethod
    def _positive(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.3 <= v <= 20 for v in values):
            raise ValueError("slice thicknesses must lie in 0.3..20 mm")
        return values

    @model_validator(mode="after")
    def _ranges(self) -> LungCTAcquisition:
        for name in ("scan_length_mm", "fov_mm"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be [low, high] with 0 < low <= high")
        if (self.rows * self.columns) % 8:
            raise ValueError("rows x columns must be divisible by 8 (BINARY SEG frames are byte-aligned)")
        longest = self.scan_length_mm[1] / min(self.slice_thickness_mm) + 1
        if longest > 4000:
            raise ValueError(f"the thinnest slices over the longest scan give {longest:.0f} slices (at most 4000)")
        return self


def acquisition_arrays(draws: PlanDraws) -> dict[str, np.ndarray]:
    """Slice thickness, scan length, field of view (mm) and slice count of each row's patient."""
    acq: LungCTAcquisition = draws.acquisition
    thicknesses = np.array(acq.slice_thickness_mm, dtype=float)
    index = np.floor(draws.uniform("thickness") * len(thicknesses)).astype(np.int64)
    thickness = thicknesses[index]
    size = draws.uniform("body_size")  # one build factor drives FOV and scan length together
    low, high = acq.scan_length_mm
    scan_length = np.round(low + (high - low) * size, 1)
    low, high = acq.fov_mm
    fov = np.round(low + (high - low) * (0.7 * size + 0.3 * draws.uniform("fov")), 1)
    n_slices = np.floor(scan_length / thickness).astype(np.int64) + 1
    return {"slice_thickness": thickness, "scan_length": scan_length, "fov": fov, "n_slices": n_slices}


def thickness_text(thickness_mm: float) -> str:
    return f"{float(thickness_mm):g}"


def plan(draws: PlanDraws) -> StudyPlan:
    """Every study: the CT series, one SEG and one SR instance."""
    acq: LungCTAcquisition = draws.acquisition
    a = acquisition_arrays(draws)
    n = len(draws)
    ones = np.ones(n, dtype=np.int64)
    zeros = np.zeros(n, dtype=np.int64)
    descriptions = np.empty((n, len(SLOTS)), dtype=object)
    descriptions[:, IMAGE] = [acq.series_description.format(thickness=thickness_text(t)) for t in a["slice_thickness"]]
    descriptions[:, SEGMENTATION] = acq.segmentation_description
    descriptions[:, MEASUREMENTS] = acq.measurements_description
    return StudyPlan(
        n_instances=np.stack([a["n_slices"], ones, ones], axis=1),
        # A SEG holds a frame per slice that shows a lesion: only the pixels tell how many.
        frames=np.stack([zeros, zeros, zeros], axis=1),
        rows=np.stack([ones * acq.rows, ones * acq.rows, zeros], axis=1),
        columns=np.stack([ones * acq.columns, ones * acq.columns, zeros], axis=1),
        descriptions=descriptions,
    )


def study_grid(draws: PlanDraws) -> CTGrid:
    """The voxel grid of the one study row in ``draws``."""
    acq: LungCTAcquisition = draws.acquisition
    a = acquisition_arrays(draws)
    return CTGrid(
        rows=acq.rows,
        columns=acq.columns,
        n_slices=int(a["n_slices"][0]),
        pixel_spacing_mm=float(a["fov"][0]) / acq.columns,
        slice_spacing_mm=float(a["slice_thickness"][0]),
    )
