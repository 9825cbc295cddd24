"""The lung-cancer chest CT target: geometry, then photorealism (the GAN, or its teacher), then specs.

Randomness comes from keyed paths (DESIGN §2.1): the anatomy and the lesion
sites from the patient's path, so every visit shows the same chest; the
rendering randomness from the study's path (stream ``render`` for the
teacher, ``gan`` for the GAN).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.sr.codedict import codes

from synthpacs.errors import ConfigError
from synthpacs.generation.contract import GeneratorOptions, Part, StudyRequest
from synthpacs.generation.cooperative import checkpoint
from synthpacs.imaging.spec import (
    CTSeriesSpec,
    IODSpec,
    LinearMeasurement,
    MeasurementReportSpec,
    Segment,
    SegmentationSpec,
)

from .geometry import ChestAnatomy, CTGrid, LesionSite, VisitLabels, draw_anatomy, lesion_measurement, place_lesions
from .plan import study_grid

NAME = "chest/lung-ct"
FOLDER = Path(__file__).resolve().parent
#: Label value of lesion j in the label map (geometry.Label.TUMOUR + j).
LESION_LABEL_BASE = 100

LATERALITY = {"right": codes.cid244.Right, "left": codes.cid244.Left}
LOBES = {
    "upper": codes.SCT.UpperLobeOfLung,
    "middle": codes.SCT.MiddleLobeOfRightLung,
    "lower": codes.SCT.LowerLobeOfLung,
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LungLesion:
    """One target lesion as a reader would measure it at this visit (RECIST 1.1 long axis)."""

    tracking_id: str
    tracking_uid: str
    diameter_mm: float
    lung: str  # "right" or "left"
    lobe: str  # e.g. "right upper lobe"
    slice: int | None = None  # the axial slice holding the longest diameter
    points: tuple[tuple[float, float], tuple[float, float]] | None = None  # (row, column) end points

    def __post_init__(self) -> None:
        # Laterality and finding site are coded from these words (SEG and SR): refuse a contradiction.
        if self.lung not in LATERALITY:
            raise ValueError(f'"lung" must be "right" or "left", not {self.lung!r}.')
        words = self.lobe.lower().split()
        if ({"right", "left"} - {self.lung}) & set(words):
            raise ValueError(f'"lobe" {self.lobe!r} contradicts "lung" {self.lung!r}.')
        if "middle" in words and self.lung != "right":
            raise ValueError('"lobe": only the right lung has a middle lobe.')

    @property
    def finding_site(self):
        """The lobe (or the lung) as an SCT code (TID 1501 Finding Site)."""
        words = self.lobe.lower().split()
        for word, code in LOBES.items():
            if word in words:
                return code
        return codes.SCT.Lung


@dataclass
class LungGeometry:
    """Stage 1 of one study: the label map (the ground truth), its grid and the lesions measured on it."""

    labels: np.ndarray
    grid: CTGrid
    lesions: list[LungLesion]


class _PatientCache:
    """Anatomy and lesion sites per patient, drawn once and shared by every visit and part (bounded)."""

    def __init__(self, size: int = 32):
        self._items: OrderedDict[tuple, tuple[ChestAnatomy, list[LesionSite]]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: tuple, make) -> tuple[ChestAnatomy, list[LesionSite]]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


class LungCTGenerator:
    """Geometry -> photorealism -> CT, SEG and SR specs for one study."""

    def __init__(self, renderer: str, photorealism, stream: str, fingerprint: str):
        self.renderer = renderer
        self._photorealism = photorealism
        self.stream = stream
        self.fingerprint = fingerprint
        self._patients = _PatientCache()

    # -- stage 1 ---------------------------------------------------------------------------

    def visit_labels(self, request: StudyRequest) -> VisitLabels:
        """The study's label map, made slice range by slice range on demand (no lesion measured yet)."""
        draws = request.draws
        grid = study_grid(draws.plan_draws())
        n_lesions = len(request.lesion_diameters_mm)

        def draw() -> tuple[ChestAnatomy, list[LesionSite]]:
            anatomy = draw_anatomy(draws.rng("anatomy"), grid, request.patient_sex)
            checkpoint()  # outside every lock: background work yields to client requests here
            return anatomy, place_lesions(anatomy, grid, n_lesions, draws.rng("lesions"))

        key = (draws.plan_draws().key, request.patient_index, request.patient_sex, n_lesions, grid)
        anatomy, sites = self._patients.get(key, draw)
        return VisitLabels(anatomy, grid, list(zip(sites, request.lesion_diameters_mm)))

    def geometry(self, request: StudyRequest, labels: VisitLabels | None = None, lesions_only: bool = False) -> LungGeometry:
        """The label volume, grid and lesion findings of one study (no pixels yet).

        ``lesions_only``: only the lesions' voxels are final (the slices their
        boxes read), enough for the SEG and the SR, which read nothing else.
        """
        labels = labels if labels is not None else self.visit_labels(request)
        volume = labels.with_lesions() if lesions_only else labels.whole()
        grid, draws = labels.grid, request.draws
        lesions = []
        for i, site in enumerate(labels.sites):
            measured = lesion_measurement(volume, grid, i)
            points = None
            if measured is not None:
                (r0, c0), (r1, c1) = measured.points
                points = ((float(r0), float(c0)), (float(r1), float(c1)))
            lesions.append(
                LungLesion(
                    tracking_id=f"Lesion {i + 1}",
                    tracking_uid=draws.tracking_uid(i),
                    diameter_mm=round(measured.diameter_mm, 1) if measured else 0.0,
                    lung=site.lung,
                    lobe=site.lobe,
                    slice=measured.slice if measured else None,
                    points=points,
                )
            )
        return LungGeometry(labels=volume, grid=grid, lesions=lesions)

    # -- stage 2 ---------------------------------------------------------------------------

    def hu(self, geometry: LungGeometry, request: StudyRequest) -> np.ndarray:
        return self._photorealism(geometry, request.draws.study_rng(self.stream))

    def render_slab(self, labels: VisitLabels, request: StudyRequest, state: dict, start: int, stop: int) -> np.ndarray:
        """HU of slices ``start..stop-1``: exactly those slices of :meth:`hu` (the teacher renders the
        whole volume once per study, kept in ``state``; the GAN renders only the slab)."""
        if "hu" not in state:
            state["hu"] = self.hu(LungGeometry(labels.whole(), labels.grid, []), request)
        return state["hu"][start:stop]

    @property
    def slab_slices(self) -> int:
        """Slices per part of a streamed CT series."""
        return 16

    # -- specs -----------------------------------------------------------------------------

    def generate(self, request: StudyRequest, part: Part | None = None) -> list[IODSpec]:
        if part is not None:  # only that part's slices are rendered
            work = self.open(request)
            try:
                return work.make(part)
            finally:
                work.close()
        geometry = self.geometry(request)
        return self._specs(request, geometry, self.hu(geometry, request))

    def _specs(self, request: StudyRequest, geometry: LungGeometry, hu: np.ndarray) -> list[IODSpec]:
        ct = request.by_role("image")
        specs: list[IODSpec] = []
        if ct is not None:
            specs.append(CTSeriesSpec(study=request.study, series=ct.context, hu=hu, grid=geometry.grid))
        specs += [spec for spec in (_segmentation(request, geometry), _report(request, geometry)) if spec is not None]
        return specs

    def open(self, request: StudyRequest) -> LungCTWork:
        """Make the study part by part: the CT's first slice, the SEG and the SR, then the CT slabs in order."""
        return LungCTWork(self, request)


