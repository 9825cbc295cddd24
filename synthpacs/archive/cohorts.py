"""Cohort definitions: one YAML file per disease target under ``config/cohorts``.

A cohort says which generator draws its images, who its patients are (age,
sex), how its trial is run (sponsor, protocol, sites, visit schedule), how
its subjects respond (RECIST 1.1 shares) and which series each study holds.
Files are validated on load; an error names the file and the key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

# Generators the universe knows how to plan studies for. Later targets
# (breast/mammography, brain/ms-mr, eye/fundus, chest/lung-us, gi/endoscopy,
# heart/ecg) add their name here and a series plan in their cohort file.
KNOWN_TARGETS = ("chest/lung-ct",)
RESPONSES = ("CR", "PR", "SD", "PD")
SERIES_KINDS = {
    # kind -> (SOP Class UID, SOP class name)
    "image": ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage"),
    "segmentation": ("1.2.840.10008.5.1.4.1.1.66.4", "Segmentation Storage"),
    "measurements": ("1.2.840.10008.5.1.4.1.1.88.33", "Comprehensive SR Storage"),
}


@dataclass(frozen=True)
class Site:
    id: str
    name: str


@dataclass(frozen=True)
class SeriesPlan:
    number: int
    modality: str
    description: str
    kind: str

    @property
    def sop_class_uid(self) -> str:
        return SERIES_KINDS[self.kind][0]


@dataclass(frozen=True)
class Cohort:
    index: int
    name: str
    title: str
    share: float
    target: str
    modality: str
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
    first_baseline: dt.date
    last_baseline: dt.date
    interval_days: int
    window_days: int
    max_followups: int
    response_shares: tuple[float, ...]  # in RESPONSES order
    lesions_min: int
    lesions_max: int
    diameter_min_mm: float
    diameter_max_mm: float
    slice_thicknesses_mm: tuple[float, ...]
    scan_length_mm: tuple[float, float]
    fov_mm: tuple[float, float]
    rows: int
    columns: int
    study_description: str
    procedure_code: tuple[str, str, str]  # value, scheme, meaning
    series: tuple[SeriesPlan, ...]


class _Reader:
    """Typed access to one YAML mapping, with errors that name file and key."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping")
        self.data, self.where = data, where

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...):
        if key not in self.data:
            if default is ...:
                raise ConfigError(f"{self.where}: missing key {key!r}")
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ConfigError(f"{self.where}: {key!r} has the wrong type ({type(value).__name__})")
        return value

    def sub(self, key: str) -> _Reader:
        return _Reader(self.get(key, dict), f"{self.where}: {key}")

    def check_keys(self, allowed: set[str]) -> None:
        unknown = set(self.data) - allowed
        if unknown:
            raise ConfigError(f"{self.where}: unknown key {sorted(unknown)[0]!r}")


def _date(value: Any, where: str) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: expected a date YYYY-MM-DD, got {value!r}") from None


def _pair(value: Any, where: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"{where}: expected [low, high]")
    low, high = float(value[0]), float(value[1])
    if low > high:
        raise ConfigError(f"{where}: low {low} is above high {high}")
    return low, high


