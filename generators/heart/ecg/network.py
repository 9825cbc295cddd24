"""The DeepFake ECG generator (Pulse2Pulse), rebuilt here to load its published weights.

Pulse2Pulse is a 1-D U-Net: six strided convolutions encode a (8, 5000)
block of uniform noise, and five upsampling stages with skip connections
decode it into eight leads (I, II, V1-V6) of a 10-second ECG at 500 Hz,
``tanh`` scaled by 6000 to microvolts. The weights are the ones the PyPI
wheel ``deepfake-ecg`` 1.1.2 ships (MIT, ``deepfakeecg/checkpoints/g_stat.pt``);
they are read from the installed package, never downloaded. The checkpoint
also holds layers the network never runs (a dense layer, transposed
convolutions, a post-filter): they are left unloaded, by name.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synthpacs.errors import ConfigError

from .checkpoint import checkpoint_file, shipped_checkpoint
from .leads import MICROVOLTS, NETWORK_LEADS, SAMPLES, SAMPLING_HZ

__all__ = [
    "MICROVOLTS",
    "NETWORK_LEADS",
    "SAMPLES",
    "SAMPLING_HZ",
    "Pulse2Pulse",
    "checkpoint_file",
    "load_network",
    "shipped_checkpoint",
]

#: Checkpoint entries of layers the forward pass never uses.
UNUSED = ("fc1.", "ppfilter1.", ".Conv1dTrans.")
KERNEL = 25


class _Up(nn.Module):
    """Upsample by ``factor`` (nearest), zero-pad, convolve; a skip input is concatenated first."""

    def __init__(self, channels_in: int, channels_out: int, factor: int):
        super().__init__()
        self.factor = factor
        self.conv1d = nn.Conv1d(channels_in, channels_out, KERNEL)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        if skip is not None:
            x = torch.cat((x, skip), 1)
        x = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        return self.conv1d(F.pad(x, (KERNEL // 2, KERNEL // 2)))


class Pulse2Pulse(nn.Module):
    """Noise (batch, 8, 5000) in [-1, 1] -> eight leads in [-1, 1]."""

    def __init__(self, width: int = 50, leads: int = 8):
        super().__init__()
        d = width
        pad = KERNEL // 2
        self.conv_1 = nn.Conv1d(leads, d // 5, KERNEL, stride=2, padding=pad)
        self.conv_2 = nn.Conv1d(d // 5, d // 2, KERNEL, stride=5, padding=pad)
        self.conv_3 = nn.Conv1d(d // 2, d, KERNEL, stride=2, padding=pad)
        self.conv_4 = nn.Conv1d(d, 3 * d, KERNEL, stride=5, padding=pad)
        self.conv_5 = nn.Conv1d(3 * d, 5 * d, KERNEL, stride=5, padding=pad)
        self.conv_6 = nn.Conv1d(5 * d, 5 * d, KERNEL, stride=5, padding=pad)
        self.deconv_1 = _Up(5 * d, 5 * d, 5)
        self.deconv_2 = _Up(10 * d, 3 * d, 5)
        self.deconv_3 = _Up(6 * d, d, 5)
        self.deconv_5 = _Up(2 * d, d // 2, 2)
        self.deconv_6 = _Up(d, d // 5, 5)
        self.deconv_7 = _Up(d // 5, leads, 2)

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        a1 = F.leaky_relu(self.conv_1(noise))
        a2 = F.leaky_relu(self.conv_2(a1))
        a3 = F.leaky_relu(self.conv_3(a2))
        a4 = F.leaky_relu(self.conv_4(a3))
        a5 = F.leaky_relu(self.conv_5(a4))
        x = F.leaky_relu(self.conv_6(a5))
        x = F.relu(self.deconv_1(x))
        x = F.relu(self.deconv_2(x, a5))
        x = F.relu(self.deconv_3(x, a4))
        x = F.relu(self.deconv_5(x, a3))
        x = F.relu(self.deconv_6(x, a2))
        return torch.tanh(self.deconv_7(x))


def load_network(path: Path | None = None, device: torch.device | str = "cpu") -> Pulse2Pulse:
    """The generator with the weights of ``path`` (see :func:`checkpoint_file`), in eval mode.

    Raises
    ------
    ConfigError
        Naming the file when it is not a Pulse2Pulse generator checkpoint
        (unreadable, no ``stat_dict``, or layers that do not match).
    """
    path = checkpoint_file(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such DeepFake ECG checkpoint")
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not a checkpoint
        raise ConfigError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from None
    state = checkpoint.get("stat_dict", checkpoint.get("state_dict")) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: a DeepFake ECG checkpoint holds its generator weights under 'stat_dict'")
    used = {k: v for k, v in state.items() if not any(part in k for part in UNUSED)}
    network = Pulse2Pulse()
    expected = network.state_dict()
    missing = sorted(set(expected) - set(used))
    unexpected = sorted(set(used) - set(expected))
    wrong = sorted(k for k in set(expected) & set(used) if tuple(expected[k].shape) != tuple(used[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise ConfigError(f"{path}: not a Pulse2Pulse generator checkpoint ({detail})")
    network.load_state_dict(used)
    return network.to(device).eval()
