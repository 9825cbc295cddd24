"""Where generators run: CUDA when present, the CPU otherwise, or what the ``device`` setting forces.

The setting takes ``auto`` (the default: the first CUDA device when torch
sees one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``. Asking for CUDA on
a machine or a torch build without it is a :class:`~synthpacs.errors.ConfigError`
naming the setting, never a silent fall-back (diffusers: concise errors
rather than silently correcting input).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:  # torch is imported when a device is resolved, not when settings load
    import torch

_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(value) -> str:
    """Setting converter: the syntax only (availability is checked when a generator loads)."""
    text = str(value).strip().lower()
    if not _PATTERN.match(text):
        raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
    return text


def cuda_problem(text: str) -> str | None:
    """Why ``cuda``/``cuda:N`` cannot be used here (None when it can); imports torch."""
    import torch

    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return f"asks for CUDA, but none is available (torch {torch.__version__}, {build}); use auto or cpu"
    index = int(text.split(":")[1]) if ":" in text else 0
    if index >= torch.cuda.device_count():
        return f"names CUDA device {index}, but this machine has {torch.cuda.device_count()}"
    return None


def resolve_device(name: str = "auto", source: str = "the device setting") -> torch.device:
    """The torch device a generator runs on.

    Raises
    ------
    ConfigError
        For an unknown name, or for CUDA where torch has none; ``source``
        (e.g. ``"flag --device"``) is named in the message.
    """
    import torch

    try:
        text = check_device_name(name)
    except ValueError as exc:
        raise ConfigError(f"invalid device in {source}: {exc}") from None
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    problem = cuda_problem(text)
    if problem:
        raise ConfigError(f"device {text!r} in {source} {problem}")
    return torch.device("cuda", int(text.split(":")[1]) if ":" in text else 0)
