"""Inference pipelines: the shared half of every GAN target (diffusers' ``DiffusionPipeline``).

A pipeline owns a trained network on a device and does inference only,
through ``__call__`` under ``torch.no_grad()`` (STYLE convention 10).
Randomness is passed in (convention 11): latents and noise are drawn on the
CPU from a ``numpy.random.Generator`` seeded by the caller (the archive
derives it from the study's keyed path), then moved to the device, so a seed
gives the same latent on any device.

This module holds what every target's pipeline shares: loading from a
pretrained folder, the device, truncation (psi), and variance-preserving
latent interpolation. Each target's pipeline (``generators/<system>/<target>/pipeline.py``)
subclasses :class:`GANPipeline` and defines ``__call__``.
"""

from __future__ import annotations

import math
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .devices import resolve_device
from .weights import load_pretrained


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 N(0, 1) draws on the CPU (numpy's ziggurat: the same numbers on every platform)."""
    return rng.standard_normal(shape, dtype=np.float32)


def smooth_along(values: np.ndarray, sigma: float, axis: int = 0) -> np.ndarray:
    """Gaussian-smooth N(0, 1) draws along one axis and restore unit variance.

    Used for the per-slice latent drift and the noise fields: neighbouring
    slices get correlated draws (correlation ``exp(-d^2 / (4 sigma^2))`` at a
    distance of ``d`` slices) while every draw stays N(0, 1). The kernel is
    scipy's ``gaussian_filter1d`` (truncated at 3 sigma, edges reflected);
    a short one (up to 7 taps, the per-pixel noise's) is applied as a sum of
    shifted slabs, slab by slab, where scipy walks every line along the axis
    (several times faster along the slice axis of a 512 x 512 series).
    """
    n = values.shape[axis] if values.ndim else 0
    if sigma <= 0.05 or n < 2:
        return values
    kernel = unit_kernel(sigma)
    radius = len(kernel) // 2
    if radius > 3 or radius >= n or values.size < 4096 * n:  # a long kernel, or slabs too small to gain
        from scipy.ndimage import correlate1d

        return correlate1d(values.astype(np.float32, copy=False), kernel, axis=axis, mode="reflect").astype(
            np.float32, copy=False
        )
    # Slab by slab, so each stays in the CPU's cache; edges reflect as scipy's "reflect" (d c b a | a b c d | d c b a).
    source = np.moveaxis(values.astype(np.float32, copy=False), axis, 0)
    out = np.empty_like(source)
    scratch = np.empty_like(source[0])
    weights = [np.float32(w) for w in kernel]
    for i in range(n):
        for tap, weight in enumerate(weights):
            j = reflect(i + tap - radius, n)
            if tap == 0:
                np.multiply(source[j], weight, out=out[i])
            else:
                out[i] += np.multiply(source[j], weight, out=scratch)
    return np.moveaxis(out, 0, axis)


def unit_kernel(sigma: float) -> np.ndarray:
    """scipy's Gaussian kernel (truncated at 3 sigma) scaled so that white N(0, 1) draws stay N(0, 1)."""
    radius = int(3.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    return kernel / math.sqrt(float((kernel**2).sum()))


def reflect(j: int, n: int) -> int:
    """Index ``j`` reflected into ``0..n-1`` as scipy's "reflect" mode does (d c b a | a b c d | d c b a)."""
    return -1 - j if j < 0 else (2 * n - 1 - j if j >= n else j)


class _Stack(ABC):
    """Maps made one slice at a time (``stack[k]``); ``numpy.asarray(stack)`` is all of them."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, k: int) -> np.ndarray: ...

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        stack = np.stack([self[k] for k in range(len(self))])
        return stack if dtype is None else stack.astype(dtype, copy=False)


class KeyedNoise(_Stack):
    """A stack of N(0, 1) maps, (n, h, w), smoothed along its first axis, made slice by slice on demand.

    Slice ``k``'s white draws come from their own generator, keyed by
    (``key``, ``level``, ``k``), so a slab needs only its own slices and
    their neighbours, never the draws of the whole series; the smoothing is
    :func:`smooth_along`'s (the same kernel and edges). ``noise[k]`` is one
    map; ``numpy.asarray(noise)`` the whole stack.
    """

    def __init__(self, key: int, level: int, shape: tuple[int, int, int], sigma: float, keep: int = 24):
        self.key, self.level, self.shape, self.sigma = int(key), int(level), tuple(shape), float(sigma)
        self._kernel = unit_kernel(sigma) if sigma > 0.05 and shape[0] >= 2 else np.ones(1)
        self._white: dict[int, np.ndarray] = {}  # the last few slices' draws (a slab and its neighbours)
        self._keep = keep
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def _draws(self, k: int) -> np.ndarray:
        white = self._white.get(k)
        if white is None:
            seed = np.random.SeedSequence(self.key, spawn_key=(self.level, k))
            white = standard_normal(np.random.Generator(np.random.PCG64(seed)), self.shape[1:])
            self._white[k] = white
            while len(self._white) > self._keep:
                del self._white[next(iter(self._white))]
        return white

    def __getitem__(self, k: int) -> np.ndarray:
        n = self.shape[0]
        if not -n <= k < n:
            raise IndexError(f"slice {k} of {n}")
        k %= n
        radius = len(self._kernel) // 2
        with self._lock:
            if radius == 0:
                return self._draws(k)
            out = np.multiply(self._draws(reflect(k - radius, n)), np.float32(self._kernel[0]))
            scratch = np.empty_like(out)
            for tap in range(1, len(self._kernel)):
                out += np.multiply(self._draws(reflect(k + tap - radius, n)), np.float32(self._kernel[tap]), out=scratch)
            return out


class MixedNoise(_Stack):
    """Slice by slice, :func:`mix` of two noise stacks of the same shape (interpolation frames)."""

    def __init__(self, a, b, t: float):
        if len(a) != len(b):
            raise ValueError("the two noise stacks differ in length")
        self.a, self.b, self.t = a, b, float(t)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, k: int) -> np.ndarray:
        return mix(np.asarray(self.a[k]), np.asarray(self.b[k]), self.t)


def truncate(w: torch.Tensor, w_avg: torch.Tensor, psi: float) -> torch.Tensor:
    """The truncation trick: ``w_avg + psi * (w - w_avg)``; psi 1 is the identity, 0 the mean sample."""
    if psi == 1.0:
        return w
    return w_avg + psi * (w - w_avg)


def interpolation_weights(t: float) -> tuple[float, float]:
    """Variance-preserving mixing weights (cos, sin of t * pi / 2), exact at both ends."""
    if t <= 0.0:
        return 1.0, 0.0
    if t >= 1.0:
        return 0.0, 1.0
    angle = 0.5 * math.pi * t
    return math.cos(angle), math.sin(angle)


def mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """A point on the variance-preserving path between two N(0, 1) draws.

    ``mix(a, b, 0)`` is ``a`` and ``mix(a, b, 1)`` is ``b``, bit for bit; in
    between, ``cos * a + sin * b`` keeps every element N(0, 1) (a slerp when
    a and b are orthogonal, which independent high-dimensional draws nearly are).
    """
    wa, wb = interpolation_weights(t)
    if wb == 0.0:
        return a.copy()
    if wa == 0.0:
        return b.copy()
    return (wa * a + wb * b).astype(np.float32, copy=False)


class GANPipeline:
    """A trained generator on a device; subclasses define ``__call__``.

    Class attributes name the network class recorded in ``generator.json``
    and how to build it from the recorded constructor arguments.
    """

    network_class: ClassVar[type[nn.Module]]

    def __init__(
        self,
        network: nn.Module,
        record: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        source: str | None = None,
    ):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.network = network.to(self.device).eval()
        self.record = dict(record or {})
        self.source = source

    @classmethod
    def from_pretrained(
        cls,
        directory: str | os.PathLike,
        device: str | torch.device = "cpu",
        device_source: str = "the device setting",
        **options: Any,
    ):
        """Load a pretrained folder (``generator.json`` + ``weights.safetensors``).

        ``options`` go to the subclass's constructor (e.g. ``psi``).

        Raises
        ------
        WeightsError
            Missing, truncated, altered or mismatched files (the message names the file).
        ConfigError
            A device that does not exist here (the message names ``device_source``).
        """
        resolved = device if isinstance(device, torch.device) else resolve_device(device, device_source)
        network, record = load_pretrained(directory, cls.network_class.__name__, lambda cfg: cls.network_class(**cfg))
        return cls(network, record, resolved, source=str(Path(directory)), **options)

    @property
    def fingerprint(self) -> str:
        """Identifies the weights (their SHA-256 prefix): part of what a generated pixel depends on."""
        return str(self.record.get("weights_sha256", "untrained"))[:16]

    def to(self, device: str | torch.device):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.network.to(self.device)
        return self
