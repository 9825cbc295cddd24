"""Lesion measurement: the longest axial diameter, as a RECIST 1.1 reader measures it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from synthpacs.imaging.spatial import VolumeGrid

from .labels import MAX_LESIONS, Label

__all__ = ["LesionMeasurement", "lesion_measurement", "max_axial_diameter", "max_diameter_2d"]


@dataclass(frozen=True)
class LesionMeasurement:
    """One lesion's longest axial diameter on a label volume.

    Attributes
    ----------
    slice : int
        Index of the axial slice where the in-plane diameter is longest.
    points : tuple of two (int, int)
        ``(row, column)`` of the centres of the diameter's two end pixels.
    diameter_mm : float
        Their distance in mm.
    """

    slice: int
    points: tuple[tuple[int, int], tuple[int, int]]
    diameter_mm: float


Pixel = tuple[int, int]


def max_diameter_2d(mask: np.ndarray) -> tuple[float, Pixel | None, Pixel | None]:
    """Longest distance (pixels) between centres of two pixels of a 2-D mask, with the pair."""
    if not mask.any():
        return -1.0, None, None
    edge = mask & ~ndimage.binary_erosion(mask)
    rr, cc = np.nonzero(edge)
    if rr.size == 1:
        return 0.0, (int(rr[0]), int(cc[0])), (int(rr[0]), int(cc[0]))
    pts = np.stack([rr, cc], axis=1).astype(np.float64)
    if len(pts) > 48:  # the farthest pair are hull vertices (the same pair, in the same order)
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


def max_axial_diameter(mask3: np.ndarray) -> float:
    """Longest in-plane diameter (pixels) over the slices of a 3-D mask; -1 when it is empty."""
    best = -1.0
    for k in range(mask3.shape[0]):
        if mask3[k].any():
            best = max(best, max_diameter_2d(mask3[k])[0])
    return best


def lesion_measurement(labels: np.ndarray, grid: VolumeGrid, index: int) -> LesionMeasurement | None:
    """Measure a lesion the way a RECIST reader does: its longest axial diameter.

    Parameters
    ----------
    labels : numpy.ndarray
        A label volume from :func:`label_volume`.
    grid : VolumeGrid
        Its grid.
    index : int
        Lesion index (label ``Label.TUMOUR + index``).

    Returns
    -------
    LesionMeasurement or None
        The axial slice with the longest in-plane diameter, the centres of
        the two end pixels and their distance; None when the lesion is absent.

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
    best: tuple[float, int, Pixel, Pixel] | None = None
    for k in present:
        d, p0, p1 = max_diameter_2d(labels[k] == value)
        if p0 is None or p1 is None:
            continue  # not reached: the lesion is present on slice k
        if best is None or d > best[0]:
            best = (d, int(k), p0, p1)
    if best is None:
        return None
    d, slice_index, p0, p1 = best
    return LesionMeasurement(slice=slice_index, points=(p0, p1), diameter_mm=float(d * grid.pixel_spacing_mm))
