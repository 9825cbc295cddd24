"""The geometry stage: one compressed-breast model per patient, projected consistently into CC and MLO.

Each breast is a 3-D model in normalised coordinates: ``x`` from the chest
wall (0) to the nipple (1), ``y`` medial (-1) to lateral (+1) and ``z``
caudal (-1) to cranial (+1). Its fibroglandular tissue is a 3-D random field
(power-law spectrum, concentrated behind the nipple) thresholded to the
patient's BI-RADS density; a view is that field projected along its
compression axis: ``z`` for CC, the 45-degree oblique ``(y - z)/sqrt 2`` for
MLO, whose image height is ``(y + z)/sqrt 2``. Lesions sit at 3-D positions
and project with the same functions, so a mass is as far from the nipple in
CC as in MLO and above or below it as its 3-D position says. Sizes come from
the subject's course (the universe's lesion diameters); calcification
clusters are the patient's own, and may appear at a later visit.

A calcification cluster has a BI-RADS morphology and distribution: each
calcification is a small capsule in 3-D (a centre, a direction, a length and
a width), laid out by the distribution (a group, a line along a duct, a
branching segment pointing at the nipple, a region), so fine linear
branching calcifications run along their duct in both views. Architectural
distortion is a set of 3-D spokes radiating from a point with no mass at
its centre; its spokes project into each view with the same functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .plan import DENSITIES

#: Fibroglandular volume fraction by BI-RADS density (4th-edition quartiles).
GLANDULAR_FRACTION = {"A": (0.05, 0.22), "B": (0.25, 0.48), "C": (0.52, 0.72), "D": (0.76, 0.9)}
SHAPES = ("round", "oval", "irregular")
#: BI-RADS calcification morphologies (5th edition) and how often a cluster has each.
MORPHOLOGIES = {
    "punctate": 0.25,
    "amorphous": 0.2,
    "coarse heterogeneous": 0.15,
    "fine pleomorphic": 0.25,
    "fine linear branching": 0.15,
}
#: Distributions each morphology is seen in, with their shares.
DISTRIBUTIONS = {
    "punctate": {"grouped": 0.5, "regional": 0.5},
    "amorphous": {"grouped": 0.6, "regional": 0.2, "segmental": 0.2},
    "coarse heterogeneous": {"grouped": 0.7, "regional": 0.3},
    "fine pleomorphic": {"grouped": 0.5, "linear": 0.2, "segmental": 0.3},
    "fine linear branching": {"linear": 0.5, "segmental": 0.5},
}
#: Per morphology: calcification width and length ranges (mm).
PARTICLES = {
    "punctate": ((0.2, 0.5), (0.0, 0.0)),
    "amorphous": ((0.1, 0.3), (0.0, 0.0)),
    "coarse heterogeneous": ((0.5, 1.0), (0.2, 0.8)),
    "fine pleomorphic": ((0.15, 0.45), (0.1, 0.6)),
    "fine linear branching": ((0.15, 0.3), (1.0, 4.0)),
}
MARGINS = ("circumscribed", "obscured", "spiculated")
FIELD = 48  # the 3-D tissue field's grid (per axis)


@dataclass(frozen=True)
class Mass:
    index: int  # the universe's lesion index (its tracking identity)
    laterality: str
    position: tuple[float, float, float]  # normalised (x, y, z)
    diameter_mm: float  # longest diameter at this visit (0: gone)
    shape: str
    margin: str
    aspect: float  # short / long axis
    angle: float  # orientation in the image plane (radians)
    seed: int = 0  # its lobes and spicules, the same at every visit


@dataclass(frozen=True)
class Calcifications:
    laterality: str
    centre: tuple[float, float, float]
    offsets_mm: np.ndarray  # (n, 3) each calcification's offset from the centre, mm (x, y, z)
    sizes_mm: np.ndarray  # (n,) widths
    morphology: str = "punctate"
    distribution: str = "grouped"
    directions: np.ndarray | None = None  # (n, 3) unit vectors, mm axes; None: round
    lengths_mm: np.ndarray | None = None  # (n,) along ``directions``

    def shown(self, n: int) -> Calcifications:
        """The first ``n`` calcifications (the distribution's order: a duct's grow along it)."""
        cut = None if self.directions is None else self.directions[:n]
        lengths = None if self.lengths_mm is None else self.lengths_mm[:n]
        return Calcifications(
            self.laterality, self.centre, self.offsets_mm[:n], self.sizes_mm[:n], self.morphology, self.distribution, cut, lengths
        )


@dataclass(frozen=True)
class Distortion:
    """Architectural distortion: spokes radiating from a point, no mass at the centre."""

    index: int
    laterality: str
    position: tuple[float, float, float]  # normalised (x, y, z)
    radius_mm: float
    spokes: np.ndarray  # (m, 3) directions, mm axes (x, y, z), scaled by each spoke's share of the radius


@dataclass(frozen=True)
class Breast:
    laterality: str
    depth_mm: float  # chest wall to nipple, compressed
    half_width_mm: float  # CC: medial-lateral half extent
    thickness_mm: float  # compressed thickness (CC; MLO ~5 % more)
    glandular: np.ndarray  # (FIELD, FIELD, FIELD) soft glandular fraction in [0, 1], axes x, y, z
    nipple_z: float  # nipple height in normalised z (small offsets)


@dataclass(frozen=True)
class Patient:
    density: str
    breasts: dict[str, Breast]
    masses: tuple[Mass, ...]
    calcifications: tuple[Calcifications, ...]
    implant: bool
    distortions: tuple[Distortion, ...] = ()


def power_field(rng: np.random.Generator, shape: tuple[int, ...], beta: float) -> np.ndarray:
    """Zero-mean, unit-SD Gaussian field with a 1/f^beta power spectrum (float32 real FFTs)."""
    from scipy import fft

    freqs = [np.fft.fftfreq(n).astype(np.float32) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1]).astype(np.float32)]
    grids = np.meshgrid(*freqs, indexing="ij", sparse=True)
    k2 = grids[0] ** 2
    for f in grids[1:]:
        k2 = k2 + f**2
    k2.flat[0] = 1.0
    amplitude = k2 ** np.float32(-beta / 4)
    amplitude.flat[0] = 0.0
    spectrum = fft.rfftn(rng.standard_normal(shape, dtype=np.float32), workers=-1) * amplitude
    field = fft.irfftn(spectrum, s=shape, workers=-1).astype(np.float32)
    field -= field.mean()
    field /= field.std() + 1e-9
    return field


def _inside(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Whether normalised points lie in the breast (a half superellipsoid from the chest wall)."""
    return (x >= 0) & (np.abs(x) ** 2.2 + np.abs(y) ** 2.2 + np.abs(z) ** 2.2 <= 1.0)


