"""Label volumes: the anatomy slice by slice, its tubes, then the visit's lesions.

A volume is made in slice ranges, on demand: the first image of a series needs
only its own slab. Every range is exactly what the whole volume holds there:
slices are labelled one at a time, tubes splatted per range (a voxel's result
depends on its own label only). A lesion is drawn on its own box of the
anatomy, labelled as a window (rows and columns too, so the SEG and SR of a
study need only a few percent of its voxels), with the earlier lesions in that
box painted in; the volume is the anatomy with every lesion painted in order.
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
from .lesions import Box, LesionSite, lesion_bound, lesion_mask
from .tubes import sample_tubes, splat
from .vessels import network

__all__ = ["VisitLabels", "anatomy_volume", "label_volume"]


#: Slices labelled between two checkpoints (about 0.2 s).
_SLICES_PER_STEP = 4
#: Slices of a window (a lesion's box: a few percent of a slice) labelled between two checkpoints.
_WINDOW_SLICES_PER_STEP = 16


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

    def window(self, box: Box) -> np.ndarray:
        """The anatomy of a box of the grid, labelled on its own (rows and columns too): exactly
        what the volume holds there, as a new array."""
        ks, rows, cols = box
        with self._lock:
            if self._done[ks].all():
                return self.volume[box].copy()
            pl, table, tubes = self._prepare()
        window, table = pl.window(rows, cols), table[rows, cols]
        z = self.grid.z_mm()
        out = np.empty((ks.stop - ks.start, rows.stop - rows.start, cols.stop - cols.start), np.uint8)
        for i, k in enumerate(range(ks.start, ks.stop)):
            out[i] = slice_labels(self.anat, window, float(z[k]), table)
            if i % _WINDOW_SLICES_PER_STEP == _WINDOW_SLICES_PER_STEP - 1:
                checkpoint()
        for pts, rad, value, allowed in tubes:
            splat(out, self.grid, pts, rad, value, allowed, origin=(ks.start, rows.start, cols.start))
        return out


@functools.lru_cache(maxsize=2)
def _anatomy(anat: ChestAnatomy, grid: VolumeGrid) -> _AnatomySlices:
    """The anatomy of a patient's grid, shared by its visits (two kept: two studies generating)."""
    return _AnatomySlices(anat, grid)


def anatomy_volume(anat: ChestAnatomy, grid: VolumeGrid) -> np.ndarray:
    """Label map of the anatomy alone (no lesions), read-only: slices, then the tubes."""
    view = _anatomy(anat, grid).ensure(0, grid.n_slices).view()
    view.setflags(write=False)
    return view


def _overlap(a: Box | None, b: Box) -> Box | None:
    """The intersection of two boxes, None when they do not meet."""
    if a is None:
        return None
    inter = tuple(slice(max(x.start, y.start), min(x.stop, y.stop)) for x, y in zip(a, b))
    return None if any(s.start >= s.stop for s in inter) else (inter[0], inter[1], inter[2])


def _paint(target: np.ndarray, target_box: Box, lesion: tuple[Box, np.ndarray] | None, value: int) -> None:
    """Set ``value`` where a lesion's mask lies inside ``target`` (which holds ``target_box``)."""
    if lesion is None:
        return
    box, mask = lesion
    inter = _overlap(box, target_box)
    if inter is None:
        return
    there = tuple(slice(i.start - t.start, i.stop - t.start) for i, t in zip(inter, target_box))
    inside = tuple(slice(i.start - m.start, i.stop - m.start) for i, m in zip(inter, box))
    target[there][mask[inside]] = value


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
        # Where each lesion may lie (its largest box), then, once drawn, the box it drew in.
        self._bounds: list[Box | None] = [lesion_bound(grid, site, diam) if diam > 0 else None for site, diam in self._lesions]
        self._masks: list[tuple[Box, np.ndarray] | None] = [None] * len(lesions)
        self._drawn = [bound is None for bound in self._bounds]
        self._final = np.zeros(grid.n_slices, bool)
        self.volume = np.zeros(grid.shape, np.uint8)

    @staticmethod
    def _value(i: int) -> int:
        return int(Label.TUMOUR) + i

    def _mask(self, i: int) -> tuple[Box, np.ndarray] | None:
        """Lesion ``i``'s box and voxels, drawn on the anatomy and the earlier lesions of its box."""
        if not self._drawn[i]:
            site, diam = self._lesions[i]
            drawn = lesion_mask(lambda box: self._read(box, before=i), self.anatomy, self.grid, site, diam)
            self._masks[i], self._bounds[i], self._drawn[i] = drawn, drawn[0] if drawn else None, True
        return self._masks[i]

    def _read(self, box: Box, before: int) -> np.ndarray:
        """The labels of a box as lesion ``before`` finds them: the anatomy, lesions ``0..before-1``."""
        sub = _anatomy(self.anatomy, self.grid).window(box)
        for j in range(before):
            if _overlap(self._bounds[j], box) is not None:
                _paint(sub, box, self._mask(j), self._value(j))
        return sub

    def slices(self, start: int, stop: int) -> np.ndarray:
        """Slices ``start..stop-1`` (clipped to the grid), final."""
        start, stop = max(0, start), min(self.grid.n_slices, stop)
        missing = ~self._final[start:stop]
        if missing.any():
            anatomy = _anatomy(self.anatomy, self.grid).ensure(start, stop)
            _, R, C = self.grid.shape
            for a, b in _runs(missing, start):
                run = (slice(a, b), slice(0, R), slice(0, C))
                self.volume[a:b] = anatomy[a:b]
                for i in range(len(self._lesions)):
                    if _overlap(self._bounds[i], run) is not None:
                        _paint(self.volume[a:b], run, self._mask(i), self._value(i))
                self._final[a:b] = True
        return self.volume[start:stop]

    def whole(self) -> np.ndarray:
        self.slices(0, self.grid.n_slices)
        return self.volume

    def with_lesions(self) -> np.ndarray:
        """The volume with every lesion painted: its lesion voxels are final (what a SEG and a
        measurement read); slices not made yet hold nothing else (no anatomy)."""
        whole = (slice(0, self.grid.n_slices), slice(0, self.grid.rows), slice(0, self.grid.columns))
        for i in range(len(self._lesions)):
            _paint(self.volume, whole, self._mask(i), self._value(i))
        return self.volume


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
