"""The synthetic universe: seed -> cohorts -> patients -> studies -> series.

Everything here is a pure function of (seed, cohorts, identifiers) and costs
metadata only (DESIGN §2.2). The same code answers two callers:

* the catalog builder, which asks for whole arrays of patients and studies at
  once (``patient_arrays``/``study_arrays``: keyed hashing, no Python loop per
  patient, so a million patients build in seconds);
* the retrieve path, which asks for one record (``patient``/``study``/
  ``series``) and gets exactly the values the catalog holds, because it runs
  the same vectorised functions on an array of one.

A patient's identity is its index in the universe. Its visits follow the
cohort's schedule (baseline, then every ``interval_days``), and its target
lesions follow a RECIST 1.1 response course drawn per subject.

The calendar is anchored on *today* (the ``today`` setting, resolved once at
start-up by :func:`resolve_today`): a cohort's enrolment window may be given
relative to it, and every planned visit dated on or before it is a performed
study, every later one a scheduled procedure step (see :mod:`.worklist`).
The universe holds the whole plan; :meth:`Universe.performed` tells the two
apart. ``today`` is part of :attr:`Universe.fingerprint`, so a catalog or an
instance cache made on another day is never served.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import keyed
from ..generation.contract import PlanDraws, SeriesSlot, StudyPlan, ZooTarget
from . import records
from .catalog.schema import LAYOUT_VERSION
from .cohorts import RESPONSES, Cohort, Exam
from .uids import UIDFactory

log = logging.getLogger(__name__)

_EPOCH = dt.date(1970, 1, 1)
MAX_LESIONS = 4
MAX_DIAMETER_MM = 60.0

# Obviously synthetic names: a test-phantom family name and a given name.
FAMILY_NAMES = (
    "PHANTOM",
    "SYNTHETIC",
    "VOXEL",
    "PIXEL",
    "TENSOR",
    "SAMPLE",
    "MOCKWELL",
    "DUMMYSON",
    "FICTIVE",
    "PLACEBO",
    "SIMULA",
    "GAUSSMAN",
    "FOURIER",
    "RANDOMIR",
    "SEEDWELL",
    "LATENTE",
    "GRADIENTI",
    "KERNELSON",
    "BITWELL",
    "DATAFORD",
    "NOISEMAN",
    "HOUNSFIELD",
    "ISOCENTER",
    "SLICEWELL",
    "TOMOGRAF",
    "PROTOTYPE",
    "TESTER",
    "SURROGATE",
    "PROXYMAN",
    "STANDIN",
)
GIVEN_NAMES_F = (
    "ALPHA",
    "BETA",
    "GAMMA",
    "DELTA",
    "SIGMA",
    "THETA",
    "IOTA",
    "KAPPA",
    "LAMBDA",
    "OMEGA",
    "NOVA",
    "LUNA",
    "VEGA",
    "LYRA",
    "ADA",
    "GRACE",
    "HEDY",
    "MARIE",
    "EMMY",
    "ROSALIND",
)
GIVEN_NAMES_M = (
    "ALAN",
    "ZETA",
    "EPSILON",
    "OMICRON",
    "RHO",
    "TAU",
    "PHI",
    "CHI",
    "PSI",
    "MU",
    "NU",
    "XI",
    "ORION",
    "ATLAS",
    "FELIX",
    "OTTO",
    "NIELS",
    "ERWIN",
    "MAX",
    "PAUL",
)


def _days(date: dt.date) -> int:
    return (date - _EPOCH).days


def resolve_today(today: dt.date | None, deprecated: dt.date | None = None) -> dt.date:
    """The universe's today: the ``today`` setting, else the deprecated
    ``worklist_today``, else the real date (read once, at start-up)."""
    if deprecated is not None:
        if today is None:
            log.warning("the worklist_today setting is deprecated: it sets today (use today)")
            return deprecated
        if deprecated != today:
            log.warning("the deprecated worklist_today setting is ignored: today is set")
    return today if today is not None else dt.date.today()


@dataclass(frozen=True)
class PatientRecord:
    """One patient (and trial subject). PS3.3 C.7.1.1 / C.7.1.3."""

    index: int
    cohort: Cohort
    patient_id: str
    patient_name: str  # PN, Alphabetic group
    sex: str
    birth_date: str  # DA
    subject_id: str
    site_id: str
    site_name: str
    response: str  # best overall response course: CR, PR, SD, PD
    n_visits: int
    n_lesions: int


@dataclass(frozen=True)
class SeriesRecord:
    """One series of a synthetic study. PS3.3 C.7.3.1."""

    patient_index: int
    visit: int
    index: int  # the slot of the target's plan (the series component of its UIDs)
    slot: SeriesSlot
    series_instance_uid: str
    series_number: int
    modality: str
    series_description: str
    series_date: str
    series_time: str
    n_instances: int
    frames: int  # NumberOfFrames per instance; 0 when only the pixels tell
    rows: int  # 0 for objects without a pixel matrix
    columns: int

    @property
    def sop_class_uid(self) -> str:
        return self.slot.sop_class_uid


@dataclass(frozen=True)
class StudyRecord:
    """One study (one trial visit). PS3.3 C.7.2.1 / C.7.2.3."""

    patient: PatientRecord
    visit: int
    exam: Exam  # which of the cohort's exams this study is (0: its own)
    study_instance_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    time_point_id: str
    time_point_description: str
    patient_age: str
    lesion_diameters_mm: tuple[float, ...]  # one per target lesion at this visit; 0 = disappeared
    series: tuple[SeriesRecord, ...]

    @property
    def number(self) -> int:
        """The study's number within its patient (the study component of its UIDs)."""
        return records.study_number(self.visit, self.exam.index)

    @property
    def n_instances(self) -> int:
        return sum(s.n_instances for s in self.series)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(sorted({s.modality for s in self.series}))


