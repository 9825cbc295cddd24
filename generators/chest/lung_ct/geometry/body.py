"""The analytic slice rasteriser: body layers, thoracic organs, spine, ribs, sternum and scapulae.

One axial slice is labelled at a time from the smooth fields of
:mod:`.fields`; tubes (airways, vessels) and lesions are drawn on top later.
"""

from __future__ import annotations

import math

import numpy as np

from .anatomy import ChestAnatomy
from .fields import (
    BodyLayers,
    HeightProfile,
    Plane,
    grid_window,
    heart_z_range,
    inside_ellipsoids,
    lung_side,
    smooth_window,
)
from .labels import Label

__all__ = ["slice_labels", "table_mask"]

_DIAPHRAGM_MM = 4.0
_CANAL_RADIUS_MM = 7.5


def table_mask(anat: ChestAnatomy, x, y):
    """The couch: a curved top board, an air gap, and a lower board (z independent)."""
    # The board curves up at the sides (smaller y), like a cradle.
    top = anat.table_top_y_mm - anat.table_curvature_per_mm * x * x
    d = y - top
    inside_w = np.abs(x) < anat.table_half_width_mm
    board = (d >= 0) & (d < 9.0)
    lower = (d >= 21.0) & (d < 31.0) & (np.abs(x) < 0.8 * anat.table_half_width_mm)
    rails = (d >= 9.0) & (d < 21.0) & (np.abs(np.abs(x) - 0.55 * anat.table_half_width_mm) < 6.0)
    return inside_w & (board | lower | rails)


def slice_labels(anat: ChestAnatomy, pl: Plane, z: float, table: np.ndarray) -> np.ndarray:
    """Label one axial slice (anatomy only, no tubes and no lesions)."""
    pr = HeightProfile(anat, np.float32(z))
    f = BodyLayers(anat, pl, pr)
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
        scale_xy = anat.scale_xy
        w = smooth_window(t, -0.4, -0.15, 0.2, 0.45)
        qa = (np.abs(x) - 0.72 * anat.body_half_width_mm) / (34.0 * scale_xy * w + 1e-3)
        qb = (y - anat.body_centre_y_mm + 0.05 * anat.body_half_depth_anterior_mm) / (48.0 * scale_xy * w + 1e-3)
        lab[(qa * qa + qb * qb < 1.0) & (lab == Label.MUSCLE)] = Label.FAT
    cav = r < f.r_cav
    lab[cav] = Label.FAT
    # Below the diaphragm: liver on the right, stomach and spleen on the left.
    zd = pl.z_diaphragm
    lab[cav & (z < zd)] = Label.MUSCLE
    abdomen = cav & (z < zd - _DIAPHRAGM_MM)
    if abdomen.any():
        _draw_abdomen(anat, pl, z, abdomen, lab)
    side = lung_side(anat, pl, pr, f)
    lab[side > 0] = Label.LUNG
    lo, hi = heart_z_range(anat, 0.0)
    if lo < z < hi:
        heart = inside_ellipsoids(pl, anat.heart, z) & cav & (z > zd)
        lab[heart] = Label.HEART
    scale_xy = anat.scale_xy
    y_vb = float(pr.y_vb)
    rows, cols = grid_window(pl, -70.0 * scale_xy, 70.0 * scale_xy, y_vb - 40.0 * scale_xy, y_vb + 90.0 * scale_xy)
    _draw_spine(anat, pl.window(rows, cols), pr, lab[rows, cols])
    _draw_ribs(anat, pl, pr, f, lab)
    yb = anat.body_centre_y_mm
    rows, cols = grid_window(pl, -45.0 * scale_xy, 45.0 * scale_xy, yb - 1.3 * anat.body_half_depth_anterior_mm, yb)
    _draw_sternum(anat, pl.window(rows, cols), pr, f.r_wall[rows, cols], lab[rows, cols])
    _draw_scapulae(anat, pl, pr, f, lab)
    return lab


def _draw_abdomen(anat: ChestAnatomy, pl: Plane, z: float, abdomen: np.ndarray, lab: np.ndarray) -> None:
    """Upper abdomen under the diaphragm: liver on the right reaching across the
    front, stomach and spleen on the left, fat between them."""
    scale_xy = anat.scale_xy
    x, y = pl.x, pl.y
    liver = x < 8.0 * scale_xy + 0.55 * (anat.body_centre_y_mm - y)
    organ = liver | inside_ellipsoids(pl, (anat.stomach, anat.spleen), z)
    lab[abdomen] = Label.FAT
    lab[abdomen & organ] = Label.SOFT_TISSUE


