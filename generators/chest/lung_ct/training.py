"""Training the lung-CT GAN: ``synthpacs train lung-ct``.

Data
    Pairs of (label volume, HU volume) held in a pool in memory. By default
    they come from the teacher on the fly: each pool volume is a fresh chest
    (``geometry.draw_anatomy``) on a random grid (128, 256 or 512 pixels,
    2.5, 5 or 10 mm slices) with 0-3 lesions, rendered by
    ``teacher.render_hu``; one pool volume is replaced every
    ``refresh_every`` steps. ``--data DIR`` trains on the user's own pairs
    instead (:func:`folder_volumes`, format below).
Latent
    The first ``style_dims`` entries of ``z`` are the study's calibration,
    measured on the volume a crop comes from (:func:`measure_style`:
    lung/fat/muscle/bone/tumour median HU, noise level and grain, lung
    gravity gradient), standardised over the pool; the rest are N(0, 1).
    At inference all of ``z`` is drawn N(0, 1), so the GAN's latent spans
    the teacher's study-to-study variation instead of averaging it away.
Losses (generator)
    hinge adversarial loss from two conditional PatchGAN discriminators;
    L1 between low-passed GAN and teacher slices (``lowpass_sigma_px``: the
    deterministic part: tissue levels, partial volume, bone rims); the
    log noise power spectrum of the high-passed slice (paired, per slice);
    and the high-pass standard deviation per tissue class (noise and texture
    amplitude per tissue). The discriminators learn with the hinge loss.
Output
    The run folder of :mod:`synthpacs.generation.train`; the final weights
    are the exponential moving average of the generator's (StyleGAN's G_ema).

User data format (``--data DIR``)
    ``DIR/*.npz``, each holding ``image`` (HU, int16 or float, shape
    (slices, rows, columns) or (rows, columns)) and ``labels`` (the same
    shape, integer codes of ``geometry.Label``: 0 air ... 12 table, lesions
    100 and up), plus optional scalars ``pixel_spacing_mm`` (default 0.75)
    and ``slice_thickness_mm`` (default 2.5). Rows run anterior to posterior
    (DICOM patient orientation 1\\0\\0\\0\\1\\0). A label volume made from a
    real segmentation (e.g. TotalSegmentator classes mapped to these codes)
    and its CT make a valid pair.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch.nn.utils.parametrize import ParametrizationList

from synthpacs.errors import ConfigError
from synthpacs.generation.devices import resolve_device
from synthpacs.generation.train import RunRecord, TrainingRequest, ema_update, machine
from synthpacs.generation.weights import load_pretrained, save_pretrained

from .geometry import CTGrid, Label, draw_anatomy, label_volume, place_lesions
from .networks import CLASS_NAMES, DEFAULT_CLASS_HU, N_CLASSES, LungCTDiscriminator, LungCTGenerator, label_classes
from .pipeline import PIPELINE_DEFAULTS, STYLE_STATISTICS, LungCTPipeline
from .teacher import render_hu

log = logging.getLogger(__name__)

#: Hyperparameters; ``TrainingRequest.extra`` overrides any of them.
DEFAULTS = {
    # architecture
    "z_dim": 32,
    "w_dim": 64,
    "style_dims": len(STYLE_STATISTICS),
    "channels": [12, 24, 48, 64],
    "embed_dim": 8,
    "mapping_layers": 2,
    "noise_levels": 3,
    "hu_scale": 500.0,
    # optimisation
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "beta1": 0.5,
    "beta2": 0.99,
    "ema_decay": 0.998,
    "lambda_adv": 1.0,
    "lambda_lowpass": 1.0,
    "lambda_nps": 1.0,
    "lambda_texture": 1.0,
    "lowpass_sigma_px": 2.0,
    "lambda_lowpass_fine": 0.0,
    "lowpass_fine_sigma_px": 1.0,
    "lambda_lowfreq": 0.0,
    # data
    "pool": 36,
    "refresh_every": 40,
    "resolutions": {"128": 0.25, "256": 0.35, "512": 0.40},
    "thicknesses": [2.5, 5.0, 10.0],
    "max_slices": {"128": 96, "256": 80, "512": 48},
    "fov_mm": [340.0, 420.0],
    "lesion_crop_share": 0.35,
    "lung_crop_share": 0.35,
    # held-out teacher volumes for samples and quick metrics: [rows, slice spacing mm, slices]
    "validation": [[256, 5.0, 24], [512, 5.0, 12]],
}


# -- data ---------------------------------------------------------------------------------


@dataclass
class Volume:
    """One training pair: labels and HU on a grid."""

    labels: np.ndarray  # (K, R, C) uint8
    hu: np.ndarray  # (K, R, C) int16
    pixel_spacing_mm: float
    slice_spacing_mm: float
    style: np.ndarray  # raw STYLE_STATISTICS (NaN where not measurable)
    name: str

    def __post_init__(self) -> None:
        self.lesion_slices = np.nonzero((self.labels >= int(Label.TUMOUR)).any(axis=(1, 2)))[0]


def _eroded(mask: np.ndarray, iterations: int, square: bool = False) -> np.ndarray:
    structure = np.zeros((1, 3, 3), bool)
    structure[0, 1, :] = structure[0, :, 1] = True
    if square:
        structure[:] = True
    return ndimage.binary_erosion(mask, structure=structure, iterations=iterations) if iterations else mask


def measure_style(hu: np.ndarray, labels: np.ndarray, pixel_spacing_mm: float) -> np.ndarray:
    """The calibration of one volume, in the order of ``STYLE_STATISTICS`` (NaN: not measurable).

    Medians inside eroded tissue masks (so partial volume does not count),
    the standard deviation of the high-passed image in homogeneous soft
    tissue (noise), the ratio of a finer to a coarser high-pass (grain), and
    the lung's HU slope per 100 mm towards the back (gravity).
    """
    step = max(1, labels.shape[0] // 16)
    lab = labels[::step]
    img = hu[::step].astype(np.float32)
    out = np.full(len(STYLE_STATISTICS), np.nan)

    def median(mask):
        return float(np.median(img[mask])) if mask.sum() >= 20 else np.nan

    lung = _eroded(lab == Label.LUNG, 2)
    out[0] = median(lung)
    out[1] = median(_eroded(lab == Label.FAT, 2))
    out[2] = median(_eroded(lab == Label.MUSCLE, 2))
    bone_rim = max(2, int(round(1.5 / pixel_spacing_mm)) + 1)
    out[3] = median(_eroded(lab == Label.BONE, bone_rim))
    tumour = lab >= int(Label.TUMOUR)
    out[4] = median(_eroded(tumour, 1)) if _eroded(tumour, 1).sum() >= 20 else median(tumour)
    coarse = img - ndimage.gaussian_filter(img, (0, 1.2, 1.2), truncate=3.0)
    fine = img - ndimage.gaussian_filter(img, (0, 0.6, 0.6), truncate=3.0)
    # Homogeneous tissue only: each class eroded on its own, so no boundary counts as noise.
    soft = np.zeros_like(lab, bool)
    for tissue in (Label.FAT, Label.MUSCLE, Label.SOFT_TISSUE):
        soft |= _eroded(lab == tissue, 4, square=True)
    if soft.sum() >= 50:
        out[5] = float(coarse[soft].std())
        out[6] = float(fine[soft].std() / max(coarse[soft].std(), 1e-3))
    if lung.sum() >= 200:
        rows = (np.arange(lab.shape[1]) - (lab.shape[1] - 1) / 2.0) * pixel_spacing_mm
        y = np.broadcast_to(rows[None, :, None], lab.shape)[lung]
        out[7] = float(np.polyfit(y, img[lung], 1)[0] * 100.0)
    return out


def teacher_volume(rng: np.random.Generator, hp: dict, name: str) -> Volume:
    """A fresh chest on a random grid, rendered by the teacher."""
    resolutions = {int(k): float(v) for k, v in hp["resolutions"].items()}
    sizes = np.array(list(resolutions))
    rows = int(rng.choice(sizes, p=np.array(list(resolutions.values())) / sum(resolutions.values())))
    thickness = float(rng.choice(hp["thicknesses"]))
    fov = float(rng.uniform(*hp["fov_mm"]))
    length = float(rng.uniform(280.0, 340.0))
    n_slices = min(int(length / thickness) + 1, int(hp["max_slices"][str(rows)]))
    grid = CTGrid(rows=rows, columns=rows, n_slices=n_slices, pixel_spacing_mm=fov / rows, slice_spacing_mm=thickness)
    anatomy = draw_anatomy(rng, grid, str(rng.choice(["M", "F"])))
    count = int(rng.integers(0, 4))
    while True:
        try:
            sites = place_lesions(anatomy, grid, count, rng)
            break
        except ValueError:
            count -= 1
            if count < 0:
                raise
    diameters = rng.uniform(8.0, 50.0, size=len(sites))
    labels = label_volume(anatomy, grid, list(zip(sites, diameters)))
    hu = render_hu(labels, grid, rng)
    return Volume(
        labels, hu, grid.pixel_spacing_mm, grid.slice_spacing_mm, measure_style(hu, labels, grid.pixel_spacing_mm), name
    )


def folder_volumes(folder: Path) -> list[Volume]:
    """The user's pairs (format in the module docstring).

    Raises
    ------
    ConfigError
        No .npz files, or a file without ``image``/``labels`` or with shapes that differ (the file is named).
    """
    files = sorted(Path(folder).glob("*.npz"))
    if not files:
        raise ConfigError(f"training data folder {str(folder)!r} holds no .npz files (each with 'image' and 'labels')")
    volumes = []
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [name for name in ("image", "labels") if name not in data.files]
                if missing:
                    raise ConfigError(f"{path} lacks the array {missing[0]!r} (needs 'image' and 'labels')")
                image, labels = np.asarray(data["image"]), np.asarray(data["labels"])
                ps = float(data["pixel_spacing_mm"]) if "pixel_spacing_mm" in data.files else 0.75
                ss = float(data["slice_thickness_mm"]) if "slice_thickness_mm" in data.files else 2.5
        except (OSError, ValueError, EOFError) as exc:
            raise ConfigError(f"{path} is not a readable .npz file ({exc})") from None
        if image.shape != labels.shape or image.ndim not in (2, 3):
            raise ConfigError(f"{path}: 'image' {image.shape} and 'labels' {labels.shape} must share one 2-D or 3-D shape")
        if image.ndim == 2:
            image, labels = image[None], labels[None]
        labels = np.where(labels >= 100, np.minimum(labels, 255), np.clip(labels, 0, 12)).astype(np.uint8)
        hu = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
        volumes.append(Volume(labels, hu, ps, ss, measure_style(hu, labels, ps), path.name))
    return volumes


class Pool:
    """Training volumes in memory, their calibration statistics, and crop sampling."""

    def __init__(self, volumes: list[Volume], hp: dict):
        self.volumes = list(volumes)
        self.hp = hp
        styles = np.stack([v.style for v in self.volumes])
        with warnings.catch_warnings():  # a statistic no volume could measure (e.g. no tumour) stays neutral
            warnings.simplefilter("ignore", RuntimeWarning)
            self.style_mean = np.nan_to_num(np.nanmean(styles, axis=0), nan=0.0)
            std = np.nanstd(styles, axis=0)
        self.style_std = np.where(np.isfinite(std) & (std > 1e-6), std, 1.0)

    def style_z(self, volume: Volume) -> np.ndarray:
        z = (volume.style - self.style_mean) / self.style_std
        clip = cast(float, PIPELINE_DEFAULTS["style_clip"])
        return np.clip(np.nan_to_num(z, nan=0.0), -clip, clip).astype(np.float32)

    def class_hu(self) -> list[float]:
        """Median HU per GAN class over the pool (the generator's base image)."""
        values = []
        for c in range(N_CLASSES):
            samples = []
            for v in self.volumes:
                classes = label_classes(torch.from_numpy(v.labels[:: max(1, v.labels.shape[0] // 8)])).numpy()
                mask = _eroded(classes == c, 1)
                if mask.sum() >= 20:
                    samples.append(np.median(v.hu[:: max(1, v.labels.shape[0] // 8)][mask]))
            values.append(float(np.median(samples)) if samples else DEFAULT_CLASS_HU[c])
        return values

    def crop(self, rng: np.random.Generator, size: int):
        """One training crop: (labels3, hu, spacing, y_mm, style z)."""
        v = self.volumes[int(rng.integers(len(self.volumes)))]
        K, R, C = v.labels.shape
        hp = self.hp
        if v.lesion_slices.size and rng.random() < hp["lesion_crop_share"]:
            k = int(rng.choice(v.lesion_slices))
        else:
            k = int(rng.integers(K))
        lab = v.labels[k]
        u = rng.random()
        if u < hp["lesion_crop_share"] and (lab >= int(Label.TUMOUR)).any():
            candidates = np.argwhere(lab >= int(Label.TUMOUR))
        elif u < hp["lesion_crop_share"] + hp["lung_crop_share"] and (lab == Label.LUNG).any():
            candidates = np.argwhere(lab == Label.LUNG)
        else:
            candidates = np.argwhere(lab != Label.AIR)
            if not len(candidates):
                candidates = np.array([[R // 2, C // 2]])
        r0, c0 = candidates[int(rng.integers(len(candidates)))]
        pad_r, pad_c = max(0, size - R), max(0, size - C)
        top = int(np.clip(r0 - size // 2, 0, max(0, R - size)))
        left = int(np.clip(c0 - size // 2, 0, max(0, C - size)))
        ks = np.clip([k - 1, k, k + 1], 0, K - 1)
        labels3 = v.labels[ks, top : top + size, left : left + size]
        hu = v.hu[k, top : top + size, left : left + size].astype(np.float32)
        if pad_r or pad_c:
            labels3 = np.pad(labels3, ((0, 0), (0, pad_r), (0, pad_c)), mode="constant")
            hu = np.pad(hu, ((0, pad_r), (0, pad_c)), mode="constant", constant_values=-1000.0)
        if rng.random() < 0.5:  # left-right mirror: texture is symmetric, gravity (y) is not
            labels3, hu = labels3[:, :, ::-1], hu[:, ::-1]
        y_mm = ((top + np.arange(size)) - (R - 1) / 2.0) * v.pixel_spacing_mm
        return (
            np.ascontiguousarray(labels3),
            np.ascontiguousarray(hu),
            (v.pixel_spacing_mm, v.slice_spacing_mm),
            y_mm.astype(np.float32),
            self.style_z(v),
        )


# -- losses -------------------------------------------------------------------------------


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W), reflected at the edges."""
    k = _gaussian_kernel(sigma).to(x.device)
    r = (k.numel() - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


class SpectrumLoss:
    """Paired L1 between log radial power spectra of high-passed slices (the noise power spectrum)."""

    def __init__(self, size: int, bins: int = 16, sigma: float = 2.0):
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        radius = torch.sqrt(fx**2 + fy**2) / 0.5  # 1 at Nyquist
        self.index = torch.clamp((radius * bins).long(), max=bins - 1).flatten()
        self.counts = torch.bincount(self.index, minlength=bins).clamp(min=1).float()
        hann = torch.hann_window(size, periodic=False)
        self.window = hann[:, None] * hann[None, :]
        self.bins, self.sigma = bins, sigma

    def log_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        r = (x - blur(x, self.sigma)) * self.window.to(x.device)
        power = torch.fft.rfft2(r[:, 0], norm="ortho").abs().pow(2).flatten(1)
        sums = torch.zeros(x.shape[0], self.bins, device=x.device).index_add_(1, self.index.to(x.device), power)
        return torch.log(sums / self.counts.to(x.device) + 1.0)

    def __call__(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return (self.log_spectrum(fake) - self.log_spectrum(real)).abs().mean()


def texture_loss(
    fake: torch.Tensor, real: torch.Tensor, classes: torch.Tensor, sigma: float = 1.0, coarse: float | None = None
) -> torch.Tensor:
    """Paired L1 between log high-pass (or band-pass) standard deviations inside each (eroded) tissue class.

    With ``coarse`` the band between ``sigma`` and ``coarse`` blurs is used:
    slow density variation within a tissue rather than noise.
    """
    onehot = F.one_hot(classes, N_CLASSES).permute(0, 3, 1, 2).float()
    masks = -F.max_pool2d(-onehot, 5, stride=1, padding=2)  # erode by 2 px
    count = masks.sum(dim=(2, 3))
    valid = count >= 64
    if not valid.any():
        return fake.sum() * 0.0
    if coarse is None:
        hf, hr = fake - blur(fake, sigma), real - blur(real, sigma)
    else:
        hf, hr = blur(fake, sigma) - blur(fake, coarse), blur(real, sigma) - blur(real, coarse)

    def std(h):
        mean = (masks * h).sum(dim=(2, 3)) / count.clamp(min=1)
        var = (masks * h * h).sum(dim=(2, 3)) / count.clamp(min=1) - mean**2
        return torch.sqrt(var.clamp(min=0) + 1.0)

    return (torch.log(std(hf)) - torch.log(std(hr)))[valid].abs().mean()


# -- the loop -----------------------------------------------------------------------------


def _build_pool(request: TrainingRequest, hp: dict, rng: np.random.Generator, say) -> Pool:
    if request.data is not None:
        volumes = folder_volumes(request.data)
        say(f"training data: {len(volumes)} pair(s) from {request.data}")
        return Pool(volumes, hp)
    from tqdm import tqdm

    volumes = []
    for i in tqdm(range(int(hp["pool"])), desc="teacher volumes", unit="vol", disable=not request.progress, leave=False):
        volumes.append(teacher_volume(rng, hp, f"teacher-{i}"))
    return Pool(volumes, hp)


def validation_volumes(seed: int, grids=DEFAULTS["validation"]) -> list[Volume]:
    """Fixed held-out teacher volumes (a seed stream the training pool never uses) for samples and quick metrics."""
    rng = np.random.Generator(np.random.PCG64([seed, 0x5A11D]))
    hp = dict(DEFAULTS)
    out = []
    for rows, thickness, n in grids:
        rows, n = int(rows), int(n)
        hp.update(resolutions={str(rows): 1.0}, thicknesses=[thickness], max_slices={str(rows): n})
        out.append(teacher_volume(rng, hp, f"validation-{rows}"))
    return out


def _validation_slices(volume: Volume) -> list[int]:
    K = volume.labels.shape[0]
    picks = [K // 2]
    if volume.lesion_slices.size:
        picks.append(int(volume.lesion_slices[len(volume.lesion_slices) // 2]))
    return picks


def render_samples(pipeline: LungCTPipeline, volumes: list[Volume], path: Path, seed: int) -> dict:
    """Teacher | GAN montage of the validation volumes (lung and soft-tissue windows) and quick metrics."""
    from synthpacs.generation.images import montage, resize_to, window

    from .target import LUNG_WINDOW, MEDIASTINUM_WINDOW

    rows, errors, noise = [], [], []
    for i, v in enumerate(volumes):
        gan = pipeline(v.labels, v.pixel_spacing_mm, v.slice_spacing_mm, rng=np.random.Generator(np.random.PCG64([seed, i])))
        for k in _validation_slices(v):
            row = []
            for win in (LUNG_WINDOW, MEDIASTINUM_WINDOW):
                row += [resize_to(window(v.hu[k], win), 256, 256), resize_to(window(gan[k], win), 256, 256)]
            rows.append(row)
        s_t, s_g = v.style, measure_style(gan, v.labels, v.pixel_spacing_mm)
        errors.append(np.abs(s_g[:5] - s_t[:5]))
        noise.append((s_g[5], s_t[5]))
    montage(rows).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        err = np.nanmean(np.stack(errors), axis=0)
    return {
        **{f"abs_err_{name}": round(float(e), 2) for name, e in zip(STYLE_STATISTICS[:5], err)},
        "noise_sd_gan": round(float(np.mean([n[0] for n in noise])), 2),
        "noise_sd_teacher": round(float(np.mean([n[1] for n in noise])), 2),
    }


def _w_avg(net: LungCTGenerator, seed: int, n: int = 4096) -> torch.Tensor:
    z = np.random.Generator(np.random.PCG64([seed, 0xA76])).standard_normal((n, net.z_dim), dtype=np.float32)
    clip = cast(float, PIPELINE_DEFAULTS["style_clip"])
    z[:, : net.style_dims] = np.clip(z[:, : net.style_dims], -clip, clip)
    with torch.no_grad():
        return net.mapping(torch.from_numpy(z).to(net.w_avg.device)).mean(dim=0)


def _save(out: Path, net: LungCTGenerator, arch: dict, pool: Pool, extra: dict, seed: int) -> None:
    snapshot = copy.deepcopy(net).to("cpu").to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # stubs lack memory_format
    snapshot.w_avg.copy_(_w_avg(snapshot, seed))
    save_pretrained(
        out,
        snapshot,
        "LungCTGenerator",
        arch,
        extra={
            "pipeline": dict(PIPELINE_DEFAULTS),
            "style_statistics": {
                "names": list(STYLE_STATISTICS),
                "mean": [round(float(x), 4) for x in pool.style_mean],
                "std": [round(float(x), 4) for x in pool.style_std],
            },
            "classes": list(CLASS_NAMES),
            **extra,
        },
    )


Network = TypeVar("Network", bound=torch.nn.Module)


def _built(network_class: type[Network], generator: torch.Generator, **config) -> Network:
    """A network whose random initial parameters are drawn from ``generator``, not torch's global generator.

    The constructor's own default initialisation draws from the global
    generator; :func:`torch.random.fork_rng` puts its state back, and every
    such draw is then replaced by one from ``generator``, in the same
    distributions (those of ``reset_parameters`` of PyTorch's layers):
    Kaiming-uniform weights and uniform biases for linear and convolutional
    layers, N(0, 1) embeddings, and spectral normalisation's power-iteration
    vectors, redrawn and converged again as at construction.  A layer whose
    weight the network set to zero on purpose (FiLM, the output layer) keeps it.
    """
    with torch.random.fork_rng(devices=[]):
        net = network_class(**config)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, torch.nn.Embedding):
                torch.nn.init.normal_(layer.weight, generator=generator)
            if not isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)):
                continue
            normalised = torch.nn.utils.parametrize.is_parametrized(layer, "weight")
            chain = cast(ParametrizationList, cast(torch.nn.Module, layer.parametrizations).weight) if normalised else None
            weight = chain.original if chain is not None else layer.weight
            if not weight.any():
                continue
            torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                bound = 1.0 / math.sqrt(weight[0].numel())
                torch.nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
            if chain is not None:
                for norm in chain:
                    _restart_power_iteration(norm, weight, generator)
    return net


def _restart_power_iteration(norm: torch.nn.Module, weight: torch.Tensor, generator: torch.Generator) -> None:
    """Spectral normalisation's ``u`` and ``v`` for a new weight: drawn from ``generator``, then 15 power steps.

    As ``torch.nn.utils.parametrizations.spectral_norm`` starts them (its
    layers here normalise along dimension 0).
    """
    eps = cast(float, norm.eps)
    matrix = weight.flatten(1)
    u = F.normalize(torch.randn(matrix.shape[0], generator=generator, dtype=weight.dtype), dim=0, eps=eps)
    v = F.normalize(torch.randn(matrix.shape[1], generator=generator, dtype=weight.dtype), dim=0, eps=eps)
    for _ in range(15):
        u = F.normalize(torch.mv(matrix, v), dim=0, eps=eps)
        v = F.normalize(torch.mv(matrix.H, u), dim=0, eps=eps)
    cast(torch.Tensor, norm._u).copy_(u)
    cast(torch.Tensor, norm._v).copy_(v)


def train(request: TrainingRequest) -> Path:
    """Train the lung-CT GAN as ``request`` says; returns the run folder (a pretrained folder too)."""
    hp = {**DEFAULTS, **request.extra}
    unknown = set(request.extra) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown lung-ct training option(s): {', '.join(sorted(unknown))} (known: {', '.join(DEFAULTS)})")
    if request.threads:
        torch.set_num_threads(int(request.threads))
    device = resolve_device(request.device, request.device_source)
    record = RunRecord(request.out)
    say = (lambda text: __import__("tqdm").tqdm.write(text)) if request.progress else log.info
    seed = int(request.seed)
    rng = np.random.Generator(np.random.PCG64(seed))
    started = time.time()
    pool = _build_pool(request, hp, rng, say)
    crop = int(request.crop)
    arch = {
        k: hp[k] for k in ("z_dim", "w_dim", "style_dims", "channels", "embed_dim", "mapping_layers", "noise_levels", "hu_scale")
    }
    arch["channels"] = list(arch["channels"])
    init_record: dict = {}
    G: LungCTGenerator
    if request.init is not None:
        loaded, init_record = load_pretrained(request.init, "LungCTGenerator", lambda cfg: LungCTGenerator(**cfg))
        G = cast(LungCTGenerator, loaded)  # what the build callable made
        arch = dict(init_record["config"])
    else:
        arch["class_hu"] = [round(v, 1) for v in pool.class_hu()]
        G = _built(LungCTGenerator, torch.Generator().manual_seed(seed), **arch)
    D = _built(LungCTDiscriminator, torch.Generator().manual_seed(seed + 1))
    G.to(device).train()
    D.to(device).train()
    if device.type == "cpu":
        G.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # stubs lack memory_format
        D.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    G_ema = copy.deepcopy(G).eval()
    opt_g = torch.optim.Adam(G.parameters(), lr=hp["lr_g"], betas=(hp["beta1"], hp["beta2"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=hp["lr_d"], betas=(hp["beta1"], hp["beta2"]))
    sampler = LungCTPipeline(G_ema, {"pipeline": PIPELINE_DEFAULTS}, device)
    spectrum = SpectrumLoss(crop)
    validation = validation_volumes(seed, hp["validation"])
    options = {
        "request": request.as_json(),
        "hyperparameters": hp,
        "init_weights_sha256": init_record.get("weights_sha256") if request.init is not None else None,
        "architecture": arch,
        "device": str(device),
        "machine": machine(),
        "data": str(request.data) if request.data else "teacher (generated on the fly)",
        "pool_volumes": [v.name for v in pool.volumes],
        "pool_build_s": round(time.time() - started, 1),
        "style_mean": pool.style_mean,
        "style_std": pool.style_std,
    }
    record.options(options)
    say(f"pool of {len(pool.volumes)} volume(s) ready in {time.time() - started:.0f} s; training on {device}")

    from tqdm import tqdm

    bar = tqdm(total=request.steps, desc="lung-ct", unit="step", disable=not request.progress)
    step, images = 0, 0
    deadline = started + 60.0 * request.minutes if request.minutes else None
    window_losses: dict[str, list[float]] = {}
    tick = time.time()
    while step < request.steps:
        crops = [pool.crop(rng, crop) for _ in range(request.batch)]
        labels = torch.from_numpy(np.stack([c[0] for c in crops]).astype(np.int64)).to(device)
        real = torch.from_numpy(np.stack([c[1] for c in crops]))[:, None].to(device)
        spacing = torch.tensor([c[2] for c in crops], dtype=torch.float32, device=device)
        y_mm = torch.from_numpy(np.stack([c[3] for c in crops])).to(device)
        free = rng.standard_normal((request.batch, G.z_dim - G.style_dims), dtype=np.float32)
        z = torch.from_numpy(np.concatenate([np.stack([c[4] for c in crops]), free], axis=1)).to(device)
        samples = [sampler.sample(rng, (1, crop, crop), c[2][0], c[2][1]) for c in crops]
        noise = [
            torch.from_numpy(np.concatenate([s.noise[i] for s in samples]))[:, None].to(device)
            for i in range(len(samples[0].noise))
        ]
        if device.type == "cpu":
            real = real.contiguous(memory_format=torch.channels_last)
            noise = [n.contiguous(memory_format=torch.channels_last) for n in noise]

        # Discriminator: hinge loss on teacher vs GAN slices.
        with torch.no_grad():
            fake = G(labels, spacing, y_mm, G.mapping(z), noise)
        d_real = D(real, labels, spacing, y_mm)
        d_fake = D(fake, labels, spacing, y_mm)
        loss_d = cast(torch.Tensor, sum(F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean() for r, f in zip(d_real, d_fake)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        # Generator.
        fake = G(labels, spacing, y_mm, G.mapping(z), noise)
        adv = -cast(torch.Tensor, sum(s.mean() for s in D(fake, labels, spacing, y_mm)))
        lowpass = (blur(fake, hp["lowpass_sigma_px"]) - blur(real, hp["lowpass_sigma_px"])).abs().mean() / 50.0
        nps = spectrum(fake, real)
        texture = texture_loss(fake, real, label_classes(labels[:, 1]))
        loss_g = hp["lambda_adv"] * adv + hp["lambda_lowpass"] * lowpass + hp["lambda_nps"] * nps + hp["lambda_texture"] * texture
        if hp["lambda_lowpass_fine"]:  # edges: partial volume without over- or undershoot
            sigma = hp["lowpass_fine_sigma_px"]
            loss_g = loss_g + hp["lambda_lowpass_fine"] * (blur(fake, sigma) - blur(real, sigma)).abs().mean() / 50.0
        if hp["lambda_lowfreq"]:  # slow density variation within each tissue
            loss_g = loss_g + hp["lambda_lowfreq"] * texture_loss(fake, real, label_classes(labels[:, 1]), 3.0, coarse=12.0)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        ema_update(G_ema, G, min(hp["ema_decay"], (1.0 + step) / (10.0 + step)))

        step += 1
        images += request.batch
        for name, value in (
            ("loss_d", loss_d),
            ("loss_g", loss_g),
            ("adv", adv),
            ("lowpass", lowpass),
            ("nps", nps),
            ("texture", texture),
        ):
            window_losses.setdefault(name, []).append(float(value.detach()))
        bar.update(1)
        if step % request.log_every == 0 or step == request.steps:
            now = time.time()
            row = {
                "step": step,
                "images": images,
                **{k: round(float(np.mean(v)), 4) for k, v in window_losses.items()},
                "steps_per_s": round(len(window_losses["loss_d"]) / max(now - tick, 1e-6), 3),
            }
            record.stats(row)
            bar.set_postfix(d=row["loss_d"], lp=row["lowpass"], nps=row["nps"], tex=row["texture"])
            window_losses, tick = {}, now
        if step % hp["refresh_every"] == 0 and request.data is None:
            index = (step // hp["refresh_every"]) % len(pool.volumes)
            pool.volumes[index] = teacher_volume(rng, hp, f"teacher-{len(pool.volumes) + step // hp['refresh_every']}")
        out_of_time = deadline is not None and time.time() > deadline
        if step % request.sample_every == 0 or step == request.steps or out_of_time:
            snapshot = copy.deepcopy(G_ema)
            snapshot.w_avg.copy_(_w_avg(snapshot, seed))
            metrics = render_samples(
                LungCTPipeline(snapshot, {"pipeline": PIPELINE_DEFAULTS}, device), validation, record.sample_path(step), seed
            )
            record.metrics({"step": step, "images": images, **metrics})
        if step % request.checkpoint_every == 0 and step < request.steps and not out_of_time:
            _save(record.checkpoint_dir(step), G_ema, arch, pool, {"training": {"step": step}}, seed)
        if out_of_time:
            say(f"time limit of {request.minutes:g} min reached at step {step}")
            break
    bar.close()
    wall = time.time() - started
    training = {
        "steps": step,
        "images": images,
        "seed": seed,
        "batch": request.batch,
        "crop": crop,
        "init": init_record.get("training") if request.init is not None else None,
        "wall_time_s": round(wall, 1),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "data": options["data"],
        "torch": torch.__version__,
    }
    _save(request.out, G_ema, arch, pool, {"training": training}, seed)
    record.metrics({"step": step, "final": True, "wall_time_s": round(wall, 1)})
    say(f"trained {step} steps in {wall / 60:.1f} min; weights in {request.out}")
    return request.out
