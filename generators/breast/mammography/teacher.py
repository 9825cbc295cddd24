"""The physics-informed renderer: a breast model's view -> a For Presentation mammogram and its lesion labels.

Per pixel: the compressed thickness (flat in the middle, falling to zero over
the last centimetre to the skin), the glandular share of the ray (the 3-D
tissue field projected, :func:`.geometry.project_tissue`), anatomical noise
with a power-law spectrum (beta 3, the exponent measured on real
mammograms), Cooper's ligaments as thin bright curves in the fat, a
pectoral muscle on MLO, and the lesions: masses as projected ellipsoids
(spiculated ones with radiating spicules, irregular ones lobulated),
calcifications as small dense capsules drawn by their morphology (round
punctate dots, faint blurred amorphous ones, coarse ones, thin linear
casts along their duct), architectural distortion as thin spokes with the
tissue around them pulled towards their centre. The attenuation is turned into
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
    Distortion,
    Patient,
    ViewGeometry,
    calcification_points,
    calcification_segments,
    distortion_spokes,
    mass_centre,
    power_field,
    project_tissue,
    view_geometry,
)

SKIN_FALLOFF_MM = 12.0
#: Lesion label values in a view's label map: masses are 1 + their index, calcification clusters 10 + theirs,
#: architectural distortions 20 + theirs.
CALCIFICATION_LABEL = 10
DISTORTION_LABEL = 20
#: Attenuation of fat, and what a ray's glandular share adds to it (full thickness).
FAT, GLAND = 0.27, 0.32


def displayed(equalised):
    """The processing's characteristic curve: equalised attenuation -> share of the stored range."""
    curve = 1.0 / (1.0 + np.exp(-(equalised - 0.5) / 0.16))
    return 0.05 + 0.85 * curve


def glandular_value(share: float, bits: int) -> float:
    """The stored value of tissue with this glandular share at full thickness, before noise: the
    threshold of an area density reading."""
    return float(displayed(FAT + GLAND * share)) * ((1 << bits) - 1)


#: Per morphology: the calcifications' density over the tissue, and a blur (mm) for the faint ones.
CALCIFICATION_LOOK = {
    "punctate": (0.8, 0.0),
    "amorphous": (0.35, 0.12),
    "coarse heterogeneous": (1.0, 0.0),
    "fine pleomorphic": (0.8, 0.0),
    "fine linear branching": (0.85, 0.0),
}


def outline(geometry: ViewGeometry) -> tuple[np.ndarray, np.ndarray]:
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
    inside, skin = outline(geometry)
    shape = (rows, columns)
    coarse = _upsample(project_tissue(breast, view), geometry)
    # Anatomical noise centred on the breast: a steep spectrum puts much of its power in the lowest
    # frequencies, so uncentred it brightened or darkened a whole breast (a density class apart).
    texture = _noise(rng, shape, 3.0)
    texture = texture - (texture[inside].mean() if inside.any() else 0.0)
    detail = _noise(rng, shape, 2.2)
    # Fibroglandular tissue: the projected share, broken up by anatomical noise into patches and strands.
    glandular = 1.0 / (1.0 + np.exp(-np.clip((1.5 * coarse + 0.3 * texture + 0.06 * detail - 0.5) / 0.16, -30, 30)))
    glandular = glandular * np.clip(coarse * 4, 0, 1)
    fat_lines = _ligaments(rng, shape, pixel_mm) * np.clip(1 - 2 * glandular, 0, 1) * 0.1
    thickness = np.sqrt(np.clip(skin / SKIN_FALLOFF_MM, 0, 1))
    density = (FAT + GLAND * glandular + (0.05 + 0.05 * glandular) * texture + 0.02 * detail * glandular + fat_lines) * thickness
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
        profile = _mass(shape, centre, mass, pixel_mm, np.random.default_rng([mass.seed, view == "MLO"]))
        density = density + (0.25 + 0.03 * texture) * profile * inside
        labels[(profile > 0.05) & inside] = 1 + mass.index
        centres[1 + mass.index] = centre
    for k, cluster in enumerate(patient.calcifications):
        if cluster.laterality != laterality:
            continue
        points = calcification_points(cluster, geometry, breast)
        dots = _capsules(shape, calcification_segments(cluster, geometry, breast), cluster.sizes_mm / 2 / pixel_mm, inside)
        if dots.any():
            contrast, blur_mm = CALCIFICATION_LOOK[cluster.morphology]
            drawn = ndimage.gaussian_filter(dots, blur_mm / pixel_mm) if blur_mm else dots
            density = density + contrast * drawn
            near = ndimage.binary_dilation(dots > 0, iterations=max(2, int(1.0 / pixel_mm)))
            labels[near & (labels == 0)] = CALCIFICATION_LABEL + k
            centres[CALCIFICATION_LABEL + k] = (float(points[:, 0].mean()), float(points[:, 1].mean()))
    for distortion in patient.distortions:
        if distortion.laterality != laterality:
            continue
        spoke_centre, ends = distortion_spokes(distortion, geometry, breast)
        density, mask = _distort(density, spoke_centre, ends, distortion, pixel_mm, inside)
        value = DISTORTION_LABEL + distortion.index
        labels[mask & (labels == 0)] = value
        if mask.any():
            centres[value] = (float(spoke_centre[0]), float(spoke_centre[1]))
    # Processing: peripheral equalisation (the thickness fall-off is partly undone), a characteristic curve.
    equalised = density / np.maximum(0.35 + 0.65 * thickness, 1e-3)
    top_value = (1 << bits) - 1
    values = np.where(inside, displayed(equalised), 0.0) * top_value
    values += rng.normal(0, 0.004 * top_value, shape).astype(np.float32) * inside
    pixels = np.clip(np.rint(values), 0, top_value).astype(np.uint16)
    return pixels, labels, geometry, centres