def parse_cohort(data: Any, where: str, index: int) -> Cohort:
    r = _Reader(data, where)
    r.check_keys({"name", "title", "share", "target", "modality", "body_part", "age", "female_share", "trial",
                  "schedule", "response", "lesions", "acquisition", "study_description", "procedure_code", "series"})
    target = r.get("target", str)
    if target not in KNOWN_TARGETS:
        raise ConfigError(f"{where}: unknown target {target!r} (known: {', '.join(KNOWN_TARGETS)})")
    age, trial, schedule, lesions, acq = (r.sub(k) for k in ("age", "trial", "schedule", "lesions", "acquisition"))
    response = r.sub("response")
    response.check_keys(set(RESPONSES))
    shares = tuple(float(response.get(k, (int, float), 0.0)) for k in RESPONSES)
    if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-6:
        raise ConfigError(f"{where}: response shares must be non-negative and add up to 1")
    sites = tuple(
        Site(str(_Reader(s, f"{where}: trial: sites").get("id", str)), _Reader(s, f"{where}: trial: sites").get("name", str))
        for s in trial.get("sites", list)
    )
    if not sites:
        raise ConfigError(f"{where}: trial: sites: at least one site is needed")
    series = []
    for i, item in enumerate(r.get("series", list)):
        s = _Reader(item, f"{where}: series[{i}]")
        kind = s.get("kind", str)
        if kind not in SERIES_KINDS:
            raise ConfigError(f"{where}: series[{i}]: unknown kind {kind!r}")
        series.append(SeriesPlan(s.get("number", int), s.get("modality", str), s.get("description", str), kind))
    if not series or series[0].kind != "image":
        raise ConfigError(f"{where}: series: the first series must be the image series")
    code = r.sub("procedure_code")
    share = r.get("share", float)
    if not 0 < share <= 1:
        raise ConfigError(f"{where}: share must be in (0, 1]")
    thicknesses = tuple(float(t) for t in acq.get("slice_thickness_mm", list))
    lmin, lmax = lesions.get("min", int), lesions.get("max", int)
    if not 1 <= lmin <= lmax <= 4:
        raise ConfigError(f"{where}: lesions: need 1 <= min <= max <= 4")
    cohort = Cohort(
        index=index,
        name=r.get("name", str),
        title=r.get("title", str),
        share=share,
        target=target,
        modality=r.get("modality", str),
        body_part=r.get("body_part", str),
        age_min=age.get("min", int),
        age_max=age.get("max", int),
        age_mean=age.get("mean", float),
        age_sd=age.get("sd", float),
        female_share=r.get("female_share", float),
        sponsor=trial.get("sponsor", str),
        protocol_id=trial.get("protocol_id", str),
        protocol_name=trial.get("protocol_name", str),
        coordinating_center=trial.get("coordinating_center", str),
        sites=sites,
        first_baseline=_date(schedule.get("first_baseline", (str, dt.date)), f"{where}: schedule"),
        last_baseline=_date(schedule.get("last_baseline", (str, dt.date)), f"{where}: schedule"),
        interval_days=schedule.get("interval_days", int),
        window_days=schedule.get("window_days", int),
        max_followups=schedule.get("max_followups", int),
        response_shares=shares,
        lesions_min=lmin,
        lesions_max=lmax,
        diameter_min_mm=_pair(lesions.get("baseline_diameter_mm", list), f"{where}: lesions")[0],
        diameter_max_mm=_pair(lesions.get("baseline_diameter_mm", list), f"{where}: lesions")[1],
        slice_thicknesses_mm=thicknesses,
        scan_length_mm=_pair(acq.get("scan_length_mm", list), f"{where}: acquisition"),
        fov_mm=_pair(acq.get("fov_mm", list), f"{where}: acquisition"),
        rows=acq.get("rows", int),
        columns=acq.get("columns", int),
        study_description=r.get("study_description", str),
        procedure_code=(code.get("value", str), code.get("scheme", str), code.get("meaning", str)),
        series=tuple(series),
    )
    if cohort.first_baseline > cohort.last_baseline:
        raise ConfigError(f"{where}: schedule: first_baseline is after last_baseline")
    if not 2 <= cohort.max_followups <= 40:
        raise ConfigError(f"{where}: schedule: max_followups must be between 2 and 40")
    if not 0 <= cohort.female_share <= 1:
        raise ConfigError(f"{where}: female_share must be between 0 and 1")
    if cohort.age_min > cohort.age_max:
        raise ConfigError(f"{where}: age: min is above max")
    return cohort


def load_cohorts(folder: str | Path) -> tuple[Cohort, ...]:
    """All cohorts of a folder, in file-name order; shares are normalised."""
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
        cohorts.append(parse_cohort(data, str(path), i))
    return tuple(cohorts)
