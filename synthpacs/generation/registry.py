"""The generator zoo: organ system -> target -> generator (DESIGN §4).

Each target is a package ``generators/<system>/<target>/`` holding its code,
its shipped weights and its model card::

    generators/chest/lung_ct/
        MODEL_CARD.md          what it makes, how it was trained, measured quality, licence
        generator.json         recorded network configuration (+ provenance)
        weights.safetensors    the shipped weights
        training/              the run record of the shipped weights
        geometry.py            stage 1: label maps (the ground truth)
        teacher.py             the physics-informed renderer the GAN learnt from
        networks.py            plain nn.Modules
        pipeline.py            inference only (GANPipeline subclass)
        training.py            ``train(TrainingRequest)``
        evaluation.py          ``evaluate(EvaluationRequest)``
        target.py              ``make_target(GeneratorOptions)``: the Target the archive calls

The registry below lists the targets; everything else is found by those
module names, imported only when used (a query never imports torch).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigError
from .base import Target

GENERATORS_ROOT = Path(__file__).resolve().parent.parent.parent / "generators"


@dataclass(frozen=True)
class ZooEntry:
    """One target of the zoo."""

    name: str  # "<system>/<target>", as cohorts name it
    package: str  # the Python package holding its code, weights and card
    title: str
    modality: str
    renderers: tuple[str, ...]  # photorealism stages it offers; the first is the default
    aliases: tuple[str, ...] = ()  # short names for the CLI (``synthpacs train lung-ct``)

    @property
    def system(self) -> str:
        return self.name.split("/", 1)[0]

    @property
    def folder(self) -> Path:
        return GENERATORS_ROOT.joinpath(*self.package.split(".")[1:])

    @property
    def model_card(self) -> Path:
        return self.folder / "MODEL_CARD.md"

    @property
    def shipped_weights(self) -> Path:
        """The default pretrained folder: the target's own folder."""
        return self.folder

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{name}")


ZOO: tuple[ZooEntry, ...] = (
    ZooEntry(
        name="chest/lung-ct",
        package="generators.chest.lung_ct",
        title="Lung-cancer chest CT (label map -> HU, conditional GAN)",
        modality="CT",
        renderers=("gan", "teacher"),
        aliases=("lung-ct", "lung_ct"),
    ),
)

_BY_NAME = {entry.name: entry for entry in ZOO}
_BY_ALIAS = {alias: entry for entry in ZOO for alias in (entry.name, *entry.aliases)}


def zoo_entry(name: str) -> ZooEntry:
    """A target by its name (``chest/lung-ct``) or alias (``lung-ct``).

    Raises
    ------
    ConfigError
        Unknown target; the message lists the known ones.
    """
    try:
        return _BY_ALIAS[str(name).strip()]
    except KeyError:
        known = ", ".join(f"{e.name} ({', '.join(e.aliases)})" if e.aliases else e.name for e in ZOO)
        raise ConfigError(f"unknown generator target {name!r} (known: {known})") from None


@dataclass(frozen=True)
class GeneratorOptions:
    """How a target renders: the generator settings of one configuration."""

    renderer: str = "gan"
    weights: Path | None = None  # None: the shipped weights in the target's folder
    weights_source: str = "default"
    device: str = "auto"
    device_source: str = "default"
    psi: float = 1.0
    batch_slices: int = 8

    @classmethod
    def from_config(cls, config: Any, target: str) -> GeneratorOptions:
        sources = getattr(config, "sources", {})
        weights = config.weights
        if isinstance(weights, dict):
            weights = weights.get(target, "")
        return cls(
            renderer=config.renderer,
            weights=Path(weights) if weights else None,
            weights_source=sources.get("weights", "default"),
            device=config.device,
            device_source=sources.get("device", "default"),
            psi=float(config.truncation_psi),
            batch_slices=int(config.gan_batch_slices),
        )


def load_target(name: str, config: Any = None, options: GeneratorOptions | None = None) -> Target:
    """The generator for a cohort's target, built as the configuration says.

    ``config`` supplies the generator settings (``renderer``, ``weights``,
    ``device``, ``truncation_psi``, ``gan_batch_slices``); without it the
    layered configuration of the process is read (defaults, config file,
    ``SYNTHPACS_*``). ``options`` overrides both.

    Raises
    ------
    ConfigError
        Unknown target or renderer, a device that is not here, or weights
        that cannot be loaded (the message names the setting or file).
    """
    entry = zoo_entry(name)
    if options is None:
        if config is None:
            from ..config import load_config

            config = load_config()
        options = GeneratorOptions.from_config(config, entry.name)
    if options.renderer not in entry.renderers:
        raise ConfigError(f"renderer {options.renderer!r} is not offered by {entry.name} (choose from {', '.join(entry.renderers)})")
    return entry.module("target").make_target(options)


def generator_fingerprint(config: Any, name: str) -> str:
    """What a target's pixels depend on beyond the universe: renderer, weights (SHA-256 prefix) and psi.

    Cheap (reads ``generator.json`` only, no torch), so the archive can key
    its instance cache by it: switching ``renderer``, ``weights`` or
    ``truncation_psi`` then never serves pixels cached under other settings.
    """
    from .weights import WeightsError, read_record

    entry = zoo_entry(name)
    options = GeneratorOptions.from_config(config, entry.name)
    if options.renderer != "gan":
        return options.renderer
    try:
        sha = str(read_record(options.weights or entry.shipped_weights).get("weights_sha256", "unrecorded"))[:16]
    except WeightsError:
        sha = "unreadable"  # loading the target will report why
    return f"gan-{sha}-psi{options.psi:g}"