def _draw_spine(anat: ChestAnatomy, pl: Plane, pr: HeightProfile, lab: np.ndarray) -> None:
    scale_xy = anat.scale_xy
    x, y = pl.x, pl.y
    frac = float(pr.level_frac)
    disc = frac > 0.82
    qa = x / pr.vb_a
    dyb = y - pr.y_vb
    qb = dyb / pr.vb_b
    body = (qa * qa + qb * qb <= 1.0) & (dyb < 0.85 * pr.vb_b)
    lab[body] = Label.SOFT_TISSUE if disc else Label.BONE
    rc = _CANAL_RADIUS_MM * (0.9 + 0.2 * scale_xy)
    yc = pr.y_vb + 0.85 * pr.vb_b + rc
    dyc = y - yc
    rho2 = x * x + dyc * dyc
    arch_w = 4.5 * scale_xy + 1.0
    ring = (rho2 > rc * rc) & (rho2 <= (rc + arch_w) ** 2)
    if frac > 0.5:
        # Neural foramina: no pedicles in the lower half of the level.
        ring &= ~((np.abs(x) > 0.55 * rc) & (dyc < 0.35 * rc))
    bone = ring
    if 0.1 < frac < 0.9:
        length = (26.0 + 10.0 * frac) * scale_xy
        bone = bone | ((np.abs(x) < 3.5 * scale_xy) & (dyc > rc) & (dyc < rc + length))
    if frac < 0.5:
        for sign in (-1.0, 1.0):
            ux, uy = sign * 0.82, 0.57  # lateral and a little backwards
            px = x - sign * 0.7 * rc
            along = px * ux + dyc * uy
            perp = -px * uy + dyc * ux
            bone = bone | ((along > 0) & (along < 22.0 * scale_xy) & (np.abs(perp) < 4.5 * scale_xy))
    lab[bone & (lab != Label.AIR) & (lab != Label.TABLE)] = Label.BONE
    lab[rho2 <= rc * rc] = Label.SOFT_TISSUE


def _draw_ribs(anat: ChestAnatomy, pl: Plane, pr: HeightProfile, f: BodyLayers, lab: np.ndarray) -> None:
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


def _draw_sternum(anat: ChestAnatomy, pl: Plane, pr: HeightProfile, r_wall: np.ndarray, lab: np.ndarray) -> None:
    lung_height = anat.lung_height_mm
    z_top = anat.z_sternal_notch_mm
    z_bot = anat.z_dome_right_mm - 0.04 * lung_height
    z = float(pr.z)
    if not (z_bot < z < z_top):
        return
    scale_xy = anat.scale_xy
    h = (z_top - z) / (z_top - z_bot)
    # Manubrium wide at the top, body narrower, xiphoid tapering.
    width = scale_xy * (np.interp(h, [0.0, 0.15, 0.3, 0.75, 0.9, 1.0], [52.0, 44.0, 30.0, 34.0, 18.0, 10.0]))
    thick = scale_xy * (np.interp(h, [0.0, 0.3, 0.8, 1.0], [14.0, 11.0, 10.0, 6.0]))
    r_in = r_wall  # the sternum's back faces the (unshrunken) cavity wall
    qa = (pl.r - r_in - 0.5 * thick) / (0.5 * thick)
    qb = pl.x / (0.5 * width)
    st = (qa * qa + qb**4 <= 1.0) & (pl.s < -0.5)
    lab[st & (lab != Label.AIR)] = Label.STERNUM


def _draw_scapulae(anat: ChestAnatomy, pl: Plane, pr: HeightProfile, f: BodyLayers, lab: np.ndarray) -> None:
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
    scale_xy = anat.scale_xy
    # Thin blade, thicker along the lateral border.
    lateral = np.clip((math.cos(th_med) - s) / (math.cos(th_med) - math.cos(th_lat)), 0, 1)
    thick = 3.5 * scale_xy + 1.0 + 5.0 * scale_xy * lateral**6
    r_mid = f.r_cav + f.rib_zone + 9.0 * scale_xy + 0.5 * thick
    blade = inside & (np.abs(pl.r - r_mid) <= 0.5 * thick)
    lab[blade & (lab == Label.MUSCLE)] = Label.RIB
