"""Lung-CT GAN inference: a label volume and a random generator -> a HU volume.

Inference only (``__call__`` under ``torch.inference_mode``); training lives
in :mod:`.training`. One series is rendered in batches of slices. What makes
the series coherent along the body axis, so that coronal and sagittal
reformats show no banding:

* one **series latent** ``z``; its calibration entries (tissue levels, noise,
  see :data:`STYLE_STATISTICS`) are the same on every slice, and its free
  entries get a small **drift** that is smooth along z (a Gaussian process
  with a correlation length of ``drift_mm``), so style changes slowly over
  centimetres, never from one slice to the next;
* **noise** drawn as 3-D fields: the per-pixel maps are correlated between
  neighbouring slices as the teacher's texture is (``noise_z_sigma_slices``;
  each slice's draws keyed by the slice, :class:`KeyedNoise`, so a slab
  draws only its own), and the 1/8-resolution density field is smooth in
  all three directions (``field_mm``);
* each slice sees its neighbours' labels (2.5-D conditioning).

All randomness is drawn on the CPU from the ``numpy.random.Generator`` the
caller passes (the archive keys it by the study's path), in a fixed order,
then moved to the device: a seed gives the same series on any device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from synthpacs.generation.cooperative import checkpoint
from synthpacs.generation.pipeline import GANPipeline, KeyedNoise, MixedNoise, mix, smooth_along, standard_normal, truncate

from .batching import SliceBatcher, SliceInputs
from .networks import LESION_CLASS, N_CLASSES, LungCTGenerator, SliceRenderer

#: The calibration a study's latent carries, measured on teacher (or user) volumes in training.
STYLE_STATISTICS = ("lung_hu", "fat_hu", "muscle_hu", "bone_hu", "tumour_hu", "noise_sd", "noise_grain", "lung_gradient")

#: Pipeline settings recorded in generator.json under "pipeline" (these are the defaults).
PIPELINE_DEFAULTS = {
    "drift_mm": 60.0,  # correlation length of the per-slice latent drift along z
    "drift_amplitude": 0.25,  # drift size relative to the series latent (variance preserved)
    "field_mm": 40.0,  # correlation length of the smooth density field
    "noise_z_sigma_slices": 0.35,  # z-correlation of the fine noise (the teacher's slice profile)
    "style_clip": 2.5,  # |z| limit on the calibration entries at inference (the training range)
    "precision": "auto",  # convolutions in float32, bfloat16, or auto: bfloat16 on a CPU with AMX, else float32
}

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}

MIN_HU, MAX_HU = -1024, 3071
MULTIPLE = 8  # height and width are padded to a multiple of this


@dataclass
class LatentSample:
    """Everything random about one rendering of one series."""

    z: np.ndarray  # (z_dim,) the series latent
    drift: np.ndarray  # (n_slices, z_dim - style_dims) smooth per-slice drift of the free entries
    noise: list[Any] = field(default_factory=list)  # per input map, (n_slices, h, w) N(0, 1): arrays or KeyedNoise

    @staticmethod
    def interpolate(a: LatentSample, b: LatentSample, t: float) -> LatentSample:
        """The sample a fraction ``t`` of the way from ``a`` to ``b`` (exactly ``a`` at 0 and ``b`` at 1).

        Every part is mixed on the variance-preserving path (``cos``/``sin``
        weights), so intermediate frames are as noisy as the endpoints.
        """
        if a.z.shape != b.z.shape or a.drift.shape != b.drift.shape or len(a.noise) != len(b.noise):
            raise ValueError("the two samples were drawn for different series shapes")
        return LatentSample(mix(a.z, b.z, t), mix(a.drift, b.drift, t), [MixedNoise(x, y, t) for x, y in zip(a.noise, b.noise)])


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The convolutions' dtype: ``float32``, ``bfloat16``, or ``auto``.

    ``auto`` is bfloat16 on a CPU with AMX (its tile unit runs bfloat16
    convolutions several times faster than float32, see the model card) and
    float32 everywhere else.
    """
    if precision == "auto":
        amx = device.type == "cpu" and bool(torch.cpu.get_capabilities().get("amx_bf16", False))
        return torch.bfloat16 if amx else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    return PRECISIONS[precision]


#: Geometry label code -> GAN class for label codes 0..255 (``networks.label_classes`` as a table).
_CLASS_TABLE = np.array([c if c < N_CLASSES else (LESION_CLASS if c >= 100 else 11) for c in range(256)], np.uint8)


def gan_classes(labels: np.ndarray) -> np.ndarray:
    """Geometry labels -> GAN classes (uint8), as :func:`networks.label_classes` maps them."""
    if labels.dtype == np.uint8:
        return _CLASS_TABLE[labels]
    codes = labels.astype(np.int64)
    classes = np.where(codes >= 100, LESION_CLASS, codes)
    return np.where((classes < 0) | (classes >= N_CLASSES), 11, classes).astype(np.uint8)


