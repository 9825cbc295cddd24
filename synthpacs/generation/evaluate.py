"""Measuring generators: the metrics and the fixed feature extractor (DESIGN §4).

``synthpacs evaluate TARGET`` hands an :class:`EvaluationRequest` to the
target's ``evaluation.evaluate(request)``, which uses the pieces here:

Fréchet distance on a fixed filter bank (:func:`frechet_distance`)
    The project ships no learned feature extractor and downloads none, so
    features come from a documented, hand-crafted filter bank
    (:class:`FilterBank`): each image (already mapped to display windows,
    values in [0, 1], one window per channel) is resized to 256 x 256 and
    analysed at four scales (256, 128, 64, 32) with five Gaussian-derivative
    filters (gradient magnitude, d2/dx2, d2/dy2, d2/dxdy, Laplacian of
    Gaussian, sigma 1 pixel at each scale); each response gives its mean
    absolute value and its standard deviation; an 8-bin histogram and the
    standard deviation of the blurred image at each scale complete the
    vector (156 numbers for three windows). Before the distance, every
    feature is standardised by the reference set's mean and standard
    deviation (:func:`standardise`), so each weighs the same and the
    distance is unit-free. It is deterministic (no
    weights, no random initialisation), cheap on a CPU, and measures what
    distinguishes CT renderers: intensity distribution per window, edge
    sharpness and noise texture at each scale. Its numbers are comparable
    only with themselves (never with an Inception FID), so every report puts
    the renderer's distance next to the *floor*: the distance between two
    independent sets of the reference renderer.
Intra-set diversity (:func:`intra_set_ms_ssim`)
    Mean MS-SSIM (three scales) between random pairs of a set; lower is more diverse.

A target's ``evaluation.evaluate`` calls these functions directly and writes
its own JSON report; ``metrics.jsonl`` is the training run's record, not theirs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class EvaluationRequest:
    """What ``synthpacs evaluate`` was asked for; a target fills in the rest."""

    target: str
    weights: Path | None = None  # None: the shipped weights
    weights_source: str = "default"  # where the weights path came from (named in errors)
    volumes: int = 8  # label volumes per set
    rows: int = 256  # grid size of the evaluation volumes
    slice_spacing_mm: float = 5.0
    seed: int = 0
    device: str = "auto"
    device_source: str = "default"
    psi: float = 1.0
    out: Path | None = None  # JSON report
    card: Path | None = None  # model card whose metrics block is rewritten
    montage: Path | None = None  # teacher | GAN comparison picture (axial and coronal)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


#: The block of a MODEL_CARD.md that ``evaluate --update-card`` rewrites.
CARD_START, CARD_END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"


def update_card_block(card: Path, body: str) -> None:
    """Put ``body`` between the evaluation markers of a model card (appended, with markers, where it has none)."""
    import re

    block = f"{CARD_START}\n{body}\n{CARD_END}"
    text = card.read_text() if card.exists() else ""
    if CARD_START in text and CARD_END in text:
        text = re.sub(re.escape(CARD_START) + r".*?" + re.escape(CARD_END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    card.write_text(text)


# -- the feature extractor ------------------------------------------------------------------


class FilterBank:
    """The fixed, hand-crafted feature extractor (see the module docstring)."""

    size = 256
    scales = 4
    bins = 8

    def __init__(self, sigma: float = 1.0):
        import torch

        radius = int(np.ceil(3 * sigma))
        x = np.arange(-radius, radius + 1, dtype=np.float64)
        g = np.exp(-0.5 * (x / sigma) ** 2)
        g /= g.sum()
        d1 = -x / sigma**2 * g
        d2 = (x**2 / sigma**4 - 1 / sigma**2) * g
        d2 -= d2.mean()  # zero response to a constant
        kernels = {
            "gx": np.outer(g, d1),
            "gy": np.outer(d1, g),
            "gxx": np.outer(g, d2),
            "gyy": np.outer(d2, g),
            "gxy": np.outer(d1, d1),
            "blur": np.outer(g, g),
        }
        self.names = list(kernels)
        self.weight = torch.tensor(np.stack(list(kernels.values()))[:, None], dtype=torch.float32)
        self.radius = radius

    def features(self, images: np.ndarray, batch: int = 32) -> np.ndarray:
        """(N, C, H, W) images in [0, 1] -> (N, F) features."""
        import torch
        import torch.nn.functional as F

        out = []
        for start in range(0, len(images), batch):
            x = torch.from_numpy(np.asarray(images[start : start + batch], np.float32))
            n, c = x.shape[:2]
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
            feats = []
            hist = torch.stack([torch.histc(img, bins=self.bins, min=0.0, max=1.0) for img in x.reshape(n * c, -1)])
            feats.append((hist / hist.sum(dim=1, keepdim=True)).reshape(n, c * self.bins))
            level = x
            for _ in range(self.scales):
                flat = level.reshape(n * c, 1, *level.shape[-2:])
                r = F.conv2d(F.pad(flat, (self.radius,) * 4, mode="reflect"), self.weight)
                gx, gy, gxx, gyy, gxy, blurred = r.unbind(1)
                responses = [torch.sqrt(gx**2 + gy**2), gxx, gyy, gxy, gxx + gyy]
                for resp in responses:
                    flat_r = resp.reshape(n, c, -1)
                    feats.append(flat_r.abs().mean(dim=2))
                    feats.append(flat_r.std(dim=2))
                feats.append(blurred.reshape(n, c, -1).std(dim=2))
                level = F.avg_pool2d(level, 2)
            out.append(torch.cat(feats, dim=1).numpy().astype(np.float64))
        return np.concatenate(out)


# -- metrics --------------------------------------------------------------------------------


def standardise(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Z-score every feature set by the reference set's per-feature mean and SD (constant features dropped)."""
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    keep = std > 1e-9
    return [(x[:, keep] - mean[keep]) / std[keep] for x in (reference, *others)]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, F).

    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``, computed
    through symmetric eigendecompositions (stable when N is not much larger
    than F and the covariances are nearly singular).
    """
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sqrt(np.clip(middle, 0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def _gaussian_window(size: int = 7, sigma: float = 1.5):
    import torch

    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def _ssim_parts(a, b):
    import torch.nn.functional as F

    w = _gaussian_window()
    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    var_a = F.conv2d(a * a, w) - mu_a**2
    var_b = F.conv2d(b * b, w) - mu_b**2
    cov = F.conv2d(a * b, w) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return luminance, cs


def ms_ssim(a: np.ndarray, b: np.ndarray, scales: int = 3) -> np.ndarray:
    """MS-SSIM (Wang et al. 2003, equal weights) of image pairs (N, H, W) in [0, 1]; returns (N,)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(a, np.float32))[:, None]
    y = torch.from_numpy(np.asarray(b, np.float32))[:, None]
    values = []
    for level in range(scales):
        luminance, cs = _ssim_parts(x, y)
        if level == scales - 1:
            values.append((luminance * cs).mean(dim=(1, 2, 3)).clamp(min=0))
        else:
            values.append(cs.mean(dim=(1, 2, 3)).clamp(min=0))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    out = torch.ones_like(values[0])
    for v in values:
        out = out * v ** (1.0 / scales)
    return out.numpy()


def intra_set_ms_ssim(images: np.ndarray, rng: np.random.Generator, pairs: int = 200) -> float:
    """Mean MS-SSIM between random distinct pairs of a set (N, H, W); lower is more diverse."""
    n = len(images)
    i = rng.integers(0, n, pairs)
    j = (i + rng.integers(1, n, pairs)) % n
    return float(ms_ssim(images[i], images[j]).mean())
