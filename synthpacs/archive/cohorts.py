"""Cohort definitions: one YAML file per disease target under ``config/cohorts``.

A cohort says which generator target draws its studies, who its patients are
(age, sex), how its trial is run (sponsor, protocol, sites, visit schedule),
how its subjects respond (RECIST 1.1 shares, when it has target lesions) and
the target's own ``acquisition:`` settings, validated by the schema the
target declares. Files are validated by typed models (pydantic) on load; an
error names the file, the key path and the problem.

The enrolment window (``schedule.first_baseline``, ``schedule.last_baseline``)
is either relative to the archive's *today* (an integer number of days,
negative in the past: ``first_baseline: -900``) or an absolute date
(``2024-01-08``); the universe resolves it with :meth:`Cohort.baseline_window`.
Relative windows make the trial roll with the calendar: on any day, the
archive holds the studies performed so far and the worklist the visits to come.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError, model_validator

from ..errors import ConfigError
from ..generation.contract import ZooTarget
from .records import MAX_EXAMS

#: RECIST 1.1 best overall response, in the order the universe draws them.
RESPONSES = ("CR", "PR", "SD", "PD")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Site(_Strict):
    id: str
    name: str


class _Age(_Strict):
    min: int = Field(ge=0, le=120)
    max: int = Field(ge=0, le=120)
    mean: float
    sd: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> _Age:
        if self.min > self.max:
            raise ValueError("min is above max")
        return self


class _Trial(_Strict):
    # LO values of the Clinical Trial modules: 64 characters at most (PS3.5 6.2).
    sponsor: str = Field(max_length=64)
    protocol_id: str = Field(max_length=64)
    protocol_name: str = Field(max_length=64)
    coordinating_center: str = Field(max_length=64)
    sites: tuple[Site, ...] = Field(min_length=1)


#: Most days a relative schedule date may lie from today (a century either way).
MAX_RELATIVE_DAYS = 36_500


def _schedule_day(value: Any) -> int | dt.date:
    """Days relative to today (an integer, negative in the past) or an absolute date (YYYY-MM-DD)."""
    problem = f"expected days relative to today (an integer such as -900) or a date (YYYY-MM-DD), got {value!r}"
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                return dt.date.fromisoformat(text)
            except ValueError:
                raise ValueError(problem) from None
    if isinstance(value, int):
        if not -MAX_RELATIVE_DAYS <= value <= MAX_RELATIVE_DAYS:
            raise ValueError(f"a relative day must lie within {MAX_RELATIVE_DAYS} days of today, got {value}")
        return value
    raise ValueError(problem)


#: A schedule date: days relative to the archive's today, or an absolute date.
ScheduleDay = Annotated[int | dt.date, PlainValidator(_schedule_day)]


def resolve_day(day: int | dt.date, today: dt.date) -> dt.date:
    """A schedule date on the calendar of ``today``."""
    return day if isinstance(day, dt.date) else today + dt.timedelta(days=day)


class _Schedule(_Strict):
    first_baseline: ScheduleDay
    last_baseline: ScheduleDay
    interval_days: int = Field(ge=1, le=3650)
    window_days: int = Field(ge=0, le=365)
    max_followups: int = Field(ge=2, le=40)

    @model_validator(mode="after")
    def _ordered(self) -> _Schedule:
        first, last = self.first_baseline, self.last_baseline
        days = isinstance(first, int) and isinstance(last, int) and first > last
        dates = isinstance(first, dt.date) and isinstance(last, dt.date) and first > last
        if days or dates:  # a relative end and an absolute one are checked once today is known
            raise ValueError("first_baseline is after last_baseline")
        return self


class _Response(_Strict):
    CR: float = Field(default=0.0, ge=0)
    PR: float = Field(default=0.0, ge=0)
    SD: float = Field(default=0.0, ge=0)
    PD: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _sum(self) -> _Response:
        if abs(self.CR + self.PR + self.SD + self.PD - 1.0) > 1e-6:
            raise ValueError("response shares must add up to 1")
        return self


class _Lesions(_Strict):
    min: int = Field(ge=1, le=4)
    max: int = Field(ge=1, le=4)
    baseline_diameter_mm: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> _Lesions:
        if self.min > self.max:
            raise ValueError("min is above max")
        low, high = self.baseline_diameter_mm
        if not 0 < low <= high:
            raise ValueError("baseline_diameter_mm must be [low, high] with 0 < low <= high")
        return self


class _Code(_Strict):
    value: str
    scheme: str
    meaning: str


class _Exam(_Strict):
    """Another exam of the cohort's visits, a study of its own in the same time point."""

    target: str
    visits: tuple[int, ...] = Field(min_length=1)  # visit numbers: 0 is baseline (screening)
    body_part: str
    study_description: str
    procedure_code: _Code
    acquisition: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self) -> _Exam:
        if any(v < 0 for v in self.visits) or len(set(self.visits)) != len(self.visits):
            raise ValueError("visits must be distinct visit numbers from 0 (baseline)")
        return self