def _capsules(shape: tuple[int, int], segments: np.ndarray, radii_px: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """1 inside each capsule (a segment's ends and a radius, pixels) whose centre lies in the breast."""
    rows, columns = shape
    out = np.zeros(shape, np.float32)
    for (a, b), radius in zip(segments, radii_px):
        radius = max(1.0, float(radius))
        mid = (a + b) / 2
        ri, ci = int(mid[0]), int(mid[1])
        if not (0 <= ri < rows and 0 <= ci < columns and inside[ri, ci]):
            continue
        span = int(radius + np.abs(b - a).max() / 2 + 2)
        r0, r1, c0, c1 = max(0, ri - span), min(rows, ri + span + 1), max(0, ci - span), min(columns, ci + span + 1)
        rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        axis = b - a
        length2 = float(axis @ axis)
        t = np.zeros_like(rr) if length2 < 1e-9 else np.clip(((rr - a[0]) * axis[0] + (cc - a[1]) * axis[1]) / length2, 0, 1)
        d2 = (rr - (a[0] + t * axis[0])) ** 2 + (cc - (a[1] + t * axis[1])) ** 2
        out[r0:r1, c0:c1] = np.maximum(out[r0:r1, c0:c1], (d2 <= radius**2).astype(np.float32))
    return out


def _distort(
    density: np.ndarray, centre: np.ndarray, ends: np.ndarray, d: Distortion, pixel_mm: float, inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Architectural distortion in a view: the tissue within its radius pulled towards the centre, then thin
    dense spokes fading outwards. Returns the new density and the finding's mask (its spokes and centre)."""
    rows, columns = density.shape
    radius = d.radius_mm / pixel_mm
    span = int(1.6 * radius) + 4
    r0, r1 = max(0, int(centre[0]) - span), min(rows, int(centre[0]) + span + 1)
    c0, c1 = max(0, int(centre[1]) - span), min(columns, int(centre[1]) + span + 1)
    mask = np.zeros(density.shape, bool)
    if r0 >= r1 or c0 >= c1 or not inside[min(rows - 1, max(0, int(centre[0]))), min(columns - 1, max(0, int(centre[1])))]:
        return density, mask
    rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float32)
    dr, dc = rr - centre[0], cc - centre[1]
    rho = np.sqrt(dr**2 + dc**2) / radius
    pull = 0.5 * np.exp(-(rho**2))  # retraction: read the tissue from further out
    window = density[r0:r1, c0:c1]
    out = density.copy()
    out[r0:r1, c0:c1] = ndimage.map_coordinates(
        window, [dr * (1 + pull) + centre[0] - r0, dc * (1 + pull) + centre[1] - c0], order=1, mode="nearest"
    )
    width = max(0.8, 0.1 / pixel_mm)
    # Real spokes curve with the tissue: a smooth displacement of the window (the same for every
    # view of the distortion, keyed by it) bends each one a little, differently along its length.
    bend = np.random.default_rng([d.index, 59, int(round(1000 * d.radius_mm))]).normal(size=(2, *rr.shape)).astype(np.float32)
    for k in range(2):
        bend[k] = ndimage.gaussian_filter(bend[k], radius / 3, mode="nearest")
        bend[k] *= 0.15 * radius / max(float(bend[k].std()), 1e-6)
    dr, dc = dr + bend[0] * np.minimum(rho, 1), dc + bend[1] * np.minimum(rho, 1)  # none at the centre
    spokes = np.zeros_like(rr)
    for end in ends:
        axis = end - centre
        length2 = float(axis @ axis)
        if length2 < 1:
            continue
        t = np.clip((dr * axis[0] + dc * axis[1]) / length2, 0, 1)
        gap = np.sqrt((dr - t * axis[0]) ** 2 + (dc - t * axis[1]) ** 2)
        spokes = np.maximum(spokes, np.exp(-((gap / width) ** 2)) * (1 - t) ** 0.7 * (t > 0.02))
    out[r0:r1, c0:c1] += 0.05 * spokes * inside[r0:r1, c0:c1]
    mask[r0:r1, c0:c1] = ((spokes > 0.3) | (rho < 0.15)) & inside[r0:r1, c0:c1]
    return out, mask
