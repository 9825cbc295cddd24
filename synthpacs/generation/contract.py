"""The target contract: what every generator target of the zoo declares (DESIGN §4).

A target package ``generators/<system>/<target>/`` exports one object,
``TARGET``, a :class:`ZooTarget`. It declares

* its identity: ``name`` (``system/target``), ``title``, modalities and SOP classes;
* its series ``slots`` and its *study plan*: a vectorised function of the
  keyed draws of whole arrays of studies (:class:`PlanDraws`) returning a
  :class:`StudyPlan` (which series each study has, instances, frames, rows,
  columns, descriptions), so the catalog is built without pixels;
* the schema of its cohort ``acquisition:`` block (a pydantic model);
* its renderers (the default first), a cheap ``fingerprint`` of what pixels
  depend on (read without torch, so a warm retrieve loads no model), and
  ``load``, which builds a :class:`Generator`;
* optional capabilities (:class:`Trainable`, :class:`Evaluable`,
  :class:`Interpolable`, :class:`Sampleable`) as typed protocols.

A :class:`Generator` turns a :class:`StudyRequest` into typed IOD specs
(:mod:`synthpacs.imaging.spec`), the whole study or one :class:`Part` of a
series; a part has exactly the bytes it has in the whole.

Nothing here imports torch, the archive or a target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel

from .. import keyed
from ..imaging.spec import IODSpec, SeriesContext, StudyContext


@dataclass(frozen=True)
class SeriesSlot:
    """One series a target's studies may hold; its position in ``slots`` is its series index in UIDs."""

    role: str  # the target's own name for it, e.g. "image", "segmentation", "measurements"
    number: int
    modality: str
    sop_class_uid: str


@dataclass(frozen=True)
class PlanDraws:
    """Keyed draws for the study plan, vectorised over study rows (DESIGN §2.1).

    ``patient``-keyed draws are the same at every visit (acquisition that must
    compare across follow-ups); ``study``-keyed draws differ per visit.
    """

    key: bytes = field(repr=False)
    patient: np.ndarray
    visit: np.ndarray
    female: np.ndarray
    acquisition: Any  # the cohort's validated acquisition model

    def __len__(self) -> int:
        return len(self.patient)

    def uniform(self, stream: str) -> np.ndarray:
        return keyed.uniform(self.key, stream, self.patient)

    def study_uniform(self, stream: str) -> np.ndarray:
        return keyed.uniform(self.key, stream, self.patient * 64 + self.visit)


@dataclass(frozen=True)
class StudyPlan:
    """The series of each study row, as arrays of shape (rows, slots).

    ``n_instances`` 0 means the series is absent from that study. ``frames``
    is NumberOfFrames per instance, or 0 where it is not known without pixels
    (then a query leaves it out). ``rows``/``columns`` are 0 for objects
    without a pixel matrix (SR, waveforms).
    """

    n_instances: np.ndarray
    frames: np.ndarray
    rows: np.ndarray
    columns: np.ndarray
    descriptions: np.ndarray  # object array of str

    def check(self, n_rows: int, n_slots: int, where: str) -> None:
        for name in ("n_instances", "frames", "rows", "columns", "descriptions"):
            value = getattr(self, name)
            if np.shape(value) != (n_rows, n_slots):
                raise ValueError(f"{where}: plan {name} has shape {np.shape(value)}, expected {(n_rows, n_slots)}")
        for name in ("n_instances", "frames", "rows", "columns"):
            value = getattr(self, name)
            if n_rows and (np.min(value) < 0 or np.max(value) > 65535):
                raise ValueError(f"{where}: plan {name} must lie in 0..65535")
        if n_rows and not (self.n_instances > 0).any(axis=1).all():
            raise ValueError(f"{where}: the plan gives a study no series")


@dataclass(frozen=True)
class PlannedSeries:
    """One series of a requested study: its slot, identity and planned shape."""

    index: int
    slot: SeriesSlot
    context: SeriesContext
    rows: int
    columns: int
    frames: int


@dataclass(frozen=True)
class Part:
    """Part of one series: instances ``start`` (inclusive) to ``stop`` (exclusive), 0-based."""

    series_index: int
    start: int
    stop: int


