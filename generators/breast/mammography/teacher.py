"""The physics-informed renderer: a breast model's view -> a For Presentation mammogram and its lesion labels.

Per pixel: the compressed thickness (flat in the middle, falling to zero over
the last centimetre to the skin), the glandular share of the ray (the 3-D
tissue field projected, :func:`.geometry.project_tissue`), anatomical noise
with a power-law spectrum (beta 3, the exponent measured on real
mammograms), Cooper's ligaments as thin bright curves in the fat, a
pectoral muscle on MLO, and the lesions: masses as projected ellipsoids
(spiculated ones with radiating spicules, irregular ones lobulated),
calcifications as sub-millimetre dense dots. The attenuation is turned into
the processed look radiologists read (peripheral equalisation, a
characteristic curve, fat grey and glandular tissue white, the skin line
visible), with quantum noise, as ``bits_stored`` unsigned integers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .geometry import (
    Breast,
    Patient,
    ViewGeometry,
    calcification_points,
    mass_centre,
    power_field,
    project_tissue,
    view_geometry,
)

SKIN_FALLOFF_MM = 12.0
#: Lesion label values in a view's label map: masses are 1 + their index, calcification clusters 10 + theirs.
CALCIFICATION_LABEL = 10


def _outline(geometry: ViewGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: inside the breast, and the distance to the skin line (mm)."""
    x, h = geometry.grids()
    r = np.clip(x, 0, None) ** 2.2 + np.abs(h) ** 2.2
    inside = (x >= 0) & (r <= 1.0)
    # Distance to the skin along the superellipse's radius (close to the true distance over the last centimetres).
    scale = min(geometry.depth_px, geometry.half_height_px) * geometry.pixel_mm
    distance = np.clip(1.0 - r ** np.float32(1 / 2.2), 0, None) * np.float32(scale)
    return inside, distance.astype(np.float32)


def _upsample(field: np.ndarray, geometry: ViewGeometry, factor: int = 4) -> np.ndarray:
    """A (FIELD, FIELD) x-by-height map, sampled at every ``factor``-th pixel of the view and interpolated."""
    x, h = geometry.grids()
    x, h = x[::factor, ::factor], h[::factor, ::factor]
    n = field.shape[0]
    small = ndimage.map_coordinates(field, [np.clip(x, 0, 1) * (n - 1), (np.clip(h, -1, 1) + 1) / 2 * (n - 1)], order=1)
    return _resize(small, (geometry.rows, geometry.columns))


