"""Smooth fields of one chest: what the body layers, lungs and mediastinum are at any point.

The slice rasteriser (:mod:`.body`), the coarse lung map of the tree growth
(:mod:`.vessels`) and the lesion drawing (:mod:`.lesions`) all ask these
fields whether a point is in the lungs, and where the chest wall lies.
Quantities that depend only on ``(x, y)`` live in a :class:`Plane`, those
that depend only on ``z`` in a :class:`HeightProfile`; :class:`BodyLayers`
combines the two.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .anatomy import ChestAnatomy, Ellipsoid

__all__ = [
    "BodyLayers",
    "HeightProfile",
    "Plane",
    "grid_window",
    "heart_z_range",
    "inside_ellipsoids",
    "lung_side",
    "point_layers",
    "smooth_window",
    "smoothstep",
]
_RIB_ZONE_EXTRA_MM = 2.0  # intercostal muscle around the ribs' own thickness


def _vm(c, s, phi0: float, kappa: float):
    """Von Mises bump in polar angle: 1 at ``phi0``, falling off with ``kappa``."""
    return np.exp(kappa * (c * math.cos(phi0) + s * math.sin(phi0) - 1.0))


class Plane:
    """Quantities that depend only on (x, y): polar angle about the body centre etc.

    A plane of a whole grid (:func:`.volume.anatomy_volume`) also carries
    ``x1d`` and ``y1d``, its column and row coordinates, so that structures
    can be drawn over a window of it (:func:`grid_window`).
    """

    # Set only on grid planes (declared, not assigned: ``hasattr`` tells the two apart).
    x1d: np.ndarray
    y1d: np.ndarray

    def __init__(self, anat: ChestAnatomy, x, y):
        self.x = x
        self.y = y
        dy = y - anat.body_centre_y_mm
        r = np.sqrt(x * x + dy * dy)
        self.r = r
        tiny = r < 1e-3
        rs = np.where(tiny, 1.0, r)
        c = np.where(tiny, 1.0, x / rs)
        s = np.where(tiny, 0.0, dy / rs)
        self.c, self.s = c, s
        a = anat.body_half_width_mm
        front = s < 0
        b = np.where(front, anat.body_half_depth_anterior_mm, anat.body_half_depth_posterior_mm)
        p = np.where(front, anat.body_exponent_anterior, anat.body_exponent_posterior)
        with np.errstate(divide="ignore"):
            self.r0 = (np.abs(c / a) ** p + np.abs(s / b) ** p) ** (-1.0 / p)
        c2 = c * c - s * s
        s2 = 2.0 * s * c
        c3 = c * c2 - s * s2
        s3 = s * c2 + c * s2
        c4 = c2 * c2 - s2 * s2
        s4 = 2.0 * s2 * c2
        self.harm: tuple[np.ndarray, ...] = (c, s, c2, s2, c3, s3, c4, s4)
        h = anat.fat_harmonics
        self.fat_mod = np.clip(1.0 + h[0] * c + h[1] * s + h[2] * c2 + h[3] * s2, 0.35, 2.5)
        self.paraspinal = _vm(c, s, math.pi / 2, 9.0)
        self.pectoral = (_vm(c, s, -math.pi / 2 - 0.85, 6.0) + _vm(c, s, -math.pi / 2 + 0.85, 6.0)) * (
            1.0 - _vm(c, s, -math.pi / 2, 40.0)
        )
        self.scapular = _vm(c, s, math.pi / 2 - 0.95, 7.0) + _vm(c, s, math.pi / 2 + 0.95, 7.0)
        self.latissimus = _vm(c, s, math.pi / 2 - 0.8, 6.0) + _vm(c, s, math.pi / 2 + 0.8, 6.0)
        self.breast = _vm(c, s, -math.pi / 2 - 0.62, 9.0) + _vm(c, s, -math.pi / 2 + 0.62, 9.0)
        self.axilla = np.exp(5.0 * (np.abs(c) - 1.0))
        with np.errstate(divide="ignore"):
            ray = (anat.table_top_y_mm - 1.0 - anat.body_centre_y_mm) / s
        self.table_ray = np.where(s > 0.02, ray, np.inf)
        self.z_diaphragm = _diaphragm_z(anat, x, y)
        dtype = np.result_type(x, y)
        for name, value in list(vars(self).items()):
            if isinstance(value, np.ndarray) and value.dtype != dtype:
                setattr(self, name, value.astype(dtype))
        self.harm = tuple(h.astype(dtype, copy=False) for h in self.harm)

    def window(self, rows: slice, cols: slice) -> Plane:
        """The same plane restricted to a rectangle (grid planes only)."""
        sub = object.__new__(Plane)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.ndim == 2:
                value = value[rows, cols]
            elif name in ("x1d", "y1d"):  # a window is a grid plane too, of its own rows and columns
                value = value[cols] if name == "x1d" else value[rows]
            elif name == "harm":
                value = tuple(h[rows, cols] for h in value)
            setattr(sub, name, value)
        return sub


def _diaphragm_z(anat: ChestAnatomy, x, y):
    """Height of the diaphragm surface: two domes, deepest in the posterior recesses."""
    a = anat.body_half_width_mm
    yb = anat.body_centre_y_mm
    yd = yb - 0.12 * anat.body_half_depth_anterior_mm
    dy = y - yd
    qy = dy / np.where(dy > 0, 0.40 * anat.body_half_depth_posterior_mm, 0.62 * anat.body_half_depth_anterior_mm)
    qy2 = qy * qy
    drop = anat.diaphragm_drop_mm
    xr = (x + 0.36 * a) / (0.50 * a)
    xl = (x - 0.36 * a) / (0.50 * a)
    zr = anat.z_dome_right_mm - drop * np.minimum(xr * xr + qy2, 2.0)
    zl = anat.z_dome_left_mm - drop * np.minimum(xl * xl + qy2, 2.0)
    wl = 1.0 / (1.0 + np.exp(-x / 14.0))
    return wl * zl + (1.0 - wl) * zr


class HeightProfile:
    """Quantities that depend only on z (scalars, or arrays broadcasting against a plane)."""

    def __init__(self, anat: ChestAnatomy, z):
        self.z = z
        lung_height = anat.lung_height_mm
        t = (anat.z_apex_mm - z) / lung_height
        self.t = t
        tc = np.clip(t, -0.3, 1.5)
        self.scale = 1.0 + anat.body_taper * (tc - 0.5)
        self.harm = tuple(h0 + h1 * tc for h0, h1 in zip(anat.body_harmonics, anat.body_harmonics_slope))
        scale_xy = anat.scale_xy
        # Pectorals cover the upper two thirds; scapulae the upper half.
        self.pectoral = anat.pectoral_mm * smooth_window(t, -0.15, 0.05, 0.55, 0.85)
        self.scapular = anat.scapular_mm * smooth_window(t, -0.3, -0.1, 0.45, 0.65)
        self.latissimus = anat.latissimus_mm * smooth_window(t, 0.1, 0.35, 1.2, 1.5)
        # Upper ribs are short and drop less between their heads and the sternum.
        self.rib_drop = anat.rib_drop_mm * (0.45 + 0.55 * smoothstep(t, 0.0, 0.5))
        self.axilla = 18.0 * scale_xy * smooth_window(t, -0.3, -0.1, 0.25, 0.45)
        if anat.breast_mm > 0:
            zb = anat.z_carina_mm - 0.28 * lung_height
            self.breast = anat.breast_mm * np.exp(-(((z - zb) / (0.17 * lung_height)) ** 2))
        else:
            self.breast = 0.0
        # The rib cage widens from the thoracic inlet down to the bases.
        u = np.clip((0.65 - t) / 0.75, 0.0, 1.0)
        self.cavity_shrink = 1.0 - 0.3 * u**1.5
        # Lung apex caps: paraboloid domes (radius of curvature ~38 mm) below the apex.
        depth = np.maximum(t * lung_height, 0.0)
        cap = np.sqrt(2.0 * 38.0 * scale_xy * depth)
        self.cap_radius = np.where(t < 0.55, cap, 1e4)
        # Thoracic inlet: near the apices the rib cage hugs both lungs and the
        # structures between them (an ellipse behind the body centre).
        margin = anat.rib_thickness_mm + 8.0
        self.inlet_a = np.where(t < 0.5, anat.apex_offset_x_mm + cap + margin, 1e4)
        self.inlet_b = np.where(t < 0.5, np.maximum(cap + margin, 32.0 * scale_xy), 1e4)
        self.inlet_y = anat.body_centre_y_mm + anat.apex_offset_y_mm
        self.x_mid = 3.0 * scale_xy * np.clip(t, 0.0, 1.0)
        # Junction lines, widening in front into the prevascular fat; a rounded
        # upper mediastinum above the arch.
        y_front0 = anat.body_centre_y_mm - 0.72 * self.scale * anat.body_half_depth_anterior_mm
        self.band_front_y = y_front0
        self.band = anat.mediastinum_lower_mm
        self.env_a = anat.mediastinum_upper_mm * (1.0 - smoothstep(t, 0.24, 0.40)) + 1e-3
        # Spine: vertebral body behind the back's skin, with a gentle kyphosis.
        self.vb_a = anat.vertebra_half_width_mm * (0.85 + 0.3 * np.clip(t, 0.0, 1.2))
        self.vb_b = anat.vertebra_half_depth_mm * (0.85 + 0.3 * np.clip(t, 0.0, 1.2))
        self.y_back = _back_y(anat, self.scale, self.harm)
        # Subcutaneous fat thickens over the upper abdomen.
        self.belly = 1.0 + 0.4 * smoothstep(t, 0.7, 1.4)
        fat_mod_back = float(np.clip(1.0 + anat.fat_harmonics[1] - anat.fat_harmonics[2], 0.35, 2.5))
        fat_back = anat.fat_mm * self.belly * fat_mod_back
        kyph = anat.kyphosis_mm * np.sin(np.pi * np.clip(t, 0.0, 1.0))
        self.y_vb = self.y_back - (anat.skin_mm + fat_back + anat.spine_depth_mm) + kyph - self.vb_b
        y_front = anat.body_centre_y_mm - 0.72 * self.scale * anat.body_half_depth_anterior_mm
        self.env_y = 0.5 * (y_front + self.y_vb)
        self.env_b = 0.5 * (self.y_vb - y_front) + 12.0
        # Vertebral level: T1 top a little above the apex; disc at the bottom of each level.
        z_t1 = anat.z_apex_mm + 0.35 * anat.vertebra_period_mm
        lvl = (z_t1 - z) / anat.vertebra_period_mm
        self.level_frac = lvl - np.floor(lvl)
        self.z_rib0 = z_t1 - 0.4 * anat.vertebra_period_mm


def _back_y(anat: ChestAnatomy, scale, harm):
    """y of the back's skin on the midline."""
    # Harmonics at phi = pi/2: c = 0, s = 1, c2 = -1, s2 = 0, c3 = 0, s3 = -1, c4 = 1, s4 = 0.
    mod = 1.0 + harm[1] - harm[2] - harm[5] + harm[6]
    r = scale * anat.body_half_depth_posterior_mm * mod
    r = np.minimum(r, anat.table_top_y_mm - 1.0 - anat.body_centre_y_mm)
    return anat.body_centre_y_mm + r


