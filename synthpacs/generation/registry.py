"""The generator zoo: organ system -> target -> generator (DESIGN §4).

Targets are discovered, not listed: every package ``generators/<system>/<target>/``
(and, for a deployment's or a test's own targets, every such package under
the folders of the ``generator_paths`` setting) exports one
:class:`~synthpacs.generation.contract.ZooTarget` as ``TARGET``::

    generators/chest/lung_ct/
        __init__.py            TARGET: name, title, series slots, plan, acquisition schema, renderers, capabilities
        MODEL_CARD.md          what it makes, how it was trained, measured quality, licence
        generator.json         recorded network configuration (+ provenance)
        weights.safetensors    the shipped weights

Importing a target package must not import torch: the catalog is built from
the plans alone, and a warm retrieve reads only the cheap fingerprint.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .contract import GeneratorOptions, ZooTarget

GENERATORS_ROOT = Path(__file__).resolve().parent.parent.parent / "generators"

_lock = threading.Lock()
_cache: dict[tuple[str, ...], dict[str, ZooTarget]] = {}


def _import_target(folder: Path, module_name: str, where: str) -> ZooTarget:
    try:
        if module_name in sys.modules:
            module = sys.modules[module_name]
        elif folder.is_relative_to(GENERATORS_ROOT):
            module = importlib.import_module(module_name)
        else:
            spec = importlib.util.spec_from_file_location(
                module_name, folder / "__init__.py", submodule_search_locations=[str(folder)]
            )
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {folder}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as exc:  # a broken target must name itself, not crash start-up with a traceback
        raise ConfigError(f"{where}: generator target package {folder} cannot be imported: {exc}") from exc
    target = getattr(module, "TARGET", None)
    if not isinstance(target, ZooTarget):
        raise ConfigError(f"{where}: {folder}/__init__.py must export TARGET, a ZooTarget")
    return target


def _packages(root: Path) -> Iterable[Path]:
    for init in sorted(root.glob("*/*/__init__.py")):
        yield init.parent


def discover(generator_paths: Iterable[str | Path] = ()) -> dict[str, ZooTarget]:
    """Every target of the zoo plus those under ``generator_paths``, by name.

    Raises
    ------
    ConfigError
        A folder that does not exist, a package that fails to import or
        exports no ``TARGET``, or two targets with one name.
    """
    extra = tuple(str(Path(p).resolve()) for p in generator_paths)
    with _lock:
        if extra in _cache:
            return _cache[extra]
        found: dict[str, ZooTarget] = {}
        roots = [(GENERATORS_ROOT, "generators", "the zoo")]
        for i, path in enumerate(extra):
            if not Path(path).is_dir():
                raise ConfigError(f"generator_paths: {path!r} is not a folder")
            roots.append((Path(path), f"synthpacs_extra_generators_{i}", f"generator_paths {path!r}"))
        for root, prefix, where in roots:
            for folder in _packages(root):
                module_name = ".".join((prefix, *folder.relative_to(root).parts))
                target = _import_target(folder, module_name, where)
                if target.name in found:
                    raise ConfigError(f"{where}: two generator targets are named {target.name!r}")
                found[target.name] = target
        _cache[extra] = found
        return found


def zoo_entry(name: str, targets: dict[str, ZooTarget] | None = None) -> ZooTarget:
    """A target by its name (``chest/lung-ct``) or alias (``lung-ct``).

    Raises
    ------
    ConfigError
        Unknown target; the message lists the known ones.
    """
    targets = discover() if targets is None else targets
    text = str(name).strip()
    for target in targets.values():
        if text == target.name or text in target.aliases:
            return target
    known = ", ".join(f"{t.name} ({', '.join(t.aliases)})" if t.aliases else t.name for t in targets.values())
    raise ConfigError(f"unknown generator target {name!r} (known: {known})")


def generator_options(config: Any, target: ZooTarget) -> GeneratorOptions:
    """A target's generator settings from a configuration (renderer, weights, device, psi, batch)."""
    sources = config.sources
    if isinstance(config.renderer, dict):
        renderer = config.renderer.get(target.name, "")
    else:  # one name applies to the targets that offer it; the others keep their default
        renderer = config.renderer if config.renderer in target.renderers else ""
    renderer = renderer or target.renderers[0]
    weights = config.weights
    if isinstance(weights, dict):
        weights = weights.get(target.name, "")
    return GeneratorOptions(
        renderer=renderer,
        weights=Path(weights) if weights else None,
        weights_source=sources.get("weights", "default"),
        device=config.device,
        device_source=sources.get("device", "default"),
        psi=float(config.truncation_psi),
        batch_slices=int(config.gan_batch_slices),
    )


def check_renderer_setting(config: Any, targets: dict[str, ZooTarget]) -> None:
    """Refuse a ``renderer`` setting that no target offers, or that names an unknown target.

    Raises
    ------
    ConfigError
        Naming the setting's source and what is offered.
    """
    value, source = config.renderer, config.sources.get("renderer", "default")
    if not value:
        return
    if isinstance(value, dict):
        for name, renderer in value.items():
            target = zoo_entry(name, targets)
            if renderer not in target.renderers:
                raise ConfigError(
                    f"renderer {renderer!r} for {target.name} (from {source}) is not offered "
                    f"(choose from {', '.join(target.renderers)})"
                )
        return
    offered = sorted({r for t in targets.values() for r in t.renderers})
    if value not in offered:
        raise ConfigError(f"renderer {value!r} (from {source}) is offered by no target (choose from {', '.join(offered)})")
