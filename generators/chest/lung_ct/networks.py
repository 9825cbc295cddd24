"""The lung-CT GAN's networks: plain ``nn.Module``s, no training or serving logic.

Generator
    A small fully convolutional U-Net (SPADE/pix2pixHD family) that maps one
    axial label slice, the mean of its two neighbours (2.5-D context), the
    voxel spacing and a style vector ``w`` to Hounsfield units. Its output is
    a residual over a label-mean base image (``class_hu`` per class), so an
    untrained or truncated network still gives plausible HU, and air, bone
    and tumour sit where the label map puts them. Style enters every decoder
    block by FiLM (per-channel scale and shift from ``w``); per-pixel noise
    maps enter the three finest decoder levels with learned per-channel
    strengths (StyleGAN's noise inputs), which is where CT noise texture
    comes from, and a smooth 3-D random field enters the 1/8 bottleneck
    (slow density variation, coherent from slice to slice). No normalisation layers: a slice's output never depends on
    the other slices of its batch.
Mapping
    An MLP from the latent ``z`` to ``w``; ``w_avg`` (a buffer tracked during
    training) is the centre that truncation pulls towards.
Discriminator
    Two conditional PatchGAN discriminators (pix2pixHD), one at full and
    one at half resolution, with spectral normalisation. They see the image
    through three windows (lung, soft tissue, wide) beside the labels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Label codes of the geometry stage, in order (``geometry.Label``); lesions are 100 + i.
LABEL_NAMES = (
    "AIR",
    "FAT",
    "MUSCLE",
    "LUNG",
    "AIRWAY",
    "VESSEL",
    "HEART",
    "MEDIASTINUM",
    "BONE",
    "RIB",
    "STERNUM",
    "SOFT_TISSUE",
    "TABLE",
)
LESION_CLASS = len(LABEL_NAMES)  # every lesion (label >= 100) is one class for the GAN
N_CLASSES = LESION_CLASS + 1
CLASS_NAMES = LABEL_NAMES + ("LESION",)

#: Starting base HU per class (training replaces them by the teacher's medians).
DEFAULT_CLASS_HU = (-1000.0, -100.0, 48.0, -845.0, -990.0, 40.0, 38.0, 32.0, 340.0, 400.0, 360.0, 55.0, -120.0, 38.0)


def label_classes(labels: torch.Tensor) -> torch.Tensor:
    """Geometry labels (int) -> GAN classes 0..N_CLASSES-1 (lesions merged, unknown codes -> soft tissue)."""
    labels = labels.long()
    classes = torch.where(labels >= 100, torch.full_like(labels, LESION_CLASS), labels)
    return torch.where((classes < 0) | (classes >= N_CLASSES), torch.full_like(classes, 11), classes)


def one_hot(classes: torch.Tensor) -> torch.Tensor:
    """(B, H, W) class indices -> (B, N_CLASSES, H, W) float one-hot."""
    return F.one_hot(classes, N_CLASSES).permute(0, 3, 1, 2).to(torch.float32)


def geometry_maps(spacing: torch.Tensor, y_mm: torch.Tensor, width: int) -> torch.Tensor:
    """Where the pixels are: (B, 3, H, W) maps of log pixel spacing, log slice thickness and height y.

    ``spacing`` is (B, 2) (pixel spacing, slice thickness) in mm; ``y_mm`` is
    (B, H), the patient y (posterior positive) of each row, which lets the
    network draw gravity-dependent lung density.
    """
    height = y_mm.shape[1]
    pixel = torch.log2(spacing[:, 0].clamp(min=0.1) / 1.0)
    thickness = torch.log2(spacing[:, 1].clamp(min=0.1) / 4.0)
    constant = torch.stack([pixel, thickness], dim=1)[:, :, None, None].expand(-1, -1, height, width)
    rows = (y_mm / 150.0)[:, None, :, None].expand(-1, 1, height, width)
    return torch.cat([constant, rows], dim=1)


class FiLM(nn.Module):
    """Per-channel scale and shift from the style vector; starts as the identity."""

    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self.affine = nn.Linear(w_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(w)[:, :, None, None].chunk(2, dim=1)
        return x * (1.0 + gamma) + beta


class NoiseInjection(nn.Module):
    """``x + strength[c] * noise`` with a learned strength per channel (StyleGAN)."""

    def __init__(self, channels: int):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.strength[None, :, None, None] * noise


class DecoderBlock(nn.Module):
    """Upsample, join the skip, two 3x3 convolutions, each styled; noise after the first."""

    def __init__(self, in_channels: int, skip_channels: int, channels: int, w_dim: int, noise: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels + skip_channels, channels, 3, padding=1)
        self.film1 = FiLM(w_dim, channels)
        self.noise = NoiseInjection(channels) if noise else None
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film2 = FiLM(w_dim, channels)

    def forward(self, x, skip, w, noise=None):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.film1(self.conv1(torch.cat([x, skip], dim=1)), w)
        if self.noise is not None and noise is not None:
            x = self.noise(x, noise)
        x = F.leaky_relu(x, 0.2)
        return F.leaky_relu(self.film2(self.conv2(x), w), 0.2)


class MappingNetwork(nn.Module):
    """z -> w, an MLP with leaky ReLUs (StyleGAN's mapping, shallow)."""

    def __init__(self, z_dim: int, w_dim: int, layers: int):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
        return x


def _bias(conv: nn.Module) -> torch.Tensor:
    """A convolution's bias (every convolution here has one)."""
    if not isinstance(conv, nn.Conv2d) or conv.bias is None:
        raise TypeError(f"expected a Conv2d with a bias, got {type(conv).__name__}")
    return conv.bias


def _conv(conv: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A convolution's (weight, bias)."""
    bias = _bias(conv)
    assert isinstance(conv, nn.Conv2d)
    return conv.weight, bias


class LungCTGenerator(nn.Module):
    """Label slices + geometry + style + noise -> HU (see the module docstring).

    Parameters
    ----------
    z_dim, w_dim
        Latent and style sizes. The first ``style_dims`` entries of ``z`` are
        the study's calibration (standardised tissue levels and noise, see
        ``pipeline.STYLE_STATISTICS``): during training they are measured on
        the teacher volume a slice comes from; at inference they are drawn
        N(0, 1) like the rest of ``z``.
    style_dims
        How many leading entries of ``z`` carry the calibration.
    channels
        Feature channels at full, 1/2, 1/4 and 1/8 resolution (height and
        width must divide by 8; the pipeline pads).
    embed_dim
        Size of the learned label embeddings (one for the slice, one for the
        mean of its two neighbours).
    mapping_layers
        Depth of the mapping MLP.
    noise_levels
        How many of the finest levels take a per-pixel noise map (0..3).
    class_hu
        Base HU per class (``N_CLASSES`` values).
    hu_scale
        The residual's unit: the last layer outputs HU / hu_scale.
    """

    def __init__(
        self,
        z_dim: int = 32,
        w_dim: int = 64,
        style_dims: int = 8,
        channels: tuple[int, ...] = (12, 24, 48, 64),
        embed_dim: int = 8,
        mapping_layers: int = 2,
        noise_levels: int = 3,
        class_hu: tuple[float, ...] = DEFAULT_CLASS_HU,
        hu_scale: float = 500.0,
    ):
        super().__init__()
        self.w_avg: torch.Tensor
        self.class_hu: torch.Tensor
        channels = tuple(int(c) for c in channels)
        if len(channels) != 4:
            raise ValueError("channels needs 4 values (full, 1/2, 1/4, 1/8 resolution)")
        if len(class_hu) != N_CLASSES:
            raise ValueError(f"class_hu needs {N_CLASSES} values")
        if not 0 <= noise_levels <= 3:
            raise ValueError("noise_levels must be 0..3")
        if not 0 <= style_dims <= z_dim:
            raise ValueError("style_dims must be between 0 and z_dim")
        self.z_dim, self.w_dim, self.style_dims = int(z_dim), int(w_dim), int(style_dims)
        self.noise_levels, self.hu_scale = int(noise_levels), float(hu_scale)
        c0, c1, c2, c3 = channels
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers)
        self.register_buffer("w_avg", torch.zeros(w_dim))
        self.register_buffer("class_hu", torch.tensor(class_hu, dtype=torch.float32))
        self.embed_current = nn.Embedding(N_CLASSES, embed_dim)
        self.embed_neighbours = nn.Embedding(N_CLASSES, embed_dim)
        self.enc0 = nn.Conv2d(2 * embed_dim + 3, c0, 3, padding=1)
        self.enc1 = nn.Sequential(
            nn.Conv2d(c0, c1, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c1, c1, 3, padding=1), nn.LeakyReLU(0.2)
        )
        self.enc2 = nn.Sequential(
            nn.Conv2d(c1, c2, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(c2, c2, 3, padding=1), nn.LeakyReLU(0.2)
        )
        self.enc3a = nn.Conv2d(c2, c3, 3, padding=1)
        self.film3a = FiLM(w_dim, c3)
        self.field3 = NoiseInjection(c3)  # the smooth 3-D field: slow tissue-density variation
        self.enc3b = nn.Conv2d(c3, c3, 3, padding=1)
        self.film3b = FiLM(w_dim, c3)
        self.dec2 = DecoderBlock(c3, c2, c2, w_dim, noise=noise_levels >= 3)
        self.dec1 = DecoderBlock(c2, c1, c1, w_dim, noise=noise_levels >= 2)
        # Full resolution is where the pixels are: one styled convolution, then the output.
        self.dec0 = nn.Conv2d(c1 + c0, c0, 3, padding=1)
        self.film0 = FiLM(w_dim, c0)
        self.noise0 = NoiseInjection(c0) if noise_levels >= 1 else None
        self.out = nn.Conv2d(c0, 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(_bias(self.out))

    def noise_shapes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(H, W) of each input noise map: the fine levels, finest first, then the 1/8 smooth field."""
        return [(height >> level, width >> level) for level in range(self.noise_levels)] + [(height >> 3, width >> 3)]

    def base_hu(self, labels: torch.Tensor) -> torch.Tensor:
        """The label-mean image of the middle slice: (B, 3, H, W) labels -> (B, 1, H, W) HU."""
        return self.class_hu[label_classes(labels[:, 1])][:, None]

    def forward(
        self,
        labels: torch.Tensor,
        spacing: torch.Tensor,
        y_mm: torch.Tensor,
        w: torch.Tensor,
        noise: list[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """HU of each slice, (B, 1, H, W) float.

        ``labels``: (B, 3, H, W) geometry labels of slices z-1, z, z+1;
        ``spacing``: (B, 2) pixel spacing and slice thickness in mm;
        ``y_mm``: (B, H) patient y of each row; ``w``: (B, w_dim) styles;
        ``noise``: the maps of :meth:`noise_shapes`, each (B, 1, h, w), None
        for no noise.
        """
        height, width = labels.shape[-2:]
        noise = list(noise) if noise is not None else [None] * (self.noise_levels + 1)
        fine, field = noise[: self.noise_levels] + [None] * (3 - self.noise_levels), noise[self.noise_levels]
        classes = label_classes(labels)
        current = self.embed_current(classes[:, 1])
        neighbours = 0.5 * (self.embed_neighbours(classes[:, 0]) + self.embed_neighbours(classes[:, 2]))
        x = torch.cat([current, neighbours], dim=-1).permute(0, 3, 1, 2)
        x0 = F.leaky_relu(self.enc0(torch.cat([x, geometry_maps(spacing, y_mm, width)], dim=1)), 0.2)
        x1 = self.enc1(F.avg_pool2d(x0, 2))
        x2 = self.enc2(F.avg_pool2d(x1, 2))
        x3 = self.film3a(self.enc3a(F.avg_pool2d(x2, 2)), w)
        if field is not None:
            x3 = self.field3(x3, field)
        x3 = F.leaky_relu(x3, 0.2)
        x3 = F.leaky_relu(self.film3b(self.enc3b(x3), w), 0.2)
        y = self.dec2(x3, x2, w, fine[2])
        y = self.dec1(y, x1, w, fine[1])
        y = self.film0(self.dec0(torch.cat([F.interpolate(y, scale_factor=2.0, mode="nearest"), x0], dim=1)), w)
        if self.noise0 is not None and fine[0] is not None:
            y = self.noise0(y, fine[0])
        y = F.leaky_relu(y, 0.2)
        return self.base_hu(labels) + self.hu_scale * self.out(y)


#: Which of a 3x3 kernel's taps (after a 2x nearest upsample) land on each 2x2 low-resolution tap:
#: ``[phase, low-resolution tap, original tap]``. Phase 0 (even output rows) reads input rows i - 1
#: and i, phase 1 (odd rows) rows i and i + 1.
_PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))


def polyphase_weight(weight: torch.Tensor) -> torch.Tensor:
    """A 3x3 convolution after a 2x nearest upsample, as one 2x2 convolution before it.

    Each output phase of ``conv(upsample(y), weight)`` (padding 1) reads only
    a 2 x 2 window of ``y``, so the upsampled convolution is a 2x2 convolution
    of ``y`` (padding 1, (H + 1) x (W + 1) outputs) with four output channels
    per channel: output pixel (2i + a, 2j + b) is channel (2a + b) O + o of
    that convolution at (i + a, j + b) (:func:`interleave_phases`). Four
    ninths of the multiplications of the 3x3 form, none of them on zeros.
    ``weight`` is (O, I, 3, 3); the result is (4 O, I, 2, 2), phase-major.
    """
    taps = torch.tensor(_PHASE_TAPS, dtype=weight.dtype, device=weight.device)
    out, inp = weight.shape[:2]
    return torch.einsum("aup,oipq,bvq->aboiuv", taps, weight, taps).reshape(4 * out, inp, 2, 2)


def interleave_phases(phases: torch.Tensor) -> torch.Tensor:
    """The 2x2 polyphase convolution's output (1, 4 O, H + 1, W + 1), channels-last -> (1, O, 2H, 2W).

    One strided copy: the four phases sit at offsets (a, b) of the same
    buffer, so output (2i + a, 2j + b) is read at (i + a, j + b), channel
    (2a + b) O + o, an affine function of (i, a, j, b, o).
    """
    _, channels, rows, columns = phases.shape
    out, height, width = channels // 4, rows - 1, columns - 1
    buffer = phases.permute(0, 2, 3, 1)
    if not buffer.is_contiguous():
        buffer = buffer.contiguous()
    row, column = columns * channels, channels
    view = buffer.as_strided((height, 2, width, 2, out), (row, row + 2 * out, column, column + out, 1), buffer.storage_offset())
    return view.reshape(1, 2 * height, 2 * width, out).permute(0, 3, 1, 2)


def _cpu_fusion_available() -> bool:
    op = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
    return op is not None and torch.backends.mkldnn.is_available()


class SliceRenderer:
    """:class:`LungCTGenerator`'s forward pass for inference, one slice at a time.

    The same function as ``LungCTGenerator.forward`` (in float32 the HU agree
    to about 1e-3; rounding to integers changes a few voxels in 10^5), computed
    with less memory traffic, which is what a 2-core CPU spends its time on:

    * **one slice per pass**, so the activations of a 512 x 512 slice stay in
      the caches; every slice's result depends on its own inputs only, never
      on which other slices share its batch;
    * **FiLM folded into the convolutions**: per slice the scale multiplies
      the weights and the shift joins the bias (:meth:`styles` computes all
      slices' styles at once);
    * **no upsampled or concatenated tensors**: a decoder's 3x3 convolution
      over ``cat(upsample(y), skip)`` is split into the skip's convolution
      plus a 2x2 :func:`polyphase_weight` convolution of ``y`` at its own
      resolution, its phases interleaved (:func:`interleave_phases`) and
      added inside the skip's convolution;
    * **label embeddings from one table**: the slice's embedding and the mean
      of its neighbours' come from one lookup of the class triple
      (:meth:`codes`); the geometry channels (spacing, row position), the same
      for every slice of a series, go through the first convolution once per
      renderer;
    * on the CPU, convolution + leaky ReLU and convolution + addition run as
      one oneDNN primitive each;
    * optionally ``dtype=torch.bfloat16``: every convolution but the last in
      bfloat16 (fast where the CPU has AMX; accumulation stays float32 inside
      oneDNN), the output layer and the HU in float32.

    Build one per series grid (``height`` x ``width`` padded, ``spacing``
    (pixel spacing, slice thickness) in mm and ``y_mm`` per row); the
    network's weights are read when it is built.
    """

    def __init__(
        self,
        net: LungCTGenerator,
        height: int,
        width: int,
        spacing: torch.Tensor,
        y_mm: torch.Tensor,
        dtype: torch.dtype = torch.float32,
    ):
        self.net, self.dtype = net, dtype
        device = net.class_hu.device
        self.device = device
        self.fused = device.type == "cpu" and _cpu_fusion_available()
        self.channels_last = device.type == "cpu"
        e = net.embed_current.weight
        n = N_CLASSES
        # code = previous * n^2 + current * n + next -> [embedding of current, mean embedding of previous and next]
        en = net.embed_neighbours.weight
        current = e[None, :, None, :].expand(n, n, n, -1)
        neighbours = (0.5 * (en[:, None, None, :] + en[None, None, :, :])).expand(n, n, n, -1)
        self.table = torch.cat([current, neighbours], dim=-1).reshape(n**3, -1).to(dtype).contiguous()
        embed = 2 * e.shape[1]
        enc0, self.b_enc0 = _conv(net.enc0)
        geometry = geometry_maps(spacing.reshape(1, 2).float(), y_mm.reshape(1, -1).float(), width)
        self.geometry = self._layout(F.conv2d(geometry, enc0[:, embed:], None, padding=1).to(dtype))
        self.w_enc0 = enc0[:, :embed].to(dtype).contiguous()
        self.b_enc0 = self.b_enc0.to(dtype)
        self.plain = []
        for layer in (net.enc1[0], net.enc1[2], net.enc2[0], net.enc2[2]):
            weight, bias = _conv(layer)
            self.plain.append((weight.to(dtype).contiguous(), bias.to(dtype)))
        self.decoders = []
        c0, c1, c2 = net.enc0.out_channels, net.dec1.conv2.out_channels, net.dec2.conv2.out_channels
        for conv, up in ((net.dec2.conv1, net.enc3b.out_channels), (net.dec1.conv1, c2), (net.dec0, c1)):
            weight, bias = _conv(conv)
            self.decoders.append((polyphase_weight(weight[:, :up]), weight[:, up:], bias))
        assert self.decoders[-1][1].shape[1] == c0
        weight, bias = _conv(net.out)
        self.w_out = (net.hu_scale * weight).float()
        self.b_out = (net.hu_scale * bias).float()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @staticmethod
    def codes(classes: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) GAN classes of slices k-1, k, k+1 -> (B, H, W) int32 table index."""
        c = classes.to(torch.int32)
        return (c[:, 0] * N_CLASSES + c[:, 1]) * N_CLASSES + c[:, 2]

    def styles(self, w: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(n, w_dim) styles -> per FiLM layer, in the order the pass uses them, (scale, shift), each (n, C)."""
        net = self.net
        films = (net.film3a, net.film3b, net.dec2.film1, net.dec2.film2, net.dec1.film1, net.dec1.film2, net.film0)
        out = []
        for film in films:
            gamma, beta = film.affine(w).chunk(2, dim=1)
            out.append((1.0 + gamma, beta))
        return out

    # -- one slice ------------------------------------------------------------------------

    def _conv(self, x, weight, bias, leaky: bool, add: torch.Tensor | None = None) -> torch.Tensor:
        padding = [1, 1] if weight.shape[-1] > 1 else [0, 0]  # 3x3 "same", 2x2 polyphase (H + 1 outputs), 1x1
        if self.fused:
            op = torch.ops.mkldnn._convolution_pointwise
            if add is not None:
                y = op.binary(x, add, weight, bias, padding, [1, 1], [1, 1], 1, "add", None, None, [], None)
                return F.leaky_relu_(y, 0.2) if leaky else y
            return op(x, weight, bias, padding, [1, 1], [1, 1], 1, "leaky_relu" if leaky else "none", [0.2] if leaky else [], "")
        y = F.conv2d(x, weight, bias, padding=padding)
        if add is not None:
            y = y.add_(add)
        return F.leaky_relu_(y, 0.2) if leaky else y

    def _folded(self, weight, bias, style, index: int):
        scale, shift = style[0][index], style[1][index]
        reshaped = scale[:, None, None, None]
        if weight.shape[0] != scale.shape[0]:  # polyphase: the channels once per phase
            reshaped = scale.repeat(weight.shape[0] // scale.shape[0])[:, None, None, None]
        folded_bias = None if bias is None else (bias * scale + shift).to(self.dtype)
        return (weight * reshaped).to(self.dtype).contiguous(), folded_bias

    def _noise(self, x: torch.Tensor, noise: torch.Tensor | None, injection: NoiseInjection | None) -> torch.Tensor:
        if noise is None or injection is None:
            return x
        return x.addcmul_(noise.to(x.dtype), injection.strength[None, :, None, None].to(x.dtype))

    def __call__(
        self,
        code: torch.Tensor,
        base: torch.Tensor,
        styles: list[tuple[torch.Tensor, torch.Tensor]],
        index: int,
        noise: list[torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """HU of one slice, (1, 1, H, W) float32.

        ``code``: (1, H, W) table index (:meth:`codes`); ``base``: (1, 1, H, W)
        label-mean HU of the slice; ``styles``: :meth:`styles` of the series,
        of which row ``index`` is this slice's; ``noise``: this slice's maps of
        :meth:`LungCTGenerator.noise_shapes`, each (1, 1, h, w), or None.
        """
        net = self.net
        levels = net.noise_levels
        maps = list(noise) if noise is not None else [None] * (levels + 1)
        fine = maps[:levels] + [None] * (3 - levels)
        field = maps[levels]
        x = F.embedding(code, self.table).permute(0, 3, 1, 2)
        x0 = self._conv(x, self.w_enc0, self.b_enc0, True, add=self.geometry)
        (w1a, b1a), (w1b, b1b), (w2a, b2a), (w2b, b2b) = self.plain
        x1 = self._conv(self._conv(F.avg_pool2d(x0, 2), w1a, b1a, True), w1b, b1b, True)
        x2 = self._conv(self._conv(F.avg_pool2d(x1, 2), w2a, b2a, True), w2b, b2b, True)
        w3, b3 = self._folded(net.enc3a.weight, net.enc3a.bias, styles[0], index)
        x3 = F.leaky_relu_(self._noise(self._conv(F.avg_pool2d(x2, 2), w3, b3, False), field, net.field3), 0.2)
        w3, b3 = self._folded(net.enc3b.weight, net.enc3b.bias, styles[1], index)
        y = self._conv(x3, w3, b3, True)
        skips = (x2, x1, x0)
        injections = (net.dec2.noise, net.dec1.noise, net.noise0)
        second = (net.dec2.conv2, net.dec1.conv2, None)
        for level, (poly, skip_weight, bias) in enumerate(self.decoders):
            wp, _ = self._folded(poly, None, styles[2 + 2 * level], index)
            ws, bs = self._folded(skip_weight, bias, styles[2 + 2 * level], index)
            up = self._noise(interleave_phases(self._conv(y, wp, None, False)), fine[2 - level], injections[level])
            y = self._conv(skips[level], ws, bs, True, add=up)
            conv2 = second[level]
            if conv2 is not None:
                w2, b2 = self._folded(conv2.weight, conv2.bias, styles[3 + 2 * level], index)
                y = self._conv(y, w2, b2, True)
        y = y.float()
        if self.fused:
            op = torch.ops.mkldnn._convolution_pointwise
            return op.binary(y, base, self.w_out, self.b_out, [0, 0], [1, 1], [1, 1], 1, "add", None, None, [], None)
        return F.conv2d(y, self.w_out, self.b_out) + base


def windows(hu: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) HU -> (B, 3, H, W): lung window, soft-tissue window, wide range, softly bounded."""
    return torch.cat([torch.tanh((hu + 600.0) / 750.0), torch.tanh((hu - 40.0) / 200.0), torch.tanh(hu / 1500.0)], dim=1)


class _PatchD(nn.Module):
    def __init__(self, in_channels: int, channels: tuple[int, ...]):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        layers, previous = [], in_channels
        for c in channels:
            layers += [sn(nn.Conv2d(previous, c, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            previous = c
        layers += [sn(nn.Conv2d(previous, previous, 3, padding=1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = sn(nn.Conv2d(previous, 1, 3, padding=1))

    def forward(self, x):
        return self.head(self.features(x))


class LungCTDiscriminator(nn.Module):
    """Conditional PatchGAN at two scales; returns a list of patch score maps."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128), scales: int = 2):
        super().__init__()
        in_channels = 3 + N_CLASSES + 3
        self.scales = nn.ModuleList(_PatchD(in_channels, tuple(channels)) for _ in range(scales))

    def forward(self, hu: torch.Tensor, labels: torch.Tensor, spacing: torch.Tensor, y_mm: torch.Tensor) -> list[torch.Tensor]:
        """Patch scores for HU slices (B, 1, H, W) given their (B, 3, H, W) labels, spacing and row positions."""
        width = hu.shape[-1]
        current = one_hot(label_classes(labels[:, 1]))
        x = torch.cat([windows(hu), current, geometry_maps(spacing, y_mm, width)], dim=1)
        scores = []
        for index, d in enumerate(self.scales):
            if index:
                x = F.avg_pool2d(x, 2)
            scores.append(d(x))
        return scores
