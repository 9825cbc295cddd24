"""Catalog rows -> the attributes of C-FIND and QIDO-RS answers (:data:`~.fields.Attributes`).

Synthetic rows are joined ``sqlite3.Row`` s read by column name (see
:mod:`.schema`); values constant per plan variant (descriptions, counts,
modalities) come from the :class:`~.fields.Variant`. Stored rows are plain
dicts of the ``stored_*`` tables; their counts are computed by
:mod:`.stored` and passed in.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import records
from .fields import REFERRING_PHYSICIAN, Attributes, Variant

if TYPE_CHECKING:  # the universe imports this package's schema: no import at run time
    from ..universe import Universe


@dataclass(frozen=True)
class StoredCounts:
    """What stored objects add to one study: series, instances, modalities, SOP classes."""

    n_series: int
    n_instances: int
    modalities: frozenset[str]
    sop_classes: frozenset[str]


#: Stored series and instances inside synthetic studies, by Study Instance UID.
Extras = Mapping[str, StoredCounts]
NO_EXTRAS: Extras = {}


class SyntheticAttributes:
    """The attributes of synthetic rows at each level, as the universe and its plan variants say."""

    def __init__(self, universe: Universe, variants: Mapping[int, Variant]):
        self.universe = universe
        self.variants = variants

    def patient(self, row: sqlite3.Row, extras: Extras = NO_EXTRAS) -> Attributes:
        return {
            **self._patient(row),
            "NumberOfPatientRelatedStudies": row["n_studies"],
            "NumberOfPatientRelatedSeries": row["patient_series"],
            "NumberOfPatientRelatedInstances": row["patient_instances"],
        }

    def _patient(self, row: sqlite3.Row) -> Attributes:
        c = self.universe.cohorts[row["cohort"]]
        return {
            "PatientName": row["patient_name"],
            "PatientID": row["patient_id"],
            "PatientBirthDate": row["birth_date"],
            "PatientSex": row["sex"],
            "ClinicalTrialSponsorName": c.sponsor,
            "ClinicalTrialProtocolID": c.protocol_id,
            "ClinicalTrialProtocolName": c.protocol_name,
            "ClinicalTrialSiteID": row["site_id"],
            "ClinicalTrialSiteName": row["site_name"],
            "ClinicalTrialSubjectID": row["subject_id"],
        }

    def study(self, row: sqlite3.Row, extras: Extras = NO_EXTRAS) -> Attributes:
        variant = self.variants[row["variant"]]
        exam = variant.exam
        uid = self.universe.uids.study_instance_uid(row["patient_pk"], records.study_number(row["visit"], exam.index))
        n_series, n_instances = variant.n_series, variant.n_instances
        modalities, sop_classes = variant.modalities, variant.sop_classes
        more = extras.get(uid)
        if more is not None:
            n_series += more.n_series
            n_instances += more.n_instances
            modalities = tuple(set(modalities) | more.modalities)
            sop_classes = tuple(set(sop_classes) | more.sop_classes)
        value, scheme, meaning = exam.procedure_code
        return {
            **self._patient(row),
            "StudyInstanceUID": uid,
            "StudyDate": row["study_date"],
            "StudyTime": row["study_time"],
            "AccessionNumber": row["accession"],
            "StudyID": records.study_id(row["visit"]),
            "StudyDescription": exam.study_description,
            "ReferringPhysicianName": REFERRING_PHYSICIAN,
            "ModalitiesInStudy": sorted(modalities),
            "SOPClassesInStudy": sorted(sop_classes),
            "ClinicalTrialTimePointID": row["time_point_id"],
            "ClinicalTrialTimePointDescription": row["time_point_description"],
            "PatientAge": row["patient_age"],
            "ProcedureCodeSequence": [{"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning}],
            "NumberOfStudyRelatedSeries": n_series,
            "NumberOfStudyRelatedInstances": n_instances,
        }

    def series(self, row: sqlite3.Row, extras: Extras = NO_EXTRAS) -> Attributes:
        variant = self.variants[row["variant"]]
        c, number = variant.cohort, records.study_number(row["visit"], variant.exam.index)
        return {
            **self.study(row, extras),
            "SeriesInstanceUID": self.universe.uids.series_instance_uid(row["patient_pk"], number, row["series_index"]),
            "Modality": row["modality"],
            "SeriesNumber": row["series_number"],
            "SeriesDescription": row["series_description"],
            "SeriesDate": row["study_date"],
            "SeriesTime": row["study_time"],
            "BodyPartExamined": variant.exam.body_part,
            "ClinicalTrialCoordinatingCenterName": c.coordinating_center,
            "NumberOfSeriesRelatedInstances": row["series_instances"],
        }

    def instance(self, series: Attributes, row: sqlite3.Row, number: int) -> Attributes:
        """Instance ``number`` (1-based) of the series ``row`` whose attributes are ``series``."""
        out: Attributes = {
            "StudyInstanceUID": series["StudyInstanceUID"],
            "SeriesInstanceUID": series["SeriesInstanceUID"],
            "SOPInstanceUID": self.universe.uids.sop_instance_uid(
                row["patient_pk"],
                records.study_number(row["visit"], self.variants[row["variant"]].exam.index),
                row["series_index"],
                number,
            ),
            "SOPClassUID": row["sop_class_uid"],
            "InstanceNumber": number,
        }
        if row["rows"]:
            out["Rows"], out["Columns"] = row["rows"], row["columns"]
        if row["frames"]:
            out["NumberOfFrames"] = row["frames"]
        for keyword in ("Modality", "SeriesNumber", "PatientID", "PatientName"):
            out[keyword] = series[keyword]
        return out


# -- stored objects ---------------------------------------------------------------------


def _patient(st: Mapping[str, Any]) -> Attributes:
    return {
        "PatientName": st["patient_name"] or "",
        "PatientID": st["patient_id"] or "",
        "PatientBirthDate": st["patient_birth_date"] or "",
        "PatientSex": st["patient_sex"] or "",
    }


def stored_patient(st: Mapping[str, Any], n_studies: int, n_series: int, n_instances: int) -> Attributes:
    """A stored patient, described by its first stored study ``st``."""
    return {
        **_patient(st),
        "NumberOfPatientRelatedStudies": n_studies,
        "NumberOfPatientRelatedSeries": n_series,
        "NumberOfPatientRelatedInstances": n_instances,
    }


def stored_study(st: Mapping[str, Any], counts: StoredCounts) -> Attributes:
    return {
        **_patient(st),
        "StudyInstanceUID": st["study_instance_uid"],
        "StudyDate": st["study_date"] or "",
        "StudyTime": st["study_time"] or "",
        "AccessionNumber": st["accession_number"] or "",
        "StudyID": st["study_id"] or "",
        "StudyDescription": st["study_description"] or "",
        "ReferringPhysicianName": st["referring_physician_name"] or "",
        "ModalitiesInStudy": sorted(counts.modalities),
        "SOPClassesInStudy": sorted(counts.sop_classes),
        "NumberOfStudyRelatedSeries": counts.n_series,
        "NumberOfStudyRelatedInstances": counts.n_instances,
    }


def stored_series(se: Mapping[str, Any], study: Attributes, n_instances: int) -> Attributes:
    return {
        **study,
        "SeriesInstanceUID": se["series_instance_uid"],
        "Modality": se["modality"] or "",
        "SeriesNumber": se["series_number"] or "",
        "SeriesDescription": se["series_description"] or "",
        "SeriesDate": se["series_date"] or "",
        "SeriesTime": se["series_time"] or "",
        "BodyPartExamined": se["body_part_examined"] or "",
        "NumberOfSeriesRelatedInstances": n_instances,
    }


def stored_instance(series: Attributes, inst: Mapping[str, Any]) -> Attributes:
    out = {**series, "SOPInstanceUID": inst["sop_instance_uid"], "SOPClassUID": inst["sop_class_uid"]}
    if inst["instance_number"] not in (None, ""):
        out["InstanceNumber"] = inst["instance_number"]
    if inst["rows"]:
        out["Rows"], out["Columns"] = inst["rows"], inst["columns"]
    if inst["number_of_frames"] not in (None, ""):
        out["NumberOfFrames"] = inst["number_of_frames"]
    return out
