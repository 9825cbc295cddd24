"""What a query can ask for: query levels, the matchable attributes of each
level (keyword, VR, and where the value lives), the return keys of each level,
and the small helpers that read and write attribute values.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement

from ... import identity
from ...errors import InvalidQuery
from .. import matching
from ..cohorts import Cohort, Exam

REFERRING_PHYSICIAN = identity.REFERRING_PHYSICIAN_NAME

#: A query: keyword -> str value, or a list of item dicts for a sequence.
Query = dict


class QueryLevel(str, enum.Enum):
    """Query/Retrieve Level (0008,0052), PS3.4 C.6."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"

    @classmethod
    def parse(cls, value: str) -> QueryLevel:
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise InvalidQuery(f"QueryRetrieveLevel: unknown level {value!r} (use PATIENT, STUDY, SERIES or IMAGE)") from None


@dataclass(frozen=True)
class Variant:
    """One distinct series layout of a cohort's studies of one exam (what the exam's study plan gave)."""

    index: int
    cohort: Cohort
    exam: Exam
    n_series: int
    n_instances: int
    modalities: tuple[str, ...]
    sop_classes: tuple[str, ...]


#: A value that is constant per plan variant: DICOM text, or the items of a sequence.
VariantValue = str | list[dict[str, str]]


@dataclass(frozen=True)
class Field:
    """A matchable attribute: its keyword, VR and SQL expression over the synthetic tables.

    ``expr`` None means the value is constant per plan variant (matched by
    choosing variants in Python) or computed (matched on output only, in Python).
    """

    keyword: str
    vr: str
    expr: str | None
    per_variant: Callable[[Variant], VariantValue] | None = None