def draw_breast(rng: np.random.Generator, laterality: str, density: str, scale: float) -> Breast:
    n = FIELD
    axis = (
        np.linspace(0, 1, n, dtype=np.float32),
        np.linspace(-1, 1, n, dtype=np.float32),
        np.linspace(-1, 1, n, dtype=np.float32),
    )
    x, y, z = np.meshgrid(*axis, indexing="ij")
    field = power_field(rng, (n, n, n), 2.6)
    # Glandular tissue gathers behind the nipple, thins towards the skin and the chest wall.
    prior = -3.0 * ((x - 0.45) ** 2 / 0.18 + y**2 / 0.45 + z**2 / 0.45) - 1.5 * np.maximum(0, x - 0.85) / 0.15
    score = field + prior
    low, high = GLANDULAR_FRACTION[density]
    fraction = rng.uniform(low, high)
    inside = _inside(x, y, z) & (x > 0.03)
    level = np.quantile(score[inside], 1.0 - fraction)
    glandular = 1.0 / (1.0 + np.exp(-(score - level) / 0.25))
    glandular = np.where(inside, glandular, 0.0).astype(np.float32)
    return Breast(
        laterality=laterality,
        depth_mm=scale * rng.uniform(85, 140),
        half_width_mm=scale * rng.uniform(80, 112),
        thickness_mm=scale * rng.uniform(40, 70),
        glandular=glandular,
        nipple_z=float(rng.uniform(-0.08, 0.08)),
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _choose(rng: np.random.Generator, shares: dict[str, float]) -> str:
    names = list(shares)
    p = np.array([shares[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def draw_calcifications(rng: np.random.Generator, laterality: str, centre: tuple[float, float, float]) -> Calcifications:
    """A cluster: its morphology, its distribution's layout (mm offsets, in the order they appear) and each
    calcification's capsule."""
    morphology = _choose(rng, MORPHOLOGIES)
    distribution = _choose(rng, DISTRIBUTIONS[morphology])
    towards_nipple = _unit(np.array([1.0, rng.normal(0, 0.3), rng.normal(0, 0.3)]))
    if distribution == "grouped":  # a few within a centimetre or two
        n = int(rng.integers(6, 25))
        offsets = rng.normal(0, rng.uniform(2.0, 4.0), size=(n, 3))
        ducts = np.tile(towards_nipple, (n, 1))
    elif distribution == "linear":  # along one duct
        n = int(rng.integers(8, 25))
        t = np.sort(rng.uniform(-0.5, 0.5, n)) * rng.uniform(10, 25)
        offsets = t[:, None] * towards_nipple + rng.normal(0, 0.4, size=(n, 3))
        ducts = np.tile(towards_nipple, (n, 1))
    elif distribution == "segmental":  # a duct's branches, spreading from the nipple side towards the chest wall
        branches = _unit(-towards_nipple + rng.normal(0, 0.35, size=(int(rng.integers(3, 6)), 3)))
        n = int(rng.integers(15, 40))
        which = rng.integers(len(branches), size=n)
        t = np.sort(rng.uniform(0, 1, n)) * rng.uniform(20, 35)
        offsets = t[:, None] * branches[which] + rng.normal(0, 0.5, size=(n, 3))
        offsets -= offsets.mean(axis=0)
        ducts = branches[which]
    else:  # regional: scattered over a large volume
        n = int(rng.integers(20, 40))
        offsets = rng.uniform(-1, 1, size=(n, 3)) * rng.uniform(12, 22)
        ducts = _unit(rng.normal(size=(n, 3)))
    (w0, w1), (l0, l1) = PARTICLES[morphology]
    sizes = rng.uniform(w0, w1, n)
    lengths = rng.uniform(l0, l1, n)
    if morphology == "fine linear branching":  # along the duct, some at a branching angle
        directions = _unit(ducts + rng.normal(0, 0.3, size=(n, 3)))
    else:
        directions = _unit(rng.normal(size=(n, 3)))
    return Calcifications(laterality, centre, offsets, sizes, morphology, distribution, directions, lengths)


def draw_distortion(rng: np.random.Generator, index: int, laterality: str) -> Distortion:
    r = rng.uniform(0.1, 0.5)
    theta = rng.uniform(0, 2 * math.pi)
    position = (float(rng.uniform(0.3, 0.7)), float(r * math.cos(theta)), float(r * math.sin(theta)))
    m = int(rng.integers(12, 24))
    spokes = _unit(rng.normal(size=(m, 3))) * rng.uniform(0.45, 1.0, (m, 1))  # each its own length
    return Distortion(index, laterality, position, float(rng.uniform(8, 18)), spokes)


def draw_patient(
    patient_rng: np.random.Generator,
    density_shares: dict[str, float],
    calcification_share: float,
    n_masses: int,
    distortion_share: float = 0.0,
) -> Patient:
    """A patient's breasts and findings (everything but this visit's sizes)."""
    classes = [c for c in DENSITIES if density_shares.get(c, 0) > 0]
    weights = np.array([density_shares[c] for c in classes])
    density = str(classes[int(patient_rng.choice(len(classes), p=weights / weights.sum()))])
    scale = patient_rng.uniform(0.85, 1.15)
    breasts = {side: draw_breast(patient_rng, side, density, scale * patient_rng.uniform(0.96, 1.04)) for side in ("R", "L")}
    index_side = "R" if patient_rng.uniform() < 0.5 else "L"
    masses = []
    for i in range(n_masses):
        side = index_side if i == 0 or patient_rng.uniform() < 0.6 else ("L" if index_side == "R" else "R")
        # Most cancers arise in the upper outer quadrant, within the glandular cone.
        r = patient_rng.uniform(0.15, 0.55)
        theta = patient_rng.normal(math.pi / 4, 0.8)
        position = (float(patient_rng.uniform(0.25, 0.7)), float(r * math.cos(theta)), float(r * math.sin(theta)))
        masses.append(
            Mass(
                index=i,
                laterality=side,
                position=position,
                diameter_mm=0.0,
                shape=SHAPES[int(patient_rng.integers(len(SHAPES)))] if i else "irregular",
                margin=MARGINS[int(patient_rng.integers(len(MARGINS)))] if i else "spiculated",
                aspect=float(patient_rng.uniform(0.6, 0.95)),
                angle=float(patient_rng.uniform(0, math.pi)),
                seed=int(patient_rng.integers(2**31)),
            )
        )
    calcifications = []
    if patient_rng.uniform() < calcification_share:
        side = index_side if patient_rng.uniform() < 0.7 else ("L" if index_side == "R" else "R")
        centre = (
            float(patient_rng.uniform(0.3, 0.75)),
            float(patient_rng.uniform(-0.4, 0.4)),
            float(patient_rng.uniform(-0.4, 0.4)),
        )
        calcifications.append(draw_calcifications(patient_rng, side, centre))
    implant = bool(patient_rng.uniform() < 0.02)
    distortions = []
    if patient_rng.uniform() < distortion_share:
        side = index_side if patient_rng.uniform() < 0.5 else ("L" if index_side == "R" else "R")
        distortions.append(draw_distortion(patient_rng, 0, side))
    return Patient(density, breasts, tuple(masses), tuple(calcifications), implant, tuple(distortions))


def at_visit(patient: Patient, diameters_mm: tuple[float, ...], visit: int, visit_rng: np.random.Generator) -> Patient:
    """The patient at a visit: the masses at the course's diameters; calcifications grow in number over visits."""
    masses = tuple(
        Mass(**{**m.__dict__, "diameter_mm": float(diameters_mm[m.index]) if m.index < len(diameters_mm) else 0.0})
        for m in patient.masses
    )
    calcifications = []
    for c in patient.calcifications:
        shown = max(3, int(len(c.sizes_mm) * min(1.0, 0.6 + 0.1 * visit)))  # new calcifications appear on follow-up
        calcifications.append(c.shown(shown))
    return Patient(patient.density, patient.breasts, masses, tuple(calcifications), patient.implant, patient.distortions)


# -- projection ------------------------------------------------------------------------------

SQRT_HALF = math.sqrt(0.5)


def view_height(view: str, y: float | np.ndarray, z: float | np.ndarray):
    """The normalised image height of a point: CC shows y (medial-lateral), MLO the oblique (y + z)/sqrt 2."""
    return y if view == "CC" else (y + z) * SQRT_HALF


def project_tissue(breast: Breast, view: str) -> np.ndarray:
    """The glandular share of each ray through the breast in one view, (FIELD, FIELD): axes x, height."""
    n = FIELD
    axis = (
        np.linspace(0, 1, n, dtype=np.float32),
        np.linspace(-1, 1, n, dtype=np.float32),
        np.linspace(-1, 1, n, dtype=np.float32),
    )
    x, y, z = np.meshgrid(*axis, indexing="ij")
    g, inside = breast.glandular, _inside(x, y, z).astype(np.float32)
    if view == "MLO":  # turn the (y, z) plane by 45 degrees so that the compression axis is z
        g = ndimage.rotate(g, -45.0, axes=(1, 2), reshape=False, order=1, mode="constant")
        inside = ndimage.rotate(inside, -45.0, axes=(1, 2), reshape=False, order=1, mode="constant")
    return g.sum(axis=2) / np.maximum(inside.sum(axis=2), 1.0)


@dataclass(frozen=True)
class ViewGeometry:
    """Where a breast lies in one view's image (pixels), and how normalised points map into it."""

    rows: int
    columns: int
    pixel_mm: float
    laterality: str
    view: str
    depth_px: float  # chest wall to nipple
    half_height_px: float
    centre_row: float

    def to_pixel(self, x: float, height: float) -> tuple[float, float]:
        """(row, column) of a normalised point; the chest wall is at column 0 (L) or the last column (R)."""
        column = x * self.depth_px
        if self.laterality == "R":
            column = self.columns - 1 - column
        return self.centre_row + height * self.half_height_px, column

    def grids(self) -> tuple[np.ndarray, np.ndarray]:
        """Normalised (x, height) of every pixel (float32)."""
        columns = np.arange(self.columns, dtype=np.float32)
        if self.laterality == "R":
            columns = self.columns - 1 - columns
        rows = np.arange(self.rows, dtype=np.float32)
        x = np.broadcast_to(columns / np.float32(self.depth_px), (self.rows, self.columns))
        h = np.broadcast_to(
            ((rows - np.float32(self.centre_row)) / np.float32(self.half_height_px))[:, None], (self.rows, self.columns)
        )
        return x, h


def view_geometry(breast: Breast, view: str, rows: int, columns: int, pixel_mm: float) -> ViewGeometry:
    depth = min(breast.depth_mm / pixel_mm, 0.92 * columns)
    half = min(breast.half_width_mm / pixel_mm * (1.25 if view == "MLO" else 1.0), 0.47 * rows)
    centre = rows / 2 + (0.08 * rows if view == "MLO" else 0.0) + breast.nipple_z * half
    return ViewGeometry(rows, columns, pixel_mm, breast.laterality, view, depth, half, centre)


def mass_centre(mass: Mass, geometry: ViewGeometry) -> tuple[float, float]:
    x, y, z = mass.position
    return geometry.to_pixel(x, view_height(geometry.view, y, z))


def project_points(
    centre: tuple[float, float, float], offsets_mm: np.ndarray, geometry: ViewGeometry, breast: Breast
) -> np.ndarray:
    """(n, 2) (row, column) in a view of points given as mm offsets from a normalised 3-D centre."""
    x0, y0, z0 = centre
    offsets = np.asarray(offsets_mm, dtype=np.float64).reshape(-1, 3)
    out = [
        geometry.to_pixel(
            x0 + dx / breast.depth_mm, view_height(geometry.view, y0 + dy / breast.half_width_mm, z0 + dz / breast.half_width_mm)
        )
        for dx, dy, dz in offsets
    ]
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def calcification_points(c: Calcifications, geometry: ViewGeometry, breast: Breast) -> np.ndarray:
    """(n, 2) (row, column) of each calcification's centre in a view."""
    return project_points(c.centre, c.offsets_mm, geometry, breast)


def calcification_segments(c: Calcifications, geometry: ViewGeometry, breast: Breast) -> np.ndarray:
    """(n, 2, 2): the two ends (row, column) of each calcification's capsule axis in a view."""
    if c.directions is None or c.lengths_mm is None:
        points = calcification_points(c, geometry, breast)
        return np.stack([points, points], axis=1)
    half = c.directions * (c.lengths_mm[:, None] / 2)
    ends = [project_points(c.centre, c.offsets_mm + sign * half, geometry, breast) for sign in (-1, 1)]
    return np.stack(ends, axis=1)


def distortion_spokes(d: Distortion, geometry: ViewGeometry, breast: Breast) -> tuple[np.ndarray, np.ndarray]:
    """A distortion's centre (row, column) and its spokes' outer ends (m, 2) in a view."""
    centre = project_points(d.position, np.zeros((1, 3)), geometry, breast)[0]
    return centre, project_points(d.position, d.spokes * d.radius_mm, geometry, breast)
