"""Label volumes: the anatomy slice by slice, its tubes, then the visit's lesions.

A volume is made in slice ranges, on demand: the first image of a series needs
only its own slab. Every range is exactly what the whole volume holds there:
slices are labelled one at a time, tubes splatted per range (a voxel's result
depends on its own label only), and a lesion, which reads the slices of its
box, is drawn once those slices and every earlier lesion overlapping them are.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Sequence

import numpy as np

from synthpacs.generation.cooperative import checkpoint
from synthpacs.imaging.spatial import VolumeGrid

from .anatomy import ChestAnatomy
from .body import slice_labels, table_mask
from .fields import Plane
from .labels import MAX_LESIONS, Label
from .lesions import LesionSite, draw_lesion, lesion_slices
from .tubes import sample_tubes, splat
from .vessels import network

__all__ = ["VisitLabels", "anatomy_volume", "label_volume"]


#: Slices labelled between two checkpoints (about 0.2 s).
_SLICES_PER_STEP = 4


def _runs(missing: np.ndarray, offset: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` runs of True in ``missing``, shifted by ``offset``."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], missing.astype(np.int8), [0]))))
    return [(offset + int(a), offset + int(b)) for a, b in zip(edges[::2], edges[1::2])]


class _AnatomySlices:
    """One patient's anatomy on one grid (no lesions), labelled slice range by slice range."""

    def __init__(self, anat: ChestAnatomy, grid: VolumeGrid):
        self.anat, self.grid = anat, grid
        self.volume = np.zeros(grid.shape, np.uint8)
        self._done = np.zeros(grid.n_slices, bool)
        self._lock = threading.Lock()
        self._plane: tuple[Plane, np.ndarray] | None = None
        self._tubes: list[tuple[np.ndarray, np.ndarray, int, tuple[int, ...]]] | None = None

    def _prepare(self) -> tuple[Plane, np.ndarray, list]:
        if self._plane is None or self._tubes is None:
            anat, grid = self.anat, self.grid
            _, R, C = grid.shape
            x = grid.x_mm().astype(np.float32)
            y = grid.y_mm().astype(np.float32)
            X = np.broadcast_to(x[None, :], (R, C))
            Y = np.broadcast_to(y[:, None], (R, C))
            pl = Plane(anat, X, Y)
            pl.x1d, pl.y1d = x, y
            self._plane = pl, table_mask(anat, X, Y)
            net = network(anat)
            self._tubes = [(*sample_tubes(ts, grid), ts.value, ts.allowed) for ts in net.margins + net.groups]
        return (*self._plane, self._tubes)

    def ensure(self, start: int, stop: int) -> np.ndarray:
        """Label slices ``start..stop-1`` (those not labelled yet); returns the whole volume.

        A few slices at a time, with a checkpoint outside the lock between them
        (background work yields to clients there; the tubes splat the same per
        range as whole).
        """
        while True:
            with self._lock:
                missing = ~self._done[start:stop]
                if not missing.any():
                    return self.volume
                pl, table, tubes = self._prepare()
                a, b = _runs(missing, start)[0]
                b = min(b, a + _SLICES_PER_STEP)
                for k in range(a, b):
                    self.volume[k] = slice_labels(self.anat, pl, float(self.grid.z_mm()[k]), table)
                for pts, rad, value, allowed in tubes:
                    splat(self.volume, self.grid, pts, rad, value, allowed, slices=(a, b))
                self._done[a:b] = True
            checkpoint()


@functools.lru_cache(maxsize=2)
def _anatomy(anat: ChestAnatomy, grid: VolumeGrid) -> _AnatomySlices:
    """The anatomy of a patient's grid, shared by its visits (two kept: two studies generating)."""
    return _AnatomySlices(anat, grid)


def anatomy_volume(anat: ChestAnatomy, grid: VolumeGrid) -> np.ndarray:
    """Label map of the anatomy alone (no lesions), read-only: slices, then the tubes."""
    view = _anatomy(anat, grid).ensure(0, grid.n_slices).view()
    view.setflags(write=False)
    return view


class VisitLabels:
    """The label map of one visit, made on demand: ``slices(a, b)`` is exactly ``label_volume``'s
    slices ``a..b-1``; ``whole()`` is the volume.

    Not for concurrent use (a study's parts are made one at a time).

    Raises
    ------
    ValueError
        If there are more lesions than labels, or a diameter is negative.
    """

    def __init__(self, anatomy: ChestAnatomy, grid: VolumeGrid, lesions: Sequence[tuple[LesionSite, float]]):
        if len(lesions) > MAX_LESIONS:
            raise ValueError(f"At most {MAX_LESIONS} lesions fit in a uint8 label volume, got {len(lesions)}.")
        for i, (_, diam) in enumerate(lesions):
            if not (diam >= 0 and math.isfinite(diam)):
                raise ValueError(f"Lesion {i} diameter must be a non-negative number of mm, got {diam!r}.")
        self.anatomy, self.grid = anatomy, grid
        self.sites = [site for site, _ in lesions]
        self._lesions = [(site, float(diam)) for site, diam in lesions]
        self._reach = [lesion_slices(grid, site, diam) if diam > 0 else (0, 0) for site, diam in self._lesions]
        self._drawn = [diam <= 0 for _, diam in self._lesions]
        self._copied = np.zeros(grid.n_slices, bool)
        self.volume = np.zeros(grid.shape, np.uint8)

    def _overlapping(self, start: int, stop: int, before: int) -> list[int]:
        return [j for j in range(before) if self._reach[j][0] < stop and start < self._reach[j][1]]

    def slices(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start..stop-1`` (clipped to the grid), final."""
        start, stop = max(0, start), min(self.grid.n_slices, stop)
        self._copy_anatomy(start, stop)
        for i in self._overlapping(start, stop, len(self._lesions)):
            self._draw(i)
        return self.volume[start:stop]

    def _draw(self, i: int) -> None:
        """Draw lesion ``i`` as ``label_volume`` does, after the anatomy and the earlier lesions of
        every slice it reads; its reach becomes the box it drew in."""
        if self._drawn[i]:
            return
        bound = self._reach[i]

        def prepare(k0: int, k1: int) -> None:
            if not (bound[0] <= k0 and k1 <= bound[1]):
                raise RuntimeError(f"lesion {i} reached slices {k0}..{k1} beyond its bound {bound[0]}..{bound[1]}")
            for j in self._overlapping(k0, k1, before=i):
                self._draw(j)
            self._copy_anatomy(k0, k1)

        site, diam = self._lesions[i]
        box = draw_lesion(self.volume, self.anatomy, self.grid, site, diam, int(Label.TUMOUR) + i, prepare=prepare)
        self._drawn[i] = True
        self._reach[i] = (box[0].start, box[0].stop) if box is not None else (0, 0)

    def whole(self) -> np.ndarray:
        self.slices(0, self.grid.n_slices)
        return self.volume

    def with_lesions(self) -> np.ndarray:
        """The volume with every lesion drawn: its lesion voxels are final (what a SEG and a
        measurement read); slices no lesion reads may still be unlabelled."""
        for i in range(len(self._lesions)):
            self._draw(i)
        return self.volume

    def _copy_anatomy(self, start: int, stop: int) -> None:
        missing = ~self._copied[start:stop]
        if missing.any():
            anatomy = _anatomy(self.anatomy, self.grid).ensure(start, stop)
            for a, b in _runs(missing, start):
                self.volume[a:b] = anatomy[a:b]
            self._copied[start:stop] = True


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
    return VisitLabels(anatomy, grid, lesions).whole()
