"""One patient's chest anatomy: every number of it drawn once and frozen.

:func:`draw_anatomy` draws the parameters of a chest that fits a CT grid;
:class:`ChestAnatomy` holds them, so the same patient has the same chest at
every visit (only the lesions change).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from synthpacs.imaging.spatial import VolumeGrid

from .fields import HeightProfile, point_layers

__all__ = ["ChestAnatomy", "Ellipsoid", "draw_anatomy", "unit_vector"]

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
    # Heart chambers, in this order: left ventricle, left atrium, right atrium, right ventricle.
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


def _check_sex(sex: str) -> str:
    if sex not in ("M", "F", "O"):
        raise ValueError(f"sex must be 'M', 'F' or 'O' (DICOM Patient's Sex), got {sex!r}.")
    return sex


def unit_vector(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def _ellipsoid(centre, axes, u1) -> Ellipsoid:
    u1 = unit_vector(u1)
    ez = np.array([0.0, 0.0, 1.0])
    u2 = np.cross(ez, u1)
    if np.linalg.norm(u2) < 1e-6:
        u2 = np.array([1.0, 0.0, 0.0])
    u2 = unit_vector(u2)
    u3 = np.cross(u1, u2)
    return tuple(float(v) for v in (*centre, *axes, *u1, *u2, *u3))


def draw_anatomy(rng: np.random.Generator, grid: VolumeGrid, sex: str) -> ChestAnatomy:
    """Draw one patient's chest anatomy to fit a CT grid.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of every random choice.
    grid : VolumeGrid
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
    pixel_spacing = grid.pixel_spacing_mm
    fov_x = grid.columns * pixel_spacing
    fov_y = grid.rows * pixel_spacing
    uniform = rng.uniform

    # In-plane size: fit the field of view, keep room for the table below.
    half_width = float(np.clip(rng.normal(153.0 if male else 140.0 if female else 146.0, 9.0), 118.0, 178.0))
    half_width = min(half_width, 0.44 * fov_x)
    half_depth_front = half_width * uniform(0.64, 0.75)
    half_depth_back = half_width * uniform(0.60, 0.68)
    table_space = 34.0
    front_limit_y = -fov_y / 2 + 6.0
    back_limit_y = fov_y / 2 - table_space - 4.0
    if half_depth_front + half_depth_back > 0.92 * (back_limit_y - front_limit_y):
        shrink = 0.92 * (back_limit_y - front_limit_y) / (half_depth_front + half_depth_back)
        half_depth_front, half_depth_back = half_depth_front * shrink, half_depth_back * shrink
    slack = (back_limit_y - front_limit_y) - (half_depth_front + half_depth_back)
    body_centre_y = front_limit_y + half_depth_front + slack * uniform(0.55, 0.8)
    squash = uniform(0.03, 0.07)
    taper = uniform(0.0, 0.1)
    table_top = body_centre_y + half_depth_back * (1.0 - squash - 0.5 * taper - 0.03)
    scale_xy = half_width / 155.0

    harmonics = tuple(float(v) for v in rng.normal(0.0, [0.012, 0.015, 0.02, 0.012, 0.008, 0.008, 0.01, 0.006]))
    harmonics_slope = tuple(float(v) for v in rng.normal(0.0, [0.01, 0.012, 0.015, 0.01, 0.006, 0.006, 0.006, 0.004]))
    fat = float(np.clip(rng.lognormal(np.log(13.0 if female else 10.0), 0.4), 3.0, 38.0)) * scale_xy
    fat_harmonics = (float(uniform(-0.1, 0.1)), float(uniform(0.05, 0.3)), float(uniform(0.0, 0.25)), float(uniform(-0.08, 0.08)))

    # Heights: centre the chest on the grid when the grid is shorter than a chest.
    extent = grid.n_slices * grid.slice_spacing_mm
    lung_height = float(np.clip(extent - 100.0 + rng.normal(0.0, 8.0), 190.0, 255.0)) * (0.95 if female else 1.0)
    z_mid = -(grid.n_slices - 1) * grid.slice_spacing_mm / 2.0
    z_apex = z_mid + (lung_height + 100.0) / 2.0 - 22.0
    z_dome_right = z_apex - lung_height
    scale_z = lung_height / 225.0
    z_dome_left = z_dome_right - uniform(8.0, 24.0) * scale_z
    z_carina = z_apex - lung_height * uniform(0.33, 0.37)

    anatomy = ChestAnatomy(
        sex=sex,
        scan_top_mm=grid.z_top_mm,
        scan_bottom_mm=grid.z_top_mm - (grid.n_slices - 1) * grid.slice_spacing_mm,
        body_centre_y_mm=float(body_centre_y),
        body_half_width_mm=float(half_width),
        body_half_depth_anterior_mm=float(half_depth_front),
        body_half_depth_posterior_mm=float(half_depth_back),
        body_exponent_anterior=float(uniform(2.0, 2.5)),
        body_exponent_posterior=float(uniform(2.8, 3.8)),
        body_harmonics=harmonics,
        body_harmonics_slope=harmonics_slope,
        body_taper=float(taper),
        table_top_y_mm=float(table_top),
        table_curvature_per_mm=float(uniform(0.0003, 0.0006)),
        table_half_width_mm=float(min(0.49 * fov_x, 230.0)),
        skin_mm=float(uniform(1.5, 2.5)),
        fat_mm=float(fat),
        fat_harmonics=fat_harmonics,
        muscle_mm=float(uniform(1.5, 3.0) * scale_xy),
        paraspinal_mm=float(uniform(34.0, 44.0) * scale_xy),
        pectoral_mm=float(uniform(12.0, 20.0) * scale_xy * (1.3 if male else 0.75)),
        latissimus_mm=float(uniform(7.0, 12.0) * scale_xy * (1.2 if male else 0.85)),
        scapular_mm=float(uniform(20.0, 28.0) * scale_xy),
        breast_mm=float(uniform(18.0, 55.0)) if female else 0.0,
        z_apex_mm=float(z_apex),
        z_dome_right_mm=float(z_dome_right),
        z_dome_left_mm=float(z_dome_left),
        z_sternal_notch_mm=float(z_apex - lung_height * uniform(0.11, 0.15)),
        z_arch_mm=float(z_apex - lung_height * uniform(0.24, 0.28)),
        z_carina_mm=float(z_carina),
        apex_offset_x_mm=float(uniform(38.0, 48.0) * scale_xy),
        apex_offset_y_mm=float(uniform(0.15, 0.3) * half_depth_back),
        mediastinum_upper_mm=float(uniform(14.0, 20.0) * scale_xy),
        mediastinum_lower_mm=float(uniform(3.0, 5.0) * scale_xy),
        diaphragm_drop_mm=float(uniform(48.0, 62.0) * scale_z),
        vertebra_period_mm=float((lung_height + 85.0) / 12.0),
        vertebra_half_width_mm=float(uniform(16.0, 19.0) * scale_xy),
        vertebra_half_depth_mm=float(uniform(13.0, 15.5) * scale_xy),
        spine_depth_mm=float(uniform(40.0, 48.0) * scale_xy),
        kyphosis_mm=float(uniform(0.0, 8.0)),
        rib_drop_mm=float(uniform(3.0, 3.6) * (lung_height + 85.0) / 12.0),
        rib_height_mm=float(uniform(9.0, 12.0) * scale_z),
        rib_thickness_mm=float(uniform(5.5, 7.5) * scale_xy),
        heart=(),
        pericardial_fat_mm=float(uniform(2.5, 5.0)),
        fat_pad=(),
        stomach=_ellipsoid(
            (0.42 * half_width, body_centre_y - 0.25 * half_depth_front, z_dome_left - uniform(35.0, 50.0) * scale_z),
            (uniform(45.0, 60.0) * scale_xy, uniform(35.0, 45.0) * scale_xy, uniform(35.0, 45.0) * scale_xy),
            (1.0, -0.6, -0.3),
        ),
        spleen=_ellipsoid(
            (0.6 * half_width, body_centre_y + 0.35 * half_depth_back, z_dome_left - uniform(40.0, 55.0) * scale_z),
            (uniform(45.0, 55.0) * scale_xy, uniform(18.0, 24.0) * scale_xy, uniform(28.0, 34.0) * scale_xy),
            (0.5, 1.0, -0.6),
        ),
        trachea_radius_mm=float(uniform(7.5, 9.5) if male else uniform(6.5, 8.0)),
        tree_seed=int(rng.integers(0, 2**62)),
    )
    # The heart sits on the diaphragm behind the sternum, apex to the front left.
    layers = point_layers(anatomy, 0.0, body_centre_y - 1.0, z_dome_right + 0.2 * lung_height)
    cavity_front_y = body_centre_y - float(layers.r_cav)
    heart_scale = scale_xy * (0.95 if female else 1.0) * uniform(0.92, 1.08)
    # Left ventricle round in section, right ventricle a flattened shell in front of it.
    lv_centre = np.array(
        [
            uniform(24.0, 34.0) * scale_xy,
            cavity_front_y + uniform(52.0, 60.0) * heart_scale,
            z_dome_right + uniform(0.08, 0.12) * lung_height,
        ]
    )
    long_axis = unit_vector((uniform(0.55, 0.7), -uniform(0.45, 0.6), -uniform(0.3, 0.45)))
    left_ventricle = _ellipsoid(
        lv_centre,
        (uniform(60.0, 68.0) * heart_scale, uniform(34.0, 38.0) * heart_scale, uniform(34.0, 38.0) * heart_scale),
        long_axis,
    )
    across = unit_vector(np.cross((0.0, 0.0, 1.0), long_axis))
    rv_centre = lv_centre - 28.0 * heart_scale * across + np.array([0.0, 0.0, 6.0 * scale_z])
    right_ventricle = _ellipsoid(
        rv_centre,
        (uniform(55.0, 62.0) * heart_scale, uniform(23.0, 27.0) * heart_scale, uniform(36.0, 40.0) * heart_scale),
        long_axis,
    )
    # The left atrium lies just in front of the spine, below the carina.
    z_la = z_carina - 0.2 * lung_height
    spine_at_la = HeightProfile(anatomy, z_la)
    y_la = float(spine_at_la.y_vb - spine_at_la.vb_b) - 21.0 * scale_xy
    left_atrium = _ellipsoid(
        (2.0 * scale_xy, y_la, z_la), (30.0 * heart_scale, 20.0 * heart_scale, 17.0 * heart_scale), (1.0, 0.0, 0.0)
    )
    right_atrium = _ellipsoid(
        (rv_centre[0] - 38.0 * heart_scale, rv_centre[1] + 20.0 * heart_scale, lv_centre[2] + 14.0 * scale_z),
        (38.0 * heart_scale, 26.0 * heart_scale, 27.0 * heart_scale),
        (0.0, 0.2, 1.0),
    )
    fat_pad = _ellipsoid(
        (lv_centre[0] - 8.0 * scale_xy, cavity_front_y + uniform(8.0, 14.0) * scale_xy, z_dome_right + 0.03 * lung_height),
        (uniform(40.0, 55.0) * scale_xy, uniform(18.0, 26.0) * scale_xy, uniform(16.0, 24.0) * scale_z),
        (1.0, 0.0, 0.0),
    )
    return dataclasses.replace(anatomy, heart=(left_ventricle, left_atrium, right_atrium, right_ventricle), fat_pad=fat_pad)
