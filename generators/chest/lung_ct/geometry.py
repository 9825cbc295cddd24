"""Geometry stage for synthetic lung-cancer chest CT: anatomy and lesion label maps.

The chest is drawn analytically in DICOM patient coordinates (LPS, millimetres):
smooth functions of ``(x, y, z)`` give the body layers (skin, fat, muscle), the
thoracic cavity, the lungs, the diaphragm with the liver dome, the heart, the
spine, ribs, sternum and scapulae; they are evaluated slice by slice.  Tubular
structures (airways, aorta and great vessels, the pulmonary artery and vein
trees) are chains of spheres splatted into the volume.  Everything random is
drawn once by :func:`draw_anatomy` and frozen in :class:`ChestAnatomy`, so one
patient's anatomy is identical at every visit; only the lesions change, each a
fixed irregular shape (:class:`LesionShape`) scaled to the visit's diameter.

Coordinates follow :class:`CTGrid`: column index -> +x (patient left), row
index -> +y (posterior), slice index -> -z (slice 0 is the most superior).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "CTGrid",
    "ChestAnatomy",
    "Label",
    "LesionShape",
    "LesionSite",
    "draw_anatomy",
    "label_volume",
    "lesion_measurement",
    "place_lesions",
]


class Label(enum.IntEnum):
    """Tissue classes of the label volume (stored as uint8)."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    LUNG = 3
    AIRWAY = 4
    VESSEL = 5
    HEART = 6
    MEDIASTINUM = 7
    BONE = 8
    RIB = 9
    STERNUM = 10
    SOFT_TISSUE = 11
    TABLE = 12
    TUMOUR = 100


#: Most lesions one volume can hold (labels TUMOUR .. 255).
MAX_LESIONS = 256 - int(Label.TUMOUR)


