"""The Modality Worklist: scheduled procedure steps derived from the universe
(PS3.4 K.6, Basic Worklist Management; the attributes of Table K.6-1).

**Today.** The whole universe is anchored on one day, *today*: the ``today``
setting (YYYYMMDD), or the real date when the archive starts (``0``, the
default; ``worklist_today`` is a deprecated alias). It is resolved once at
start-up (a server running past midnight keeps its day until it restarts) and
is part of the universe fingerprint, so the catalog is rebuilt, and the
instance cache starts a fresh folder, on another day; the same seed,
configuration and today always give the same archive, catalog and bytes.

**The rolling trial calendar.** A cohort's enrolment window
(``schedule.first_baseline`` / ``last_baseline``) is given in days relative to
today (``-900``, ``-30``; the shipped cohorts do) or as absolute dates. Each
subject's visits follow from its baseline at the protocol interval, so with a
relative window the trial rolls with the calendar: on any day some subjects
are mid-course, and today's and future work always exists.

**Performed and scheduled.** The universe has no orders; the rule is
deterministic:

1. A visit dated *on or before today* is a performed study: in the catalog,
   found by C-FIND and QIDO-RS, retrievable.
2. A visit dated *after today* is not a study yet (no query finds it, no
   retrieve serves it): it is a scheduled procedure step, at its planned
   date and time, with its planned Study Instance UID and Accession Number
   (those it will have once performed).
3. The worklist lists every visit dated *today or later*: today's visits are
   the day's work (already in the catalog, as the archive holds the day as it
   will end) and later visits the work to come. What a modality stores under
   a step's Study Instance UID joins today's study, or for a later visit is
   indexed as a stored study and found at once.

Each step's station is its trial site's scanner: Scheduled Station AE Title
``<site>_<modality>`` (``S01_CT``), so a modality pulls its own day's work by
asking for its AE title and today's date (``findscu -W -k
"ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=<today>"``).
Matching follows PS3.4 C.2.2.2 through :mod:`matching` (single value,
wildcard, date and time ranges, UID lists, and sequence matching inside
Scheduled Procedure Step Sequence).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom import Dataset

from ..errors import InvalidQuery
from . import matching
from .catalog import REFERRING_PHYSICIAN, STUDY_COLUMNS, Catalog, element_text, vr_of
from .cohorts import Cohort, Exam
from .records import study_number, time_point

SCHEDULED = "SCHEDULED"
SEQUENCE = "ScheduledProcedureStepSequence"
REQUESTING_PHYSICIAN = "SYNTHETIC^INVESTIGATOR"


def station_ae_title(site_id: str, modality: str) -> str:
    """Scheduled Station AE Title (0040,0001) of a site's scanner, e.g. ``S01_CT``."""
    return f"{site_id}_{modality}"[:16]


def station_name(site_id: str, modality: str) -> str:
    """Scheduled Station Name (0040,0010), an SH of at most 16 characters."""
    return f"{site_id} {modality} SCANNER"[:16]


def parse_date(text: str) -> dt.date:
    """YYYYMMDD -> date; InvalidQuery when malformed."""
    try:
        return dt.datetime.strptime(str(text), "%Y%m%d").date()
    except ValueError:
        raise InvalidQuery(f"{text!r} is not a date (YYYYMMDD)") from None


def shift_date(date: str, days: int) -> str:
    """A DA value moved by ``days``."""
    return (parse_date(date) + dt.timedelta(days=days)).strftime("%Y%m%d")


