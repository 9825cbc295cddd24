"""The interface every generator target implements.

A target turns one study of the universe into pixels plus the ground truth
it knows (masks and measured findings). Geometry comes first (a label map),
photorealism second (labels -> pixels); the label map is the truth.

:class:`TwoStageTarget` is that sequence, written once: a target supplies
``geometry`` (the label map, grid and findings of a study) and
``photorealism`` (pixels from a :class:`Geometry` and a random generator
keyed by the study's path); ``render_study`` joins them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..archive import keyed
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
class Geometry:
    """Stage 1 of a study: the label map (the ground truth), its grid and the findings measured on it."""

    labels: np.ndarray
    grid: Any
    findings: list[Finding] = field(default_factory=list)


@dataclass
class StudyPixels:
    """What a target makes for one study."""

    pixels: np.ndarray  # the image volume (CT: int16 HU, slices x rows x columns)
    labels: np.ndarray  # the label map the pixels were made from
    grid: Any  # the geometry grid (spacing, positions)
    findings: list[Finding] = field(default_factory=list)
    renderer: str = ""  # what made the pixels, e.g. "gan 3f2a91c0d4e5b6a7" or "teacher"


class Target(Protocol):
    """A generator target (generators/<system>/<target>)."""

    name: str

    def render_study(self, universe: Universe, study: StudyRecord) -> StudyPixels: ...


class TwoStageTarget(ABC):
    """Geometry -> photorealism, the shape every target of the zoo shares (DESIGN §4).

    Subclasses set ``name`` and ``renderer`` and implement :meth:`geometry`
    and :meth:`photorealism`. The photorealism stage's randomness comes from
    the study's keyed path ``("study", patient, visit, stream)``, so the same
    study always gets the same pixels, and a follow-up shows the same anatomy
    (drawn from the patient's path) with fresh noise.
    """

    name: str = ""
    renderer: str = ""
    stream: str = "render"  # keyed-path component of the photorealism stage's randomness

    @property
    def fingerprint(self) -> str:
        """Identifies what the pixels depend on beyond the universe (renderer, weights, settings)."""
        return self.renderer

    @abstractmethod
    def geometry(self, universe: Universe, study: StudyRecord) -> Geometry:
        """Stage 1: the label map (the ground truth), its grid and the findings."""

    @abstractmethod
    def photorealism(self, geometry: Geometry, rng: np.random.Generator) -> np.ndarray:
        """Stage 2: pixels for the label map, drawing randomness only from ``rng``."""

    def study_rng(self, universe: Universe, study: StudyRecord) -> np.random.Generator:
        return keyed.path_rng(universe.key, "study", study.patient.index, study.visit, self.stream)

    def render_study(self, universe: Universe, study: StudyRecord) -> StudyPixels:
        geometry = self.geometry(universe, study)
        pixels = self.photorealism(geometry, self.study_rng(universe, study))
        return StudyPixels(pixels=pixels, labels=geometry.labels, grid=geometry.grid,
                           findings=geometry.findings, renderer=self.fingerprint)