def _code_item(value: str, scheme: str, meaning: str) -> dict[str, str]:
    return {"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning}


PATIENT_FIELDS = (
    Field("PatientName", "PN", "p.patient_name"),
    Field("PatientID", "LO", "p.patient_id"),
    Field("PatientBirthDate", "DA", "p.birth_date"),
    Field("PatientSex", "CS", "p.sex"),
    Field("ClinicalTrialSponsorName", "LO", None, lambda v: v.cohort.sponsor),
    Field("ClinicalTrialProtocolID", "LO", None, lambda v: v.cohort.protocol_id),
    Field("ClinicalTrialProtocolName", "LO", None, lambda v: v.cohort.protocol_name),
    Field("ClinicalTrialSiteID", "LO", "p.site_id"),
    Field("ClinicalTrialSiteName", "LO", "p.site_name"),
    Field("ClinicalTrialSubjectID", "LO", "p.subject_id"),
    Field("NumberOfPatientRelatedStudies", "IS", None),
    Field("NumberOfPatientRelatedSeries", "IS", None),
    Field("NumberOfPatientRelatedInstances", "IS", None),
)
STUDY_FIELDS = (
    Field("StudyInstanceUID", "UI", None),
    Field("StudyDate", "DA", "s.study_date"),
    Field("StudyTime", "TM", "s.study_time"),
    Field("AccessionNumber", "SH", "s.accession"),
    Field("StudyID", "SH", "printf('V%02d', s.visit)"),
    Field("StudyDescription", "LO", None, lambda v: v.exam.study_description),
    Field("ReferringPhysicianName", "PN", f"'{REFERRING_PHYSICIAN}'"),
    Field("ModalitiesInStudy", "CS", None, lambda v: "\\".join(v.modalities)),
    Field("SOPClassesInStudy", "UI", None, lambda v: "\\".join(v.sop_classes)),
    Field("ClinicalTrialTimePointID", "LO", "s.time_point_id"),
    Field("ClinicalTrialTimePointDescription", "ST", "s.time_point_description"),
    Field("PatientAge", "AS", "s.patient_age"),
    Field("ProcedureCodeSequence", "SQ", None, lambda v: [_code_item(*v.exam.procedure_code)]),
    Field("NumberOfStudyRelatedSeries", "IS", None),
    Field("NumberOfStudyRelatedInstances", "IS", None),
)
SERIES_FIELDS = (
    Field("SeriesInstanceUID", "UI", None),
    Field("Modality", "CS", "ps.modality"),
    Field("SeriesNumber", "IS", "ps.number"),
    Field("SeriesDescription", "LO", "ps.description"),
    Field("SeriesDate", "DA", "s.study_date"),
    Field("SeriesTime", "TM", "s.study_time"),
    Field("BodyPartExamined", "CS", None, lambda v: v.exam.body_part),
    Field("ClinicalTrialCoordinatingCenterName", "LO", None, lambda v: v.cohort.coordinating_center),
    Field("NumberOfSeriesRelatedInstances", "IS", None),
)
IMAGE_FIELDS = (
    Field("SOPInstanceUID", "UI", None),
    Field("SOPClassUID", "UI", None),
    Field("InstanceNumber", "IS", None),
    Field("Rows", "US", None),
    Field("Columns", "US", None),
    Field("NumberOfFrames", "IS", None),
)

LEVEL_FIELDS = {
    QueryLevel.PATIENT: PATIENT_FIELDS,
    QueryLevel.STUDY: PATIENT_FIELDS + STUDY_FIELDS,
    QueryLevel.SERIES: PATIENT_FIELDS + STUDY_FIELDS + SERIES_FIELDS,
    QueryLevel.IMAGE: PATIENT_FIELDS + STUDY_FIELDS + SERIES_FIELDS + IMAGE_FIELDS,
}
# What a response at each level carries (its own attributes plus the unique
# keys above it); a study response also carries the patient's (Study Root).
RETURN_KEYWORDS = {
    QueryLevel.PATIENT: [f.keyword for f in PATIENT_FIELDS],
    QueryLevel.STUDY: [f.keyword for f in PATIENT_FIELDS if not f.keyword.startswith("NumberOf")]
    + [f.keyword for f in STUDY_FIELDS],
    QueryLevel.SERIES: ["StudyInstanceUID"] + [f.keyword for f in SERIES_FIELDS],
    QueryLevel.IMAGE: ["StudyInstanceUID", "SeriesInstanceUID"] + [f.keyword for f in IMAGE_FIELDS],
}
SEQUENCE_ITEM_VRS = {"CodeValue": "SH", "CodingSchemeDesignator": "SH", "CodeMeaning": "LO"}
#: Keys matched through the UIDs' decoded paths, never as text.
UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


@functools.cache
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


def put(ds: Dataset, keyword: str, value: Any) -> None:
    """Set an attribute without pydicom's per-value validation: the catalog's
    values are already valid, and validation dominates the cost of a result."""
    tag, vr = _tag_vr(keyword)
    ds[tag] = DataElement(tag, vr, value, validation_mode=config.IGNORE)


def element_text(ds: Dataset, keyword: str) -> str | None:
    """An attribute's value as DICOM text (multiple values joined by a backslash), None if absent."""
    if keyword not in ds:
        return None
    element = ds[keyword]
    if element.value is None:
        return ""
    if element.VM > 1:
        return "\\".join(str(v) for v in element.value)
    return str(element.value)


def vr_of(keyword: str) -> str:
    """The VR of a keyword from the data dictionary; InvalidQuery for an unknown keyword."""
    try:
        tag = tag_for_keyword(keyword)
        if tag is not None:
            return dictionary_VR(tag)
    except (KeyError, TypeError):
        pass
    raise InvalidQuery(f"unknown attribute {keyword!r}")


#: One match before it is a Dataset or DICOM JSON: keyword -> value (text, an integer, a list
#: of texts for several values, or a list of item Attributes for a sequence). Answers are
#: built as these plain dicts because a pydicom element costs tens of microseconds to make.
Attributes = dict[str, Any]


def attribute_text(attributes: Attributes, keyword: str) -> str | None:
    """An attribute's value as DICOM text (several values joined by a backslash), None if absent."""
    if keyword not in attributes:
        return None
    value = attributes[keyword]
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value)


def post_match(attributes: Attributes, keys: Mapping[str, Any], fuzzy: bool) -> bool:
    """Whether a match's attributes meet every non-sequence key (values matched in Python, PS3.4 C.2.2.2)."""
    for keyword, value in keys.items():
        if isinstance(value, list):
            continue
        if not matching.match_value(keyword, vr_of(keyword), value, attribute_text(attributes, keyword), fuzzy=fuzzy):
            return False
    return True


def to_dataset(attributes: Attributes) -> Dataset:
    """The pydicom Dataset of a match (C-FIND identifiers, the Python API)."""
    ds = Dataset()
    for keyword, value in attributes.items():
        if _tag_vr(keyword)[1] == "SQ":
            value = [to_dataset(item) for item in value]
        put(ds, keyword, value)
    return ds