@dataclass(frozen=True)
class ScheduledStep:
    """One scheduled procedure step (and its requested procedure)."""

    patient_index: int
    visit: int
    patient_id: str
    patient_name: str
    patient_sex: str
    patient_birth_date: str
    subject_id: str
    site_id: str
    site_name: str
    cohort: Cohort
    exam: Exam  # what is to be done: the cohort's own exam or another one its file names
    study_instance_uid: str
    accession_number: str
    start_date: str
    start_time: str
    modality: str  # of the study's first series (what the scheduled station acquires)

    @property
    def step_id(self) -> str:
        """Scheduled Procedure Step ID (SH): the accession number's digits."""
        return "SPS" + self.accession_number[4:]

    @property
    def requested_procedure_id(self) -> str:
        return "RP" + self.accession_number[4:]

    def dataset(self) -> Dataset:
        """The worklist item with every return key of PS3.4 Table K.6-1 this archive knows."""
        c, exam = self.cohort, self.exam
        tp_id, tp_description = time_point(self.visit, c.interval_days)
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = exam.procedure_code
        step = Dataset()
        step.ScheduledStationAETitle = station_ae_title(self.site_id, self.modality)
        step.ScheduledStationName = station_name(self.site_id, self.modality)
        step.ScheduledProcedureStepLocation = f"Site {self.site_id}"[:16]  # SH
        step.ScheduledProcedureStepStartDate = self.start_date
        step.ScheduledProcedureStepStartTime = self.start_time
        step.Modality = self.modality
        step.ScheduledPerformingPhysicianName = ""
        step.ScheduledProcedureStepDescription = f"{exam.study_description} ({tp_description})"[:64]
        protocol = Dataset()
        protocol.update(code)
        step.ScheduledProtocolCodeSequence = [protocol]
        step.ScheduledProcedureStepID = self.step_id
        step.ScheduledProcedureStepStatus = SCHEDULED

        ds = Dataset()
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        ds.PatientBirthDate = self.patient_birth_date
        ds.PatientSex = self.patient_sex
        ds.ClinicalTrialSponsorName = c.sponsor
        ds.ClinicalTrialProtocolID = c.protocol_id
        ds.ClinicalTrialProtocolName = c.protocol_name
        ds.ClinicalTrialSiteID = self.site_id
        ds.ClinicalTrialSiteName = self.site_name
        ds.ClinicalTrialSubjectID = self.subject_id
        ds.ClinicalTrialTimePointID = tp_id
        ds.ClinicalTrialTimePointDescription = tp_description
        ds.StudyInstanceUID = self.study_instance_uid
        ds.AccessionNumber = self.accession_number
        ds.ReferringPhysicianName = REFERRING_PHYSICIAN
        ds.RequestingPhysician = REQUESTING_PHYSICIAN
        ds.RequestedProcedureID = self.requested_procedure_id
        ds.RequestedProcedureDescription = exam.study_description
        ds.RequestedProcedureCodeSequence = [code]
        ds.RequestedProcedurePriority = "ROUTINE"
        ds.StudyDescription = exam.study_description
        ds.ReferencedStudySequence = []
        ds.ScheduledProcedureStepSequence = [step]
        return ds


# Attributes this worklist can match on: top level and inside the SPS item.
_TOP_KEYS = {
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID",
    "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID",
    "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID",
    "ClinicalTrialTimePointID",
    "StudyInstanceUID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "RequestingPhysician",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedurePriority",
    "StudyDescription",
}
_STEP_KEYS = {
    "ScheduledStationAETitle",
    "ScheduledStationName",
    "ScheduledProcedureStepLocation",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "Modality",
    "ScheduledPerformingPhysicianName",
    "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepStatus",
}


@dataclass(frozen=True)
class _Keys:
    top: dict[str, str]
    step: dict[str, str]


def _checked(query: dict) -> _Keys:
    """Validate every key (unknown keywords and malformed values raise
    InvalidQuery); keep those the worklist can match. Never mutates ``query``."""
    top, step = {}, {}

    def value_text(value) -> str:
        if isinstance(value, (list, tuple)):
            return "\\".join(str(v) for v in value)
        return "" if value is None else str(value)

    for keyword, value in query.items():
        vr = vr_of(keyword)
        if keyword == SEQUENCE:
            if not isinstance(value, list):
                raise InvalidQuery(f"{SEQUENCE}: a sequence key needs a list of items")
            for item in value:
                for k, v in item.items():
                    item_vr = vr_of(k)
                    if item_vr == "SQ" or k not in _STEP_KEYS:
                        continue
                    text = value_text(v)
                    matching.match_value(f"{SEQUENCE}>{k}", item_vr, text, None)
                    if matching.matching_type(item_vr, text) != "universal":
                        step[k] = text
            continue
        if vr == "SQ" or keyword not in _TOP_KEYS:
            continue  # returned empty (or whole) by the front end, never matched
        text = value_text(value)
        matching.match_value(keyword, vr, text, None)
        if matching.matching_type(vr, text) != "universal":
            top[keyword] = text
    return _Keys(top, step)


