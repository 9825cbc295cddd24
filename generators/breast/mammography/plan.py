"""The mammography target's series, study plan and the schema of its cohort ``acquisition:`` block."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthpacs.generation.contract import PlanDraws, SeriesSlot, StudyPlan

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SLOTS = (
    SeriesSlot("image", 1, "MG", MG_FOR_PRESENTATION),
    SeriesSlot("segmentation", 100, "SEG", SEGMENTATION),
    SeriesSlot("measurements", 200, "SR", COMPREHENSIVE_SR),
)
#: The four standard views, in instance order: (laterality, view).
VIEWS = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))
#: Views the geometry stage projects, by their usual names (laterality + view).
KNOWN_VIEWS = {f"{side}{view}": (side, view) for view in ("CC", "MLO") for side in ("R", "L")}
DENSITIES = ("A", "B", "C", "D")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MammographyAcquisition(_Strict):
    """The ``acquisition:`` block of a mammography cohort."""

    rows: int = Field(3328, ge=256, le=4096, multiple_of=8)
    columns: int = Field(2560, ge=256, le=4096, multiple_of=8)
    pixel_spacing_mm: float = Field(0.085, ge=0.05, le=0.5)
    bits_stored: int = Field(12, ge=12, le=14)
    #: Shares of BI-RADS breast density categories A (fatty) to D (extremely dense).
    density: dict[str, float] = Field(default_factory=lambda: {"A": 0.1, "B": 0.4, "C": 0.4, "D": 0.1})
    calcification_share: float = Field(0.35, ge=0, le=1)  # subjects with a cluster of calcifications
    distortion_share: float = Field(0.1, ge=0, le=1)  # subjects with an architectural distortion
    #: The views of a study, in instance order; both CCs are needed (the report measures masses on them).
    views: tuple[str, ...] = ("RCC", "LCC", "RMLO", "LMLO")

    @property
    def view_list(self) -> tuple[tuple[str, str], ...]:
        """(laterality, view) of each instance."""
        return tuple(KNOWN_VIEWS[v] for v in self.views)

    @model_validator(mode="after")
    def _checked(self) -> MammographyAcquisition:
        unknown = sorted(set(self.density) - set(DENSITIES))
        if unknown:
            raise ValueError(f"density: unknown BI-RADS density class {', '.join(unknown)} (use {', '.join(DENSITIES)})")
        if abs(sum(self.density.values()) - 1.0) > 1e-6 or min(self.density.values(), default=0) < 0:
            raise ValueError("density: shares must be non-negative and add up to 1")
        unknown_views = [v for v in self.views if v not in KNOWN_VIEWS]
        if unknown_views or not self.views or len(set(self.views)) != len(self.views):
            raise ValueError(
                f"views: {', '.join(map(repr, unknown_views)) or 'a view is repeated or none is given'} "
                f"(use distinct views from {', '.join(KNOWN_VIEWS)})"
            )
        if not {"RCC", "LCC"} <= set(self.views):
            raise ValueError("views: RCC and LCC are needed (the report measures each mass on its CC view)")
        if self.rows * self.pixel_spacing_mm < 180 or self.columns * self.pixel_spacing_mm < 140:
            raise ValueError("the detector must cover at least 180 x 140 mm (rows x columns x pixel_spacing_mm)")
        return self


def plan(draws: PlanDraws) -> StudyPlan:
    """The cohort's views (four by default), a SEG per view and one SR per study."""
    n, acq = len(draws), draws.acquisition
    ones = np.ones(n, dtype=np.int64)
    descriptions = np.empty((n, 3), dtype=object)
    descriptions[:, 0] = f"Mammography, {len(acq.views)} views"
    descriptions[:, 1] = "Lesions (ground truth)"
    descriptions[:, 2] = "Lesion measurements and BI-RADS"
    zero = ones * 0
    return StudyPlan(
        n_instances=np.stack([len(acq.views) * ones, len(acq.views) * ones, ones], axis=1),
        frames=np.stack([zero, zero, zero], axis=1),
        rows=np.stack([acq.rows * ones, acq.rows * ones, zero], axis=1),
        columns=np.stack([acq.columns * ones, acq.columns * ones, zero], axis=1),
        descriptions=descriptions,
    )
