"""Catalog rows -> the pydicom Datasets of C-FIND and QIDO-RS answers.

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

from pydicom import Dataset

from .. import records
from .fields import REFERRING_PHYSICIAN, Variant, put

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

_PATIENT_COUNTS = ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances")


class SyntheticDatasets:
    """Datasets of synthetic rows at each level, as the universe and its plan variants say."""

    def __init__(self, universe: Universe, variants: Mapping[int, Variant]):
        self.universe = universe
        self.variants = variants

    def patient(self, row: sqlite3.Row, extras: Extras = NO_EXTRAS) -> Dataset:
        c = self.universe.cohorts[row["cohort"]]
        ds = Dataset()
        put(ds, "PatientName", row["patient_name"])
        put(ds, "PatientID", row["patient_id"])
        put(ds, "PatientBirthDate", row["birth_date"])
        put(ds, "PatientSex", row["sex"])
        put(ds, "ClinicalTrialSponsorName", c.sponsor)
        put(ds, "ClinicalTrialProtocolID", c.protocol_id)
        put(ds, "ClinicalTrialProtocolName", c.protocol_name)
        put(ds, "ClinicalTrialSiteID", row["site_id"])
        put(ds, "ClinicalTrialSiteName", row["site_name"])
        put(ds, "ClinicalTrialSubjectID", row["subject_id"])
        put(ds, "NumberOfPatientRelatedStudies", row["n_studies"])
        put(ds, "NumberOfPatientRelatedSeries", row["patient_series"])
        put(ds, "NumberOfPatientRelatedInstances", row["patient_instances"])
        return ds

    def study(self, row: sqlite3.Row, extras: Extras = NO_EXTRAS) -> Dataset:
        variant = self.variants[row["variant"]]
        c = variant.cohort
        ds = self.patient(row)
        for keyword in _PATIENT_COUNTS:
            del ds[keyword]
        uid = self.universe.uids.study_instance_uid(row["patient_pk"], row["visit"])
        put(ds, "StudyInstanceUID", uid)
        put(ds, "StudyDate", row["study_date"])
        put(ds, "StudyTime", row["study_time"])
        put(ds, "AccessionNumber", row["accession"])
        put(ds, "StudyID", records.study_id(row["visit"]))
        put(ds, "StudyDescription", c.study_description)
        put(ds, "ReferringPhysicianName", REFERRING_PHYSICIAN)
        n_series, n_instances = variant.n_series, variant.n_instances
        modalities, sop_classes = set(variant.modalities), set(variant.sop_classes)
        more = extras.get(uid)
        if more is not None:
            n_series += more.n_series
            n_instances += more.n_instances
            modalities |= more.modalities
            sop_classes |= more.sop_classes
        put(ds, "ModalitiesInStudy", sorted(modalities))
        put(ds, "SOPClassesInStudy", sorted(sop_classes))
        put(ds, "ClinicalTrialTimePointID", row["time_point_id"])
        put(ds, "ClinicalTrialTimePointDescription", row["time_point_description"])
        put(ds, "PatientAge", row["patient_age"])
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = c.procedure_code
        put(ds, "ProcedureCodeSequence", [code])
        put(ds, "NumberOfStudyRelatedSeries", n_series)
        put(ds, "NumberOfStudyRelatedInstances", n_instances)
        return ds

    def series(self, row: sqlite3.Row, extras: Extras = NO_EXTRAS) -> Dataset:
        c = self.variants[row["variant"]].cohort
        ds = self.study(row, extras)
        put(ds, "SeriesInstanceUID", self.universe.uids.series_instance_uid(row["patient_pk"], row["visit"], row["series_index"]))
        put(ds, "Modality", row["modality"])
        put(ds, "SeriesNumber", row["series_number"])
        put(ds, "SeriesDescription", row["series_description"])
        put(ds, "SeriesDate", row["study_date"])
        put(ds, "SeriesTime", row["study_time"])
        put(ds, "BodyPartExamined", c.body_part)
        put(ds, "ClinicalTrialCoordinatingCenterName", c.coordinating_center)
        put(ds, "NumberOfSeriesRelatedInstances", row["series_instances"])
        return ds

    def instance(self, series: Dataset, row: sqlite3.Row, number: int) -> Dataset:
        """Instance ``number`` (1-based) of the series ``row`` whose dataset is ``series``."""
        ds = Dataset()
        put(ds, "StudyInstanceUID", series.StudyInstanceUID)
        put(ds, "SeriesInstanceUID", series.SeriesInstanceUID)
        put(
            ds,
            "SOPInstanceUID",
            self.universe.uids.sop_instance_uid(row["patient_pk"], row["visit"], row["series_index"], number),
        )
        put(ds, "SOPClassUID", row["sop_class_uid"])
        put(ds, "InstanceNumber", number)
        if row["rows"]:
            put(ds, "Rows", row["rows"])
            put(ds, "Columns", row["columns"])
        if row["frames"]:
            put(ds, "NumberOfFrames", row["frames"])
        for keyword in ("Modality", "SeriesNumber", "PatientID", "PatientName"):
            ds[keyword] = series[keyword]
        return ds


# -- stored objects ---------------------------------------------------------------------


def _put_patient(ds: Dataset, st: Mapping[str, Any]) -> None:
    put(ds, "PatientName", st["patient_name"] or "")
    put(ds, "PatientID", st["patient_id"] or "")
    put(ds, "PatientBirthDate", st["patient_birth_date"] or "")
    put(ds, "PatientSex", st["patient_sex"] or "")


def stored_patient(st: Mapping[str, Any], n_studies: int, n_series: int, n_instances: int) -> Dataset:
    """A stored patient, described by its first stored study ``st``."""
    ds = Dataset()
    _put_patient(ds, st)
    put(ds, "NumberOfPatientRelatedStudies", n_studies)
    put(ds, "NumberOfPatientRelatedSeries", n_series)
    put(ds, "NumberOfPatientRelatedInstances", n_instances)
    return ds


def stored_study(st: Mapping[str, Any], counts: StoredCounts) -> Dataset:
    ds = Dataset()
    _put_patient(ds, st)
    put(ds, "StudyInstanceUID", st["study_instance_uid"])
    put(ds, "StudyDate", st["study_date"] or "")
    put(ds, "StudyTime", st["study_time"] or "")
    put(ds, "AccessionNumber", st["accession_number"] or "")
    put(ds, "StudyID", st["study_id"] or "")
    put(ds, "StudyDescription", st["study_description"] or "")
    put(ds, "ReferringPhysicianName", st["referring_physician_name"] or "")
    put(ds, "ModalitiesInStudy", sorted(counts.modalities))
    put(ds, "SOPClassesInStudy", sorted(counts.sop_classes))
    put(ds, "NumberOfStudyRelatedSeries", counts.n_series)
    put(ds, "NumberOfStudyRelatedInstances", counts.n_instances)
    return ds


def stored_series(se: Mapping[str, Any], study: Dataset, n_instances: int) -> Dataset:
    ds = Dataset()
    ds.update(study)
    put(ds, "SeriesInstanceUID", se["series_instance_uid"])
    put(ds, "Modality", se["modality"] or "")
    put(ds, "SeriesNumber", se["series_number"] or "")
    put(ds, "SeriesDescription", se["series_description"] or "")
    put(ds, "SeriesDate", se["series_date"] or "")
    put(ds, "SeriesTime", se["series_time"] or "")
    put(ds, "BodyPartExamined", se["body_part_examined"] or "")
    put(ds, "NumberOfSeriesRelatedInstances", n_instances)
    return ds


def stored_instance(series: Dataset, inst: Mapping[str, Any]) -> Dataset:
    ds = Dataset()
    ds.update(series)
    put(ds, "SOPInstanceUID", inst["sop_instance_uid"])
    put(ds, "SOPClassUID", inst["sop_class_uid"])
    if inst["instance_number"] not in (None, ""):
        put(ds, "InstanceNumber", inst["instance_number"])
    if inst["rows"]:
        ds.Rows, ds.Columns = inst["rows"], inst["columns"]
    if inst["number_of_frames"] not in (None, ""):
        put(ds, "NumberOfFrames", inst["number_of_frames"])
    return ds