def smoothstep(t, a: float, b: float):
    """Smooth 0 -> 1 ramp between a and b."""
    u = np.clip((t - a) / (b - a), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def smooth_window(t, a: float, b: float, c: float, d: float):
    """0 below a, rising to 1 at b, 1 until c, falling to 0 at d."""
    return smoothstep(t, a, b) * (1.0 - smoothstep(t, c, d))


class BodyLayers:
    """Body layers and cavity on a plane at one height (or a broadcast stack of heights)."""

    def __init__(self, anat: ChestAnatomy, pl: Plane, pr: HeightProfile):
        mod = 1.0
        for coef, h in zip(pr.harm, pl.harm):
            mod = mod + coef * h
        breast = pr.breast * pl.breast
        r_body = pr.scale * pl.r0 * mod + breast
        self.r_body = np.minimum(r_body, pl.table_ray)
        self.breast = breast
        self.fat = anat.fat_mm * pr.belly * pl.fat_mod + 0.85 * breast + pr.axilla * pl.axilla
        self.muscle = (
            anat.muscle_mm
            + anat.paraspinal_mm * pl.paraspinal
            + pr.pectoral * pl.pectoral
            + pr.scapular * pl.scapular
            + pr.latissimus * pl.latissimus
        )
        self.rib_zone = anat.rib_thickness_mm + _RIB_ZONE_EXTRA_MM
        self.r_wall = self.r_body - (anat.skin_mm + self.fat + self.muscle + self.rib_zone)
        # The inlet narrows mostly from the front and sides; the apices sit behind.
        shrink = 1.0 - (1.0 - pr.cavity_shrink) * (1.0 - 0.55 * np.clip(pl.s, 0.0, 1.0))
        self.r_cav = self.r_wall * shrink
        if np.any(pr.inlet_a < 1e3):
            self.r_cav = np.minimum(self.r_cav, _ray_to_ellipse(pl, anat.body_centre_y_mm, pr))


def _ellipsoid_q(e: Ellipsoid, x, y, z, margin: float = 0.0):
    """Normalised radius in an ellipsoid (< 1 inside), axes grown by ``margin``."""
    cx, cy, cz, a1, a2, a3 = e[:6]
    u1, u2, u3 = e[6:9], e[9:12], e[12:15]
    dx, dy, dz = x - cx, y - cy, z - cz
    p1 = (dx * u1[0] + dy * u1[1] + dz * u1[2]) / (a1 + margin)
    p2 = (dx * u2[0] + dy * u2[1] + dz * u2[2]) / (a2 + margin)
    p3 = (dx * u3[0] + dy * u3[1] + dz * u3[2]) / (a3 + margin)
    return p1 * p1 + p2 * p2 + p3 * p3


def _ellipsoid_in_z(e: Ellipsoid, z, margin: float = 0.0) -> bool:
    return bool(np.any(np.abs(z - e[2]) < max(e[3:6]) + margin))


def _ray_to_ellipse(pl: Plane, yb: float, pr: HeightProfile):
    """Distance from the body centre along each pixel's polar direction to the inlet ellipse."""
    A2 = pr.inlet_a * pr.inlet_a
    B2 = pr.inlet_b * pr.inlet_b
    d = np.clip(yb - pr.inlet_y, -0.9 * pr.inlet_b, 0.9 * pr.inlet_b)
    c, s = pl.c, pl.s
    qa = c * c / A2 + s * s / B2
    qb = s * d / B2
    qc = d * d / B2 - 1.0
    return (-qb + np.sqrt(np.maximum(qb * qb - qa * qc, 0.0))) / qa


def inside_ellipsoids(pl: Plane, ellipsoids, z, margin: float = 0.0):
    """Mask of points inside any of the ellipsoids (axes grown by ``margin``).

    On grid planes each ellipsoid is evaluated only over its bounding rectangle.
    """
    shape = np.broadcast_shapes(np.shape(pl.x), np.shape(pl.y), np.shape(z))
    inside = np.zeros(shape, bool)
    for e in ellipsoids:
        if not _ellipsoid_in_z(e, z, margin):
            continue
        ext = max(e[3:6]) + margin
        if hasattr(pl, "x1d") and np.ndim(z) == 0:
            rows, cols = grid_window(pl, e[0] - ext, e[0] + ext, e[1] - ext, e[1] + ext)
            sub = pl.window(rows, cols)
            inside[rows, cols] |= _ellipsoid_q(e, sub.x, sub.y, z, margin) < 1.0
        else:
            inside |= _ellipsoid_q(e, pl.x, pl.y, z, margin) < 1.0
    return inside


def heart_z_range(anat: ChestAnatomy, margin: float) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for e in anat.heart:
        cz = e[2]
        ext = max(e[3:6]) + margin
        lo, hi = min(lo, cz - ext), max(hi, cz + ext)
    return lo, hi


def lung_side(anat: ChestAnatomy, pl: Plane, pr: HeightProfile, f: BodyLayers):
    """0 outside the lungs, 1 in the right lung, 2 in the left (before tubes are drawn)."""
    x, y, z = pl.x, pl.y, pr.z
    lung = (pl.r < f.r_cav) & (z > pl.z_diaphragm)
    dxm = x - pr.x_mid
    # Half-width grows from the junction line to about 2.5x towards the sternum.
    front = np.clip(1.0 - (y - pr.band_front_y) / 70.0, 0.0, 1.0)
    lung &= np.abs(dxm) > pr.band * (1.0 + 1.5 * front)
    ea = dxm / pr.env_a
    eb = (y - pr.env_y) / pr.env_b
    lung &= ea * ea + eb * eb > 1.0
    # Apical caps, centred behind and beside the trachea.
    cx = np.abs(dxm) - anat.apex_offset_x_mm
    cy = y - (anat.body_centre_y_mm + anat.apex_offset_y_mm)
    lung &= cx * cx + cy * cy < pr.cap_radius * pr.cap_radius
    # Spine with a thin paravertebral margin.
    qa = x / (pr.vb_a + 3.0)
    qb = (y - pr.y_vb) / (pr.vb_b + 3.0)
    lung &= qa * qa + qb * qb > 1.0
    lo, hi = heart_z_range(anat, anat.pericardial_fat_mm)
    if np.any((z > lo) & (z < hi)):
        lung &= ~inside_ellipsoids(pl, anat.heart, z, anat.pericardial_fat_mm)
    lung &= ~inside_ellipsoids(pl, (anat.fat_pad,), z)
    return np.where(lung, np.where(dxm < 0, 1, 2), 0).astype(np.uint8)


def grid_window(pl: Plane, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
    """Rows and columns of a grid plane covering the rectangle [x0, x1] x [y0, y1]."""
    cols = slice(int(np.searchsorted(pl.x1d, x0)), int(np.searchsorted(pl.x1d, x1)))
    rows = slice(int(np.searchsorted(pl.y1d, y0)), int(np.searchsorted(pl.y1d, y1)))
    return rows, cols


def point_layers(anat: ChestAnatomy, x: float, y: float, z: float) -> BodyLayers:
    """The body layers at one point."""
    pl = Plane(anat, np.asarray(x, float), np.asarray(y, float))
    return BodyLayers(anat, pl, HeightProfile(anat, z))