class CohortFile(_Strict):
    """The schema of one cohort file; ``acquisition`` is checked against the target's own schema."""

    name: str
    title: str
    share: float = Field(gt=0, le=1)
    target: str
    body_part: str
    age: _Age
    female_share: float = Field(ge=0, le=1)
    trial: _Trial
    schedule: _Schedule
    response: _Response | None = None
    lesions: _Lesions | None = None
    acquisition: dict[str, Any] = Field(default_factory=dict)
    study_description: str
    procedure_code: _Code
    exams: tuple[_Exam, ...] = Field(default=(), max_length=MAX_EXAMS - 1)

    @model_validator(mode="after")
    def _course(self) -> CohortFile:
        if (self.response is None) != (self.lesions is None):
            raise ValueError("response and lesions go together (a RECIST course needs both)")
        for exam in self.exams:
            if max(exam.visits) > self.schedule.max_followups:
                raise ValueError(
                    f"exams: visit {max(exam.visits)} is past schedule.max_followups ({self.schedule.max_followups})"
                )
        return self


@dataclass(frozen=True)
class Exam:
    """One kind of study a cohort's visits hold: exam 0 is the cohort's own (its top-level
    target, description and acquisition), the others come from ``exams:``."""

    index: int
    target: str
    body_part: str
    study_description: str
    procedure_code: tuple[str, str, str]  # value, scheme, meaning
    acquisition: BaseModel
    visits: tuple[int, ...] | None  # None: every visit


@dataclass(frozen=True)
class Cohort:
    """One validated cohort, as the universe uses it."""

    index: int
    name: str
    title: str
    share: float
    target: str
    body_part: str
    age_min: int
    age_max: int
    age_mean: float
    age_sd: float
    female_share: float
    sponsor: str
    protocol_id: str
    protocol_name: str
    coordinating_center: str
    sites: tuple[Site, ...]
    first_baseline: int | dt.date  # days relative to today, or an absolute date
    last_baseline: int | dt.date
    interval_days: int
    window_days: int
    max_followups: int
    response_shares: tuple[float, ...]  # in RESPONSES order; all SD when there is no RECIST course
    lesions_min: int  # 0 when the cohort has no target lesions
    lesions_max: int
    diameter_min_mm: float
    diameter_max_mm: float
    study_description: str
    procedure_code: tuple[str, str, str]  # value, scheme, meaning
    acquisition: BaseModel
    exams: tuple[Exam, ...] = ()  # exams[0] is the cohort's own exam
    source: str = field(default="", compare=False, repr=False)  # the cohort file (not part of the universe)

    def __post_init__(self) -> None:
        if not self.exams:  # built in code without exams: the cohort's own exam alone
            own = Exam(0, self.target, self.body_part, self.study_description, self.procedure_code, self.acquisition, None)
            object.__setattr__(self, "exams", (own,))

    def baseline_window(self, today: dt.date) -> tuple[dt.date, dt.date]:
        """The first and last baseline dates on the calendar of ``today``.

        Raises
        ------
        ConfigError
            When the window is empty (a relative end and an absolute one that
            cross on this ``today``); names the file and the key path.
        """
        first, last = resolve_day(self.first_baseline, today), resolve_day(self.last_baseline, today)
        if first > last:
            raise ConfigError(
                f"{self.source or self.name}: schedule: first_baseline: {first.isoformat()} is after "
                f"last_baseline {last.isoformat()} when today is {today.isoformat()}"
            )
        return first, last