class LungCTWork:
    """One lung-CT study in parts (contract.StudyWork): the geometry is drawn once, on first need.

    A CT slab renders only its slices from the labels of those slices and
    their neighbours (the GAN draws the series' randomness once and renders
    slice by slice, so the bytes are the whole series'); the CT headers need
    only the plan's grid; the SEG and SR need the lesions (the slices their boxes
    read), never the pixels nor the rest of the label volume.
    """

    def __init__(self, generator: LungCTGenerator, request: StudyRequest):
        self._generator, self._request = generator, request
        self._labels: VisitLabels | None = None
        self._geometry: LungGeometry | None = None
        self._state: dict = {}
        # A viewer asks every series' metadata before any frame, then shows the first image: the
        # CT's first slice (little more than opening the study), the SEG and the SR (their
        # metadata needs the objects made; the CT's comes from its headers), then the CT in slabs.
        others = [Part(s.index, 0, 1) for s in request.series if s.slot.role != "image"]
        ct = request.by_role("image")
        if ct is None:
            self.parts = tuple(others)
        else:
            n, slab = len(ct.context.sop_instance_uids), generator.slab_slices
            first = Part(ct.index, 0, 1)
            rest = [Part(ct.index, max(1, a), min(a + slab, n)) for a in range(0, n, slab) if min(a + slab, n) > 1]
            self.parts = (first, *others, *rest)

    @property
    def labels(self) -> VisitLabels:
        if self._labels is None:
            self._labels = self._generator.visit_labels(self._request)
        return self._labels

    @property
    def geometry(self) -> LungGeometry:
        if self._geometry is None:
            self._geometry = self._generator.geometry(self._request, self.labels, lesions_only=True)
        return self._geometry

    def make(self, part: Part) -> list[IODSpec]:
        request = self._request
        series = _series(request, part.series_index)
        if series.slot.role == "image":
            n = len(series.context.sop_instance_uids)
            if not 0 <= part.start < part.stop <= n:
                raise ValueError(f"slices {part.start}..{part.stop} lie outside the series of {n}")
            labels = self.labels
            hu = self._generator.render_slab(labels, request, self._state, part.start, part.stop)
            return [CTSeriesSpec(study=request.study, series=series.context, hu=hu, grid=labels.grid, first_slice=part.start)]
        spec = _segmentation(request, self.geometry) if series.slot.role == "segmentation" else _report(request, self.geometry)
        if spec is None:
            raise ValueError(f"series {part.series_index} has no source CT series")
        return [spec]

    def headers(self, series_index: int) -> list[IODSpec]:
        request = self._request
        series = _series(request, series_index)
        if series.slot.role != "image":
            return self.make(Part(series_index, 0, 1))
        grid = study_grid(request.draws.plan_draws())
        placeholder = np.broadcast_to(np.int16(MIN_HU_PLACEHOLDER), (grid.n_slices, grid.rows, grid.columns))
        return [CTSeriesSpec(study=request.study, series=series.context, hu=placeholder, grid=grid)]

    def close(self) -> None:
        self._labels, self._geometry, self._state = None, None, {}


