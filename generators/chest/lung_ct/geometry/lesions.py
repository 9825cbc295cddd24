"""Lung lesions: fixed irregular shapes, drawn at each visit's size.

A lesion's shape (:class:`LesionShape`) and site (:class:`LesionSite`) are
drawn once and kept for life; :func:`lesion_mask` scales the shape until its
longest axial diameter on the grid is the visit's diameter, reading only the
labels of a box around the site.
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

__all__ = ["LesionShape", "LesionSite", "draw_lesion", "draw_shape", "lesion_bound", "lesion_mask"]


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


def _lesion_rho(shape: LesionShape, centre, px, py, pz, limit: float = np.inf):
    """Scale at which each point lies on the lesion surface (inside iff rho <= s), for the
    scales up to ``limit``: a point that cannot join by then gets inf (the lobulations,
    the costly part, are evaluated only where they can matter)."""
    R = _lesion_rotation(shape)
    dx, dy, dz = px - centre[0], py - centre[1], pz - centre[2]
    ax = shape.semi_axes
    vx = (R[0, 0] * dx + R[1, 0] * dy + R[2, 0] * dz) / ax[0]
    vy = (R[0, 1] * dx + R[1, 1] * dy + R[2, 1] * dz) / ax[1]
    vz = (R[0, 2] * dx + R[1, 2] * dy + R[2, 2] * dz) / ax[2]
    norm = np.sqrt(vx * vx + vy * vy + vz * vz)
    rho = np.full(norm.shape, np.inf)
    # f lies in [1, max_lobulation(shape)], so rho = norm / f <= limit needs norm <= limit * that.
    near = norm <= limit * max_lobulation(shape)
    vx, vy, vz, norm = (np.broadcast_to(v, near.shape)[near] for v in (vx, vy, vz, norm))
    inv = 1.0 / np.maximum(norm, 1e-9)
    f = np.ones(norm.shape)
    for n, h, k in zip(shape.bump_directions, shape.bump_heights, shape.bump_sharpness):
        cosang = (vx * n[0] + vy * n[1] + vz * n[2]) * inv
        facing = cosang > 0.0  # elsewhere the bump adds h * 0 ** k = 0
        f[facing] = f[facing] + h * cosang[facing] ** k
    rho[near] = norm / f
    return rho


_SPHERE_STEPS = 128  # polar steps of the grid max_lobulation samples (twice as many in azimuth)


@functools.lru_cache(maxsize=256)
def max_lobulation(shape: LesionShape) -> float:
    """An upper bound of the lobulation factor ``f(u) = 1 + sum h max(u.n, 0) ** k`` over the sphere.

    ``1 + sum(h)`` bounds it too, but the lobulations point different ways,
    so the true maximum is much lower and the box a lesion is evaluated in
    (its volume goes with the cube) is about three times smaller. The bound
    is rigorous: the maximum over a polar grid, plus the most ``f`` can rise
    between grid points (its Lipschitz constant on the sphere, each term's
    ``h k max(cos^(k-1) sin)``, times the grid's covering radius).
    """
    n = _SPHERE_STEPS
    step = np.pi / n
    theta = (np.arange(n + 1) * step)[:, None]
    phi = (np.arange(2 * n) * step)[None, :]
    u = np.stack(np.broadcast_arrays(np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)), -1)
    f = np.ones(u.shape[:2])
    lipschitz = 0.0
    for d, h, k in zip(shape.bump_directions, shape.bump_heights, shape.bump_sharpness):
        f += h * np.maximum(u @ np.asarray(d), 0.0) ** k
        # max of cos^(k-1) sin is at tan^2 = 1/(k-1); a term with k <= 1 rises at most h k.
        slope = ((k - 1) / k) ** ((k - 1) / 2) / np.sqrt(k) if k > 1 else 1.0
        lipschitz += h * k * slope
    # Any point lies within step/2 in theta and sin(theta) step/2 in phi of a grid point: <= step in angle.
    bound = float(f.max()) + lipschitz * step
    return min(bound, 1.0 + sum(shape.bump_heights))


@functools.lru_cache(maxsize=256)
def _shape_extents(shape: LesionShape) -> tuple[float, float, float]:
    """Half-widths along x, y and z of a box holding the unit-scale shape: every surface point
    has ``|v| <= max_lobulation(shape)`` in the lesion frame, whose ellipsoid this box bounds."""
    axes = _lesion_rotation(shape) * np.asarray(shape.semi_axes)[None, :]
    x, y, z = max_lobulation(shape) * np.sqrt((axes**2).sum(axis=1))
    return float(x), float(y), float(z)


_GROWTHS = 4  # times the first scale bound may be found too small (x 1.5 each)


def _first_scale_bound(grid: VolumeGrid, site: LesionSite, diam: float) -> float:
    # Projected in-plane width at unit scale bounds the axial diameter from above.
    return 1.3 * (diam / _unit_width(site.shape)) + 0.6 * grid.slice_spacing_mm + grid.pixel_spacing_mm


Box = tuple[slice, slice, slice]
#: What a lesion reads: the labels of a box of the grid (anatomy and earlier lesions), read-only.
Reader = Callable[[Box], np.ndarray]


def lesion_bound(grid: VolumeGrid, site: LesionSite, diam: float) -> Box | None:
    """The box :func:`lesion_mask` may read or write for this lesion (that of its largest
    scale), None when it lies off the grid; a volume needs only this box to draw it."""
    s_hi = _first_scale_bound(grid, site, diam) * 1.5 ** (_GROWTHS - 1)
    return _box(grid, site, _half_widths(site, s_hi, grid.pixel_spacing_mm))


def lesion_mask(
    read: Reader, anat: ChestAnatomy, grid: VolumeGrid, site: LesionSite, diam: float
) -> tuple[Box, np.ndarray] | None:
    """One lesion's voxels, scaled so that its longest axial diameter is ``diam``.

    ``read(box)`` gives the labels the lesion lies in (the anatomy and every
    earlier lesion), only over the box it needs: the voxels the shape can
    reach at the largest scale tried (which grows only when the first proves
    too small), so a window of a few slices and rows is usually all that is
    labelled.

    Returns the box it read and the mask of its voxels there, None when it lies off the grid.
    """
    ps = grid.pixel_spacing_mm
    target = diam / ps  # in pixels
    c = site.centre_mm
    centre = tuple(int(round(v)) for v in grid.index_of(*c))
    side_code = 1 if site.lung == "right" else 2
    s_hi = _first_scale_bound(grid, site, diam)
    for _ in range(_GROWTHS):
        outer = _box(grid, site, _half_widths(site, s_hi, ps))
        if outer is None:
            return None
        box, rho = _reach(outer, _box_rho(grid, site, outer, s_hi), s_hi, centre)
        allowed = _allowed(read(box), box, anat, grid, side_code)
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
        k, r, cc = centre
        kk, rr, ccc = k - box[0].start, r - box[1].start, cc - box[2].start
        inside = 0 <= kk < mask.shape[0] and 0 <= rr < mask.shape[1] and 0 <= ccc < mask.shape[2]
        if inside and allowed[kk, rr, ccc]:
            mask[kk, rr, ccc] = True
    return box, mask


def draw_lesion(
    labels: np.ndarray, anat: ChestAnatomy, grid: VolumeGrid, site: LesionSite, diam: float, value: int
) -> Box | None:
    """Draw one lesion into a whole label volume (see :func:`lesion_mask`); returns its box."""
    found = lesion_mask(labels.__getitem__, anat, grid, site, diam)
    if found is None:
        return None
    box, mask = found
    labels[box][mask] = value
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


def _half_widths(site: LesionSite, scale: float, margin: float) -> tuple[float, float, float]:
    x, y, z = _shape_extents(site.shape)
    return scale * x + margin, scale * y + margin, scale * z + margin


def _box(grid: VolumeGrid, site: LesionSite, half_mm: tuple[float, float, float]) -> Box | None:
    """The voxels within ``half_mm`` (x, y, z) of the site's centre (plus a voxel), clipped to the grid."""
    K, R, C = grid.shape
    k, r, c = grid.index_of(*site.centre_mm)
    hk, hr, hc = (
        half_mm[2] / grid.slice_spacing_mm + 1,
        half_mm[1] / grid.pixel_spacing_mm + 1,
        half_mm[0] / grid.pixel_spacing_mm + 1,
    )
    k0, k1 = max(0, int(np.floor(k - hk))), min(K, int(np.ceil(k + hk)) + 1)
    r0, r1 = max(0, int(np.floor(r - hr))), min(R, int(np.ceil(r + hr)) + 1)
    c0, c1 = max(0, int(np.floor(c - hc))), min(C, int(np.ceil(c + hc)) + 1)
    if k0 >= k1 or r0 >= r1 or c0 >= c1:
        return None
    return slice(k0, k1), slice(r0, r1), slice(c0, c1)


def _box_rho(grid: VolumeGrid, site: LesionSite, box: Box, limit: float) -> np.ndarray:
    """The scale at which each voxel of a box joins the lesion, for scales up to ``limit``."""
    xs, ys, zs = grid.x_mm()[box[2]], grid.y_mm()[box[1]], grid.z_mm()[box[0]]
    return _lesion_rho(site.shape, site.centre_mm, xs[None, None, :], ys[None, :, None], zs[:, None, None], limit)


def _reach(box: Box, rho: np.ndarray, limit: float, centre: tuple[int, ...]) -> tuple[Box, np.ndarray]:
    """The part of a box the lesion can reach up to scale ``limit`` (and the centre voxel, which
    a lesion smaller than a voxel keeps), with its ``rho``: no voxel outside it can join."""
    reach = rho <= limit
    inside = [c - b.start for c, b in zip(centre, box)]
    if all(0 <= i < n for i, n in zip(inside, reach.shape)):
        reach[tuple(inside)] = True
    if not reach.any():
        reach[0, 0, 0] = True  # nothing joins: one voxel stands for the box
    extent = [np.flatnonzero(reach.any(axis=tuple(a for a in range(3) if a != d))) for d in range(3)]
    crop = tuple(slice(int(e[0]), int(e[-1]) + 1) for e in extent)
    k, r, c = (slice(b.start + a.start, b.start + a.stop) for b, a in zip(box, crop))
    return (k, r, c), rho[crop]


def _allowed(sub: np.ndarray, box: Box, anat: ChestAnatomy, grid: VolumeGrid, side_code: int) -> np.ndarray:
    """Where in a box the lesion may grow: its own lung, and the vessels in it."""
    xs, ys, zs = grid.x_mm()[box[2]], grid.y_mm()[box[1]], grid.z_mm()[box[0]]
    shape2 = sub.shape[1:]
    pl = Plane(anat, np.broadcast_to(xs[None, :], shape2), np.broadcast_to(ys[:, None], shape2))
    allowed = np.zeros(sub.shape, bool)
    for i, z in enumerate(zs):
        pr = HeightProfile(anat, float(z))
        side = lung_side(anat, pl, pr, BodyLayers(anat, pl, pr))
        allowed[i] = (sub[i] == Label.LUNG) | ((sub[i] == Label.VESSEL) & (side == side_code))
    return allowed


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