class Universe:
    """The deterministic synthetic universe of one seed, seen on one day.

    Parameters
    ----------
    today
        The day the universe is anchored on (None: the real date, read now).
        Relative cohort schedules count from it; visits after it are scheduled.

    Raises
    ------
    ConfigError
        When a cohort's enrolment window is empty on this ``today``.
    """

    def __init__(
        self,
        seed: int,
        n_patients: int,
        cohorts: tuple[Cohort, ...],
        targets: Mapping[str, ZooTarget],
        today: dt.date | None = None,
    ):
        if not cohorts:
            raise ValueError("a universe needs at least one cohort")
        self.today = today if today is not None else dt.date.today()
        #: Today as days since 1970-01-01 and as a DA value (YYYYMMDD).
        self.today_day = _days(self.today)
        self.today_text = self.today.strftime("%Y%m%d")
        self.baseline_windows = tuple(c.baseline_window(self.today) for c in cohorts)
        self.seed = seed
        self.n_patients = n_patients
        self.cohorts = cohorts
        self.targets = {e.target: targets[e.target] for c in cohorts for e in c.exams}
        self.key = keyed.universe_key(seed)
        self.uids = UIDFactory(self.key)
        shares = np.array([c.share for c in cohorts], dtype=float)
        self._cumulative_shares = np.cumsum(shares / shares.sum())

    @cached_property
    def fingerprint(self) -> str:
        """Changes whenever anything that shapes the catalog changes, today included
        (it moves relative schedules and the line between studies and scheduled steps)."""
        slots = {name: target.slots for name, target in sorted(self.targets.items())}
        text = repr((self.seed, self.n_patients, self.cohorts, slots, self.today.isoformat(), LAYOUT_VERSION))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def performed(self, day: np.ndarray) -> np.ndarray:
        """Which visit days (days since 1970-01-01) are performed studies: on or before today."""
        return np.asarray(day) <= self.today_day

    def is_performed(self, study: StudyRecord) -> bool:
        """Whether a planned visit is a performed study (dated on or before today)."""
        return study.study_date <= self.today_text

    # -- vectorised: arrays of patients -------------------------------------------------

    def cohort_of(self, p: np.ndarray) -> np.ndarray:
        u = keyed.uniform(self.key, "cohort", p)
        return np.minimum(np.searchsorted(self._cumulative_shares, u, side="right"), len(self.cohorts) - 1)

    def cohort_of_patient(self, index: int) -> Cohort:
        return self.cohorts[int(self.cohort_of(np.array([index]))[0])]

    def patient_arrays(self, p: np.ndarray) -> dict[str, np.ndarray]:
        """Every patient-level value for the patient indices ``p`` (one cohort's rules each)."""
        p = np.asarray(p, dtype=np.int64)
        k = self.key
        cohort = self.cohort_of(p)
        out: dict[str, np.ndarray] = {"index": p, "cohort": cohort}

        # Per-cohort parameters gathered into arrays, so every rule below is vectorised.
        def per(attr):
            return np.array([getattr(c, attr) for c in self.cohorts])[cohort]

        female = keyed.uniform(k, "sex", p) < per("female_share")
        out["female"] = female
        first = np.array([_days(low) for low, _ in self.baseline_windows])[cohort]
        span = np.array([_days(high) - _days(low) + 1 for low, high in self.baseline_windows])[cohort]
        out["baseline_day"] = first + np.floor(keyed.uniform(k, "baseline", p) * span).astype(np.int64)
        age = per("age_mean") + per("age_sd") * keyed.normal(k, "age", p)
        age = np.clip(np.round(age), per("age_min"), per("age_max")).astype(np.int64)
        out["birth_day"] = (
            out["baseline_day"] - np.round(age * 365.25).astype(np.int64) - keyed.integers(k, "birthday", p, 0, 365)
        )
        out["family"] = keyed.integers(k, "family", p, 0, len(FAMILY_NAMES))
        out["given"] = keyed.integers(k, "given", p, 0, len(GIVEN_NAMES_F))
        out["site"] = np.floor(keyed.uniform(k, "site", p) * np.array([len(c.sites) for c in self.cohorts])[cohort]).astype(
            np.int64
        )
        # RECIST 1.1 course.
        cum = np.cumsum(np.array([c.response_shares for c in self.cohorts]), axis=1)[cohort]
        response = (keyed.uniform(k, "response", p)[:, None] >= cum).sum(axis=1).clip(0, 3)
        out["response"] = response
        lmin, lmax = per("lesions_min"), per("lesions_max")
        out["n_lesions"] = lmin + np.floor(keyed.uniform(k, "n_lesions", p) * (lmax - lmin + 1)).astype(np.int64)
        progression_visit = keyed.integers(k, "pd_visit", p, 1, 5)
        followups = 2 + np.floor(keyed.uniform(k, "followups", p) * (per("max_followups") - 1)).astype(np.int64)
        out["progression_visit"] = progression_visit
        out["n_visits"] = np.where(response == RESPONSES.index("PD"), progression_visit + 1, followups + 1)
        return out

    def lesion_diameters(self, pa: dict[str, np.ndarray], visit: np.ndarray) -> np.ndarray:
        """Longest diameters (mm) of each target lesion at each (patient, visit) row.

        ``pa`` holds patient arrays already repeated to the rows of ``visit``.
        Returns (rows, MAX_LESIONS), 0 where a lesion is absent or has gone.
        The course follows the subject's best response: CR shrinks to nothing,
        PR to 30-55 % of baseline, SD drifts within -20..+12 %, PD grows by at
        least 25 % (and 5 mm) over the nadir at the progression visit.
        """
        k, p = self.key, pa["index"]
        v = np.asarray(visit, dtype=np.float64)
        lo = np.array([c.diameter_min_mm for c in self.cohorts])[pa["cohort"]]
        hi = np.array([c.diameter_max_mm for c in self.cohorts])[pa["cohort"]]
        d0 = np.stack([lo + (hi - lo) * keyed.uniform(k, f"d0:{i}", p) for i in range(MAX_LESIONS)], axis=1)
        present = np.arange(MAX_LESIONS)[None, :] < pa["n_lesions"][:, None]
        d0 = np.where(present, d0, 0.0)
        u1, u2 = keyed.uniform(k, "course:a", p), keyed.uniform(k, "course:b", p)
        response = pa["response"]
        cr = np.maximum(0.0, 1.0 - (0.25 + 0.2 * u1) * v)
        fmin, tau = 0.3 + 0.25 * u1, 0.6 + 0.8 * u2
        pr = fmin + (1 - fmin) * np.exp(-v / tau)
        sd = 1.0 + (-0.2 + 0.32 * u1) * np.minimum(v, 3) / 3
        shrink = 1.0 - 0.05 * u1 * v
        vp = pa["progression_visit"]
        nadir = 1.0 - 0.05 * u1 * np.maximum(vp - 1, 0)
        sum0 = d0.sum(axis=1)
        grown = np.maximum(nadir * (1.25 + 0.35 * u2), nadir + 6.0 / np.maximum(sum0, 1.0))
        pd = np.where(v >= vp, grown, shrink)
        factor = np.choose(response, [cr, pr, sd, pd])
        jitter = np.stack(
            [keyed.uniform(k, f"jitter:{i}", records.study_key(p, v.astype(np.int64))) for i in range(MAX_LESIONS)], axis=1
        )
        per_lesion = np.where(v[:, None] > 0, 1.0 + 0.06 * (jitter - 0.5), 1.0)
        # 60 mm cap: the geometry stage keeps room for that much growth inside a lung.
        return np.round(np.minimum(d0 * factor[:, None] * per_lesion, MAX_DIAMETER_MM), 1)

    def study_arrays(self, pa: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One row per study (patient, visit, exam) for the patient arrays ``pa``, in that order.

        Every visit holds the cohort's own exam (0); another exam of the cohort
        adds a study at the visits it names, on the same day, earlier.
        """
        n_visits = pa["n_visits"]
        rows = np.repeat(np.arange(len(n_visits)), n_visits)
        starts = np.cumsum(n_visits) - n_visits
        visit = np.arange(len(rows)) - np.repeat(starts, n_visits)
        exam = np.zeros(len(rows), dtype=np.int64)
        cohort_of_row = pa["cohort"][rows]
        more = [(rows, visit, exam)]
        for cohort in self.cohorts:
            for e in cohort.exams[1:]:
                take = np.flatnonzero((cohort_of_row == cohort.index) & np.isin(visit, e.visits or ()))
                more.append((rows[take], visit[take], np.full(len(take), e.index, dtype=np.int64)))
        if len(more) > 1:
            rows, visit, exam = (np.concatenate(parts) for parts in zip(*more))
            order = np.lexsort((exam, visit, rows))
            rows, visit, exam = rows[order], visit[order], exam[order]
        rep = {name: values[rows] for name, values in pa.items()}
        k, p = self.key, rep["index"]
        pv = records.study_key(p, visit)  # the (patient, visit) identity for keyed draws
        interval = np.array([c.interval_days for c in self.cohorts])[rep["cohort"]]
        window = np.array([c.window_days for c in self.cohorts])[rep["cohort"]]
        offset = np.where(visit > 0, np.floor(keyed.uniform(k, "window", pv) * (2 * window + 1)).astype(np.int64) - window, 0)
        out = {"patient_row": rows, "visit": visit, "exam": exam}
        out["day"] = rep["baseline_day"] + visit * interval + offset
        minute = 7 * 60 + 30 + keyed.integers(k, "time", pv, 0, 10 * 60)
        # Other exams come first on the visit's day: 20-45 minutes before the imaging, per exam.
        before = np.where(exam > 0, 20 * exam + keyed.integers(k, "exam_time", records.study_key(p, visit + 64 * exam), 0, 25), 0)
        out["minute"] = np.maximum(minute - before, 7 * 60)
        out["second"] = keyed.integers(k, "seconds", pv, 0, 60)
        out["age"] = records.calendar_age(rep["birth_day"], out["day"])
        return out

    def target_of(self, cohort: Cohort, exam: int = 0) -> ZooTarget:
        return self.targets[cohort.exams[exam].target]

    def plans(self, pa: dict[str, np.ndarray], sa: dict[str, np.ndarray]) -> list[tuple[Cohort, Exam, np.ndarray, StudyPlan]]:
        """Each cohort's and exam's study plan for the study rows ``sa`` of the patient arrays ``pa``.

        Returns (cohort, exam, study row indices, plan) per exam present; the
        plan is the exam's target's vectorised function of the rows' keyed draws.
        """
        cohort_of_row = pa["cohort"][sa["patient_row"]]
        out = []
        for cohort in self.cohorts:
            for exam in cohort.exams:
                rows = np.flatnonzero((cohort_of_row == cohort.index) & (sa["exam"] == exam.index))
                if not len(rows):
                    continue
                patient_rows = sa["patient_row"][rows]
                target = self.targets[exam.target]
                draws = PlanDraws(
                    key=self.key,
                    patient=pa["index"][patient_rows],
                    visit=sa["visit"][rows],
                    female=pa["female"][patient_rows],
                    acquisition=exam.acquisition,
                )
                plan = target.plan(draws)
                plan.check(len(rows), len(target.slots), f"target {target.name} (cohort {cohort.name})")
                out.append((cohort, exam, rows, plan))
        return out

    # -- scalar records -------------------------------------------------------------------

    def _check_patient(self, index: int) -> None:
        if not 0 <= index < self.n_patients:
            raise IndexError(f"patient {index} is outside the universe of {self.n_patients}")

    def patient(self, index: int) -> PatientRecord:
        self._check_patient(index)
        a = {k: v[0] for k, v in self.patient_arrays(np.array([index])).items()}
        return self._patient_record(a)

    def _patient_record(self, a: dict) -> PatientRecord:
        cohort = self.cohorts[int(a["cohort"])]
        site = cohort.sites[int(a["site"])]
        names = GIVEN_NAMES_F if a["female"] else GIVEN_NAMES_M
        index = int(a["index"])
        return PatientRecord(
            index=index,
            cohort=cohort,
            patient_id=records.patient_id(index),
            patient_name=f"{FAMILY_NAMES[int(a['family'])]}^{names[int(a['given'])]}",
            sex="F" if a["female"] else "M",
            birth_date=records.date_strings(np.array([a["birth_day"]]))[0],
            subject_id=records.subject_id(cohort.protocol_id, site.id, index),
            site_id=site.id,
            site_name=site.name,
            response=RESPONSES[int(a["response"])],
            n_visits=int(a["n_visits"]),
            n_lesions=int(a["n_lesions"]),
        )

    def studies_of(self, index: int) -> tuple[StudyRecord, ...]:
        """Every planned study of one patient, in visit order (each visit's exams in exam order):
        the performed studies, then (when the course runs past today) the visits still to come."""
        self._check_patient(index)
        pa = self.patient_arrays(np.array([index]))
        patient = self._patient_record({k: v[0] for k, v in pa.items()})
        sa = self.study_arrays(pa)
        rep = {name: values[sa["patient_row"]] for name, values in pa.items()}
        diameters = self.lesion_diameters(rep, sa["visit"])
        found = {}
        for _, exam, rows, plan in self.plans(pa, sa):
            for j, i in enumerate(rows):
                found[int(i)] = self._study_record(patient, sa, int(i), diameters[i], exam, plan, j)
        return tuple(found[i] for i in range(len(sa["visit"])))

    def study(self, index: int, number: int) -> StudyRecord:
        """The study of patient ``index`` with study ``number`` (:func:`records.study_number` of visit and exam)."""
        for study in self.studies_of(index):
            if study.number == number:
                return study
        raise IndexError(f"patient {index} has no study {number}")

    def _study_record(
        self, patient: PatientRecord, sa: dict, i: int, diameters: np.ndarray, exam: Exam, plan: StudyPlan, j: int
    ) -> StudyRecord:
        """Study row ``i`` of ``sa``, row ``j`` of its exam's ``plan``."""
        cohort = patient.cohort
        visit = int(sa["visit"][i])
        number = records.study_number(visit, exam.index)
        minute, second = int(sa["minute"][i]), int(sa["second"][i])
        date = records.date_strings(np.array([sa["day"][i]]))[0]
        time = f"{minute // 60:02d}{minute % 60:02d}{second:02d}"
        series = []
        for s_index, slot in enumerate(self.targets[exam.target].slots):
            count = int(plan.n_instances[j, s_index])
            if count == 0:
                continue
            series.append(
                SeriesRecord(
                    patient_index=patient.index,
                    visit=visit,
                    index=s_index,
                    slot=slot,
                    series_instance_uid=self.uids.series_instance_uid(patient.index, number, s_index),
                    series_number=slot.number,
                    modality=slot.modality,
                    series_description=str(plan.descriptions[j, s_index]),
                    series_date=date,
                    series_time=time,
                    n_instances=count,
                    frames=int(plan.frames[j, s_index]),
                    rows=int(plan.rows[j, s_index]),
                    columns=int(plan.columns[j, s_index]),
                )
            )
        time_point_id, time_point_description = records.time_point(visit, cohort.interval_days)
        return StudyRecord(
            patient=patient,
            visit=visit,
            exam=exam,
            study_instance_uid=self.uids.study_instance_uid(patient.index, number),
            study_date=date,
            study_time=time,
            accession_number=records.accession_number(patient.index, visit, exam.index),
            study_id=records.study_id(visit),
            study_description=exam.study_description,
            time_point_id=time_point_id,
            time_point_description=time_point_description,
            patient_age=records.age_string(int(sa["age"][i])),
            lesion_diameters_mm=tuple(float(d) for d in diameters[: patient.n_lesions]),
            series=tuple(series),
        )