#: The pixel value of header-only CT specs (air); no attribute depends on it.
MIN_HU_PLACEHOLDER = -1000


def _segmentation(request: StudyRequest, geometry: LungGeometry) -> SegmentationSpec | None:
    ct, seg = request.by_role("image"), request.by_role("segmentation")
    if seg is None or ct is None:
        return None
    return SegmentationSpec(
        study=request.study,
        series=seg.context,
        source_series_uid=ct.context.series_instance_uid,
        labels=geometry.labels,
        segments=tuple(_segment(j, lesion) for j, lesion in enumerate(geometry.lesions)),
        content_label="TARGET_LESIONS",
    )


def _report(request: StudyRequest, geometry: LungGeometry) -> MeasurementReportSpec | None:
    ct, sr = request.by_role("image"), request.by_role("measurements")
    if sr is None or ct is None:
        return None
    return MeasurementReportSpec(
        study=request.study,
        series=sr.context,
        source_series_uid=ct.context.series_instance_uid,
        measurements=tuple(_measurement(lesion) for lesion in geometry.lesions),
        measurement_name=codes.SCT.LongAxis,
        finding_type=codes.SCT.Neoplasm,
        finding_category=codes.cid7150.MorphologicallyAbnormalStructure,
        method=codes.cid6147.RECIST1Point1,
        summary=f"Sum of diameters of target lesions (RECIST 1.1): "
        f"{sum(float(lesion.diameter_mm) for lesion in geometry.lesions):.1f} mm",
    )


def _series(request: StudyRequest, index: int):
    """The planned series of a study by its index; ValueError when the study has none."""
    series = next((s for s in request.series if s.index == index), None)
    if series is None:
        raise ValueError(f"the study has no series {index}")
    return series


