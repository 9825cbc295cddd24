"""Where lung lesions go: sites deep in the parenchyma, away from the hila, favouring the upper lobes."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synthpacs.imaging.spatial import VolumeGrid

from .anatomy import ChestAnatomy
from .fields import BodyLayers, HeightProfile, Plane, lung_side
from .labels import MAX_LESIONS, Label
from .lesions import LesionSite, draw_shape
from .vessels import network
from .volume import anatomy_volume

__all__ = ["place_lesions"]


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
    lung_height = anat.lung_height_mm
    yb = anat.body_centre_y_mm
    y_ant = yb - 0.6 * anat.body_half_depth_anterior_mm
    y_post = yb + 0.6 * anat.body_half_depth_posterior_mm
    z_dome = np.where(side == 1, anat.z_dome_right_mm, anat.z_dome_left_mm)
    z_low = z_dome + 0.06 * lung_height
    z_high = anat.z_apex_mm - 0.3 * lung_height
    w = np.clip((y - y_ant) / (y_post - y_ant), -0.5, 1.5)
    lower = z < z_low + w * (z_high - z_low)
    middle = (side == 1) & (z < anat.z_apex_mm - 0.48 * lung_height)
    return np.where(lower, 2, np.where(middle, 1, 0))


def _side_volume(anat: ChestAnatomy, grid: VolumeGrid) -> np.ndarray:
    """Lung side (0 none, 1 right, 2 left) of every voxel, before tubes are drawn."""
    K, R, C = grid.shape
    x, y = grid.x_mm(), grid.y_mm()
    pl = Plane(anat, np.broadcast_to(x[None, :], (R, C)), np.broadcast_to(y[:, None], (R, C)))
    side = np.zeros(grid.shape, np.uint8)
    for k, z in enumerate(grid.z_mm()):
        pr = HeightProfile(anat, float(z))
        side[k] = lung_side(anat, pl, pr, BodyLayers(anat, pl, pr))
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


def place_lesions(anatomy: ChestAnatomy, grid: VolumeGrid, count: int, rng: np.random.Generator) -> list[LesionSite]:
    """Choose sites for ``count`` lung lesions.

    Sites lie well inside the lung parenchyma (with room for a 50 mm lesion
    where the lungs allow), away from the hila, within the grid's slices
    (each centre on a slice), and at least 25 mm apart (60 mm where there is
    room); upper lobes are favoured, as in lung cancer.  Each site gets its
    own irregular shape.

    Parameters
    ----------
    anatomy : ChestAnatomy
    grid : VolumeGrid
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
    coarse = VolumeGrid(
        rows=max(8, int(round(grid.rows * grid.pixel_spacing_mm / ps))),
        columns=columns,
        n_slices=nz,
        pixel_spacing_mm=ps,
        slice_spacing_mm=max(extent_z / (nz - 1), 1e-3),
    )
    lab = anatomy_volume(anatomy, coarse)
    side = _side_volume(anatomy, coarse)
    lung = ((lab == Label.LUNG) | (lab == Label.VESSEL)) & (side > 0)
    room = ndimage.distance_transform_edt(lung, sampling=(coarse.slice_spacing_mm, ps, ps))
    Z, Y, X = np.meshgrid(coarse.z_mm(), coarse.y_mm(), coarse.x_mm(), indexing="ij")
    hilum = np.full(lab.shape, np.inf)
    for h in network(anatomy).hila:
        hilum = np.minimum(hilum, np.sqrt((X - h[0]) ** 2 + (Y - h[1]) ** 2 + (Z - h[2]) ** 2))
    margin_z = min(15.0, 0.25 * extent_z)
    z_ok = (Z <= grid.z_top_mm - margin_z) & (Z >= grid.z_top_mm - extent_z + margin_z)
    scale_xy = anatomy.scale_xy
    chosen: list[tuple[np.ndarray, int]] = []
    for need, sep, gap in _PLACEMENT_STEPS:
        idx = np.flatnonzero(lung & (room >= need) & (hilum >= gap * scale_xy) & z_ok)
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
                shape=draw_shape(rng),
            )
        )
    return sites