class PatientDraws(Protocol):
    """Keyed randomness of one patient and study, handed to a generator."""

    def rng(self, *path: object) -> np.random.Generator:
        """A numpy Generator keyed by ``("patient", index, *path)``: the same at every visit."""

    def study_rng(self, *path: object) -> np.random.Generator:
        """A numpy Generator keyed by ``("study", index, visit, *path)``."""

    def plan_draws(self) -> PlanDraws:
        """The plan's draws for this one study (an array of one row)."""

    def tracking_uid(self, finding: int) -> str:
        """The Tracking UID of the patient's ``finding``-th finding (stable across visits)."""


@dataclass(frozen=True)
class StudyRequest:
    """Everything a generator knows of one study: identity, plan and draws; never pixels."""

    study: StudyContext
    series: tuple[PlannedSeries, ...]
    patient_index: int
    visit: int
    patient_sex: str
    acquisition: Any
    lesion_diameters_mm: tuple[float, ...]
    draws: PatientDraws

    def by_role(self, role: str) -> PlannedSeries | None:
        for s in self.series:
            if s.slot.role == role:
                return s
        return None


@runtime_checkable
class Generator(Protocol):
    """A loaded target: study request -> typed IOD specs.

    A generator may also offer ``open(request) -> StudyWork`` to make a study
    part by part (slabs of a CT, one view, a range of frames), reusing what
    the parts share; :func:`open_study` falls back to one part per series.
    """

    fingerprint: str

    def generate(self, request: StudyRequest, part: Part | None = None) -> list[IODSpec]:
        """Specs of the whole study, or only those of the series of ``part`` (its slices only, where the generator can)."""


class StudyWork(Protocol):
    """One study being made part by part; the parts together give exactly the whole study's bytes.

    ``parts`` lists them in making order (a series before the objects that
    reference it). :meth:`make` may be called in any order, but one call at a
    time; :meth:`close` releases what the parts shared (geometry, latents).
    """

    parts: Sequence[Part]

    def make(self, part: Part) -> list[IODSpec]:
        """The specs of one part: the same instances, byte for byte, as in the whole study."""

    def headers(self, series_index: int) -> list[IODSpec]:
        """The specs of a whole series with every attribute but the pixel values (which may be placeholders).

        Answers metadata of a series before its pixels exist, and is the source
        series of a SEG or SR made before the series itself. Cheap: no photorealism.
        """

    def close(self) -> None:
        """Release what the parts shared."""


class _SeriesByPart:
    """The fallback :class:`StudyWork` of a generator without ``open``: one part per series.

    A generator that answers a part with specs of other series too (the whole
    study) is asked once; the other series come from that answer.
    """

    def __init__(self, generator: Generator, request: StudyRequest):
        self._generator, self._request = generator, request
        self.parts: Sequence[Part] = tuple(Part(s.index, 0, len(s.context.sop_instance_uids)) for s in request.series)
        self._uids = {s.index: s.context.series_instance_uid for s in request.series}
        self._whole: list[IODSpec] | None = None

    def make(self, part: Part) -> list[IODSpec]:
        uid = self._uids[part.series_index]
        specs = self._whole if self._whole is not None else self._generator.generate(self._request, part)
        if any(spec.series.series_instance_uid != uid for spec in specs):
            self._whole = specs
        found = [spec for spec in specs if spec.series.series_instance_uid == uid]
        if not found:
            raise ValueError(f"the generator answered part {part} with no spec of series {uid}")
        return found

    def headers(self, series_index: int) -> list[IODSpec]:
        return self.make(next(p for p in self.parts if p.series_index == series_index))

    def close(self) -> None:
        self._whole = None


def open_study(generator: Generator, request: StudyRequest) -> StudyWork:
    """The generator's work on one study: its own ``open`` or one part per series."""
    opener = getattr(generator, "open", None)
    return opener(request) if callable(opener) else _SeriesByPart(generator, request)


