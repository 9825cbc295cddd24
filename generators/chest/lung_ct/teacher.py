"""Physics-informed teacher renderer: chest CT label map -> Hounsfield units.

The teacher is what the photorealism network learns to imitate, so it models
the main things a CT image shows beyond tissue classes:

* tissue attenuation per label (non-contrast CT), with per-study calibration
  offsets, a gravity-dependent density gradient in the lungs, cortical rims on
  bone, and smooth low-frequency variation within each tissue;
* unresolved structure (small vessels, interstitium, trabeculae) as fine
  texture that the scanner's blur turns into grain;
* the scanner's resolution: a Gaussian point spread of about 0.6 pixel in
  plane and a fraction of the slice thickness along z (partial volume);
* quantum noise after filtered back-projection: white noise shaped by a ramp
  filter and an apodising window (noise power rising with frequency, then
  cut off), independent between slices, weaker outside the patient.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

from .geometry import CTGrid, Label

__all__ = ["render_hu"]

HU_MIN, HU_MAX = -1024, 3071
_BONES = (Label.BONE, Label.RIB, Label.STERNUM)


def _tissue_tables(rng: np.random.Generator, n_lesions: int):
    """Mean HU, low-frequency amplitude, fine-texture amplitude and noise scale per label."""
    mean = np.zeros(256, np.float32)
    low = np.zeros(256, np.float32)
    fine = np.zeros(256, np.float32)
    noise = np.ones(256, np.float32)
    n = rng.normal
    table = {
        # label: (mean HU, low-frequency amplitude, fine texture, relative noise)
        Label.AIR: (-1000.0, 0.0, 0.0, 0.35),
        Label.FAT: (-100.0 + n(0, 6), 6.0, 6.0, 1.0),
        Label.MUSCLE: (48.0 + n(0, 4), 5.0, 5.0, 1.0),
        Label.LUNG: (float(np.clip(-838.0 + n(0, 12), -860.0, -815.0)), 15.0, 45.0, 1.0),
        Label.AIRWAY: (-990.0, 2.0, 0.0, 0.9),
        Label.VESSEL: (40.0 + n(0, 3), 3.0, 3.0, 1.0),
        Label.HEART: (38.0 + n(0, 3), 3.0, 4.0, 1.0),
        Label.MEDIASTINUM: (32.0 + n(0, 4), 4.0, 6.0, 1.0),
        Label.BONE: (400.0 + n(0, 25), 35.0, 60.0, 1.15),
        Label.RIB: (440.0 + n(0, 30), 35.0, 60.0, 1.15),
        Label.STERNUM: (410.0 + n(0, 25), 30.0, 60.0, 1.15),
        Label.SOFT_TISSUE: (55.0 + n(0, 4), 4.0, 4.0, 1.0),
        Label.TABLE: (-120.0 + n(0, 15), 0.0, 4.0, 0.9),
    }
    for lab, (m, lo, fi, no) in table.items():
        mean[lab], low[lab], fine[lab], noise[lab] = m, lo, fi, no
    tumour = int(Label.TUMOUR)
    mean[tumour : tumour + n_lesions] = np.clip(38.0 + n(0, 6, n_lesions), 24.0, 54.0)
    low[tumour : tumour + n_lesions] = 6.0
    fine[tumour : tumour + n_lesions] = 18.0
    noise[tumour : tumour + n_lesions] = 1.0
    return mean, low, fine, noise


def _interp_matrix(n_out: int, n_in: int, n_full: int | None = None) -> np.ndarray:
    """Linear interpolation weights from ``n_in`` coarse nodes onto ``n_out`` samples.

    With ``n_full``, the samples are the centres of ``n_out`` equal blocks of a
    ``n_full``-sample axis.
    """
    n_full = n_full or n_out
    centres = (np.arange(n_out) + 0.5) * (n_full / n_out) - 0.5
    pos = 0.5 + centres / max(n_full - 1, 1) * (n_in - 2)
    i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 2)
    w = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), i0] = 1.0 - w
    m[np.arange(n_out), i0 + 1] = w
    return m


def _smooth_field(rng: np.random.Generator, grid: CTGrid, corr_mm: float) -> np.ndarray:
    """Unit-variance random field varying over about ``corr_mm``."""
    K, R, C = grid.shape
    ps, ss = grid.pixel_spacing_mm, grid.slice_spacing_mm
    nz = int(np.ceil(K * ss / corr_mm)) + 3
    ny = int(np.ceil(R * ps / corr_mm)) + 3
    nx = int(np.ceil(C * ps / corr_mm)) + 3
    coarse = ndimage.gaussian_filter(rng.standard_normal((nz, ny, nx)), 0.7, mode="wrap")
    coarse = (coarse / max(coarse.std(), 1e-6)).astype(np.float32)
    # Evaluated on 2x2 pixel blocks when pixels are small: the field hardly changes over 1.5 mm.
    q = 2 if ps < 1.0 and R % 2 == 0 and C % 2 == 0 else 1
    t = np.tensordot(_interp_matrix(K, nz), coarse, axes=(1, 0))  # (K, ny, nx)
    t = t @ np.ascontiguousarray(_interp_matrix(C // q, nx, C).T)  # (K, ny, C/q)
    field = np.matmul(_interp_matrix(R // q, ny, R), t)  # (K, R/q, C/q)
    if q > 1:
        field = np.repeat(np.repeat(field, q, axis=1), q, axis=2)
    return field


def _fbp_noise(rng: np.random.Generator, grid: CTGrid, cutoff_per_mm: float) -> np.ndarray:
    """Unit-variance noise with the power spectrum of filtered back-projection, per slice.

    NPS(f) ~ |f| W(f)^2: the ramp filter raises high frequencies and the
    reconstruction kernel's window W (Gaussian here) cuts them off.
    """
    K, R, C = grid.shape
    ps = grid.pixel_spacing_mm
    fy = np.fft.fftfreq(R, d=ps)[:, None]
    fx = np.fft.rfftfreq(C, d=ps)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    h = (np.sqrt(f) * np.exp(-((f / cutoff_per_mm) ** 2))).astype(np.float32)
    # Variance of the output for unit complex input: mean of |H|^2 over the full spectrum.
    full = np.concatenate([h, h[:, 1 : (C - 1) // 2 + 1]], axis=1) if C > 1 else h
    h /= np.sqrt(max(float((full.astype(np.float64) ** 2).mean()), 1e-12))
    out = np.empty((K, R, C), np.float32)
    chunk = 16
    for k0 in range(0, K, chunk):
        k1 = min(K, k0 + chunk)
        re = rng.standard_normal((k1 - k0, R, h.shape[1]), dtype=np.float32)
        im = rng.standard_normal((k1 - k0, R, h.shape[1]), dtype=np.float32)
        spec = (re + 1j * im) * (h * np.float32(np.sqrt(0.5)))
        out[k0:k1] = scipy.fft.irfft2(spec, s=(R, C), norm="ortho", workers=2)
    return out


def render_hu(labels: np.ndarray, grid: CTGrid, rng: np.random.Generator) -> np.ndarray:
    """Render a label volume as a non-contrast chest CT in Hounsfield units.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(n_slices, rows, columns)`` uint8 from :func:`.geometry.label_volume`.
    grid : CTGrid
        The volume's grid (pixel and slice spacing set the blur and noise scale).
    rng : numpy.random.Generator
        Source of the study's calibration offsets, texture and noise; the same
        seed gives byte-identical output.

    Returns
    -------
    numpy.ndarray
        int16 HU volume of the same shape, clipped to [-1024, 3071].

    Raises
    ------
    ValueError
        If ``labels`` is not a uint8 volume of the grid's shape.
    """
    labels = np.asarray(labels)
    if labels.dtype != np.uint8 or labels.shape != grid.shape:
        raise ValueError(f"labels must be a uint8 array of shape {grid.shape}, got {labels.dtype} {labels.shape}.")
    tumour = int(Label.TUMOUR)
    n_lesions = int(labels.max()) - tumour + 1 if labels.max() >= tumour else 0
    mean, low, fine, noise_scale = _tissue_tables(rng, max(n_lesions, 0))
    ps = grid.pixel_spacing_mm

    hu = mean[labels]
    # Dependent (posterior) lung is denser when lying supine.
    lung = labels == Label.LUNG
    slope = np.float32(rng.uniform(0.12, 0.3))
    rows = lung.sum(axis=(0, 2)).astype(np.float64)
    y = grid.y_mm()
    y_ref = float((rows * y).sum() / rows.sum()) if rows.sum() else 0.0
    grad = (slope * (y - y_ref)).astype(np.float32)
    np.add(hu, grad[None, :, None], out=hu, where=lung)
    # Vessels below the resolution limit: sparse specks that the blur turns into faint dots.
    specks = rng.random(labels.shape, dtype=np.float32) < np.float32(rng.uniform(0.003, 0.006))
    specks &= lung
    hu[specks] += np.float32(rng.uniform(250.0, 400.0))
    del lung, specks
    field = _smooth_field(rng, grid, corr_mm=float(rng.uniform(30.0, 50.0)))
    field *= low[labels]
    hu += field
    # Unresolved structure: white texture that the blur below turns into grain.
    field = rng.standard_normal(labels.shape, dtype=np.float32)
    field *= fine[labels]
    hu += field
    del field

    # Cortical bone is a thin dense rim around cancellous bone; the couch has a hard shell.
    rim = np.zeros((1, 3, 3), bool)
    rim[0, 1, :] = rim[0, :, 1] = True
    iters = max(1, int(round(1.0 / ps)))
    bone = np.isin(labels, _BONES)
    core = ndimage.binary_erosion(bone, structure=rim, iterations=iters)
    hu[bone & ~core] = np.float32(rng.uniform(750.0, 1000.0))
    del bone, core
    table = labels == Label.TABLE
    shell = table & ~ndimage.binary_erosion(table, structure=rim, iterations=1)
    hu[shell] = np.float32(rng.uniform(150.0, 300.0))
    del table, shell

    # Scanner resolution: in-plane PSF and slice sensitivity profile.
    sigma_xy = 0.6 * float(rng.uniform(0.9, 1.15))
    sigma_z = 0.35 * float(rng.uniform(0.9, 1.1))
    hu = ndimage.gaussian_filter(hu, sigma=(sigma_z, sigma_xy, sigma_xy), mode="nearest", truncate=3.0)

    # Quantum noise after filtered back-projection.
    sd = np.float32(rng.uniform(10.0, 18.0))
    noise = _fbp_noise(rng, grid, cutoff_per_mm=float(rng.uniform(0.45, 0.65)))
    noise *= (sd * noise_scale)[labels]
    hu += noise
    del noise
    np.clip(hu, HU_MIN, HU_MAX, out=hu)
    return np.rint(hu).astype(np.int16)