@dataclass(frozen=True)
class CTGrid:
    """Voxel grid of an axial CT series.

    Parameters
    ----------
    rows, columns, n_slices : int
        Volume shape is ``(n_slices, rows, columns)``.
    pixel_spacing_mm : float
        In-plane spacing (square pixels).
    slice_spacing_mm : float
        Distance between slice centres, equal to the slice thickness.

    Notes
    -----
    The field of view is centred on ``x = y = 0``; slice 0 lies at
    ``z = z_top_mm = 0`` and slice ``k`` at ``z = -k * slice_spacing_mm``.
    Image Orientation (Patient) is ``[1, 0, 0, 0, 1, 0]`` (PS3.3 C.7.6.2.1.1).
    """

    rows: int
    columns: int
    n_slices: int
    pixel_spacing_mm: float
    slice_spacing_mm: float

    def __post_init__(self) -> None:
        for name in ("rows", "columns", "n_slices"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"CTGrid.{name} must be a positive integer, got {value!r}.")
        for name in ("pixel_spacing_mm", "slice_spacing_mm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"CTGrid.{name} must be a positive number, got {value!r}.")

    @property
    def z_top_mm(self) -> float:
        """z of slice 0 (the most superior slice), in mm."""
        return 0.0

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape ``(n_slices, rows, columns)``."""
        return (self.n_slices, self.rows, self.columns)

    @property
    def fov_mm(self) -> float:
        """Width of the field of view (columns times pixel spacing), in mm."""
        return self.columns * self.pixel_spacing_mm

    def position_mm(self, k, r, c):
        """Patient position (LPS, mm) of a voxel centre.

        Parameters
        ----------
        k, r, c : float or array_like
            Slice, row and column index (fractional allowed).

        Returns
        -------
        tuple
            ``(x, y, z)`` in mm.
        """
        ps = self.pixel_spacing_mm
        x = (np.asarray(c, dtype=float) - (self.columns - 1) / 2.0) * ps
        y = (np.asarray(r, dtype=float) - (self.rows - 1) / 2.0) * ps
        z = self.z_top_mm - np.asarray(k, dtype=float) * self.slice_spacing_mm
        return _maybe_scalar(x), _maybe_scalar(y), _maybe_scalar(z)

    def index_of(self, x, y, z):
        """Fractional voxel index ``(k, r, c)`` of a patient position; inverse of :meth:`position_mm`."""
        ps = self.pixel_spacing_mm
        k = (self.z_top_mm - np.asarray(z, dtype=float)) / self.slice_spacing_mm
        r = np.asarray(y, dtype=float) / ps + (self.rows - 1) / 2.0
        c = np.asarray(x, dtype=float) / ps + (self.columns - 1) / 2.0
        return _maybe_scalar(k), _maybe_scalar(r), _maybe_scalar(c)

    def x_mm(self) -> np.ndarray:
        """x of every column centre."""
        return (np.arange(self.columns) - (self.columns - 1) / 2.0) * self.pixel_spacing_mm

    def y_mm(self) -> np.ndarray:
        """y of every row centre."""
        return (np.arange(self.rows) - (self.rows - 1) / 2.0) * self.pixel_spacing_mm

    def z_mm(self) -> np.ndarray:
        """z of every slice centre."""
        return self.z_top_mm - np.arange(self.n_slices) * self.slice_spacing_mm


def _maybe_scalar(a: np.ndarray):
    return float(a) if a.ndim == 0 else a


Ellipsoid = tuple[float, ...]  # cx, cy, cz, a1, a2, a3, then unit axes u1, u2, u3 (9 numbers)


@dataclass(frozen=True)
class ChestAnatomy:
    """One patient's chest: every number the label map depends on, except lesions.

    All lengths are mm in LPS patient coordinates of the grid the anatomy was
    drawn for.  ``t`` below is the normalised height, 0 at the lung apex and 1
    at the top of the right hemidiaphragm.
    """

    sex: str
    scan_top_mm: float  # z range of the grid the anatomy was drawn for
    scan_bottom_mm: float
    # Body outline: a superellipse, rounder in front and flatter behind, with
    # low-order harmonics that drift with height, cut flat by the table.
    body_centre_y_mm: float
    body_half_width_mm: float
    body_half_depth_anterior_mm: float
    body_half_depth_posterior_mm: float
    body_exponent_anterior: float
    body_exponent_posterior: float
    body_harmonics: tuple[float, ...]  # (c1, s1, c2, s2, c3, s3, c4, s4) at t = 0
    body_harmonics_slope: tuple[float, ...]  # their change per unit t
    body_taper: float  # relative width change from apex to dome
    table_top_y_mm: float
    table_curvature_per_mm: float
    table_half_width_mm: float
    # Chest wall layers.
    skin_mm: float
    fat_mm: float
    fat_harmonics: tuple[float, ...]  # (c1, s1, c2, s2)
    muscle_mm: float
    paraspinal_mm: float
    pectoral_mm: float
    latissimus_mm: float
    scapular_mm: float
    breast_mm: float  # 0 for men
    # Levels.
    z_apex_mm: float
    z_dome_right_mm: float
    z_dome_left_mm: float
    z_sternal_notch_mm: float
    z_arch_mm: float
    z_carina_mm: float
    # Lungs and mediastinum.
    apex_offset_x_mm: float
    apex_offset_y_mm: float
    mediastinum_upper_mm: float
    mediastinum_lower_mm: float
    diaphragm_drop_mm: float
    # Spine and ribs.
    vertebra_period_mm: float
    vertebra_half_width_mm: float
    vertebra_half_depth_mm: float
    spine_depth_mm: float  # back skin to posterior vertebral body, minus fat
    kyphosis_mm: float
    rib_drop_mm: float
    rib_height_mm: float
    rib_thickness_mm: float
    # Heart: ventricles, left atrium, right atrium.
    heart: tuple[Ellipsoid, ...]
    pericardial_fat_mm: float
    fat_pad: Ellipsoid  # cardiophrenic fat in front of and below the heart
    stomach: Ellipsoid
    spleen: Ellipsoid
    trachea_radius_mm: float
    # Seed of the branching airway and vessel trees and mediastinal nodes.
    tree_seed: int

    @property
    def scale_xy(self) -> float:
        """In-plane size relative to a reference adult (half-width 155 mm)."""
        return self.body_half_width_mm / 155.0

    @property
    def lung_height_mm(self) -> float:
        """Apex to top of the right hemidiaphragm."""
        return self.z_apex_mm - self.z_dome_right_mm

    @property
    def scale_z(self) -> float:
        """Craniocaudal size relative to a reference adult (lung height 225 mm)."""
        return self.lung_height_mm / 225.0


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


# ---------------------------------------------------------------------------
# In-plane and per-height fields
# ---------------------------------------------------------------------------

_RIB_ZONE_EXTRA_MM = 2.0  # intercostal muscle around the ribs' own thickness
_DIAPHRAGM_MM = 4.0
_CANAL_RADIUS_MM = 7.5


def _vm(c, s, phi0: float, kappa: float):
    """Von Mises bump in polar angle: 1 at ``phi0``, falling off with ``kappa``."""
    return np.exp(kappa * (c * math.cos(phi0) + s * math.sin(phi0) - 1.0))


class _Plane:
    """Quantities that depend only on (x, y): polar angle about the body centre etc."""

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
        self.harm = (c, s, c2, s2, c3, s3, c4, s4)
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

    def window(self, rows: slice, cols: slice) -> "_Plane":
        """The same plane restricted to a rectangle (grid planes only)."""
        sub = object.__new__(_Plane)
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray) and value.ndim == 2:
                value = value[rows, cols]
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


class _Profile:
    """Quantities that depend only on z (scalars, or arrays broadcasting against a plane)."""

    def __init__(self, anat: ChestAnatomy, z):
        self.z = z
        H = anat.lung_height_mm
        t = (anat.z_apex_mm - z) / H
        self.t = t
        tc = np.clip(t, -0.3, 1.5)
        self.scale = 1.0 + anat.body_taper * (tc - 0.5)
        self.harm = tuple(h0 + h1 * tc for h0, h1 in zip(anat.body_harmonics, anat.body_harmonics_slope))
        sx = anat.scale_xy
        # Pectorals cover the upper two thirds; scapulae the upper half.
        self.pectoral = anat.pectoral_mm * _smooth_window(t, -0.15, 0.05, 0.55, 0.85)
        self.scapular = anat.scapular_mm * _smooth_window(t, -0.3, -0.1, 0.45, 0.65)
        self.latissimus = anat.latissimus_mm * _smooth_window(t, 0.1, 0.35, 1.2, 1.5)
        # Upper ribs are short and drop less between their heads and the sternum.
        self.rib_drop = anat.rib_drop_mm * (0.45 + 0.55 * _smoothstep(t, 0.0, 0.5))
        self.axilla = 18.0 * sx * _smooth_window(t, -0.3, -0.1, 0.25, 0.45)
        if anat.breast_mm > 0:
            zb = anat.z_carina_mm - 0.28 * H
            self.breast = anat.breast_mm * np.exp(-(((z - zb) / (0.17 * H)) ** 2))
        else:
            self.breast = 0.0
        # The rib cage widens from the thoracic inlet down to the bases.
        u = np.clip((0.65 - t) / 0.75, 0.0, 1.0)
        self.cavity_shrink = 1.0 - 0.3 * u**1.5
        # Lung apex caps: paraboloid domes (radius of curvature ~38 mm) below the apex.
        depth = np.maximum(t * H, 0.0)
        cap = np.sqrt(2.0 * 38.0 * sx * depth)
        self.cap_radius = np.where(t < 0.55, cap, 1e4)
        # Thoracic inlet: near the apices the rib cage hugs both lungs and the
        # structures between them (an ellipse behind the body centre).
        margin = anat.rib_thickness_mm + 8.0
        self.inlet_a = np.where(t < 0.5, anat.apex_offset_x_mm + cap + margin, 1e4)
        self.inlet_b = np.where(t < 0.5, np.maximum(cap + margin, 32.0 * sx), 1e4)
        self.inlet_y = anat.body_centre_y_mm + anat.apex_offset_y_mm
        self.x_mid = 3.0 * sx * np.clip(t, 0.0, 1.0)
        # Junction lines, widening in front into the prevascular fat; a rounded
        # upper mediastinum above the arch.
        y_front0 = anat.body_centre_y_mm - 0.72 * self.scale * anat.body_half_depth_anterior_mm
        self.band_front_y = y_front0
        self.band = anat.mediastinum_lower_mm
        self.env_a = anat.mediastinum_upper_mm * (1.0 - _smoothstep(t, 0.24, 0.40)) + 1e-3
        # Spine: vertebral body behind the back's skin, with a gentle kyphosis.
        self.vb_a = anat.vertebra_half_width_mm * (0.85 + 0.3 * np.clip(t, 0.0, 1.2))
        self.vb_b = anat.vertebra_half_depth_mm * (0.85 + 0.3 * np.clip(t, 0.0, 1.2))
        self.y_back = _back_y(anat, self.scale, self.harm)
        # Subcutaneous fat thickens over the upper abdomen.
        self.belly = 1.0 + 0.4 * _smoothstep(t, 0.7, 1.4)
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


def _smoothstep(t, a: float, b: float):
    u = np.clip((t - a) / (b - a), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _smooth_window(t, a: float, b: float, c: float, d: float):
    """0 below a, rising to 1 at b, 1 until c, falling to 0 at d."""
    return _smoothstep(t, a, b) * (1.0 - _smoothstep(t, c, d))


class _Fields:
    """Body layers and cavity on a plane at one height (or a broadcast stack of heights)."""

    def __init__(self, anat: ChestAnatomy, pl: _Plane, pr: _Profile):
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


def _ray_to_ellipse(pl: _Plane, yb: float, pr: _Profile):
    """Distance from the body centre along each pixel's polar direction to the inlet ellipse."""
    A2 = pr.inlet_a * pr.inlet_a
    B2 = pr.inlet_b * pr.inlet_b
    d = np.clip(yb - pr.inlet_y, -0.9 * pr.inlet_b, 0.9 * pr.inlet_b)
    c, s = pl.c, pl.s
    qa = c * c / A2 + s * s / B2
    qb = s * d / B2
    qc = d * d / B2 - 1.0
    return (-qb + np.sqrt(np.maximum(qb * qb - qa * qc, 0.0))) / qa


def _inside_ellipsoids(pl: _Plane, ellipsoids, z, margin: float = 0.0):
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
            rows, cols = _window(pl, e[0] - ext, e[0] + ext, e[1] - ext, e[1] + ext)
            sub = pl.window(rows, cols)
            inside[rows, cols] |= _ellipsoid_q(e, sub.x, sub.y, z, margin) < 1.0
        else:
            inside |= _ellipsoid_q(e, pl.x, pl.y, z, margin) < 1.0
    return inside


def _heart_z_range(anat: ChestAnatomy, margin: float) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for e in anat.heart:
        cz = e[2]
        ext = max(e[3:6]) + margin
        lo, hi = min(lo, cz - ext), max(hi, cz + ext)
    return lo, hi


def _lung_side(anat: ChestAnatomy, pl: _Plane, pr: _Profile, f: _Fields):
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
    lo, hi = _heart_z_range(anat, anat.pericardial_fat_mm)
    if np.any((z > lo) & (z < hi)):
        lung &= ~_inside_ellipsoids(pl, anat.heart, z, anat.pericardial_fat_mm)
    lung &= ~_inside_ellipsoids(pl, (anat.fat_pad,), z)
    return np.where(lung, np.where(dxm < 0, 1, 2), 0).astype(np.uint8)


# ---------------------------------------------------------------------------
# One axial slice
# ---------------------------------------------------------------------------


def _table_mask(anat: ChestAnatomy, x, y):
    """The couch: a curved top board, an air gap, and a lower board (z independent)."""
    # The board curves up at the sides (smaller y), like a cradle.
    top = anat.table_top_y_mm - anat.table_curvature_per_mm * x * x
    d = y - top
    inside_w = np.abs(x) < anat.table_half_width_mm
    board = (d >= 0) & (d < 9.0)
    lower = (d >= 21.0) & (d < 31.0) & (np.abs(x) < 0.8 * anat.table_half_width_mm)
    rails = (d >= 9.0) & (d < 21.0) & (np.abs(np.abs(x) - 0.55 * anat.table_half_width_mm) < 6.0)
    return inside_w & (board | lower | rails)


def _slice_labels(anat: ChestAnatomy, pl: _Plane, z: float, table: np.ndarray) -> np.ndarray:
    """Label one axial slice (anatomy only, no tubes and no lesions)."""
    pr = _Profile(anat, np.float32(z))
    f = _Fields(anat, pl, pr)
    x, y, r = pl.x, pl.y, pl.r
    lab = np.zeros(x.shape if x.ndim == 2 else np.broadcast_shapes(x.shape, y.shape), np.uint8)
    lab[table] = Label.TABLE
    d = f.r_body - r
    skin = anat.skin_mm
    lab[d > 0] = Label.SOFT_TISSUE
    lab[d > skin] = Label.FAT
    if anat.breast_mm > 0:
        gland = (f.breast > 10.0) & (d > skin + 0.25 * f.breast) & (d < skin + 0.8 * f.breast)
        lab[gland] = Label.SOFT_TISSUE
    lab[d > skin + f.fat] = Label.MUSCLE
    # Where the rib cage narrows towards the inlet: axillary and supraclavicular fat,
    # with intercostal muscle around the ribs.
    lab[r < f.r_cav + f.rib_zone] = Label.MUSCLE
    t = float(pr.t)
    if t < 0.45:
        # Axillae: fat pockets between the chest wall muscles, high up on each side.
        sx = anat.scale_xy
        w = _smooth_window(t, -0.4, -0.15, 0.2, 0.45)
        qa = (np.abs(x) - 0.72 * anat.body_half_width_mm) / (34.0 * sx * w + 1e-3)
        qb = (y - anat.body_centre_y_mm + 0.05 * anat.body_half_depth_anterior_mm) / (48.0 * sx * w + 1e-3)
        lab[(qa * qa + qb * qb < 1.0) & (lab == Label.MUSCLE)] = Label.FAT
    cav = r < f.r_cav
    lab[cav] = Label.FAT
    # Below the diaphragm: liver on the right, stomach and spleen on the left.
    zd = pl.z_diaphragm
    lab[cav & (z < zd)] = Label.MUSCLE
    abdomen = cav & (z < zd - _DIAPHRAGM_MM)
    if abdomen.any():
        _draw_abdomen(anat, pl, z, abdomen, lab)
    side = _lung_side(anat, pl, pr, f)
    lab[side > 0] = Label.LUNG
    lo, hi = _heart_z_range(anat, 0.0)
    if lo < z < hi:
        heart = _inside_ellipsoids(pl, anat.heart, z) & cav & (z > zd)
        lab[heart] = Label.HEART
    sx = anat.scale_xy
    y_vb = float(pr.y_vb)
    rows, cols = _window(pl, -70.0 * sx, 70.0 * sx, y_vb - 40.0 * sx, y_vb + 90.0 * sx)
    _draw_spine(anat, pl.window(rows, cols), pr, lab[rows, cols])
    _draw_ribs(anat, pl, pr, f, lab)
    yb = anat.body_centre_y_mm
    rows, cols = _window(pl, -45.0 * sx, 45.0 * sx, yb - 1.3 * anat.body_half_depth_anterior_mm, yb)
    _draw_sternum(anat, pl.window(rows, cols), pr, f.r_wall[rows, cols], lab[rows, cols])
    _draw_scapulae(anat, pl, pr, f, lab)
    return lab


def _draw_abdomen(anat: ChestAnatomy, pl: _Plane, z: float, abdomen: np.ndarray, lab: np.ndarray) -> None:
    """Upper abdomen under the diaphragm: liver on the right reaching across the
    front, stomach and spleen on the left, fat between them."""
    sx = anat.scale_xy
    x, y = pl.x, pl.y
    liver = x < 8.0 * sx + 0.55 * (anat.body_centre_y_mm - y)
    organ = liver | _inside_ellipsoids(pl, (anat.stomach, anat.spleen), z)
    lab[abdomen] = Label.FAT
    lab[abdomen & organ] = Label.SOFT_TISSUE


def _window(pl: _Plane, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
    """Rows and columns of a grid plane covering the rectangle [x0, x1] x [y0, y1]."""
    cols = slice(int(np.searchsorted(pl.x1d, x0)), int(np.searchsorted(pl.x1d, x1)))
    rows = slice(int(np.searchsorted(pl.y1d, y0)), int(np.searchsorted(pl.y1d, y1)))
    return rows, cols


def _draw_spine(anat: ChestAnatomy, pl: _Plane, pr: _Profile, lab: np.ndarray) -> None:
    sx = anat.scale_xy
    x, y = pl.x, pl.y
    frac = float(pr.level_frac)
    disc = frac > 0.82
    qa = x / pr.vb_a
    dyb = y - pr.y_vb
    qb = dyb / pr.vb_b
    body = (qa * qa + qb * qb <= 1.0) & (dyb < 0.85 * pr.vb_b)
    lab[body] = Label.SOFT_TISSUE if disc else Label.BONE
    rc = _CANAL_RADIUS_MM * (0.9 + 0.2 * sx)
    yc = pr.y_vb + 0.85 * pr.vb_b + rc
    dyc = y - yc
    rho2 = x * x + dyc * dyc
    arch_w = 4.5 * sx + 1.0
    ring = (rho2 > rc * rc) & (rho2 <= (rc + arch_w) ** 2)
    if frac > 0.5:
        # Neural foramina: no pedicles in the lower half of the level.
        ring &= ~((np.abs(x) > 0.55 * rc) & (dyc < 0.35 * rc))
    bone = ring
    if 0.1 < frac < 0.9:
        length = (26.0 + 10.0 * frac) * sx
        bone = bone | ((np.abs(x) < 3.5 * sx) & (dyc > rc) & (dyc < rc + length))
    if frac < 0.5:
        for sign in (-1.0, 1.0):
            ux, uy = sign * 0.82, 0.57  # lateral and a little backwards
            px = x - sign * 0.7 * rc
            along = px * ux + dyc * uy
            perp = -px * uy + dyc * ux
            bone = bone | ((along > 0) & (along < 22.0 * sx) & (np.abs(perp) < 4.5 * sx))
    lab[bone & (lab != Label.AIR) & (lab != Label.TABLE)] = Label.BONE
    lab[rho2 <= rc * rc] = Label.SOFT_TISSUE


def _draw_ribs(anat: ChestAnatomy, pl: _Plane, pr: _Profile, f: _Fields, lab: np.ndarray) -> None:
    # g: 0 on the posterior midline, 1 on the anterior midline.
    g = 0.5 * (1.0 - pl.s)
    P = anat.vertebra_period_mm
    u = (pr.z_rib0 - pr.rib_drop * g**1.2 - pr.z) / P
    n = np.rint(u)
    dz = (u - n) * P
    # Ribs 1-7 reach the costal cartilages near the sternum, lower ones end sooner.
    g_end = np.select([n < 7, n < 10, n < 11], [0.9, 0.78, 0.55], 0.42)
    valid = (n >= 0) & (n <= 11) & (g < g_end) & (g > 0.045)
    r_mid = f.r_cav + 0.5 * f.rib_zone
    qa = (pl.r - r_mid) / (0.5 * anat.rib_thickness_mm)
    qb = dz / (0.5 * anat.rib_height_mm)
    rib = valid & (qa * qa + qb * qb <= 1.0)
    lab[rib & ((lab == Label.MUSCLE) | (lab == Label.FAT))] = Label.RIB


def _draw_sternum(anat: ChestAnatomy, pl: _Plane, pr: _Profile, r_wall: np.ndarray, lab: np.ndarray) -> None:
    H = anat.lung_height_mm
    z_top = anat.z_sternal_notch_mm
    z_bot = anat.z_dome_right_mm - 0.04 * H
    z = float(pr.z)
    if not (z_bot < z < z_top):
        return
    sx = anat.scale_xy
    h = (z_top - z) / (z_top - z_bot)
    # Manubrium wide at the top, body narrower, xiphoid tapering.
    width = sx * (np.interp(h, [0.0, 0.15, 0.3, 0.75, 0.9, 1.0], [52.0, 44.0, 30.0, 34.0, 18.0, 10.0]))
    thick = sx * (np.interp(h, [0.0, 0.3, 0.8, 1.0], [14.0, 11.0, 10.0, 6.0]))
    r_in = r_wall  # the sternum's back faces the (unshrunken) cavity wall
    qa = (pl.r - r_in - 0.5 * thick) / (0.5 * thick)
    qb = pl.x / (0.5 * width)
    st = (qa * qa + qb**4 <= 1.0) & (pl.s < -0.5)
    lab[st & (lab != Label.AIR)] = Label.STERNUM


def _draw_scapulae(anat: ChestAnatomy, pl: _Plane, pr: _Profile, f: _Fields, lab: np.ndarray) -> None:
    t = float(pr.t)
    t0, t1 = -0.12, 0.55
    if not (t0 < t < t1) or anat.scapular_mm <= 0:
        return
    h = (t - t0) / (t1 - t0)
    th_med = 0.50 + 0.30 * h * h
    th_lat = 1.40 - 0.58 * h**1.5
    if th_lat <= th_med:
        return
    s = pl.s
    inside = (s <= math.cos(th_med)) & (s >= math.cos(th_lat))
    sx = anat.scale_xy
    # Thin blade, thicker along the lateral border.
    lateral = np.clip((math.cos(th_med) - s) / (math.cos(th_med) - math.cos(th_lat)), 0, 1)
    thick = 3.5 * sx + 1.0 + 5.0 * sx * lateral**6
    r_mid = f.r_cav + f.rib_zone + 9.0 * sx + 0.5 * thick
    blade = inside & (np.abs(pl.r - r_mid) <= 0.5 * thick)
    lab[blade & (lab == Label.MUSCLE)] = Label.RIB


# ---------------------------------------------------------------------------
# Tubes: centrelines with radii, splatted as chains of spheres
# ---------------------------------------------------------------------------


@dataclass
class _TubeSet:
    """Straight segments ``p0 -> p1`` with radii ``r0 -> r1``, drawn with one label."""

    p0: np.ndarray
    p1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    value: int
    allowed: tuple[int, ...]


def _catmull_rom(ctrl: np.ndarray, radii: np.ndarray, step: float = 1.0):
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
        seg = 0.5 * (
            2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t3
        )
        out_p.append(seg)
        out_r.append(radii[i] + (radii[i + 1] - radii[i]) * t[:, 0])
    return np.vstack(out_p), np.concatenate(out_r)


def _resample(p: np.ndarray, r: np.ndarray, extra: float):
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


def _polyline_tubes(curves, value: int, allowed, extra_radius: float = 0.0) -> _TubeSet:
    p0, p1, r0, r1 = [], [], [], []
    for ctrl, radii in curves:
        p, r = _resample(*_catmull_rom(np.asarray(ctrl), np.asarray(radii)), extra_radius)
        p0.append(p[:-1])
        p1.append(p[1:])
        r0.append(r[:-1] + extra_radius)
        r1.append(r[1:] + extra_radius)
    return _TubeSet(
        np.vstack(p0), np.vstack(p1), np.concatenate(r0), np.concatenate(r1), int(value), tuple(allowed)
    )


def _sample_tubes(ts: _TubeSet, grid: CTGrid):
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


def _splat(labels: np.ndarray, grid: CTGrid, pts: np.ndarray, rad: np.ndarray, value: int, allowed) -> None:
    """Set ``value`` in every allowed voxel within ``rad`` of a point (slab-widened in z)."""
    if len(pts) == 0:
        return
    ps, ss = grid.pixel_spacing_mm, grid.slice_spacing_mm
    K, R, C = labels.shape
    k, r, c = grid.index_of(pts[:, 0], pts[:, 1], pts[:, 2])
    k, r, c = np.atleast_1d(k), np.atleast_1d(r), np.atleast_1d(c)
    # A thin vessel lying between two slice centres still shows in the slice whose slab it crosses.
    rz = np.sqrt(rad * rad + (0.5 * ss) ** 2) / ss
    rp = rad / ps
    keep = (k > -rz - 1) & (k < K + rz) & (r > -rp - 1) & (r < R + rp)
    keep &= (c > -rp - 1) & (c < C + rp) & (rad > 0)
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
        ok, orr, oc = np.meshgrid(
            np.arange(-w, w + 1), np.arange(-h, h + 1), np.arange(-h, h + 1), indexing="ij"
        )
        ok, orr, oc = ok.ravel(), orr.ravel(), oc.ravel()
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
            inside &= (ck >= 0) & (ck < K) & (cr >= 0) & (cr < R) & (cc >= 0) & (cc < C)
            fi = ((ck * R + cr) * C + cc)[inside]
            fi = fi[lut[flat[fi]]]
            flat[fi] = value


# ---------------------------------------------------------------------------
# Anatomy drawing
# ---------------------------------------------------------------------------


def _check_sex(sex: str) -> str:
    if sex not in ("M", "F", "O"):
        raise ValueError(f"sex must be 'M', 'F' or 'O' (DICOM Patient's Sex), got {sex!r}.")
    return sex


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _ellipsoid(centre, axes, u1) -> Ellipsoid:
    u1 = _unit(u1)
    ez = np.array([0.0, 0.0, 1.0])
    u2 = np.cross(ez, u1)
    if np.linalg.norm(u2) < 1e-6:
        u2 = np.array([1.0, 0.0, 0.0])
    u2 = _unit(u2)
    u3 = np.cross(u1, u2)
    return tuple(float(v) for v in (*centre, *axes, *u1, *u2, *u3))


def draw_anatomy(rng: np.random.Generator, grid: CTGrid, sex: str) -> ChestAnatomy:
    """Draw one patient's chest anatomy to fit a CT grid.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice.
    grid : CTGrid
        The series grid: the body fills its field of view; the lung apices lie
        near the top slices and the diaphragm domes near the bottom slices
        (a grid shorter than a chest shows the middle of the chest).
    sex : str
        DICOM Patient's Sex: ``"M"``, ``"F"`` (adds breasts) or ``"O"``.

    Returns
    -------
    ChestAnatomy

    Raises
    ------
    ValueError
        If ``sex`` is not one of the DICOM values.
    """
    sex = _check_sex(sex)
    female = sex == "F"
    male = sex == "M"
    ps = grid.pixel_spacing_mm
    fov_x = grid.columns * ps
    fov_y = grid.rows * ps
    u = rng.uniform

    # In-plane size: fit the field of view, keep room for the table below.
    a = float(np.clip(rng.normal(153.0 if male else 140.0 if female else 146.0, 9.0), 118.0, 178.0))
    a = min(a, 0.44 * fov_x)
    b_ant = a * u(0.64, 0.75)
    b_post = a * u(0.60, 0.68)
    table_space = 34.0
    y_lo = -fov_y / 2 + 6.0
    y_hi = fov_y / 2 - table_space - 4.0
    if b_ant + b_post > 0.92 * (y_hi - y_lo):
        k = 0.92 * (y_hi - y_lo) / (b_ant + b_post)
        b_ant, b_post = b_ant * k, b_post * k
    slack = (y_hi - y_lo) - (b_ant + b_post)
    yb = y_lo + b_ant + slack * u(0.55, 0.8)
    squash = u(0.03, 0.07)
    taper = u(0.0, 0.1)
    table_top = yb + b_post * (1.0 - squash - 0.5 * taper - 0.03)
    sx = a / 155.0

    harm = tuple(float(v) for v in rng.normal(0.0, [0.012, 0.015, 0.02, 0.012, 0.008, 0.008, 0.01, 0.006]))
    harm_slope = tuple(float(v) for v in rng.normal(0.0, [0.01, 0.012, 0.015, 0.01, 0.006, 0.006, 0.006, 0.004]))
    fat = float(np.clip(rng.lognormal(np.log(13.0 if female else 10.0), 0.4), 3.0, 38.0)) * sx
    fat_h = (float(u(-0.1, 0.1)), float(u(0.05, 0.3)), float(u(0.0, 0.25)), float(u(-0.08, 0.08)))

    # Heights: centre the chest on the grid when the grid is shorter than a chest.
    extent = grid.n_slices * grid.slice_spacing_mm
    H = float(np.clip(extent - 100.0 + rng.normal(0.0, 8.0), 190.0, 255.0)) * (0.95 if female else 1.0)
    z_mid = -(grid.n_slices - 1) * grid.slice_spacing_mm / 2.0
    z_apex = z_mid + (H + 100.0) / 2.0 - 22.0
    z_dome_r = z_apex - H
    sz = H / 225.0
    z_dome_l = z_dome_r - u(8.0, 24.0) * sz
    z_car = z_apex - H * u(0.33, 0.37)

    anat = ChestAnatomy(
        sex=sex,
        scan_top_mm=grid.z_top_mm,
        scan_bottom_mm=grid.z_top_mm - (grid.n_slices - 1) * grid.slice_spacing_mm,
        body_centre_y_mm=float(yb),
        body_half_width_mm=float(a),
        body_half_depth_anterior_mm=float(b_ant),
        body_half_depth_posterior_mm=float(b_post),
        body_exponent_anterior=float(u(2.0, 2.5)),
        body_exponent_posterior=float(u(2.8, 3.8)),
        body_harmonics=harm,
        body_harmonics_slope=harm_slope,
        body_taper=float(taper),
        table_top_y_mm=float(table_top),
        table_curvature_per_mm=float(u(0.0003, 0.0006)),
        table_half_width_mm=float(min(0.49 * fov_x, 230.0)),
        skin_mm=float(u(1.5, 2.5)),
        fat_mm=float(fat),
        fat_harmonics=fat_h,
        muscle_mm=float(u(1.5, 3.0) * sx),
        paraspinal_mm=float(u(34.0, 44.0) * sx),
        pectoral_mm=float(u(12.0, 20.0) * sx * (1.3 if male else 0.75)),
        latissimus_mm=float(u(7.0, 12.0) * sx * (1.2 if male else 0.85)),
        scapular_mm=float(u(20.0, 28.0) * sx),
        breast_mm=float(u(18.0, 55.0)) if female else 0.0,
        z_apex_mm=float(z_apex),
        z_dome_right_mm=float(z_dome_r),
        z_dome_left_mm=float(z_dome_l),
        z_sternal_notch_mm=float(z_apex - H * u(0.11, 0.15)),
        z_arch_mm=float(z_apex - H * u(0.24, 0.28)),
        z_carina_mm=float(z_car),
        apex_offset_x_mm=float(u(38.0, 48.0) * sx),
        apex_offset_y_mm=float(u(0.15, 0.3) * b_post),
        mediastinum_upper_mm=float(u(14.0, 20.0) * sx),
        mediastinum_lower_mm=float(u(3.0, 5.0) * sx),
        diaphragm_drop_mm=float(u(48.0, 62.0) * sz),
        vertebra_period_mm=float((H + 85.0) / 12.0),
        vertebra_half_width_mm=float(u(16.0, 19.0) * sx),
        vertebra_half_depth_mm=float(u(13.0, 15.5) * sx),
        spine_depth_mm=float(u(40.0, 48.0) * sx),
        kyphosis_mm=float(u(0.0, 8.0)),
        rib_drop_mm=float(u(3.0, 3.6) * (H + 85.0) / 12.0),
        rib_height_mm=float(u(9.0, 12.0) * sz),
        rib_thickness_mm=float(u(5.5, 7.5) * sx),
        heart=(),
        pericardial_fat_mm=float(u(2.5, 5.0)),
        fat_pad=(),
        stomach=_ellipsoid(
            (0.42 * a, yb - 0.25 * b_ant, z_dome_l - u(35.0, 50.0) * sz),
            (u(45.0, 60.0) * sx, u(35.0, 45.0) * sx, u(35.0, 45.0) * sx),
            (1.0, -0.6, -0.3),
        ),
        spleen=_ellipsoid(
            (0.6 * a, yb + 0.35 * b_post, z_dome_l - u(40.0, 55.0) * sz),
            (u(45.0, 55.0) * sx, u(18.0, 24.0) * sx, u(28.0, 34.0) * sx),
            (0.5, 1.0, -0.6),
        ),
        trachea_radius_mm=float(u(7.5, 9.5) if male else u(6.5, 8.0)),
        tree_seed=int(rng.integers(0, 2**62)),
    )
    # The heart sits on the diaphragm behind the sternum, apex to the front left.
    f = _point_fields(anat, 0.0, yb - 1.0, z_dome_r + 0.2 * H)
    y_cav_ant = yb - float(f.r_cav)
    hs = sx * (0.95 if female else 1.0) * u(0.92, 1.08)
    # Left ventricle round in section, right ventricle a flattened shell in front of it.
    hc = np.array([u(24.0, 34.0) * sx, y_cav_ant + u(52.0, 60.0) * hs, z_dome_r + u(0.08, 0.12) * H])
    axis = _unit((u(0.55, 0.7), -u(0.45, 0.6), -u(0.3, 0.45)))
    lv = _ellipsoid(hc, (u(60.0, 68.0) * hs, u(34.0, 38.0) * hs, u(34.0, 38.0) * hs), axis)
    across = _unit(np.cross((0.0, 0.0, 1.0), axis))
    rv_c = hc - 28.0 * hs * across + np.array([0.0, 0.0, 6.0 * sz])
    rv = _ellipsoid(rv_c, (u(55.0, 62.0) * hs, u(23.0, 27.0) * hs, u(36.0, 40.0) * hs), axis)
    z_la = z_car - 0.2 * H
    pr_la = _Profile(anat, z_la)
    y_la = float(pr_la.y_vb - pr_la.vb_b) - 21.0 * sx
    la = _ellipsoid((2.0 * sx, y_la, z_la), (30.0 * hs, 20.0 * hs, 17.0 * hs), (1.0, 0.0, 0.0))
    ra = _ellipsoid(
        (rv_c[0] - 38.0 * hs, rv_c[1] + 20.0 * hs, hc[2] + 14.0 * sz),
        (38.0 * hs, 26.0 * hs, 27.0 * hs),
        (0.0, 0.2, 1.0),
    )
    pad = _ellipsoid(
        (hc[0] - 8.0 * sx, y_cav_ant + u(8.0, 14.0) * sx, z_dome_r + 0.03 * H),
        (u(40.0, 55.0) * sx, u(18.0, 26.0) * sx, u(16.0, 24.0) * sz), (1.0, 0.0, 0.0),
    )
    return dataclasses.replace(anat, heart=(lv, la, ra, rv), fat_pad=pad)


def _point_fields(anat: ChestAnatomy, x: float, y: float, z: float) -> _Fields:
    pl = _Plane(anat, np.asarray(x, float), np.asarray(y, float))
    return _Fields(anat, pl, _Profile(anat, z))


# ---------------------------------------------------------------------------
# Airway and vessel network
# ---------------------------------------------------------------------------


class _Domain:
    """Coarse 4 mm map of the lungs (before tubes) with distance to the pleura."""

    spacing = 4.0

    def __init__(self, anat: ChestAnatomy):
        s = self.spacing
        a = anat.body_half_width_mm
        yb = anat.body_centre_y_mm
        self.x0 = -a - 8.0
        self.y0 = yb - anat.body_half_depth_anterior_mm - 8.0
        self.z0 = anat.z_apex_mm + 8.0  # top; z decreases with index
        nx = int((2 * a + 16.0) / s) + 1
        ny = int((anat.body_half_depth_anterior_mm + anat.body_half_depth_posterior_mm + 16.0) / s) + 1
        nz = int((anat.z_apex_mm - anat.z_dome_left_mm + 130.0) / s) + 1
        x = self.x0 + s * np.arange(nx)
        y = self.y0 + s * np.arange(ny)
        pl = _Plane(anat, x[None, :], y[:, None])
        side = np.zeros((nz, ny, nx), np.uint8)
        for i in range(nz):
            z = self.z0 - s * i
            pr = _Profile(anat, z)
            side[i] = _lung_side(anat, pl, pr, _Fields(anat, pl, pr))
        self.side = side
        dist = np.zeros(side.shape, np.float32)
        for v in (1, 2):
            m = side == v
            dist = np.maximum(dist, ndimage.distance_transform_edt(m, sampling=s).astype(np.float32))
        self.dist = dist
        gz, gy, gx = np.gradient(dist, s)
        # Index axis 0 runs towards -z.
        self.grad = np.stack([gx, gy, -gz], axis=-1).astype(np.float32)

    def index(self, p: np.ndarray):
        s = self.spacing
        i = np.rint((self.z0 - p[:, 2]) / s).astype(np.int64)
        j = np.rint((p[:, 1] - self.y0) / s).astype(np.int64)
        k = np.rint((p[:, 0] - self.x0) / s).astype(np.int64)
        nz, ny, nx = self.side.shape
        inb = (i >= 0) & (i < nz) & (j >= 0) & (j < ny) & (k >= 0) & (k < nx)
        return np.where(inb, i, 0), np.where(inb, j, 0), np.where(inb, k, 0), inb

    def lookup(self, p: np.ndarray):
        i, j, k, inb = self.index(p)
        side = np.where(inb, self.side[i, j, k], 0)
        dist = np.where(inb, self.dist[i, j, k], 0.0)
        grad = np.where(inb[:, None], self.grad[i, j, k], 0.0)
        return side, dist, grad


def _perpendicular(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=d.shape)
    v -= (v * d).sum(-1, keepdims=True) * d
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _rotate_about(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues rotation of vectors ``v`` about unit ``axis`` (row-wise)."""
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return v * ca + np.cross(axis, v) * sa + axis * (axis * v).sum(-1, keepdims=True) * (1 - ca)


def _grow_tree(
    rng: np.random.Generator,
    dom: _Domain,
    roots: list[tuple[np.ndarray, np.ndarray, float, int]],
    r_min: float,
    length_ratio: tuple[float, float],
    taper: float = 0.9,
    max_segments: int = 60000,
):
    """Grow bifurcating trees from roots ``(start, direction, radius, side)``.

    Branch radii follow Murray's law (r^3 = r1^3 + r2^3) with random asymmetry,
    branching angles follow from the radii, and branches bend away from the
    pleura; a branch that would leave its lung is shortened or stops.
    """
    pos = np.array([r[0] for r in roots], float)
    dirs = np.array([_unit(r[1]) for r in roots], float)
    rad = np.array([r[2] for r in roots], float)
    side = np.array([r[3] for r in roots], np.uint8)
    origin = pos.copy()
    plane = _perpendicular(dirs, rng)
    segs = []
    count = 0
    while len(pos) and count < max_segments:
        n = len(pos)
        length = np.clip(rad * rng.uniform(*length_ratio, n), 2.5, 32.0)
        end = pos + dirs * length[:, None]
        s_end, d_end, _ = dom.lookup(end)
        ok = (s_end == side) & (d_end >= 1.5 + rad)
        for shrink, bend in ((0.6, 0.0), (0.6, 1.2), (0.35, 2.5)):
            retry = ~ok
            if not retry.any():
                break
            d_try = dirs[retry]
            if bend:
                # Turn away from the pleura before giving up.
                _, _, g = dom.lookup(pos[retry])
                g = g / np.maximum(np.linalg.norm(g, axis=-1, keepdims=True), 1e-6)
                d_try = d_try + bend * g
                d_try /= np.maximum(np.linalg.norm(d_try, axis=-1, keepdims=True), 1e-9)
            e2 = pos[retry] + d_try * (length[retry] * shrink)[:, None]
            s2, d2, _ = dom.lookup(e2)
            good = (s2 == side[retry]) & (d2 >= 1.0 + rad[retry])
            idx = np.nonzero(retry)[0][good]
            end[idx] = e2[good]
            dirs[idx] = d_try[good]
            ok[idx] = True
        if not ok.any():
            break
        pos, end, dirs, rad, side, origin, plane = (a[ok] for a in (pos, end, dirs, rad, side, origin, plane))
        n = len(pos)
        r_end = rad * taper
        segs.append((pos, end, rad, r_end))
        count += n
        # Children: Murray's law with an asymmetric split.
        # Mostly monopodial: a parent continuing almost straight with a thinner side branch.
        k = 0.35 + 0.6 * rng.uniform(0.0, 1.0, n) ** 1.5
        r1 = r_end / (1.0 + k**3) ** (1.0 / 3.0)
        r2 = k * r1
        R2, a2, b2 = r_end**2, r1**2, r2**2
        th1 = np.arccos(np.clip((R2 * R2 + a2 * a2 - b2 * b2) / (2 * R2 * a2), -1, 1))
        th2 = np.arccos(np.clip((R2 * R2 + b2 * b2 - a2 * a2) / (2 * R2 * b2), -1, 1))
        th1 = np.clip(th1 * rng.uniform(0.8, 1.2, n), 0.12, 1.2)
        th2 = np.clip(th2 * rng.uniform(0.8, 1.2, n), 0.3, 1.35)
        # Successive branching planes turn by about 90 degrees.
        plane = _rotate_about(plane, dirs, np.full(n, np.pi / 2) + rng.normal(0.0, 0.35, n))
        plane -= (plane * dirs).sum(-1, keepdims=True) * dirs
        plane /= np.maximum(np.linalg.norm(plane, axis=-1, keepdims=True), 1e-9)
        c1 = dirs * np.cos(th1)[:, None] + plane * np.sin(th1)[:, None]
        c2 = dirs * np.cos(th2)[:, None] - plane * np.sin(th2)[:, None]
        _, dist, grad = dom.lookup(end)
        gnorm = grad / np.maximum(np.linalg.norm(grad, axis=-1, keepdims=True), 1e-6)
        push = (0.9 * np.clip(1.0 - dist / 14.0, 0.0, 1.0))[:, None] * gnorm
        out = end - origin
        out /= np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-6)
        kids_dir = np.vstack([c1, c2]) + np.vstack([push, push]) + 0.25 * np.vstack([out, out])
        kids_dir /= np.maximum(np.linalg.norm(kids_dir, axis=-1, keepdims=True), 1e-9)
        kids_r = np.concatenate([r1, r2])
        alive = kids_r >= r_min
        pos = np.vstack([end, end])[alive]
        dirs = kids_dir[alive]
        rad = kids_r[alive]
        side = np.concatenate([side, side])[alive]
        origin = np.vstack([origin, origin])[alive]
        plane = np.vstack([plane, plane])[alive]
        plane -= (plane * dirs).sum(-1, keepdims=True) * dirs
        plane /= np.maximum(np.linalg.norm(plane, axis=-1, keepdims=True), 1e-9)
    if not segs:
        z3 = np.zeros((0, 3))
        return z3, z3, np.zeros(0), np.zeros(0)
    return tuple(np.concatenate([s[i] for s in segs]) for i in range(4))


def _snap_into_lung(dom: _Domain, p, direction, side: int, radius: float):
    """Walk from a hilar point along ``direction`` until well inside the lung."""
    p = np.asarray(p, float)
    d = _unit(direction)
    for i in range(40):
        q = p + d * (2.0 * i)
        s, dist, _ = dom.lookup(q[None])
        if s[0] == side and dist[0] >= 1.5 + radius:
            return q
    return None


@dataclass
class _Network:
    margins: list[_TubeSet]
    groups: list[_TubeSet]
    hila: np.ndarray  # (n, 3) hilar points, for keeping lesions away


_MED_ALLOWED = (Label.FAT, Label.LUNG, Label.MUSCLE, Label.MEDIASTINUM, Label.SOFT_TISSUE)


@functools.lru_cache(maxsize=8)
def _network(anat: ChestAnatomy) -> _Network:
    """Airways, great vessels and pulmonary trees of one anatomy (deterministic)."""
    rng = np.random.default_rng(anat.tree_seed)
    sx, sz, H = anat.scale_xy, anat.scale_z, anat.lung_height_mm
    zc = anat.z_carina_mm
    za = anat.z_arch_mm
    z_hi = max(anat.scan_top_mm, anat.z_apex_mm) + 40.0
    z_lo = min(anat.scan_bottom_mm, anat.z_dome_left_mm - 120.0) - 40.0

    def spine_at(z):
        pr = _Profile(anat, z)
        return float(pr.y_vb), float(pr.vb_a), float(pr.vb_b)

    yv, va, vb = spine_at(zc)
    rt = anat.trachea_radius_mm
    y_car = yv - vb - 2 * 7.0 * sx - rt - 4.0
    hc = anat.heart[0]
    la = anat.heart[1]

    def J(scale=2.0):
        return rng.normal(0.0, scale, 3)

    # --- great vessels (VESSEL) -------------------------------------------
    desc = []
    for z in np.linspace(za - 18.0 * sz, z_lo, 8):
        y_s, a_s, b_s = spine_at(z)
        k = np.clip((anat.z_dome_left_mm - z) / 80.0, 0.0, 1.0)
        desc.append((a_s + 8.0 * sx - 12.0 * sx * k, y_s - 0.45 * b_s - (b_s + 8.0) * k, z))
    aorta_ctrl = [
        (hc[0] - 18.0 * sx, hc[1] - 4.0 * sx, hc[2] + 0.2 * H),
        (-6.0 * sx, y_car - 40.0 * sx, zc - 32.0 * sz),
        (-6.0 * sx, y_car - 38.0 * sx, za - 12.0 * sz),
        (-1.0 * sx, y_car - 26.0 * sx, za + 1.0),
        (10.0 * sx, y_car - 6.0 * sx, za + 1.0),
        (18.0 * sx, y_car + 10.0 * sx, za - 8.0 * sz),
        *desc,
    ]
    r_ao = 14.0 * sx * rng.uniform(0.9, 1.15)
    aorta_r = [r_ao * 1.05, r_ao, r_ao, r_ao * 0.95, r_ao * 0.9, r_ao * 0.85] + list(
        np.linspace(r_ao * 0.82, r_ao * 0.7, len(desc))
    )
    z_top_branch = z_hi
    branches = [
        (
            [
                (-2.0 * sx, y_car - 27.0 * sx, za),
                (-10.0 * sx, y_car - 26.0 * sx, za + 30.0 * sz),
                (-20.0 * sx, y_car - 20.0 * sx, z_top_branch),
            ],
            [6.5 * sx, 6.0 * sx, 5.5 * sx],
        ),
        (
            [
                (6.0 * sx, y_car - 17.0 * sx, za),
                (12.0 * sx, y_car - 18.0 * sx, za + 30.0 * sz),
                (18.0 * sx, y_car - 16.0 * sx, z_top_branch),
            ],
            [4.5 * sx] * 3,
        ),
        (
            [
                (13.0 * sx, y_car - 3.0 * sx, za),
                (22.0 * sx, y_car + 0.0, za + 22.0 * sz),
                (42.0 * sx, y_car + 4.0 * sx, za + 45.0 * sz),
                (70.0 * sx, y_car + 6.0 * sx, z_top_branch),
            ],
            [5.0 * sx] * 4,
        ),
    ]
    svc = (
        [
            (-36.0 * sx, y_car - 26.0 * sx, z_hi),
            (-30.0 * sx, y_car - 22.0 * sx, za + 20.0 * sz),
            (-26.0 * sx, y_car - 20.0 * sx, zc - 10.0 * sz),
            (anat.heart[2][0] + 4.0 * sx, anat.heart[2][1] - 6.0 * sx, anat.heart[2][2] + 10.0 * sz),
        ],
        [8.0 * sx, 10.0 * sx, 10.0 * sx, 10.0 * sx],
    )
    lbcv = (
        [
            (48.0 * sx, y_car - 18.0 * sx, z_hi),
            (40.0 * sx, y_car - 28.0 * sx, za + 30.0 * sz),
            (0.0, y_car - 36.0 * sx, za + 24.0 * sz),
            (-28.0 * sx, y_car - 24.0 * sx, za + 21.0 * sz),
        ],
        [6.0 * sx] * 4,
    )
    y_s_low, a_s_low, b_s_low = spine_at(z_lo)
    azygos = (
        [
            (-0.55 * a_s_low - 4.0, y_s_low - 0.6 * b_s_low, z_lo),
            (-va - 2.0 * sx, yv - 0.5 * vb, zc - 20.0 * sz),
            (-va - 2.0 * sx, yv - 0.7 * vb, zc + 8.0 * sz),
            (-22.0 * sx, y_car - 6.0 * sx, zc + 14.0 * sz),
            (-27.0 * sx, y_car - 20.0 * sx, zc + 10.0 * sz),
        ],
        [3.5 * sx, 4.0 * sx, 4.0 * sx, 4.5 * sx, 5.0 * sx],
    )
    pt_r = 12.5 * sx * rng.uniform(0.9, 1.1)
    bif = np.array([14.0 * sx, y_car - 22.0 * sx, zc - 14.0 * sz])
    rv = anat.heart[3]
    trunk = (
        [
            (rv[0] + 12.0 * sx, rv[1] - 4.0 * sx, rv[2] + 0.13 * H),
            (22.0 * sx, y_car - 40.0 * sx, zc - 30.0 * sz), tuple(bif),
        ],
        [pt_r] * 3,
    )
    h_r = np.array([-40.0 * sx, y_car - 10.0 * sx, zc - 22.0 * sz]) + J()
    h_l = np.array([46.0 * sx, y_car + 18.0 * sx, zc - 14.0 * sz]) + J()
    rpa = (
        [
            tuple(bif),
            (0.0, y_car - 18.0 * sx, zc - 17.0 * sz),
            (-22.0 * sx, y_car - 16.0 * sx, zc - 20.0 * sz), tuple(h_r),
        ],
        [10.0 * sx, 10.0 * sx, 9.5 * sx, 8.0 * sx],
    )
    lpa = (
        [
            tuple(bif),
            (28.0 * sx, y_car - 10.0 * sx, zc - 8.0 * sz),
            (40.0 * sx, y_car + 4.0 * sx, zc - 8.0 * sz), tuple(h_l),
        ],
        [10.0 * sx, 9.5 * sx, 9.0 * sx, 8.0 * sx],
    )
    lax, lay, laz = la[0], la[1], la[2]
    pv = {
        "rs": (
            [
                (lax - 18.0 * sx, lay - 4.0 * sx, laz + 6.0 * sz),
                (-42.0 * sx, lay - 16.0 * sx, laz + 14.0 * sz),
            ],
            (-0.45, -0.35, 0.8),
        ),
        "ri": (
            [
                (lax - 18.0 * sx, lay + 4.0 * sx, laz - 8.0 * sz),
                (-40.0 * sx, lay + 6.0 * sx, laz - 16.0 * sz),
            ],
            (-0.4, 0.45, -0.8),
        ),
        "ls": (
            [
                (lax + 20.0 * sx, lay - 4.0 * sx, laz + 8.0 * sz),
                (44.0 * sx, lay - 12.0 * sx, laz + 16.0 * sz),
            ],
            (0.5, -0.4, 0.75),
        ),
        "li": (
            [
                (lax + 20.0 * sx, lay + 4.0 * sx, laz - 6.0 * sz),
                (42.0 * sx, lay + 8.0 * sx, laz - 14.0 * sz),
            ],
            (0.4, 0.45, -0.8),
        ),
    }
    pv_r = 6.0 * sx
    ra = anat.heart[2]
    ivc = (
        [
            (ra[0] + 6.0 * sx, ra[1] + 4.0 * sx, ra[2] - 10.0 * sz),
            (ra[0] + 8.0 * sx, ra[1] + 14.0 * sx, anat.z_dome_right_mm - 30.0),
            (ra[0] + 10.0 * sx, ra[1] + 22.0 * sx, z_lo),
        ],
        [11.0 * sx] * 3,
    )
    vessels_med = [(aorta_ctrl, aorta_r), *branches, svc, lbcv, azygos, trunk, rpa, lpa, ivc]
    vessels_med += [(c, [pv_r] * len(c)) for c, _ in pv.values()]

    # --- central airways (wall MEDIASTINUM, lumen AIRWAY) ------------------
    car = np.array([0.0, y_car, zc])
    trachea = (
        [
            (0.0, y_car - 16.0 * sx, z_hi),
            (-1.0 * sx, y_car - 9.0 * sx, zc + 0.22 * H),
            (-1.0 * sx, y_car - 2.0 * sx, zc + 18.0 * sz), tuple(car),
        ],
        [rt] * 4,
    )
    rmb_end = np.array([-14.0 * sx, y_car + 4.0 * sx, zc - 22.0 * sz])
    lmb_end = np.array([32.0 * sx, y_car + 8.0 * sx, zc - 36.0 * sz])
    bi_end = np.array([-20.0 * sx, y_car + 8.0 * sx, zc - 48.0 * sz])
    airways = [
        trachea,
        ([tuple(car), (-8.0 * sx, y_car + 2.0 * sx, zc - 10.0 * sz), tuple(rmb_end)], [0.78 * rt] * 3),
        (
            [
                tuple(car),
                (14.0 * sx, y_car + 3.0 * sx, zc - 13.0 * sz),
                (25.0 * sx, y_car + 6.0 * sx, zc - 25.0 * sz), tuple(lmb_end),
            ],
            [0.7 * rt] * 4,
        ),
        ([tuple(rmb_end), tuple(bi_end)], [0.62 * rt] * 2),
    ]
    lobar = [  # (start, end, lumen radius, direction of the tree, side)
        (rmb_end, (-34.0 * sx, y_car + 3.0 * sx, zc - 17.0 * sz), 0.5 * rt, (-0.55, -0.15, 0.8), 1),
        (bi_end, (-33.0 * sx, y_car - 10.0 * sx, zc - 62.0 * sz), 0.42 * rt, (-0.5, -0.7, -0.45), 1),
        (bi_end, (-27.0 * sx, y_car + 16.0 * sx, zc - 70.0 * sz), 0.52 * rt, (-0.3, 0.5, -0.8), 1),
        (lmb_end, (44.0 * sx, y_car - 4.0 * sx, zc - 28.0 * sz), 0.48 * rt, (0.5, -0.4, 0.75), 2),
        (lmb_end, (40.0 * sx, y_car + 16.0 * sx, zc - 60.0 * sz), 0.52 * rt, (0.35, 0.45, -0.8), 2),
    ]
    for s, e, r, _, _ in lobar:
        airways.append(([tuple(s), tuple(e)], [r, r]))

    def wall(r):
        return r + max(1.0, 0.25 * r)

    airway_walls = [(c, [wall(v) for v in r]) for c, r in airways]
    dom = _Domain(anat)
    margins = [
        # Vessels in the neck and upper mediastinum run in fat, which shows them on non-contrast CT.
        _polyline_tubes(vessels_med, Label.FAT, (Label.LUNG, Label.MUSCLE), extra_radius=3.0),
        _polyline_tubes(airway_walls, Label.FAT, (Label.LUNG,), extra_radius=3.0),
    ]
    groups = [_polyline_tubes(vessels_med, Label.VESSEL, _MED_ALLOWED)]
    oes_top = (5.0 * sx, y_car + rt + 9.0 * sx, z_hi)
    ys, _, bs = spine_at(anat.z_dome_left_mm)
    oesophagus = (
        [
            oes_top, (6.0 * sx, y_car + rt + 9.0 * sx, zc),
            (9.0 * sx, lay + 24.0 * sx, laz),
            (20.0 * sx, ys - bs - 16.0 * sx, anat.z_dome_left_mm - 10.0),
            (40.0 * sx, ys - bs - 40.0 * sx, anat.z_dome_left_mm - 50.0),
        ],
        [7.0 * sx] * 5,
    )
    groups.append(
        _polyline_tubes([oesophagus], Label.MEDIASTINUM, (Label.FAT, Label.LUNG, Label.MUSCLE, Label.SOFT_TISSUE))
    )

    # Mediastinal and hilar lymph nodes, small and oval.
    nodes = [
        (-14.0 * sx, y_car - 8.0 * sx, zc + 22.0 * sz),
        (-16.0 * sx, y_car - 4.0 * sx, zc + 8.0 * sz),
        (2.0 * sx, y_car + 12.0 * sx, zc - 20.0 * sz),
        (20.0 * sx, y_car - 12.0 * sx, zc + 4.0 * sz),
        (-34.0 * sx, y_car + 2.0 * sx, zc - 30.0 * sz),
        (38.0 * sx, y_car + 8.0 * sx, zc - 32.0 * sz),
        (8.0 * sx, y_car - 30.0 * sx, za + 14.0 * sz),
    ]
    node_pts = np.array(nodes) + rng.normal(0.0, 2.5, (len(nodes), 3))
    node_r = rng.uniform(2.5, 5.0, len(nodes))
    node_p1 = node_pts + rng.normal(0.0, 1.0, node_pts.shape) * node_r[:, None]
    groups.append(_TubeSet(node_pts, node_p1, node_r, node_r * 0.9, int(Label.MEDIASTINUM), (Label.FAT,)))

    groups.append(_polyline_tubes(airway_walls, Label.MEDIASTINUM, (*_MED_ALLOWED, Label.VESSEL)))
    groups.append(_polyline_tubes(airways, Label.AIRWAY, (*_MED_ALLOWED, Label.VESSEL)))

    # Clavicles, from the manubrium out to the shoulders.
    f_sn = _point_fields(anat, 0.0, anat.body_centre_y_mm - 1.0, anat.z_sternal_notch_mm)
    y_ant = anat.body_centre_y_mm - float(f_sn.r_wall)
    zn = anat.z_sternal_notch_mm
    clav = []
    for sgn in (-1.0, 1.0):
        ctrl = [
            (sgn * 20.0 * sx, y_ant - 4.0 * sx, zn + 6.0 * sz),
            (sgn * 60.0 * sx, y_ant - 6.0 * sx, zn + 16.0 * sz),
            (sgn * 105.0 * sx, y_ant + 8.0 * sx, zn + 22.0 * sz),
            (sgn * 135.0 * sx, y_ant + 40.0 * sx, zn + 28.0 * sz),
        ]
        clav.append((ctrl, [7.5 * sx, 6.0 * sx, 6.0 * sx, 7.0 * sx]))
    groups.append(_polyline_tubes(clav, Label.RIB, (Label.MUSCLE, Label.FAT, Label.SOFT_TISSUE)))

    # --- intrapulmonary bronchi and vessels --------------------------------
    hilar = []
    bron_roots = []
    for s, e, r, d, side in lobar:
        q = _snap_into_lung(dom, e, d, side, wall(r))
        if q is not None:
            hilar.append((np.asarray(e, float), q, r))
            bron_roots.append((q, np.asarray(d, float), r, side))
    b0, b1, br0, br1 = _grow_tree(rng, dom, bron_roots, r_min=1.0, length_ratio=(4.0, 7.0), taper=0.95)
    if hilar:
        b0 = np.vstack([b0] + [h[0][None] for h in hilar])
        b1 = np.vstack([b1] + [h[1][None] for h in hilar])
        br0 = np.concatenate([br0, [h[2] for h in hilar]])
        br1 = np.concatenate([br1, [h[2] for h in hilar]])
    wall_r0 = br0 + np.maximum(0.5, 0.22 * br0)
    wall_r1 = br1 + np.maximum(0.5, 0.22 * br1)
    groups.append(_TubeSet(b0, b1, wall_r0, wall_r1, int(Label.SOFT_TISSUE), (Label.LUNG,)))
    groups.append(_TubeSet(b0, b1, br0, br1, int(Label.AIRWAY), (Label.LUNG, Label.SOFT_TISSUE)))

    # Segmental arteries from each hilum, segmental veins draining to the four pulmonary veins.
    art_dirs = [
        ((-0.3, -0.3, 0.9), 5.0), ((-0.7, 0.2, 0.7), 4.0), ((-0.45, -0.75, -0.45), 4.0),
        ((-0.3, 0.6, -0.7), 4.5), ((-0.35, 0.1, -0.93), 5.5), ((-0.75, -0.35, 0.1), 4.0),
    ]
    art_roots = []
    for (dx, dy, dz), r in art_dirs:
        art_roots.append((h_r, (dx, dy, dz), r * sx, 1))
        art_roots.append((h_l, (-dx, dy, dz), r * sx, 2))
    vein_dirs = {"rs": [((-0.5, -0.35, 0.8), 5.0), ((-0.8, -0.5, 0.1), 4.0)],
                 "ri": [((-0.4, 0.45, -0.8), 5.0), ((-0.6, 0.1, -0.8), 4.0)],
                 "ls": [((0.5, -0.4, 0.75), 5.0), ((0.7, -0.6, 0.2), 4.0)],
                 "li": [((0.4, 0.45, -0.8), 5.0), ((0.6, 0.1, -0.8), 4.0)]}
    for key, (c, _) in pv.items():
        side = 1 if c[-1][0] < 0 else 2
        for d, r in vein_dirs[key]:
            art_roots.append((np.asarray(c[-1], float), d, r * sx, side))
    roots = []
    for p, d, r, side in art_roots:
        d = _unit(np.asarray(d) + rng.normal(0.0, 0.12, 3))
        q = _snap_into_lung(dom, p, d, side, r)
        if q is not None:
            hilar.append((np.asarray(p, float), q, r))
            roots.append((q, d, r, side))
    v0, v1, vr0, vr1 = _grow_tree(rng, dom, roots, r_min=0.55, length_ratio=(5.0, 9.0), taper=0.98)
    links = [h for h in hilar[len(bron_roots):]]
    if links:
        groups.append(
            _TubeSet(
                np.array([h[0] for h in links]), np.array([h[1] for h in links]),
                np.array([h[2] for h in links]), np.array([h[2] for h in links]),
                int(Label.VESSEL), (Label.LUNG, Label.FAT),
            )
        )
    groups.append(_TubeSet(v0, v1, vr0, vr1, int(Label.VESSEL), (Label.LUNG,)))
    hila = np.array([h_r, h_l, rmb_end, lmb_end, bi_end])
    return _Network(margins=margins, groups=groups, hila=hila)


# ---------------------------------------------------------------------------
# Label volumes
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _anatomy_volume(anat: ChestAnatomy, grid: CTGrid) -> np.ndarray:
    K, R, C = grid.shape
    x = grid.x_mm().astype(np.float32)
    y = grid.y_mm().astype(np.float32)
    X = np.broadcast_to(x[None, :], (R, C))
    Y = np.broadcast_to(y[:, None], (R, C))
    pl = _Plane(anat, X, Y)
    pl.x1d, pl.y1d = x, y
    table = _table_mask(anat, X, Y)
    labels = np.empty((K, R, C), np.uint8)
    for k, z in enumerate(grid.z_mm()):
        labels[k] = _slice_labels(anat, pl, float(z), table)
    net = _network(anat)
    for ts in net.margins + net.groups:
        pts, rad = _sample_tubes(ts, grid)
        _splat(labels, grid, pts, rad, ts.value, ts.allowed)
    labels.setflags(write=False)
    return labels


def label_volume(
    anatomy: ChestAnatomy, grid: CTGrid, lesions: Sequence[tuple[LesionSite, float]]
) -> np.ndarray:
    """Label map of one visit: the patient's anatomy plus lesions at their sizes.

    Parameters
    ----------
    anatomy : ChestAnatomy
        From :func:`draw_anatomy` (the same object at every visit).
    grid : CTGrid
        The series grid.
    lesions : sequence of (LesionSite, float)
        Each lesion's site and its longest axial diameter in mm at this visit;
        0 means absent.  Lesion ``i`` gets label ``Label.TUMOUR + i``.

    Returns
    -------
    numpy.ndarray
        ``(n_slices, rows, columns)`` uint8.  Each present lesion's longest
        axial diameter, measured by :func:`lesion_measurement`, is the given
        diameter to within one pixel (unless the lung is too small to hold it).

    Raises
    ------
    ValueError
        If there are more lesions than labels, or a diameter is negative.
    """
    if len(lesions) > MAX_LESIONS:
        raise ValueError(f"At most {MAX_LESIONS} lesions fit in a uint8 label volume, got {len(lesions)}.")
    for i, (_, diam) in enumerate(lesions):
        if not (diam >= 0 and math.isfinite(diam)):
            raise ValueError(f"Lesion {i} diameter must be a non-negative number of mm, got {diam!r}.")
    labels = _anatomy_volume(anatomy, grid).copy()
    for i, (site, diam) in enumerate(lesions):
        if diam > 0:
            _draw_lesion(labels, anatomy, grid, site, float(diam), int(Label.TUMOUR) + i)
    return labels


# ---------------------------------------------------------------------------
# Lesions
# ---------------------------------------------------------------------------


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


def _max_diameter_2d(mask: np.ndarray):
    """Longest distance (pixels) between centres of two pixels of a 2-D mask, with the pair."""
    if not mask.any():
        return -1.0, None, None
    edge = mask & ~ndimage.binary_erosion(mask)
    rr, cc = np.nonzero(edge)
    if rr.size == 1:
        return 0.0, (int(rr[0]), int(cc[0])), (int(rr[0]), int(cc[0]))
    pts = np.stack([rr, cc], axis=1).astype(np.float64)
    if len(pts) > 2000:
        from scipy.spatial import ConvexHull

        try:
            pts = pts[ConvexHull(pts).vertices]
            pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
        except Exception:  # degenerate (collinear) hulls: keep every edge pixel
            pass
    d2 = ((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)
    i = int(np.argmax(d2))
    a, b = divmod(i, len(pts))
    return float(np.sqrt(d2[a, b])), (int(pts[a, 0]), int(pts[a, 1])), (int(pts[b, 0]), int(pts[b, 1]))


def _max_axial_diameter(mask3: np.ndarray) -> float:
    best = -1.0
    for k in range(mask3.shape[0]):
        if mask3[k].any():
            best = max(best, _max_diameter_2d(mask3[k])[0])
    return best


def _draw_lesion(
    labels: np.ndarray, anat: ChestAnatomy, grid: CTGrid, site: LesionSite, diam: float, value: int
) -> None:
    """Draw one lesion, scaled so that its longest axial diameter is ``diam``."""
    ps, ss = grid.pixel_spacing_mm, grid.slice_spacing_mm
    target = diam / ps  # in pixels
    shape = site.shape
    c = site.centre_mm
    ext = _shape_extent(shape)
    side_code = 1 if site.lung == "right" else 2
    # Projected in-plane width at unit scale bounds the axial diameter from above.
    width = _unit_width(shape)
    s_lo = diam / width
    s_hi = 1.3 * s_lo + 0.6 * ss + ps
    for _ in range(4):
        box, rho, allowed = _lesion_box(labels, anat, grid, site, s_hi * ext + ps, side_code)
        if box is None:
            return
        if _max_axial_diameter((rho <= s_hi) & allowed) >= target:
            break
        s_hi *= 1.5
    lo, hi = 0.0, s_hi
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if _max_axial_diameter((rho <= mid) & allowed) >= target:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-3 * s_hi:
            break
    d_hi = _max_axial_diameter((rho <= hi) & allowed)
    d_lo = _max_axial_diameter((rho <= lo) & allowed)
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


def _lesion_box(labels, anat, grid, site, half_mm, side_code):
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
    xs = grid.x_mm()[c0:c1]
    ys = grid.y_mm()[r0:r1]
    zs = grid.z_mm()[k0:k1]
    rho = _lesion_rho(site.shape, site.centre_mm, xs[None, None, :], ys[None, :, None], zs[:, None, None])
    sub = labels[box]
    shape2 = (r1 - r0, c1 - c0)
    pl = _Plane(anat, np.broadcast_to(xs[None, :], shape2), np.broadcast_to(ys[:, None], shape2))
    allowed = np.zeros(sub.shape, bool)
    for i, z in enumerate(zs):
        pr = _Profile(anat, float(z))
        side = _lung_side(anat, pl, pr, _Fields(anat, pl, pr))
        allowed[i] = (sub[i] == Label.LUNG) | ((sub[i] == Label.VESSEL) & (side == side_code))
    return box, rho, allowed


def lesion_measurement(labels: np.ndarray, grid: CTGrid, index: int) -> dict | None:
    """Measure a lesion the way a RECIST reader does: its longest axial diameter.

    Parameters
    ----------
    labels : numpy.ndarray
        A label volume from :func:`label_volume`.
    grid : CTGrid
        Its grid.
    index : int
        Lesion index (label ``Label.TUMOUR + index``).

    Returns
    -------
    dict or None
        ``{"slice": k, "points": [(r0, c0), (r1, c1)], "diameter_mm": d}``: the
        axial slice with the longest in-plane diameter, the centres of the two
        end pixels and their distance; None when the lesion is absent.

    Raises
    ------
    ValueError
        If ``index`` is outside 0..155.
    """
    if not 0 <= index < MAX_LESIONS:
        raise ValueError(f"Lesion index must be in 0..{MAX_LESIONS - 1}, got {index!r}.")
    value = int(Label.TUMOUR) + int(index)
    present = np.nonzero((labels == value).any(axis=(1, 2)))[0]
    if present.size == 0:
        return None
    best = None
    for k in present:
        d, p0, p1 = _max_diameter_2d(labels[k] == value)
        if best is None or d > best[0]:
            best = (d, int(k), p0, p1)
    d, k, p0, p1 = best
    return {"slice": k, "points": [p0, p1], "diameter_mm": float(d * grid.pixel_spacing_mm)}


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


def _draw_shape(rng: np.random.Generator) -> LesionShape:
    axes = np.array([1.0, rng.uniform(0.72, 1.0), rng.uniform(0.65, 0.95)])
    n_big = int(rng.integers(3, 7))
    n_small = int(rng.integers(8, 16))
    dirs = rng.normal(size=(n_big + n_small, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    heights = np.concatenate([rng.uniform(0.08, 0.28, n_big), rng.uniform(0.03, 0.07, n_small)])
    sharp = np.concatenate([rng.uniform(2.0, 6.0, n_big), rng.uniform(12.0, 30.0, n_small)])
    return LesionShape(
        semi_axes=tuple(float(v) for v in axes),
        rotation=tuple(float(v) for v in _random_rotation(rng).ravel()),
        bump_directions=tuple(tuple(float(c) for c in d) for d in dirs),
        bump_heights=tuple(float(v) for v in heights),
        bump_sharpness=tuple(float(v) for v in sharp),
    )


_LOBES = {
    (1, 0): "right upper lobe",
    (1, 1): "right middle lobe",
    (1, 2): "right lower lobe",
    (2, 0): "left upper lobe",
    (2, 2): "left lower lobe",
}


def _lobe_code(anat: ChestAnatomy, x, y, z, side):
    """0 upper, 1 middle, 2 lower lobe, from the fissures.

    The oblique fissure rises from the front of the diaphragm to the back at
    about T4; on the right the horizontal fissure sets off the middle lobe.
    """
    H = anat.lung_height_mm
    yb = anat.body_centre_y_mm
    y_ant = yb - 0.6 * anat.body_half_depth_anterior_mm
    y_post = yb + 0.6 * anat.body_half_depth_posterior_mm
    z_dome = np.where(side == 1, anat.z_dome_right_mm, anat.z_dome_left_mm)
    z_low = z_dome + 0.06 * H
    z_high = anat.z_apex_mm - 0.3 * H
    w = np.clip((y - y_ant) / (y_post - y_ant), -0.5, 1.5)
    lower = z < z_low + w * (z_high - z_low)
    middle = (side == 1) & (z < anat.z_apex_mm - 0.48 * H)
    return np.where(lower, 2, np.where(middle, 1, 0))


def _side_volume(anat: ChestAnatomy, grid: CTGrid) -> np.ndarray:
    """Lung side (0 none, 1 right, 2 left) of every voxel, before tubes are drawn."""
    K, R, C = grid.shape
    x, y = grid.x_mm(), grid.y_mm()
    pl = _Plane(anat, np.broadcast_to(x[None, :], (R, C)), np.broadcast_to(y[:, None], (R, C)))
    side = np.zeros(grid.shape, np.uint8)
    for k, z in enumerate(grid.z_mm()):
        pr = _Profile(anat, float(z))
        side[k] = _lung_side(anat, pl, pr, _Fields(anat, pl, pr))
    return side


# Relaxation steps for crowded or small lungs: (room around the centre, spacing
# between centres, distance from the hila), in mm.
_PLACEMENT_STEPS = (
    (27.0, 60.0, 45.0),
    (24.0, 50.0, 42.0),
    (20.0, 40.0, 38.0),
    (16.0, 32.0, 34.0),
    (13.0, 25.0, 30.0),
    (10.0, 25.0, 25.0),
    (7.0, 25.0, 20.0),
)


def place_lesions(
    anatomy: ChestAnatomy, grid: CTGrid, count: int, rng: np.random.Generator
) -> list[LesionSite]:
    """Choose sites for ``count`` lung lesions.

    Sites lie well inside the lung parenchyma (with room for a 50 mm lesion
    where the lungs allow), away from the hila, within the grid's slices
    (each centre on a slice), and at least 25 mm apart (60 mm where there is
    room); upper lobes are favoured, as in lung cancer.  Each site gets its
    own irregular shape.

    Parameters
    ----------
    anatomy : ChestAnatomy
    grid : CTGrid
    count : int
        Number of lesions, 0 or more.
    rng : numpy.random.Generator

    Returns
    -------
    list of LesionSite

    Raises
    ------
    ValueError
        If ``count`` is negative or too large, or the lungs cannot hold that many.
    """
    if not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}.")
    if count > MAX_LESIONS:
        raise ValueError(f"count must be at most {MAX_LESIONS}, got {count}.")
    if count == 0:
        return []
    # Work on a coarse (about 4 mm) copy of the grid: same field of view and slab.
    step = 4.0
    extent_z = (grid.n_slices - 1) * grid.slice_spacing_mm
    columns = max(8, int(round(grid.fov_mm / step)))
    ps = grid.fov_mm / columns
    nz = max(2, int(round(extent_z / step)) + 1)
    coarse = CTGrid(
        rows=max(8, int(round(grid.rows * grid.pixel_spacing_mm / ps))),
        columns=columns,
        n_slices=nz,
        pixel_spacing_mm=ps,
        slice_spacing_mm=max(extent_z / (nz - 1), 1e-3),
    )
    lab = _anatomy_volume(anatomy, coarse)
    side = _side_volume(anatomy, coarse)
    lung = ((lab == Label.LUNG) | (lab == Label.VESSEL)) & (side > 0)
    room = ndimage.distance_transform_edt(lung, sampling=(coarse.slice_spacing_mm, ps, ps))
    Z, Y, X = np.meshgrid(coarse.z_mm(), coarse.y_mm(), coarse.x_mm(), indexing="ij")
    hilum = np.full(lab.shape, np.inf)
    for h in _network(anatomy).hila:
        hilum = np.minimum(hilum, np.sqrt((X - h[0]) ** 2 + (Y - h[1]) ** 2 + (Z - h[2]) ** 2))
    margin_z = min(15.0, 0.25 * extent_z)
    z_ok = (Z <= grid.z_top_mm - margin_z) & (Z >= grid.z_top_mm - extent_z + margin_z)
    sx = anatomy.scale_xy
    chosen = []
    for need, sep, gap in _PLACEMENT_STEPS:
        idx = np.flatnonzero(lung & (room >= need) & (hilum >= gap * sx) & z_ok)
        if idx.size < count:
            continue
        pts = np.stack([X.ravel()[idx], Y.ravel()[idx], Z.ravel()[idx]], axis=1)
        sides = side.ravel()[idx]
        # Lung cancer favours the upper lobes.
        upper = _lobe_code(anatomy, pts[:, 0], pts[:, 1], pts[:, 2], sides) == 0
        weights = np.where(upper, 1.8, 1.0)
        chosen = []
        alive = np.ones(len(pts), bool)
        for _ in range(count):
            if not alive.any():
                break
            w = weights * alive
            i = int(rng.choice(len(pts), p=w / w.sum()))
            chosen.append((pts[i], int(sides[i])))
            alive &= np.linalg.norm(pts - pts[i], axis=1) >= sep
        if len(chosen) == count:
            break
    if len(chosen) < count:
        raise ValueError(f"The lungs of this anatomy cannot hold {count} separate lesions on this grid.")
    sites = []
    for p, side_code in chosen:
        jitter = rng.uniform(-0.5, 0.5, 2) * ps
        x, y = float(p[0] + jitter[0]), float(p[1] + jitter[1])
        k = int(np.clip(round(grid.index_of(0.0, 0.0, p[2])[0]), 0, grid.n_slices - 1))
        z = float(grid.z_mm()[k])
        lobe = int(_lobe_code(anatomy, x, y, z, side_code))
        sites.append(
            LesionSite(
                centre_mm=(x, y, z),
                lung="right" if side_code == 1 else "left",
                lobe=_LOBES.get((side_code, lobe), _LOBES[(side_code, 0)]),
                shape=_draw_shape(rng),
            )
        )
    return sites