def _segment(j: int, lesion: LungLesion) -> Segment:
    return Segment(
        label_value=LESION_LABEL_BASE + j,
        label=f"Target lesion {j + 1}",
        tracking_id=lesion.tracking_id,
        tracking_uid=lesion.tracking_uid,
        category=codes.cid7150.MorphologicallyAbnormalStructure,
        property_type=codes.cid7159.NeoplasmPrimary,
        anatomic_region=codes.SCT.Lung,
        laterality=LATERALITY[lesion.lung],
        description=lesion.lobe or None,
    )


def _measurement(lesion: LungLesion) -> LinearMeasurement:
    return LinearMeasurement(
        tracking_id=lesion.tracking_id,
        tracking_uid=lesion.tracking_uid,
        value_mm=float(lesion.diameter_mm),
        finding_site=lesion.finding_site,
        laterality=LATERALITY[lesion.lung],
        frame=lesion.slice,
        points=lesion.points,
    )


# -- renderers -----------------------------------------------------------------------------


def _teacher(geometry: LungGeometry, rng: np.random.Generator) -> np.ndarray:
    from .teacher import render_hu

    return render_hu(geometry.labels, geometry.grid, rng)


def load_pipeline(
    weights: Path | None = None,
    device: str = "auto",
    psi: float = 1.0,
    batch_slices: int = 8,
    weights_source: str = "default",
    device_source: str = "default",
):
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


class GANLungCT(LungCTGenerator):
    """Geometry stage + the conditional GAN (labels + latent + noise -> HU)."""

    def __init__(self, pipeline: Any, fingerprint: str):
        self.pipeline = pipeline

        def render(geometry: LungGeometry, rng: np.random.Generator) -> np.ndarray:
            grid = geometry.grid
            return pipeline(geometry.labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, rng=rng)

        super().__init__("gan", render, "gan", fingerprint)

    @property
    def slab_slices(self) -> int:
        """On a CPU two slices: the part a viewer's first frame waits on costs two forward passes.
        Each slice's pass depends on that slice alone (its latent, noise and neighbours' labels), not
        on the batch it shares, so any slab gives the whole series' bytes; on a CPU throughput is the
        same from one slice per pass to eight (docs/benchmarks.md). On a GPU, where slices of
        concurrent requests share passes (:mod:`.batching`) of ``gan_batch_slices``, a part is one pass:
        a lone study fills its passes, and the smaller requests of others (a series' last part) join them."""
        if self.pipeline.batcher is not None:
            return max(2, self.pipeline.batch_slices)
        return 2

    def render_slab(self, labels: VisitLabels, request: StudyRequest, state: dict, start: int, stop: int) -> np.ndarray:
        grid, pipeline = labels.grid, self.pipeline
        spacing = (grid.pixel_spacing_mm, grid.slice_spacing_mm)
        labels.slices(start - 1, stop + 1)  # each slice is conditioned on its neighbours' labels too
        if "sample" not in state:  # the series' randomness, drawn as the whole-series render draws it
            state["sample"] = pipeline.sample(request.draws.study_rng(self.stream), labels.volume.shape, *spacing)
        return pipeline(labels.volume, *spacing, sample=state["sample"], slices=range(start, stop))


#: Bumped whenever inference changes the pixels a study gets (2: the 2x2 polyphase decoder,
#: moving 1 HU on 5e-6 of voxels; the per-pixel noise drawn per slice from keyed generators).
INFERENCE_VERSION = 2


def fingerprint(options: GeneratorOptions) -> str:
    """What the pixels depend on beyond the universe: renderer, weights (SHA-256 prefix), inference and psi.

    Cheap (reads ``generator.json`` only, no torch): the archive keys its
    instance cache by it, so switching ``renderer``, ``weights`` or
    ``truncation_psi`` never serves pixels cached under other settings.
    """
    from synthpacs.generation.weights import WeightsError, read_record

    if options.renderer == "teacher":
        return "teacher"
    try:
        sha = str(read_record(options.weights or FOLDER).get("weights_sha256", "unrecorded"))[:16]
    except WeightsError:
        sha = "unreadable"  # loading the target will report why
    return f"gan-{sha}-i{INFERENCE_VERSION}-psi{options.psi:g}"


