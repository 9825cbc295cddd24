"""Voxel grids in DICOM patient coordinates, shared by the generators and the IOD builders.

A generator draws its label map on a :class:`VolumeGrid`; the CT builder
writes the same grid as the Image Plane Module (PS3.3 C.7.6.2) of each
slice, so the two agree on where every voxel lies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["VolumeGrid"]


@dataclass(frozen=True)
class VolumeGrid:
    """Voxel grid of an axial series in patient coordinates (LPS, mm).

    Parameters
    ----------
    rows, columns, n_slices : int
        The volume's shape is ``(n_slices, rows, columns)``.
    pixel_spacing_mm : float
        In-plane spacing (square pixels): Pixel Spacing (0028,0030).
    slice_spacing_mm : float
        Distance between slice centres, equal to the slice thickness.

    Raises
    ------
    ValueError
        If a size is not a positive integer or a spacing not a positive
        finite number.

    Notes
    -----
    Coordinates follow the DICOM patient coordinate system of the Image
    Plane Module (PS3.3 C.7.6.2.1.1): +x towards the patient's left, +y
    posterior, +z superior (LPS).  Image Orientation (Patient) is
    ``[1, 0, 0, 0, 1, 0]``: the column index runs along +x and the row
    index along +y.  The field of view is centred on ``x = y = 0``; slice 0
    (the most superior) lies at ``z = z_top_mm = 0`` and slice ``k`` at
    ``z = -k * slice_spacing_mm``.  Image Position (Patient) of slice ``k``
    is ``position_mm(k, 0, 0)``, the centre of its first transmitted pixel.
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
                raise ValueError(f"VolumeGrid.{name} must be a positive integer, got {value!r}.")
        for name in ("pixel_spacing_mm", "slice_spacing_mm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating)) and value > 0 and math.isfinite(value)):
                raise ValueError(f"VolumeGrid.{name} must be a positive number, got {value!r}.")

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
            ``(x, y, z)`` in mm: floats for scalar indices, arrays otherwise.
        """
        spacing = self.pixel_spacing_mm
        x = (np.asarray(c, dtype=float) - (self.columns - 1) / 2.0) * spacing
        y = (np.asarray(r, dtype=float) - (self.rows - 1) / 2.0) * spacing
        z = self.z_top_mm - np.asarray(k, dtype=float) * self.slice_spacing_mm
        return _scalar_or_array(x), _scalar_or_array(y), _scalar_or_array(z)

    def index_of(self, x, y, z):
        """Fractional voxel index ``(k, r, c)`` of a patient position; inverse of :meth:`position_mm`."""
        spacing = self.pixel_spacing_mm
        k = (self.z_top_mm - np.asarray(z, dtype=float)) / self.slice_spacing_mm
        r = np.asarray(y, dtype=float) / spacing + (self.rows - 1) / 2.0
        c = np.asarray(x, dtype=float) / spacing + (self.columns - 1) / 2.0
        return _scalar_or_array(k), _scalar_or_array(r), _scalar_or_array(c)

    def x_mm(self) -> np.ndarray:
        """x of every column centre."""
        return (np.arange(self.columns) - (self.columns - 1) / 2.0) * self.pixel_spacing_mm

    def y_mm(self) -> np.ndarray:
        """y of every row centre."""
        return (np.arange(self.rows) - (self.rows - 1) / 2.0) * self.pixel_spacing_mm

    def z_mm(self) -> np.ndarray:
        """z of every slice centre."""
        return self.z_top_mm - np.arange(self.n_slices) * self.slice_spacing_mm


def _scalar_or_array(a: np.ndarray):
    return float(a) if a.ndim == 0 else a
