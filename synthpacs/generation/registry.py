"""The generator zoo's registry: target name -> generator (DESIGN §4)."""

from __future__ import annotations

from ..errors import ConfigError
from .base import Target


def _lung_ct() -> Target:
    from generators.chest.lung_ct.target import TeacherLungCT

    return TeacherLungCT()


TARGETS = {"chest/lung-ct": _lung_ct}


def load_target(name: str) -> Target:
    """The generator for a cohort's target."""
    try:
        factory = TARGETS[name]
    except KeyError:
        raise ConfigError(f"unknown generator target {name!r} (known: {', '.join(sorted(TARGETS))})") from None
    return factory()