class Worklist:
    """Scheduled procedure steps of one archive's universe (see the module docstring).

    Parameters
    ----------
    catalog
        The archive's catalog; steps are read from its SQLite index (today's
        studies from ``study``, later visits from ``scheduled``). Its
        universe's ``today`` is the worklist's.
    """

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.universe = catalog.universe

    @property
    def today(self) -> str:
        """Today as a DA value (YYYYMMDD): the day the universe is anchored on."""
        return self.universe.today_text

    # -- derivation ---------------------------------------------------------------------

    def steps(self, low: str | None = None, high: str | None = None, patient_id: str | None = None) -> list[ScheduledStep]:
        """Every scheduled step whose start date lies in [low, high] (either
        end open; nothing before today), in order of start date, time and patient."""
        today = self.today
        low = max(low or today, today)
        if high is not None and high < low:
            return []
        db = self.catalog.db
        patient_sql = "" if patient_id is None else " AND p.patient_id = ?"
        patient_params: tuple[str, ...] = () if patient_id is None else (patient_id,)
        found: list[ScheduledStep] = []
        # Today's visits: performed studies, the day's work.
        if low == today:
            sql = f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk WHERE s.study_date = ?"
            found.extend(self._step(row) for row in db.execute(sql + patient_sql, (today, *patient_params)))
        # Later visits: not studies yet.
        first = max(low, shift_date(today, 1))
        if high is None or first <= high:
            sql = f"SELECT {STUDY_COLUMNS} FROM scheduled s JOIN patient p ON p.pk = s.patient_pk WHERE s.study_date >= ?"
            params: tuple[str, ...] = (first,)
            if high is not None:
                sql, params = sql + " AND s.study_date <= ?", (*params, high)
            found.extend(self._step(row) for row in db.execute(sql + patient_sql, (*params, *patient_params)))
        found.sort(key=lambda s: (s.start_date, s.start_time, s.patient_index, s.visit, s.exam.index))
        return found

    def _step(self, row: sqlite3.Row) -> ScheduledStep:
        index, visit = row["patient_pk"], row["visit"]
        cohort = self.universe.cohorts[row["cohort"]]
        exam = self.catalog.variants[row["variant"]].exam
        return ScheduledStep(
            patient_index=index,
            visit=visit,
            patient_id=row["patient_id"],
            patient_name=row["patient_name"],
            patient_sex=row["sex"],
            patient_birth_date=row["birth_date"],
            subject_id=row["subject_id"],
            site_id=row["site_id"],
            site_name=row["site_name"],
            cohort=cohort,
            exam=exam,
            study_instance_uid=self.universe.uids.study_instance_uid(index, study_number(visit, exam.index)),
            accession_number=row["accession"],
            start_date=row["study_date"],
            start_time=row["study_time"],
            modality=self.universe.target_of(cohort, exam.index).slots[0].modality,
        )

    # -- matching -----------------------------------------------------------------------

    def find(self, query: dict, *, fuzzy: bool = False) -> Iterator[Dataset]:
        """Worklist items matching ``query`` (keyword -> value, or a list of
        item dicts for ``ScheduledProcedureStepSequence``).

        Raises
        ------
        InvalidQuery
            An unknown attribute or a malformed value; raised at once, before
            the first item.
        """
        keys = _checked(query)
        low = high = None
        date_key = keys.step.get("ScheduledProcedureStepStartDate")
        if date_key:
            if matching.matching_type("DA", date_key) == "range":
                low, high = matching.parse_range("ScheduledProcedureStepStartDate", "DA", date_key)
            elif "\\" not in date_key:
                low = high = date_key
        patient_id = keys.top.get("PatientID")
        if patient_id is not None and (matching.matching_type("LO", patient_id) != "single" or "\\" in patient_id):
            patient_id = None
        steps = self.steps(low, high, patient_id)
        return self._matches(steps, keys, fuzzy)

    @staticmethod
    def _matches(steps: list[ScheduledStep], keys: _Keys, fuzzy: bool) -> Iterator[Dataset]:
        for step in steps:
            ds = step.dataset()
            item = ds.ScheduledProcedureStepSequence[0]
            if all(matching.match_value(k, vr_of(k), v, element_text(ds, k), fuzzy=fuzzy) for k, v in keys.top.items()) and all(
                matching.match_value(k, vr_of(k), v, element_text(item, k), fuzzy=fuzzy) for k, v in keys.step.items()
            ):
                yield ds
