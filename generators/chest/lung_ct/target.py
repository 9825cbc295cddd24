"""The lung-cancer chest CT target: geometry, then photorealism (the GAN, or its teacher).

Randomness comes from keyed paths (DESIGN §2.1): the anatomy and the lesion
sites from the patient's path, so every visit shows the same chest; the
rendering randomness from the study's path (stream ``render`` for the
teacher, ``gan`` for the GAN).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from synthpacs.archive import keyed
from synthpacs.archive.universe import StudyRecord, Universe
from synthpacs.errors import ConfigError
from synthpacs.generation.base import Finding, Geometry, TwoStageTarget

from .geometry import CTGrid, draw_anatomy, label_volume, lesion_measurement, place_lesions
from .teacher import render_hu

NAME = "chest/lung-ct"
FOLDER = Path(__file__).resolve().parent

log = logging.getLogger(__name__)


def study_grid(study: StudyRecord) -> CTGrid:
    p = study.patient
    return CTGrid(rows=p.cohort.rows, columns=p.cohort.columns, n_slices=p.n_slices,
                  pixel_spacing_mm=p.pixel_spacing_mm, slice_spacing_mm=p.slice_thickness_mm)


def study_geometry(universe: Universe, study: StudyRecord):
    """The label volume, grid and lesion findings of one study (no pixels yet)."""
    p = study.patient
    grid = study_grid(study)
    anatomy = draw_anatomy(keyed.path_rng(universe.key, "patient", p.index, "anatomy"), grid, p.sex)
    sites = place_lesions(anatomy, grid, p.n_lesions, keyed.path_rng(universe.key, "patient", p.index, "lesions"))
    labels = label_volume(anatomy, grid, list(zip(sites, study.lesion_diameters_mm)))
    findings = []
    for i, site in enumerate(sites):
        measured = lesion_measurement(labels, grid, i)
        findings.append(Finding(
            tracking_id=f"Lesion {i + 1}",
            tracking_uid=universe.uids.tracking_uid(p.index, i),
            diameter_mm=round(measured["diameter_mm"], 1) if measured else 0.0,
            lung=site.lung,
            lobe=site.lobe,
            slice=measured["slice"] if measured else None,
            points=[tuple(map(float, pt)) for pt in measured["points"]] if measured else None,
        ))
    return labels, grid, findings


class _LungCTGeometry(TwoStageTarget):
    name = NAME

    def geometry(self, universe: Universe, study: StudyRecord) -> Geometry:
        labels, grid, findings = study_geometry(universe, study)
        return Geometry(labels=labels, grid=grid, findings=findings)


class TeacherLungCT(_LungCTGeometry):
    """Geometry stage + physics-informed renderer (the GAN's teacher)."""

    renderer = "teacher"
    stream = "render"

    def photorealism(self, geometry: Geometry, rng: np.random.Generator) -> np.ndarray:
        return render_hu(geometry.labels, geometry.grid, rng)


class GANLungCT(_LungCTGeometry):
    """Geometry stage + the conditional GAN (labels + latent + noise -> HU)."""

    stream = "gan"

    def __init__(self, pipeline):
        self.pipeline = pipeline

    @property
    def renderer(self) -> str:
        return f"gan {self.pipeline.fingerprint} psi={self.pipeline.psi:g}"

    def photorealism(self, geometry: Geometry, rng: np.random.Generator) -> np.ndarray:
        grid = geometry.grid
        return self.pipeline(geometry.labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, rng=rng)


def load_pipeline(weights: Path | None = None, device: str = "auto", psi: float = 1.0, batch_slices: int = 8,
                  weights_source: str = "default", device_source: str = "default"):
    """The GAN pipeline from a pretrained folder (default: the shipped weights beside this file).

    Raises
    ------
    ConfigError
        The weights cannot be loaded (the message names the file and the
        setting that pointed at it) or the device is not here.
    """
    from synthpacs.generation.weights import WeightsError

    from .pipeline import LungCTPipeline

    folder = Path(weights) if weights else FOLDER
    where = "the shipped weights" if not weights else f"weights from {weights_source}"
    try:
        pipeline = LungCTPipeline.from_pretrained(folder, device=device, device_source=device_source)
    except WeightsError as exc:
        raise WeightsError(f"cannot load {where}: {exc}") from None
    pipeline.psi = float(psi)
    pipeline.batch_slices = int(batch_slices)
    log.info("lung-CT GAN from %s on %s (weights %s, psi %g)", folder, pipeline.device, pipeline.fingerprint, psi)
    return pipeline


def make_target(options) -> TwoStageTarget:
    """The registry's entry point: ``options`` is a :class:`synthpacs.generation.registry.GeneratorOptions`."""
    if options.renderer == "teacher":
        return TeacherLungCT()
    if options.renderer != "gan":
        raise ConfigError(f"renderer {options.renderer!r} is not offered by {NAME} (gan or teacher)")
    return GANLungCT(load_pipeline(options.weights, options.device, options.psi, options.batch_slices,
                                   options.weights_source, options.device_source))


def _pick_slice(geometry: Geometry, choice: str) -> int:
    n = geometry.labels.shape[0]
    if choice == "middle":
        return n // 2
    if choice == "lesion":
        measured = [f for f in geometry.findings if f.slice is not None]
        if measured:
            return int(max(measured, key=lambda f: f.diameter_mm).slice)
        return n // 2
    try:
        k = int(choice)
    except ValueError:
        raise ConfigError(f"--slice must be an index, 'middle' or 'lesion', got {choice!r}") from None
    if not 0 <= k < n:
        raise ConfigError(f"--slice {k} is outside the series (0..{n - 1})")
    return k


def interpolation_frames(target: GANLungCT, universe: Universe, study: StudyRecord, seed_a: int, seed_b: int,
                         frames: int, slice_choice: str = "lesion", plane: str = "axial") -> list[np.ndarray]:
    """HU frames walking the latent space from the sample of ``seed_a`` to that of ``seed_b`` on the study's labels.

    Frame 0 is exactly the series rendered from ``seed_a`` (the same slice),
    the last frame exactly the one from ``seed_b``.
    """
    from .pipeline import LatentSample

    geometry = target.geometry(universe, study)
    grid, labels = geometry.grid, geometry.labels
    pipe = target.pipeline
    sample_a = pipe.sample(np.random.Generator(np.random.PCG64(seed_a)), labels.shape, grid.pixel_spacing_mm, grid.slice_spacing_mm)
    sample_b = pipe.sample(np.random.Generator(np.random.PCG64(seed_b)), labels.shape, grid.pixel_spacing_mm, grid.slice_spacing_mm)
    k = _pick_slice(geometry, slice_choice)
    out = []
    for i in range(frames):
        sample = LatentSample.interpolate(sample_a, sample_b, i / (frames - 1))
        if plane == "axial":
            out.append(pipe(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, sample=sample, slices=[k])[0])
        else:
            volume = pipe(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, sample=sample)
            row = int(np.argmax((labels[k] >= 100).any(axis=1))) if (labels[k] >= 100).any() else labels.shape[1] // 2
            out.append(coronal_plane(volume, row, grid.pixel_spacing_mm, grid.slice_spacing_mm))
    return out


def coronal_plane(volume: np.ndarray, row: int, pixel_spacing_mm: float, slice_spacing_mm: float) -> np.ndarray:
    """One coronal reformat (a row of every axial slice), resampled to square pixels."""
    from PIL import Image

    n_slices, _, columns = volume.shape
    height = max(1, int(round(n_slices * slice_spacing_mm / pixel_spacing_mm)))
    plane = volume[:, row, :].astype(np.float32)
    return np.asarray(Image.fromarray(plane).resize((columns, height), Image.BILINEAR))
