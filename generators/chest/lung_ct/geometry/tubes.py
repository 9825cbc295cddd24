"""Tubes: centrelines with radii, splatted into a label volume as chains of spheres.

Airways, vessels, nodes and clavicles are all drawn this way: a
:class:`TubeSet` of straight segments (from smooth curves through control
points, or from grown trees) is sampled densely enough for the grid and
each sphere sets its label in the voxels whose current label allows it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthpacs.imaging.spatial import VolumeGrid

__all__ = ["TubeSet", "polyline_tubes", "sample_tubes", "splat"]


@dataclass
class TubeSet:
    """Straight segments ``p0 -> p1`` with radii ``r0 -> r1``, drawn with one label."""

    p0: np.ndarray
    p1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    value: int
    allowed: tuple[int, ...]


def _catmull_rom(ctrl: np.ndarray, radii: np.ndarray, step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Dense points along a smooth curve through control points, with interpolated radii."""
    ctrl = np.asarray(ctrl, float)
    radii = np.asarray(radii, float)
    pts = np.vstack([2 * ctrl[0] - ctrl[1], ctrl, 2 * ctrl[-1] - ctrl[-2]])
    out_p, out_r = [], []
    for i in range(len(ctrl) - 1):
        p0, p1, p2, p3 = pts[i : i + 4]
        n = max(2, int(np.ceil(np.linalg.norm(p2 - p1) / step)) + 1)
        t = np.linspace(0.0, 1.0, n)[:, None]
        if i < len(ctrl) - 2:
            t = t[:-1]
        t2, t3 = t * t, t * t * t
        seg = 0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3)
        out_p.append(seg)
        out_r.append(radii[i] + (radii[i + 1] - radii[i]) * t[:, 0])
    return np.vstack(out_p), np.concatenate(out_r)


