"""Training plumbing shared by the zoo's targets: the request, the run record, helpers.

``synthpacs train TARGET`` builds a :class:`TrainingRequest` and hands it to
the target's ``training.train(request)``. Every run describes itself
(stylegan2-ada's run folders, STYLE convention 12)::

    OUT/
      training_options.json   the request and every resolved hyperparameter
      stats.jsonl             one line per logging interval (losses, speed)
      metrics.jsonl           one line per evaluation (quick metrics at checkpoints)
      samples/step-NNNNNN.png periodic sample montages
      checkpoints/step-NNNNNN/ generator.json + weights.safetensors
      generator.json          the final weights: OUT is itself a pretrained folder,
      weights.safetensors     so ``--weights OUT`` serves them

A run is reproducible from its seed: the same request on the same machine
(and thread count) gives the same weights.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError


@dataclass
class TrainingRequest:
    """What the user asked ``synthpacs train`` for; a target fills in its own defaults."""

    target: str
    out: Path
    steps: int = 3000
    seed: int = 0
    batch: int = 8
    crop: int = 96
    data: Path | None = None  # a folder of the user's image + label pairs; None: the teacher, on the fly
    device: str = "auto"
    device_source: str = "default"
    minutes: float | None = None  # stop early after this much wall time (the steps done are recorded)
    sample_every: int = 250
    checkpoint_every: int = 1000
    log_every: int = 10
    threads: int | None = None  # torch CPU threads (None: torch's default)
    init: Path | None = None  # start from these weights (fine-tuning) instead of from scratch
    pool: int | None = None  # training volumes held in memory (target default when None)
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        for name in ("steps", "batch", "crop", "sample_every", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ConfigError(f"training option {name} must be a positive integer, got {value!r}")
        if self.data is not None:
            self.data = Path(self.data)
            if not self.data.is_dir():
                raise ConfigError(f"training data folder {str(self.data)!r} does not exist")
        if self.init is not None:
            self.init = Path(self.init)

    def as_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def machine() -> dict[str, Any]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class RunRecord:
    """The files a training run writes about itself."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "samples").mkdir(exist_ok=True)
        self.started = time.time()
        for name in ("stats.jsonl", "metrics.jsonl"):
            (self.out / name).write_text("")

    def options(self, options: dict[str, Any]) -> None:
        (self.out / "training_options.json").write_text(json.dumps(options, indent=2, default=_jsonable) + "\n")

    def _append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.out / name, "a") as handle:
            handle.write(json.dumps(row, default=_jsonable) + "\n")

    def stats(self, row: dict[str, Any]) -> None:
        self._append("stats.jsonl", {"wall_s": round(time.time() - self.started, 2), **row})

    def metrics(self, row: dict[str, Any]) -> None:
        self._append("metrics.jsonl", {"wall_s": round(time.time() - self.started, 2), **row})

    def sample_path(self, step: int) -> Path:
        return self.out / "samples" / f"step-{step:06d}.png"

    def checkpoint_dir(self, step: int) -> Path:
        return self.out / "checkpoints" / f"step-{step:06d}"

    @property
    def wall_s(self) -> float:
        return time.time() - self.started


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot record {type(value).__name__} in JSON")


def ema_update(target, source, decay: float) -> None:
    """``target = decay * target + (1 - decay) * source`` over parameters; buffers copied."""
    import torch

    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, 1.0 - decay)
        for t, s in zip(target.buffers(), source.buffers()):
            t.copy_(s)
