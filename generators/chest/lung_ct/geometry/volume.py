"""Label volumes: the anatomy slice by slice, its tubes, then the visit's lesions."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from synthpacs.imaging.spatial import VolumeGrid

from .anatomy import ChestAnatomy
from .body import slice_labels, table_mask
from .fields import Plane
from .labels import MAX_LESIONS, Label
from .lesions import LesionSite, draw_lesion
from .tubes import sample_tubes, splat
from .vessels import network

__all__ = ["anatomy_volume", "label_volume"]


@functools.lru_cache(maxsize=2)
def anatomy_volume(anat: ChestAnatomy, grid: VolumeGrid) -> np.ndarray:
    """Label map of the anatomy alone (no lesions), read-only and cached: slices, then the tubes."""
    K, R, C = grid.shape
    x = grid.x_mm().astype(np.float32)
    y = grid.y_mm().astype(np.float32)
    X = np.broadcast_to(x[None, :], (R, C))
    Y = np.broadcast_to(y[:, None], (R, C))
    pl = Plane(anat, X, Y)
    pl.x1d, pl.y1d = x, y
    table = table_mask(anat, X, Y)
    labels = np.empty((K, R, C), np.uint8)
    for k, z in enumerate(grid.z_mm()):
        labels[k] = slice_labels(anat, pl, float(z), table)
    net = network(anat)
    for ts in net.margins + net.groups:
        pts, rad = sample_tubes(ts, grid)
        splat(labels, grid, pts, rad, ts.value, ts.allowed)
    labels.setflags(write=False)
    return labels


def label_volume(anatomy: ChestAnatomy, grid: VolumeGrid, lesions: Sequence[tuple[LesionSite, float]]) -> np.ndarray:
    """Label map of one visit: the patient's anatomy plus lesions at their sizes.

    Parameters
    ----------
    anatomy : ChestAnatomy
        From :func:`draw_anatomy` (the same object at every visit).
    grid : VolumeGrid
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
    labels = anatomy_volume(anatomy, grid).copy()
    for i, (site, diam) in enumerate(lesions):
        if diam > 0:
            draw_lesion(labels, anatomy, grid, site, float(diam), int(Label.TUMOUR) + i)
    return labels
