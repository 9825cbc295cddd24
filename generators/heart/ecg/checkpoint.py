"""Where the DeepFake ECG weights are, and what the waveforms depend on; imports neither torch nor the package.

A warm retrieve asks a target's fingerprint for its cache key; this module
answers it from the checkpoint file's name and size alone.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from synthpacs.errors import ConfigError
from synthpacs.generation.contract import GeneratorOptions

VERSION = 1  # bump when the same request would give other samples


def shipped_checkpoint() -> Path:
    """The checkpoint inside the installed ``deepfake-ecg`` wheel.

    Raises
    ------
    ConfigError
        When the package is not installed (it is a dependency of this project).
    """
    spec = importlib.util.find_spec("deepfakeecg")  # located, not imported: the package imports torch
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the heart/ecg generator needs the DeepFake ECG weights of the PyPI package deepfake-ecg 1.1.2; "
            "it is not installed (pip install deepfake-ecg==1.1.2, or make install)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "checkpoints" / "g_stat.pt"
    if not path.is_file():
        raise ConfigError(f"the deepfake-ecg package has no checkpoint at {path}")
    return path


def checkpoint_file(path: Path | None) -> Path:
    """The checkpoint a weights setting names: a ``.pt`` file, a folder holding ``g_stat.pt``
    (a ``synthpacs train heart/ecg`` run), or None for the shipped one."""
    if path is None:
        return shipped_checkpoint()
    path = Path(path)
    return path / "g_stat.pt" if path.is_dir() else path


def fingerprint(options: GeneratorOptions) -> str:
    """What the waveforms depend on: the checkpoint's identity (name and size; path and time for the user's) and :data:`VERSION`."""
    try:
        path = checkpoint_file(options.weights)
        stat = path.stat()
        stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}" if options.weights else f"{path.name}:{stat.st_size}"
    except (OSError, ConfigError):  # reported when the generator loads
        stamp = "missing"
    return hashlib.sha256(f"deepfake-ecg|{stamp}|v{VERSION}".encode()).hexdigest()[:16]