def _padded(size: int) -> int:
    return int(math.ceil(size / MULTIPLE) * MULTIPLE)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], sigma_zyx: tuple[float, float, float]) -> np.ndarray:
    """A unit-variance 3-D Gaussian random field with the given correlation (in voxels) per axis."""
    values = standard_normal(rng, shape)
    for axis, sigma in enumerate(sigma_zyx):
        values = smooth_along(values, sigma, axis=axis)
    return values


class LungCTPipeline(GANPipeline):
    """The lung-CT GAN on a device: ``pipeline(labels, pixel_spacing_mm, slice_spacing_mm, rng=...)``."""

    network_class = LungCTGenerator

    def __init__(
        self,
        network: LungCTGenerator,
        record: dict[str, Any] | None = None,
        device="cpu",
        source: str | None = None,
        psi: float = 1.0,
        batch_slices: int = 8,
        precision: str | None = None,
    ):
        super().__init__(network, record, device, source)
        self.settings = {**PIPELINE_DEFAULTS, **dict(self.record.get("pipeline", {}))}
        if precision is not None:
            self.settings["precision"] = precision
        self.psi = float(psi)
        self.batch_slices = int(batch_slices)
        self.dtype = resolve_precision(str(self.settings["precision"]), self.device)
        self.batcher: SliceBatcher | None = None
        self._batch_on_accelerators()

    def to(self, device: str | torch.device):
        super().to(device)
        self.dtype = resolve_precision(str(self.settings["precision"]), self.device)
        self._batch_on_accelerators()
        return self

    def _batch_on_accelerators(self) -> None:
        """On a GPU, slices of concurrent requests share passes (:mod:`.batching`); on a CPU one
        slice per pass is as fast, and the per-slice renderer is used."""
        on_cpu = self.device.type == "cpu"
        self.batcher = None if on_cpu else SliceBatcher(cast(LungCTGenerator, self.network), max(2, self.batch_slices))

    def batch_across_requests(self, batch: int, gather_s: float = 0.004) -> SliceBatcher:
        """Render through a :class:`SliceBatcher` of ``batch`` slices on any device (tests, benchmarks)."""
        self.batcher = SliceBatcher(cast(LungCTGenerator, self.network), batch, gather_s)
        return self.batcher

    # -- randomness ----------------------------------------------------------------------

    def sample(
        self, rng: np.random.Generator, shape: tuple[int, int, int], pixel_spacing_mm: float, slice_spacing_mm: float
    ) -> LatentSample:
        """Draw the latent, drift and noise of one series of ``shape`` (slices, rows, columns).

        The draws happen in a fixed order on the CPU, so the same generator
        state gives the same sample everywhere.
        """
        net = cast(LungCTGenerator, self.network)
        n_slices, rows, columns = shape
        height, width = _padded(rows), _padded(columns)
        s = self.settings
        z = standard_normal(rng, (net.z_dim,))
        z[: net.style_dims] = np.clip(z[: net.style_dims], -s["style_clip"], s["style_clip"])
        drift = smooth_along(standard_normal(rng, (n_slices, net.z_dim - net.style_dims)), s["drift_mm"] / slice_spacing_mm)
        key = int(rng.integers(0, 2**63))  # the per-pixel maps: each slice's draws keyed by it, made when rendered
        noise: list[Any] = [
            KeyedNoise(key, level, (n_slices, height >> level, width >> level), s["noise_z_sigma_slices"])
            for level in range(net.noise_levels)
        ]
        cell = pixel_spacing_mm * 8.0
        noise.append(
            smooth_field(
                rng,
                (n_slices, height >> 3, width >> 3),
                (s["field_mm"] / slice_spacing_mm, s["field_mm"] / cell, s["field_mm"] / cell),
            )
        )
        return LatentSample(z=z, drift=drift, noise=noise)

    def slice_latents(self, sample: LatentSample) -> np.ndarray:
        """(n_slices, z_dim): the calibration entries constant, the free ones drifting smoothly."""
        net = cast(LungCTGenerator, self.network)
        a = float(self.settings["drift_amplitude"])
        z = np.repeat(sample.z[None, :], sample.drift.shape[0], axis=0)
        z[:, net.style_dims :] = (z[:, net.style_dims :] + a * sample.drift) / math.sqrt(1.0 + a * a)
        return z

    # -- inference -----------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(
        self,
        labels: np.ndarray,
        pixel_spacing_mm: float,
        slice_spacing_mm: float,
        *,
        rng: np.random.Generator | None = None,
        sample: LatentSample | None = None,
        psi: float | None = None,
        noise_mode: str = "random",
        batch_slices: int | None = None,
        slices=None,
        progress=None,
    ) -> np.ndarray:
        """Render a label volume as HU.

        Parameters
        ----------
        labels
            (slices, rows, columns) geometry labels (``geometry.Label``, lesions 100 + i).
        pixel_spacing_mm, slice_spacing_mm
            The grid's spacing.
        rng, sample
            Where the randomness comes from: a generator to draw a
            :class:`LatentSample` from, or a sample drawn before (interpolation).
        psi
            Truncation (default: the pipeline's); 0 renders the mean style.
        noise_mode
            ``random`` (the sample's noise), ``const`` (noise drawn from a
            fixed seed, the same for every sample) or ``none``.
        batch_slices
            Slices per forward pass (default: the pipeline's).
        slices
            Render only these slice indices (previews, interpolation frames);
            the result is then (len(slices), rows, columns). The randomness
            is still drawn for the whole series, so a slice gets the same
            latent and noise whether rendered alone or with the series.
        progress
            Optional callable ``progress(n_done)`` after each batch.

        Returns
        -------
        numpy.ndarray
            int16 HU, clipped to [-1024, 3071], the shape of ``labels``.
        """
        labels = np.asarray(labels)
        if labels.ndim != 3:
            raise ValueError(f"labels must be (slices, rows, columns), got shape {labels.shape}")
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be random, const or none, got {noise_mode!r}")
        n_slices, rows, columns = labels.shape
        if sample is None:
            if rng is None:
                raise ValueError("pass rng (a numpy Generator) or a sample drawn before")
            sample = self.sample(rng, labels.shape, pixel_spacing_mm, slice_spacing_mm)
        if sample.drift.shape[0] != n_slices:
            raise ValueError(f"the sample was drawn for {sample.drift.shape[0]} slices, the labels have {n_slices}")
        noise = sample.noise
        if noise_mode == "const":
            noise = self.sample(np.random.Generator(np.random.PCG64(0)), labels.shape, pixel_spacing_mm, slice_spacing_mm).noise
        psi = self.psi if psi is None else float(psi)
        batch = max(1, int(batch_slices or self.batch_slices))
        net = cast(LungCTGenerator, self.network)
        device = self.device

        height, width = _padded(rows), _padded(columns)
        padded = np.pad(labels, ((1, 1), (0, height - rows), (0, width - columns)), mode="edge")
        y_mm = torch.from_numpy(((np.arange(height) - (rows - 1) / 2.0) * pixel_spacing_mm).astype(np.float32)).to(device)
        spacing = torch.tensor([pixel_spacing_mm, slice_spacing_mm], dtype=torch.float32, device=device)
        order = np.arange(n_slices) if slices is None else np.asarray(slices, dtype=np.int64).reshape(-1)
        if order.size and (order.min() < 0 or order.max() >= n_slices):
            raise ValueError(f"slice indices must be in 0..{n_slices - 1}")
        # Styles of every slice of the series at once, whatever is rendered: a slice's
        # style (and so its pixels) never depends on which other slices are asked for.
        w = truncate(net.mapping(torch.from_numpy(self.slice_latents(sample)).to(device)), net.w_avg, psi)
        out = np.empty((len(order), rows, columns), np.int16)
        if self.batcher is not None:
            for start in range(0, len(order), batch):
                ks = order[start : start + batch]
                checkpoint()  # background work yields to client requests between passes
                inputs = [
                    SliceInputs(
                        torch.from_numpy(np.ascontiguousarray(padded[k : k + 3]))[None].to(device),
                        spacing.reshape(1, 2),
                        y_mm.reshape(1, -1),
                        w[k : k + 1],
                        None
                        if noise_mode == "none"
                        else [torch.from_numpy(np.asarray(n[k]))[None, None].float().to(device) for n in noise],
                    )
                    for k in ks.tolist()
                ]
                for i, hu in enumerate(self.batcher.render(inputs)):
                    out[start + i] = torch.round(hu[0, 0, :rows, :columns]).clamp_(MIN_HU, MAX_HU).to(torch.int16).cpu().numpy()
                if progress is not None:
                    progress(start + len(ks))
            return out
        renderer = SliceRenderer(net, height, width, spacing, y_mm, self.dtype)
        styles = renderer.styles(w)
        for start in range(0, len(order), batch):
            ks = order[start : start + batch]
            # GAN classes of slices k-1, k, k+1 for each k in the batch (the ends repeat themselves).
            classes = torch.from_numpy(gan_classes(np.stack([padded[ks], padded[ks + 1], padded[ks + 2]], axis=1))).to(device)
            codes = SliceRenderer.codes(classes)
            base = net.class_hu[classes[:, 1].long()][:, None]
            for i, k in enumerate(ks.tolist()):
                checkpoint()  # background work yields to client requests between slices
                maps: list[torch.Tensor | None] | None = None
                if noise_mode != "none":
                    maps = [torch.from_numpy(np.asarray(n[k]))[None, None].to(device) for n in noise]
                hu = renderer(codes[i : i + 1], base[i : i + 1], styles, k, maps)[0, 0, :rows, :columns]
                out[start + i] = torch.round(hu).clamp_(MIN_HU, MAX_HU).to(torch.int16).cpu().numpy()
            if progress is not None:
                progress(start + len(ks))
        return out

    def mean_volume(self, labels: np.ndarray, pixel_spacing_mm: float, slice_spacing_mm: float) -> np.ndarray:
        """The mean sample: psi 0 and constant noise (independent of any seed)."""
        rng = np.random.Generator(np.random.PCG64(0))
        return self(labels, pixel_spacing_mm, slice_spacing_mm, rng=rng, psi=0.0, noise_mode="const")
