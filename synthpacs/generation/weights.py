"""Weights on disk: a recorded configuration plus safetensors, never pickles.

A *pretrained folder* (diffusers' ``save_pretrained`` layout) holds two files:

``generator.json``
    ``{"format": 1, "class_name": ..., "config": {constructor arguments},
    "weights": "weights.safetensors", "weights_sha256": ..., ...}`` plus any
    provenance the trainer adds (steps, seed, wall time).
``weights.safetensors``
    the network's state dict (float32 tensors).

:func:`load_pretrained` rebuilds the network from the recorded arguments and
loads the tensors strictly. Every way this can go wrong (a missing folder or
file, a truncated or altered file, a state dict that does not fit the
recorded architecture) raises :class:`WeightsError`, whose message names the
file and the problem; it is a :class:`~synthpacs.errors.ConfigError`, so the
CLI prints it as one line and exits 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:  # torch is imported by the functions that need it: read_record stays light
    from torch import nn

CONFIG_NAME = "generator.json"
WEIGHTS_NAME = "weights.safetensors"
FORMAT_VERSION = 1


class WeightsError(ConfigError):
    """Weights that cannot be used; the message names the file and why."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(
    directory: str | os.PathLike,
    network: nn.Module,
    class_name: str,
    config: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``generator.json`` and ``weights.safetensors`` into ``directory`` (atomically each).

    Parameters
    ----------
    network
        The module whose ``state_dict`` is saved (tensors made contiguous, float32 on CPU).
    class_name
        Recorded so that a folder made for another network is refused on load.
    config
        The constructor arguments that rebuild ``network`` (JSON-serialisable).
    extra
        Provenance recorded beside the configuration (training steps, seed...).
    """
    import torch
    from safetensors.torch import save

    directory = Path(directory)
    state = {name: tensor.detach().to("cpu", torch.float32).contiguous() for name, tensor in network.state_dict().items()}
    # One metadata key only: safetensors writes its metadata map in hash order, and
    # identical weights must give identical bytes (the SHA-256 is recorded).
    blob = save(state, metadata={"format": "pt"})
    _atomic_bytes(directory / WEIGHTS_NAME, blob)
    record = {
        "format": FORMAT_VERSION,
        "class_name": class_name,
        "config": dict(config),
        "weights": WEIGHTS_NAME,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "weights_bytes": len(blob),
        "parameters": int(sum(t.numel() for t in state.values())),
    }
    record.update(extra or {})
    _atomic_bytes(directory / CONFIG_NAME, (json.dumps(record, indent=2, sort_keys=False) + "\n").encode())
    return directory


def read_record(directory: str | os.PathLike, class_name: str | None = None) -> dict[str, Any]:
    """The parsed ``generator.json`` of a pretrained folder (checked, not yet the weights)."""
    directory = Path(directory)
    if not directory.exists():
        raise WeightsError(f"weights folder {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise WeightsError(
            f"weights path {str(directory)!r} is not a folder (expected one holding {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise WeightsError(f"{path} is missing: a weights folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise WeightsError(f"{path} has no 'config' mapping (constructor arguments of the network)")
    if record.get("format") != FORMAT_VERSION:
        raise WeightsError(f"{path} has format {record.get('format')!r}; this SynthPACS reads format {FORMAT_VERSION}")
    if class_name is not None and record.get("class_name") != class_name:
        raise WeightsError(f"{path} describes a {record.get('class_name')!r} network, not the {class_name!r} this target needs")
    return record


def load_pretrained(
    directory: str | os.PathLike, class_name: str, build: Callable[[dict[str, Any]], nn.Module]
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a network from a pretrained folder and load its weights strictly.

    Parameters
    ----------
    directory
        The folder holding ``generator.json`` and the weights file it names.
    class_name
        The network class this caller expects (checked against the record).
    build
        Constructs the (untrained) network from the recorded ``config``.

    Returns
    -------
    (network, record)
        The network in eval mode on the CPU, and the parsed ``generator.json``.

    Raises
    ------
    WeightsError
        The folder, the JSON or the weights file is missing, unreadable,
        truncated, altered (SHA-256 differs from the record) or does not fit
        the recorded architecture. The message names the file.
    """
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load

    directory = Path(directory)
    record = read_record(directory, class_name)
    weights_path = directory / str(record.get("weights", WEIGHTS_NAME))
    if not weights_path.is_file():
        raise WeightsError(f"{weights_path} is missing (named by {directory / CONFIG_NAME})")
    blob = weights_path.read_bytes()
    expected_size = record.get("weights_bytes")
    if expected_size is not None and len(blob) != expected_size:
        raise WeightsError(
            f"{weights_path} is {len(blob)} bytes but {CONFIG_NAME} records {expected_size}: truncated or replaced"
        )
    expected_sha = record.get("weights_sha256")
    if expected_sha is not None and hashlib.sha256(blob).hexdigest() != expected_sha:
        raise WeightsError(f"{weights_path} does not match the SHA-256 recorded in {CONFIG_NAME}: corrupt or replaced")
    try:
        state = load(blob)
    except (SafetensorError, ValueError, OSError, RuntimeError) as exc:
        raise WeightsError(f"{weights_path} is not a readable safetensors file ({exc})") from None
    try:
        network = build(dict(record["config"]))
    except (TypeError, ValueError, KeyError) as exc:
        raise WeightsError(f"{directory / CONFIG_NAME} has a config this {class_name} cannot be built from ({exc})") from None
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(name for name in set(expected) & set(state) if tuple(expected[name].shape) != tuple(state[name].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if names:
                parts.append(f"{label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")
        raise WeightsError(f"{weights_path} does not fit the network recorded in {CONFIG_NAME} ({'; '.join(parts)})")
    network.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    network.eval()
    return network, record
