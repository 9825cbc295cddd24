"""One home for every derived value of the universe.

The catalog build, the scalar records behind retrieves, the worklist and the
files all call these functions, so a query answer and a retrieved object can
never disagree (DESIGN §2.7). Each takes numpy arrays where the catalog needs
whole columns at once, and plain ints where a single record needs one.
"""

from __future__ import annotations

from typing import overload

import numpy as np

EPOCH = np.datetime64("1970-01-01", "D")
#: Visits per patient that a study number can tell apart.
MAX_VISITS = 64
#: Exams per visit (the cohort's own exam first, then the others its file names).
MAX_EXAMS = 4
#: Bits of a study key below its exam: patient (24 bits, as in UIDs) and visit (6 bits).
_EXAM_SHIFT = 30


def study_number(visit, exam=0):
    """A study's number within its patient: visit and exam in one integer (the study component of its UIDs).

    Exam 0, the cohort's imaging exam, keeps number = visit.
    """
    return exam * MAX_VISITS + visit


@overload
def study_key(patient: int, number: int) -> int: ...
@overload
def study_key(patient: np.ndarray, number: np.ndarray | int) -> np.ndarray: ...
@overload
def study_key(patient: np.ndarray | int, number: np.ndarray) -> np.ndarray: ...
def study_key(patient: np.ndarray | int, number: np.ndarray | int) -> np.ndarray | int:
    """The catalog's primary key of a study (patient and study number); for exam 0 also the key of per-visit draws."""
    exam, visit = number // MAX_VISITS, number % MAX_VISITS
    return (exam << _EXAM_SHIFT) + patient * MAX_VISITS + visit


def split_study_key(key: int) -> tuple[int, int]:
    """(patient, study number) of a study key."""
    exam, rest = divmod(int(key), 1 << _EXAM_SHIFT)
    patient, visit = divmod(rest, MAX_VISITS)
    return patient, study_number(visit, exam)


def patient_id(index: int) -> str:
    """Patient ID (0010,0020)."""
    return f"SYN-{index + 1:07d}"


def accession_number(index: int, visit: int, exam: int = 0) -> str:
    """Accession Number (0008,0050) of a visit's order: one per exam."""
    return f"SYNA{index + 1:07d}{visit:02d}" + (f"E{exam}" if exam else "")


def study_id(visit: int) -> str:
    """Study ID (0020,0010)."""
    return f"V{visit:02d}"


def subject_id(protocol_id: str, site_id: str, index: int) -> str:
    """Clinical Trial Subject ID (0012,0040)."""
    return f"{protocol_id}-{site_id}-{index + 1:06d}"


def time_point(visit: int, interval_days: int) -> tuple[str, str]:
    """Clinical Trial Time Point ID and Description (0012,0050/0051) of a visit."""
    if visit == 0:
        return "BL", "Baseline"
    weeks = visit * interval_days // 7
    return f"W{weeks:02d}", f"Week {weeks} follow-up"


def date_strings(days: np.ndarray) -> list[str]:
    """Days since 1970-01-01 -> DA strings (YYYYMMDD)."""
    values = np.asarray(days, dtype="datetime64[D]").astype(str)
    return [v.replace("-", "") for v in values]


def calendar_age(birth_day: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Age in completed years on ``day`` (both in days since the epoch), as a person counts it.

    Compares (month, day) rather than day of year, so leap years shift no
    birthday; one born on 29 February turns a year older on 1 March.
    """
    birth = np.asarray(birth_day, dtype="datetime64[D]")
    then = np.asarray(day, dtype="datetime64[D]")
    years = then.astype("datetime64[Y]").astype(np.int64) - birth.astype("datetime64[Y]").astype(np.int64)
    return years - (_month_day(then) < _month_day(birth))


def _month_day(dates: np.ndarray) -> np.ndarray:
    months = dates.astype("datetime64[M]")
    return (months.astype(np.int64) % 12) * 32 + (dates - months).astype(np.int64)


def age_string(years: int) -> str:
    """Patient's Age (0010,1010), an AS value such as ``066Y``."""
    return f"{int(years):03d}Y"