def _resample(p: np.ndarray, r: np.ndarray, extra: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep points about a third of a radius apart along a dense curve."""
    keep = [0]
    acc = 0.0
    step = np.linalg.norm(np.diff(p, axis=0), axis=1)
    for i in range(1, len(p)):
        acc += step[i - 1]
        if acc >= np.clip(0.4 * (r[i] + extra), 0.5, 8.0) or i == len(p) - 1:
            keep.append(i)
            acc = 0.0
    return p[keep], r[keep]


def polyline_tubes(curves, value: int, allowed, extra_radius: float = 0.0) -> TubeSet:
    """Smooth tubes through ``(control points, radii)`` curves, radii grown by ``extra_radius``."""
    p0, p1, r0, r1 = [], [], [], []
    for ctrl, radii in curves:
        p, r = _resample(*_catmull_rom(np.asarray(ctrl), np.asarray(radii)), extra_radius)
        p0.append(p[:-1])
        p1.append(p[1:])
        r0.append(r[:-1] + extra_radius)
        r1.append(r[1:] + extra_radius)
    return TubeSet(np.vstack(p0), np.vstack(p1), np.concatenate(r0), np.concatenate(r1), int(value), tuple(allowed))


def sample_tubes(ts: TubeSet, grid: VolumeGrid):
    """Sphere centres and radii along every segment, dense enough for the grid."""
    ps = grid.pixel_spacing_mm
    seg = ts.p1 - ts.p0
    length = np.linalg.norm(seg, axis=1)
    rmin = np.minimum(ts.r0, ts.r1)
    # Spheres 0.4 radius apart leave ridges of under 2% of the radius.
    step = np.clip(0.4 * rmin, 0.35 * ps, 8.0)
    # The end point of a segment is the start of the next (or a branch point).
    n = np.maximum(1, np.ceil(length / step).astype(np.int64))
    idx = np.repeat(np.arange(len(n)), n)
    start = np.cumsum(n) - n
    frac = (np.arange(idx.size) - start[idx]) / n[idx]
    pts = ts.p0[idx] + seg[idx] * frac[:, None]
    rad = ts.r0[idx] + (ts.r1[idx] - ts.r0[idx]) * frac
    return pts, rad


def splat(
    labels: np.ndarray,
    grid: VolumeGrid,
    pts: np.ndarray,
    rad: np.ndarray,
    value: int,
    allowed,
    slices: tuple[int, int] | None = None,
    origin: tuple[int, int, int] = (0, 0, 0),
) -> None:
    """Set ``value`` in every allowed voxel within ``rad`` of a point (slab-widened in z).

    ``labels`` holds the box of the grid that starts at voxel ``origin`` (the
    whole grid by default); ``slices`` ``(k0, k1)`` limits the writes to those
    slices of the grid. Each voxel's result depends only on its own label and
    the spheres that cover it, so splatting slice ranges or boxes one by one
    gives what splatting the volume whole does.
    """
    if len(pts) == 0:
        return
    ps, ss = grid.pixel_spacing_mm, grid.slice_spacing_mm
    K, R, C = labels.shape
    k0, r_lo, c_lo = origin
    k_lo, k_hi = (k0, k0 + K) if slices is None else (max(k0, slices[0]), min(k0 + K, slices[1]))
    r_hi, c_hi = r_lo + R, c_lo + C
    k, r, c = grid.index_of(pts[:, 0], pts[:, 1], pts[:, 2])
    k, r, c = np.atleast_1d(k), np.atleast_1d(r), np.atleast_1d(c)
    # A thin vessel lying between two slice centres still shows in the slice whose slab it crosses.
    rz = np.sqrt(rad * rad + (0.5 * ss) ** 2) / ss
    rp = rad / ps
    keep = (k > k_lo - rz - 1) & (k < k_hi + rz) & (r > r_lo - rp - 1) & (r < r_hi + rp)
    keep &= (c > c_lo - rp - 1) & (c < c_hi + rp) & (rad > 0)
    k, r, c, rz, rp = k[keep], r[keep], c[keep], rz[keep], rp[keep]
    if k.size == 0:
        return
    lut = np.zeros(256, bool)
    lut[list(allowed)] = True
    flat = labels.reshape(-1)
    hp = np.ceil(rp).astype(np.int64)
    hz = np.ceil(rz).astype(np.int64)
    key = hp * 4096 + hz
    order = np.argsort(key, kind="stable")
    keys, starts = np.unique(key[order], return_index=True)
    ends = np.append(starts[1:], order.size)
    for kv, s0, s1 in zip(keys, starts, ends):
        sel = order[s0:s1]
        h, w = int(kv // 4096), int(kv % 4096)
        gk, gr, gc = np.meshgrid(np.arange(-w, w + 1), np.arange(-h, h + 1), np.arange(-h, h + 1), indexing="ij")
        ok, orr, oc = gk.ravel(), gr.ravel(), gc.ravel()
        ok32, or32, oc32 = ok.astype(np.float32), orr.astype(np.float32), oc.astype(np.float32)
        m = ok.size
        chunk = max(1, 2_000_000 // m)
        for j in range(0, sel.size, chunk):
            s = sel[j : j + chunk]
            bk, br, bc = np.rint(k[s]), np.rint(r[s]), np.rint(c[s])
            # Offsets of the rounded centre from the true one, in units of the radii.
            fk = ((bk - k[s]) / rz[s]).astype(np.float32)[:, None]
            fr = ((br - r[s]) / rp[s]).astype(np.float32)[:, None]
            fc = ((bc - c[s]) / rp[s]).astype(np.float32)[:, None]
            sk = (1.0 / rz[s]).astype(np.float32)[:, None]
            sp = (1.0 / rp[s]).astype(np.float32)[:, None]
            dk = fk + ok32[None] * sk
            dr = fr + or32[None] * sp
            dc = fc + oc32[None] * sp
            inside = dk * dk + dr * dr + dc * dc <= 1.0
            ck = bk.astype(np.int64)[:, None] + ok[None]
            cr = br.astype(np.int64)[:, None] + orr[None]
            cc = bc.astype(np.int64)[:, None] + oc[None]
            inside &= (ck >= k_lo) & (ck < k_hi) & (cr >= r_lo) & (cr < r_hi) & (cc >= c_lo) & (cc < c_hi)
            fi = (((ck - k0) * R + (cr - r_lo)) * C + (cc - c_lo))[inside]
            fi = fi[lut[flat[fi]]]
            flat[fi] = value