def load(options: GeneratorOptions) -> LungCTGenerator:
    """The contract's loader: the teacher, or the GAN with its weights (imports torch)."""
    if options.renderer == "teacher":
        return LungCTGenerator("teacher", _teacher, "render", fingerprint(options))
    if options.renderer != "gan":
        raise ConfigError(f"renderer {options.renderer!r} is not offered by {NAME} (gan or teacher)")
    pipeline = load_pipeline(
        options.weights, options.device, options.psi, options.batch_slices, options.weights_source, options.device_source
    )
    return GANLungCT(pipeline, fingerprint(options))


# -- capabilities ---------------------------------------------------------------------------


def _pick_slice(geometry: LungGeometry, choice: str) -> int:
    n = geometry.labels.shape[0]
    if choice == "middle":
        return n // 2
    if choice == "lesion":
        measured = [lesion for lesion in geometry.lesions if lesion.slice is not None]
        if measured:
            return int(max(measured, key=lambda lesion: lesion.diameter_mm).slice or 0)
        return n // 2
    try:
        k = int(choice)
    except ValueError:
        raise ConfigError(f"--slice must be an index, 'middle' or 'lesion', got {choice!r}") from None
    if not 0 <= k < n:
        raise ConfigError(f"--slice {k} is outside the series (0..{n - 1})")
    return k


#: Display windows (centre, width) in HU.
LUNG_WINDOW = (-600.0, 1500.0)
MEDIASTINUM_WINDOW = (40.0, 400.0)


class LatentWalk:
    """The Interpolable capability: HU frames walking the GAN's latent space between two seeds."""

    display_windows = {"lung": LUNG_WINDOW, "mediastinum": MEDIASTINUM_WINDOW}

    def interpolation_frames(
        self,
        generator,
        request: StudyRequest,
        seed_a: int,
        seed_b: int,
        frames: int,
        slice_choice: str = "lesion",
        plane: str = "axial",
        **options: Any,  # the Interpolable protocol's signature; none other is known
    ) -> list[np.ndarray]:
        """Frame 0 is exactly the series rendered from ``seed_a`` (the same slice), the last exactly ``seed_b``'s.

        Raises
        ------
        ConfigError
            The generator has no latent space (the teacher), or the slice is not in the series.
        """
        from .pipeline import LatentSample

        if options:
            raise TypeError(f"interpolation_frames() got unexpected keyword argument(s) {', '.join(map(repr, options))}")

        if not isinstance(generator, GANLungCT):
            raise ConfigError("--interpolate needs a GAN: the teacher renderer has no latent space")
        geometry = generator.geometry(request)
        grid, labels = geometry.grid, geometry.labels
        pipe = generator.pipeline
        spacing = (grid.pixel_spacing_mm, grid.slice_spacing_mm)
        sample_a = pipe.sample(np.random.Generator(np.random.PCG64(seed_a)), labels.shape, *spacing)
        sample_b = pipe.sample(np.random.Generator(np.random.PCG64(seed_b)), labels.shape, *spacing)
        k = _pick_slice(geometry, slice_choice)
        out = []
        for i in range(frames):
            sample = LatentSample.interpolate(sample_a, sample_b, i / (frames - 1))
            if plane == "axial":
                out.append(pipe(labels, *spacing, sample=sample, slices=[k])[0])
            else:
                volume = pipe(labels, *spacing, sample=sample)
                lesion = labels[k] >= LESION_LABEL_BASE
                row = int(np.argmax(lesion.any(axis=1))) if lesion.any() else labels.shape[1] // 2
                out.append(coronal_plane(volume, row, *spacing))
        return out


def coronal_plane(volume: np.ndarray, row: int, pixel_spacing_mm: float, slice_spacing_mm: float) -> np.ndarray:
    """One coronal reformat (a row of every axial slice), resampled to square pixels."""
    from PIL import Image

    n_slices, _, columns = volume.shape
    height = max(1, int(round(n_slices * slice_spacing_mm / pixel_spacing_mm)))
    plane = volume[:, row, :].astype(np.float32)
    return np.asarray(Image.fromarray(plane).resize((columns, height), Image.Resampling.BILINEAR))
