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
#: Visits per patient that a study key can tell apart (the key is patient * 64 + visit).
MAX_VISITS = 64


@overload
def study_key(patient: int, visit: int) -> int: ...
@overload
def study_key(patient: np.ndarray, visit: np.ndarray | int) -> np.ndarray: ...
@overload
def study_key(patient: np.ndarray | int, visit: np.ndarray) -> np.ndarray: ...
def study_key(patient: np.ndarray | int, visit: np.ndarray | int) -> np.ndarray | int:
    """The catalog's primary key of a (patient, visit) study, also the key of per-visit draws."""
    return patient * MAX_VISITS + visit


def split_study_key(key: int) -> tuple[int, int]:
    return divmod(int(key), MAX_VISITS)


def patient_id(index: int) -> str:
    """Patient ID (0010,0020)."""
    return f"SYN-{index + 1:07d}"


def accession_number(index: int, visit: int) -> str:
    """Accession Number (0008,0050) of a visit's imaging order."""
    return f"SYNA{index + 1:07d}{visit:02d}"


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