def _resize(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map (Pillow's float mode: ten times scipy's zoom on these sizes)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def _noise(rng: np.random.Generator, shape: tuple[int, int], beta: float, factor: int = 2) -> np.ndarray:
    """Power-law noise made at 1/factor resolution and interpolated (its spectrum is steep: little is lost)."""
    return _resize(power_field(rng, (shape[0] // factor, shape[1] // factor), beta), shape)


def _ligaments(rng: np.random.Generator, shape: tuple[int, int], pixel_mm: float) -> np.ndarray:
    """Thin curvilinear lines (Cooper's ligaments): the zero set of band-passed noise."""
    band = _noise(rng, shape, 3.2, factor=4)
    width = 0.035
    return np.exp(-((band / width) ** 2)).astype(np.float32)


def _mass(shape: tuple[int, int], centre: tuple[float, float], mass, pixel_mm: float, rng: np.random.Generator) -> np.ndarray:
    """A mass's projected thickness profile (0..1) in a view."""
    radius = mass.diameter_mm / 2 / pixel_mm
    if radius < 1:
        return np.zeros(shape, np.float32)
    extent = int(radius * 3 + 8)
    r0, c0 = int(centre[0]), int(centre[1])
    rows = slice(max(0, r0 - extent), min(shape[0], r0 + extent))
    cols = slice(max(0, c0 - extent), min(shape[1], c0 + extent))
    rr, cc = np.mgrid[rows, cols].astype(np.float32)
    dr, dc = rr - centre[0], cc - centre[1]
    ca, sa = math.cos(mass.angle), math.sin(mass.angle)
    u, v = dc * ca + dr * sa, (-dc * sa + dr * ca) / (mass.aspect if mass.shape != "round" else 1.0)
    rho = np.sqrt(u**2 + v**2) / radius
    if mass.shape == "irregular":
        phi = np.arctan2(v, u)
        lobes = 1 + sum(rng.uniform(0.04, 0.12) * np.cos(k * phi + rng.uniform(0, 6.3)) for k in (3, 5, 7))
        rho = rho / lobes
    profile = np.sqrt(np.clip(1 - rho**2, 0, 1))
    if mass.margin == "obscured":
        profile = ndimage.gaussian_filter(profile, radius * 0.15)
    if mass.margin == "spiculated":
        phi = np.arctan2(v, u)
        spicules = np.zeros_like(profile)
        for angle in rng.uniform(-math.pi, math.pi, int(rng.integers(8, 16))):
            along = np.cos(phi - angle) * rho
            across = np.abs(np.sin(phi - angle)) * rho * radius
            length = rng.uniform(1.4, 2.4)
            spicules = np.maximum(
                spicules, np.where((along > 0.6) & (along < length) & (across < 1.2), 0.35 * (1 - along / length), 0)
            )
        profile = np.maximum(profile, spicules)
    out = np.zeros(shape, np.float32)
    out[rows, cols] = profile
    return out


def render_view(
    patient: Patient, laterality: str, view: str, rows: int, columns: int, pixel_mm: float, bits: int, rng: np.random.Generator
):
    """One view: (pixels uint16, labels uint8, geometry, lesion centres by label)."""
    breast: Breast = patient.breasts[laterality]
    geometry = view_geometry(breast, view, rows, columns, pixel_mm)
    inside, skin = _outline(geometry)
    shape = (rows, columns)
    coarse = _upsample(project_tissue(breast, view), geometry)
    texture = _noise(rng, shape, 3.0)
    detail = _noise(rng, shape, 2.2)
    # Fibroglandular tissue: the projected share, broken up by anatomical noise into patches and strands.
    glandular = 1.0 / (1.0 + np.exp(-np.clip((1.5 * coarse + 0.3 * texture + 0.06 * detail - 0.5) / 0.16, -30, 30)))
    glandular = glandular * np.clip(coarse * 4, 0, 1)
    fat_lines = _ligaments(rng, shape, pixel_mm) * np.clip(1 - 2 * glandular, 0, 1) * 0.1
    thickness = np.sqrt(np.clip(skin / SKIN_FALLOFF_MM, 0, 1))
    density = (0.27 + 0.32 * glandular + (0.05 + 0.05 * glandular) * texture + 0.02 * detail * glandular + fat_lines) * thickness
    if view == "MLO":  # the pectoral muscle: a band along the chest wall, widest at the top, with a convex edge
        x, h = geometry.grids()
        edge = 0.3 * (1 - np.clip((h + 1.0) / 1.1, 0, 1)) ** 0.7
        muscle = 1.0 / (1.0 + np.exp(-np.clip((edge - x) / 0.015, -30, 30))) * (h < 0.1) * inside
        density = density * (1 - muscle) + muscle * (0.6 + 0.05 * texture) * thickness
    labels = np.zeros(shape, np.uint8)
    centres: dict[int, tuple[float, float]] = {}
    for mass in patient.masses:
        if mass.laterality != laterality or mass.diameter_mm <= 0:
            continue
        centre = mass_centre(mass, geometry)
        profile = _mass(shape, centre, mass, pixel_mm, np.random.default_rng(hash((mass.index, view)) & 0xFFFF))
        density = density + (0.25 + 0.03 * texture) * profile * inside
        labels[(profile > 0.05) & inside] = 1 + mass.index
        centres[1 + mass.index] = centre
    for k, cluster in enumerate(patient.calcifications):
        if cluster.laterality != laterality:
            continue
        points = calcification_points(cluster, geometry, breast)
        dots = np.zeros(shape, np.float32)
        for (r, c), size in zip(points, cluster.sizes_mm):
            ri, ci, rad = int(r), int(c), max(1.0, size / 2 / pixel_mm)
            if 0 <= ri < rows and 0 <= ci < columns and inside[ri, ci]:
                span = int(rad + 2)
                rr, cc = np.mgrid[max(0, ri - span) : min(rows, ri + span + 1), max(0, ci - span) : min(columns, ci + span + 1)]
                disc = ((rr - r) ** 2 + (cc - c) ** 2) <= rad**2
                dots[rr[disc], cc[disc]] = 1.0
        if dots.any():
            density = density + 0.9 * dots
            near = ndimage.binary_dilation(dots > 0, iterations=max(2, int(1.0 / pixel_mm)))
            labels[near & (labels == 0)] = CALCIFICATION_LABEL + k
            centres[CALCIFICATION_LABEL + k] = (float(points[:, 0].mean()), float(points[:, 1].mean()))
    # Processing: peripheral equalisation (the thickness fall-off is partly undone), a characteristic curve.
    equalised = density / np.maximum(0.35 + 0.65 * thickness, 1e-3)
    curve = 1.0 / (1.0 + np.exp(-(equalised - 0.5) / 0.16))
    top_value = (1 << bits) - 1
    values = np.where(inside, 0.05 + 0.85 * curve, 0.0) * top_value
    values += rng.normal(0, 0.004 * top_value, shape).astype(np.float32) * inside
    pixels = np.clip(np.rint(values), 0, top_value).astype(np.uint16)
    return pixels, labels, geometry, centres
