"""The interface every generator target implements.

A target turns one study of the universe into pixels plus the ground truth
it knows (masks and measured findings). Geometry comes first (a label map),
photorealism second (labels -> pixels); the label map is the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..archive.universe import StudyRecord, Universe


@dataclass
class Finding:
    """One target lesion as a reader would measure it at this visit."""

    tracking_id: str
    tracking_uid: str
    diameter_mm: float
    lung: str
    lobe: str
    slice: int | None = None  # index of the axial slice holding the longest diameter
    points: list[tuple[float, float]] | None = None  # (row, column) end points of that diameter

    def as_dict(self) -> dict[str, Any]:
        return {"tracking_id": self.tracking_id, "tracking_uid": self.tracking_uid, "diameter_mm": self.diameter_mm,
                "lung": self.lung, "lobe": self.lobe, "slice": self.slice, "points": self.points}


@dataclass
class StudyPixels:
    """What a target makes for one study."""

    pixels: np.ndarray  # the image volume (CT: int16 HU, slices x rows x columns)
    labels: np.ndarray  # the label map the pixels were made from
    grid: Any  # the geometry grid (spacing, positions)
    findings: list[Finding] = field(default_factory=list)


class Target(Protocol):
    """A generator target (generators/<system>/<target>)."""

    name: str

    def render_study(self, universe: Universe, study: StudyRecord) -> StudyPixels: ...