@dataclass(frozen=True)
class GeneratorOptions:
    """How a target renders: the generator settings of one configuration."""

    renderer: str = ""
    weights: Path | None = None  # None: the shipped weights in the target's folder
    weights_source: str = "default"
    device: str = "auto"
    device_source: str = "default"
    psi: float = 1.0
    batch_slices: int = 8


# -- optional capabilities ----------------------------------------------------------------


@runtime_checkable
class Trainable(Protocol):
    def train(self, request: Any) -> Any: ...


@runtime_checkable
class Evaluable(Protocol):
    def evaluate(self, request: Any) -> Any: ...

    def summary_rows(self, report: Any) -> Sequence[Any]: ...


@runtime_checkable
class Interpolable(Protocol):
    @property
    def display_windows(self) -> Mapping[str, tuple[float, float]]:
        """Named display windows (centre, width) of the frames, the default first."""

    def interpolation_frames(
        self, generator: Generator, request: StudyRequest, seed_a: int, seed_b: int, frames: int, **options: Any
    ) -> list[np.ndarray]: ...


@runtime_checkable
class Sampleable(Protocol):
    def sample(self, n: int, seed: int, psi: float = 1.0) -> list[np.ndarray]: ...


@runtime_checkable
class Exportable(Protocol):
    """Files a target writes beside the DICOM of a generated study (``synthpacs generate --target``)."""

    def write(self, datasets: Sequence[Any], out: Path, number: int) -> Mapping[str, Any]:
        """Write the target's own files for one study (numbered ``number``) under ``out``;
        returns that study's row of the measurements table (empty: no row)."""


class Lazy:
    """A capability (or ``load``/``fingerprint``) whose code lives in a target module imported on first use.

    ``Lazy("generators.chest.lung_ct.evaluation", "evaluate", "summary_rows")``
    has those two functions as methods; ``Lazy(module, "load")("x")`` calls
    ``module.load("x")``. Target discovery imports no torch this way.
    ``attributes`` are plain values the capability also offers (``summary_headers``).
    """

    def __init__(self, module: str, *functions: str, **attributes: Any):
        self._module, self._functions = module, functions
        self.__dict__.update(attributes)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._functions:
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:  # imported on the call: hasattr and isinstance import nothing
            import importlib

            return getattr(importlib.import_module(self._module), name)(*args, **kwargs)

        call.__name__ = name
        return call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(self._functions) != 1:
            raise TypeError(f"Lazy({self._module!r}) names {len(self._functions)} functions; call one of them by name")
        return getattr(self, self._functions[0])(*args, **kwargs)


class NoAcquisition(BaseModel):
    """The acquisition schema of a target that takes no settings."""

    model_config = {"extra": "forbid", "frozen": True}


@dataclass(frozen=True)
class ZooTarget:
    """The one object a target package exports as ``TARGET``."""

    name: str  # "<system>/<target>", as cohorts name it
    title: str
    slots: tuple[SeriesSlot, ...]
    plan: Callable[[PlanDraws], StudyPlan]
    renderers: tuple[str, ...]  # photorealism stages; the first is the default
    load: Callable[[GeneratorOptions], Generator]
    fingerprint: Callable[[GeneratorOptions], str] = lambda options: options.renderer
    acquisition: type[BaseModel] = NoAcquisition
    aliases: tuple[str, ...] = ()
    folder: Path | None = None
    training: Trainable | None = None
    evaluation: Evaluable | None = None
    interpolation: Interpolable | None = None
    sampling: Sampleable | None = None
    export: Exportable | None = None

    def __post_init__(self) -> None:
        system, _, target = self.name.partition("/")
        if not system or not target or "/" in target:
            raise ValueError(f"target name {self.name!r} must be <system>/<target>")
        if not self.slots:
            raise ValueError(f"{self.name}: a target declares at least one series slot")
        if not self.renderers:
            raise ValueError(f"{self.name}: a target offers at least one renderer")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(sorted({s.modality for s in self.slots}))

    @property
    def sop_classes(self) -> tuple[str, ...]:
        return tuple(sorted({s.sop_class_uid for s in self.slots}))

    @property
    def model_card(self) -> Path | None:
        return self.folder / "MODEL_CARD.md" if self.folder else None
