"""Lung lesions: fixed irregular shapes, drawn at each visit's size.

A lesion's shape (:class:`LesionShape`) and site (:class:`LesionSite`) are
drawn once and kept for life; :func:`draw_lesion` scales the shape until its
longest axial diameter on the grid is the visit's diameter.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthpacs.imaging.spatial import VolumeGrid

from .anatomy import ChestAnatomy
from .fields import BodyLayers, HeightProfile, Plane, lung_side
from .labels import Label
from .measure import max_axial_diameter

__all__ = ["LesionShape", "LesionSite", "draw_lesion", "draw_shape", "lesion_slices"]


@dataclass(frozen=True)
class LesionShape:
    """A lesion's irregular outline at unit scale, fixed for life.

    A point ``p`` is inside the lesion of scale ``s`` centred at ``c`` when
    ``|v| <= s * (1 + sum_j h_j * max(u . n_j, 0) ** k_j)``, where
    ``v = R.T (p - c) / semi_axes`` and ``u = v / |v|`` (lobulation bumps
    ``n_j``, heights ``h_j``, sharpness ``k_j``).
    """

    semi_axes: tuple[float, float, float]
    rotation: tuple[float, ...]  # 3x3 row-major, lesion frame -> patient frame
    bump_directions: tuple[tuple[float, float, float], ...]
    bump_heights: tuple[float, ...]
    bump_sharpness: tuple[float, ...]


@dataclass(frozen=True)
class LesionSite:
    """Where a lesion lives and what shape it has; the same at every visit."""

    centre_mm: tuple[float, float, float]
    lung: str  # "right" | "left"
    lobe: str  # e.g. "right upper lobe"
    shape: LesionShape


def _lesion_rotation(shape: LesionShape) -> np.ndarray:
    return np.asarray(shape.rotation, float).reshape(3, 3)


def _lesion_rho(shape: LesionShape, centre, px, py, pz):
    """Scale at which each point lies on the lesion surface (inside iff rho <= s)."""
    R = _lesion_rotation(shape)
    dx, dy, dz = px - centre[0], py - centre[1], pz - centre[2]
    ax = shape.semi_axes
    vx = (R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz) / ax[0]
    vy = (R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz) / ax[1]
    vz = (R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz) / ax[2]
    norm = np.sqrt(vx * vx + vy * vy + vz * vz)
    inv = 1.0 / np.maximum(norm, 1e-9)
    f = 1.0
    for n, h, k in zip(shape.bump_directions, shape.bump_heights, shape.bump_sharpness):
        cosang = (vx * n[0] + vy * n[1] + vz * n[2]) * inv
        f = f + h * np.maximum(cosang, 0.0) ** k
    return norm / f


def _shape_extent(shape: LesionShape) -> float:
    """Largest distance from the centre to the surface at unit scale."""
    return max(shape.semi_axes) * (1.0 + sum(shape.bump_heights))


_GROWTHS = 4  # times the first scale bound may be found too small (x 1.5 each)


def _first_scale_bound(grid: VolumeGrid, site: LesionSite, diam: float) -> float:
    # Projected in-plane width at unit scale bounds the axial diameter from above.
    return 1.3 * (diam / _unit_width(site.shape)) + 0.6 * grid.slice_spacing_mm + grid.pixel_spacing_mm


def lesion_slices(grid: VolumeGrid, site: LesionSite, diam: float) -> tuple[int, int]:
    """Slices ``(k0, k1)`` that :func:`draw_lesion` may read or write for this lesion (a bound:
    the box of its largest scale), so a volume needs only those slices to draw it."""
    s_hi = _first_scale_bound(grid, site, diam) * 1.5 ** (_GROWTHS - 1)
    half_mm = s_hi * _shape_extent(site.shape) + grid.pixel_spacing_mm
    k = grid.index_of(*site.centre_mm)[0]
    hk = half_mm / grid.slice_spacing_mm + 1
    return max(0, int(np.floor(k - hk))), min(grid.n_slices, int(np.ceil(k + hk)) + 1)


def draw_lesion(
    labels: np.ndarray,
    anat: ChestAnatomy,
    grid: VolumeGrid,
    site: LesionSite,
    diam: float,
    value: int,
    prepare: Callable[[int, int], None] | None = None,
) -> tuple[slice, slice, slice] | None:
    """Draw one lesion, scaled so that its longest axial diameter is ``diam``.

    ``prepare(k0, k1)``, when given, is called before slices ``k0..k1-1`` of
    ``labels`` are read (a volume made on demand labels them then): the box
    grows only when the first scale proves too small, so usually far fewer
    slices than :func:`lesion_slices` bounds are needed.

    Returns the box of voxels it read (and wrote in), None when it lies off the grid.
    """
    ps = grid.pixel_spacing_mm
    target = diam / ps  # in pixels
    c = site.centre_mm
    ext = _shape_extent(site.shape)
    side_code = 1 if site.lung == "right" else 2
    s_hi = _first_scale_bound(grid, site, diam)
    for _ in range(_GROWTHS):
        box, rho, allowed = _lesion_box(labels, anat, grid, site, s_hi * ext + ps, side_code, prepare)
        if box is None:
            return None
        if max_axial_diameter((rho <= s_hi) & allowed) >= target:
            break
        s_hi *= 1.5
    lo, hi = 0.0, s_hi
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if max_axial_diameter((rho <= mid) & allowed) >= target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-3 * s_hi:
            break
    d_hi = max_axial_diameter((rho <= hi) & allowed)
    d_lo = max_axial_diameter((rho <= lo) & allowed)
    s = hi if (d_lo < 0 or abs(d_hi - target) <= abs(d_lo - target)) else lo
    mask = (rho <= s) & allowed
    if not mask.any():
        # Smaller than a voxel: keep the voxel nearest the centre so the lesion is still there.
        k, r, cc = (int(round(v)) for v in grid.index_of(*c))
        kk, rr, ccc = k - box[0].start, r - box[1].start, cc - box[2].start
        inside = 0 <= kk < mask.shape[0] and 0 <= rr < mask.shape[1] and 0 <= ccc < mask.shape[2]
        if inside and allowed[kk, rr, ccc]:
            mask[kk, rr, ccc] = True
    sub = labels[box]
    sub[mask] = value
    return box


@functools.lru_cache(maxsize=256)
def _unit_width(shape: LesionShape) -> float:
    """Longest in-plane extent of the unit-scale surface projected on the axial plane."""
    n = 4000
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    theta = np.pi * (1 + 5**0.5) * i
    u = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)
    f = np.ones(n)
    for d, h, k in zip(shape.bump_directions, shape.bump_heights, shape.bump_sharpness):
        f += h * np.maximum(u @ np.asarray(d), 0.0) ** k
    v = u * f[:, None] * np.asarray(shape.semi_axes)
    p = v @ _lesion_rotation(shape).T
    xy = p[:, :2]
    from scipy.spatial import ConvexHull

    hull = xy[ConvexHull(xy).vertices]
    d2 = ((hull[:, None] - hull[None]) ** 2).sum(-1)
    return float(np.sqrt(d2.max()))


def _lesion_box(labels, anat, grid, site, half_mm, side_code, prepare=None):
    ps, ss = grid.pixel_spacing_mm, grid.slice_spacing_mm
    K, R, C = labels.shape
    k, r, c = grid.index_of(*site.centre_mm)
    hk, hp = half_mm / ss + 1, half_mm / ps + 1
    k0, k1 = max(0, int(np.floor(k - hk))), min(K, int(np.ceil(k + hk)) + 1)
    r0, r1 = max(0, int(np.floor(r - hp))), min(R, int(np.ceil(r + hp)) + 1)
    c0, c1 = max(0, int(np.floor(c - hp))), min(C, int(np.ceil(c + hp)) + 1)
    if k0 >= k1 or r0 >= r1 or c0 >= c1:
        return None, None, None
    box = (slice(k0, k1), slice(r0, r1), slice(c0, c1))
    if prepare is not None:
        prepare(k0, k1)
    xs = grid.x_mm()[c0:c1]
    ys = grid.y_mm()[r0:r1]
    zs = grid.z_mm()[k0:k1]
    rho = _lesion_rho(site.shape, site.centre_mm, xs[None, None, :], ys[None, :, None], zs[:, None, None])
    sub = labels[box]
    shape2 = (r1 - r0, c1 - c0)
    pl = Plane(anat, np.broadcast_to(xs[None, :], shape2), np.broadcast_to(ys[:, None], shape2))
    allowed = np.zeros(sub.shape, bool)
    for i, z in enumerate(zs):
        pr = HeightProfile(anat, float(z))
        side = lung_side(anat, pl, pr, BodyLayers(anat, pl, pr))
        allowed[i] = (sub[i] == Label.LUNG) | ((sub[i] == Label.VESSEL) & (side == side_code))
    return box, rho, allowed


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def draw_shape(rng: np.random.Generator) -> LesionShape:
    """A new irregular shape: a slightly flattened ellipsoid with a few large and many small lobulations."""
    axes = np.array([1.0, rng.uniform(0.72, 1.0), rng.uniform(0.65, 0.95)])
    n_big = int(rng.integers(3, 7))
    n_small = int(rng.integers(8, 16))
    dirs = rng.normal(size=(n_big + n_small, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    heights = np.concatenate([rng.uniform(0.08, 0.28, n_big), rng.uniform(0.03, 0.07, n_small)])
    sharp = np.concatenate([rng.uniform(2.0, 6.0, n_big), rng.uniform(12.0, 30.0, n_small)])
    return LesionShape(
        semi_axes=(float(axes[0]), float(axes[1]), float(axes[2])),
        rotation=tuple(float(v) for v in _random_rotation(rng).ravel()),
        bump_directions=tuple((float(d[0]), float(d[1]), float(d[2])) for d in dirs),
        bump_heights=tuple(float(v) for v in heights),
        bump_sharpness=tuple(float(v) for v in sharp),
    )
