"""The Modality Worklist: scheduled procedure steps derived from the universe
(PS3.4 K.6, Basic Worklist Management; the attributes of Table K.6-1).

The universe has no orders, so what is "scheduled" is a rule over the
catalog and a date, *today* (the ``worklist_today`` setting; the real date by
default). The rule is deterministic:

1. **Visits not yet performed.** Every synthetic study dated *today* or later
   is a scheduled procedure step at its StudyDate and StudyTime, with its own
   Study Instance UID and Accession Number (today's studies are the day's
   work).
2. **The next visit.** Every trial subject is also scheduled for the visit
   after its last study, at the protocol's interval (last StudyDate plus the
   cohort's ``interval_days``), when that date is *today* or later. It gets
   the next Accession Number of the subject's series and a Study Instance UID
   drawn by keyed hash, which is *not* a synthetic UID: objects a modality
   stores under it are indexed as a stored study and are found at once.

Each step's station is its trial site's scanner: Scheduled Station AE Title
``<site>_<modality>`` (``S01_CT``), so a modality pulls its own day's work by
asking for its AE title and today's date. Matching follows PS3.4 C.2.2.2
through :mod:`matching` (single value, wildcard, date and time ranges, UID
lists, and sequence matching inside Scheduled Procedure Step Sequence).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom import Dataset

from .. import keyed
from ..errors import InvalidQuery
from . import matching
from .catalog import REFERRING_PHYSICIAN, STUDY_COLUMNS, Catalog, element_text, vr_of
from .cohorts import Cohort
from .records import accession_number, time_point

SCHEDULED = "SCHEDULED"
SEQUENCE = "ScheduledProcedureStepSequence"
REQUESTING_PHYSICIAN = "SYNTHETIC^INVESTIGATOR"
#: Start times of "next visit" steps: 30-minute slots from 08:00 to 16:30.
FIRST_SLOT_MINUTE, SLOT_MINUTES, SLOTS = 8 * 60, 30, 18


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


def next_visit_time(key: bytes, patient: int, visit: int) -> str:
    """The start time of a "next visit" step: a keyed 30-minute slot of the working day."""
    slot = keyed.path_seed(key, "worklist-slot", patient, visit) % SLOTS
    minute = FIRST_SLOT_MINUTE + SLOT_MINUTES * slot
    return f"{minute // 60:02d}{minute % 60:02d}00"


def scheduled_study_uid(key: bytes, patient: int, visit: int) -> str:
    """Study Instance UID of a "next visit" step: ``2.25.`` and a keyed 128-bit hash.

    It is not minted by :class:`~synthpacs.archive.uids.UIDFactory` (whose
    UIDs carry a MAC), so the archive treats objects stored under it as a
    stored study, never as part of a synthetic one.
    """
    return f"2.25.{keyed.path_seed(key, 'worklist-study', patient, visit)}"


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
    study_instance_uid: str
    accession_number: str
    start_date: str
    start_time: str
    next_visit: bool  # rule 2 (the visit after the last study) rather than rule 1
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
        c = self.cohort
        tp_id, tp_description = time_point(self.visit, c.interval_days)
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = c.procedure_code
        step = Dataset()
        step.ScheduledStationAETitle = station_ae_title(self.site_id, self.modality)
        step.ScheduledStationName = station_name(self.site_id, self.modality)
        step.ScheduledProcedureStepLocation = f"Site {self.site_id}"[:16]  # SH
        step.ScheduledProcedureStepStartDate = self.start_date
        step.ScheduledProcedureStepStartTime = self.start_time
        step.Modality = self.modality
        step.ScheduledPerformingPhysicianName = ""
        step.ScheduledProcedureStepDescription = f"{c.study_description} ({tp_description})"[:64]
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
        ds.RequestedProcedureDescription = c.study_description
        ds.RequestedProcedureCodeSequence = [code]
        ds.RequestedProcedurePriority = "ROUTINE"
        ds.StudyDescription = c.study_description
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
        The archive's catalog; rows are read from its SQLite index.
    today
        The worklist's "today" (a ``date`` or ``YYYYMMDD``); None means the
        real date, read at each query so that a long-running server rolls over.
    """

    def __init__(self, catalog: Catalog, today: dt.date | str | int | None = None):
        self.catalog = catalog
        self.universe = catalog.universe
        if today in (None, 0, "", "0"):
            self._today = None
        elif isinstance(today, dt.date):
            self._today = today
        else:
            self._today = parse_date(str(today))

    @property
    def today(self) -> str:
        return (self._today or dt.date.today()).strftime("%Y%m%d")

    # -- derivation ---------------------------------------------------------------------

    def steps(self, low: str | None = None, high: str | None = None, patient_id: str | None = None) -> list[ScheduledStep]:
        """Every scheduled step whose start date lies in [low, high] (either
        end open), in order of start date, time and patient."""
        today = self.today
        low = max(low or today, today)
        if high is not None and high < low:
            return []
        db = self.catalog.db
        found: list[ScheduledStep] = []
        patient_sql, patient_params = ("", ()) if patient_id is None else (" AND p.patient_id = ?", (patient_id,))
        # Rule 1: studies dated today or later.
        sql = (
            f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk WHERE s.study_date >= ?"
            + (" AND s.study_date <= ?" if high else "")
            + patient_sql
        )
        params = (low,) + ((high,) if high else ()) + patient_params
        for row in db.execute(sql, params):
            found.append(self._step(row, next_visit=False))
        # Rule 2: the visit after each subject's last study, per cohort (its interval).
        for c in self.universe.cohorts:
            sql = (
                f"SELECT {STUDY_COLUMNS} FROM study s JOIN patient p ON p.pk = s.patient_pk "
                "WHERE p.cohort = ? AND s.visit = p.n_studies - 1 AND s.study_date >= ?"
                + (" AND s.study_date <= ?" if high else "")
                + patient_sql
            )
            params = (c.index, shift_date(low, -c.interval_days))
            params += ((shift_date(high, -c.interval_days),) if high else ()) + patient_params
            for row in db.execute(sql, params):
                found.append(self._step(row, next_visit=True))
        found.sort(key=lambda s: (s.start_date, s.start_time, s.patient_index, s.visit))
        return found

    def _step(self, row, next_visit: bool) -> ScheduledStep:
        index, cohort = row["patient_pk"], self.universe.cohorts[row["cohort"]]
        visit, date, time, accession = row["visit"], row["study_date"], row["study_time"], row["accession"]
        uid = self.universe.uids.study_instance_uid(index, visit)
        if next_visit:
            visit += 1
            date = shift_date(date, cohort.interval_days)
            time = next_visit_time(self.universe.key, index, visit)
            accession = accession_number(index, visit)
            uid = scheduled_study_uid(self.universe.key, index, visit)
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
            study_instance_uid=uid,
            accession_number=accession,
            start_date=date,
            start_time=time,
            next_visit=next_visit,
            modality=self.universe.target_of(cohort).slots[0].modality,
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