def _problem(where: str, error: ValidationError, prefix: tuple[Any, ...] = ()) -> ConfigError:
    first = error.errors()[0]
    path = ": ".join(str(part) for part in (*prefix, *first["loc"]))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "missing key"
    return ConfigError(f"{where}: {path}: {message}" if path else f"{where}: {message}")


def parse_cohort(data: Any, where: str, index: int, targets: Mapping[str, ZooTarget]) -> Cohort:
    """Validate one cohort file's contents.

    Raises
    ------
    ConfigError
        Naming ``where``, the key path and the problem.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of cohort keys")
    try:
        file = CohortFile.model_validate(data)
    except ValidationError as exc:
        raise _problem(where, exc) from None
    acquisition = _acquisition(where, targets, file.target, file.acquisition, ())
    exams = [Exam(0, file.target, file.body_part, file.study_description, _code(file.procedure_code), acquisition, None)]
    for i, e in enumerate(file.exams):
        exam_acquisition = _acquisition(where, targets, e.target, e.acquisition, ("exams", i))
        exams.append(Exam(i + 1, e.target, e.body_part, e.study_description, _code(e.procedure_code), exam_acquisition, e.visits))
    response = file.response or _Response(SD=1.0)
    lesions = file.lesions
    return Cohort(
        index=index,
        name=file.name,
        title=file.title,
        share=file.share,
        target=file.target,
        body_part=file.body_part,
        age_min=file.age.min,
        age_max=file.age.max,
        age_mean=file.age.mean,
        age_sd=file.age.sd,
        female_share=file.female_share,
        sponsor=file.trial.sponsor,
        protocol_id=file.trial.protocol_id,
        protocol_name=file.trial.protocol_name,
        coordinating_center=file.trial.coordinating_center,
        sites=file.trial.sites,
        first_baseline=file.schedule.first_baseline,
        last_baseline=file.schedule.last_baseline,
        interval_days=file.schedule.interval_days,
        window_days=file.schedule.window_days,
        max_followups=file.schedule.max_followups,
        response_shares=tuple(float(getattr(response, k)) for k in RESPONSES),
        lesions_min=lesions.min if lesions else 0,
        lesions_max=lesions.max if lesions else 0,
        diameter_min_mm=lesions.baseline_diameter_mm[0] if lesions else 0.0,
        diameter_max_mm=lesions.baseline_diameter_mm[1] if lesions else 0.0,
        study_description=file.study_description,
        procedure_code=_code(file.procedure_code),
        acquisition=acquisition,
        exams=tuple(exams),
        source=where,
    )


def _code(code: _Code) -> tuple[str, str, str]:
    return code.value, code.scheme, code.meaning


def _acquisition(where: str, targets: Mapping[str, ZooTarget], name: str, data: dict, prefix: tuple[Any, ...]) -> BaseModel:
    """A target's acquisition block, validated by the target's own schema."""
    target = targets.get(name)
    if target is None:
        key = ": ".join(str(part) for part in (*prefix, "target"))
        raise ConfigError(f"{where}: {key}: unknown target {name!r} (known: {', '.join(sorted(targets))})")
    try:
        return target.acquisition.model_validate(data)
    except ValidationError as exc:
        raise _problem(where, exc, (*prefix, "acquisition")) from None


def load_cohorts(folder: str | Path, targets: Mapping[str, ZooTarget]) -> tuple[Cohort, ...]:
    """All cohorts of a folder, in file-name order, validated against the targets' schemas."""
    folder = Path(folder)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError(f"cohorts_dir {str(folder)!r} holds no *.yaml cohort definitions")
    cohorts = []
    for i, path in enumerate(files):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        cohorts.append(parse_cohort(data, str(path), i, targets))
    return tuple(cohorts)
