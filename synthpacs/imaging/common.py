"""Modules shared by every SynthPACS IOD, filled from the universe's records.

Each function adds the attributes of one or more PS3.3 modules to a
:class:`pydicom.Dataset` (or a highdicom SOP instance after construction):

* Patient (PS3.3 C.7.1.1) with Patient Identity Removed and De-identification
  Method, General Study (C.7.2.1) and Patient Study (C.7.2.2):
  :func:`add_patient_study_modules`;
* Clinical Trial Subject (C.7.1.3), Clinical Trial Study (C.7.2.3) and
  Clinical Trial Series (C.7.3.2): :func:`add_clinical_trial_modules`;
* General Series (C.7.3.1): :func:`add_general_series_module`;
* General Equipment (C.7.5.1): :func:`add_general_equipment_module`;
* SOP Common (C.12.1), Synthetic Data (0008,001C) included:
  :func:`add_sop_common_module`;
* File Meta Information (PS3.10 7.1): :func:`file_meta`.

Nothing here mints a UID: identity comes from the records and the
universe's :class:`~synthpacs.archive.uids.UIDFactory` (DESIGN §2.1).
"""

from __future__ import annotations

import importlib

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, UID

from ..archive.universe import SeriesRecord, StudyRecord
from ..archive.uids import UIDFactory, UIDKind, is_valid_uid

#: Specific Character Set (0008,0005): UTF-8 (PS3.3 C.12.1.1.2).
SPECIFIC_CHARACTER_SET = "ISO_IR 192"
MANUFACTURER = "SynthPACS"
INSTITUTION_NAME = "SynthPACS Synthetic Hospital"
REFERRING_PHYSICIAN_NAME = "SYNTHETIC^REFERRER"
DEIDENTIFICATION_METHOD = "Synthetic data; no real patient"
DEVICE_SERIAL_NUMBER = "SYNTHPACS-0001"
#: A constant, UUID-derived (PS3.5 B.2) Implementation Class UID of SynthPACS.
IMPLEMENTATION_CLASS_UID = UID("2.25.266115354629604364084772624832938842989")
#: Patient Position (0018,5100) of every synthetic CT: head first, supine.
PATIENT_POSITION = "HFS"


def software_version() -> str:
    """The SynthPACS version written to Software Versions (0018,1020)."""
    package = importlib.import_module("synthpacs")
    return str(getattr(package, "__version__", "0.1.0"))


def implementation_version_name() -> str:
    """Implementation Version Name (0002,0013): SH, at most 16 characters."""
    return ("SYNTHPACS_" + software_version().replace(".", ""))[:16]


def manufacturer_model_name(target: str) -> str:
    """Manufacturer's Model Name (0008,1090) for a generator target (e.g. ``chest/lung-ct``)."""
    return f"{MANUFACTURER} {target}"[:64]


def check_study_series(study: StudyRecord, series: SeriesRecord, kind: str) -> None:
    """Refuse a study/series pair that does not belong together.

    Raises
    ------
    TypeError
        When ``study`` or ``series`` are not the universe's records.
    ValueError
        When ``series`` is not a series of ``study`` or not of plan kind ``kind``.
    """
    if not isinstance(study, StudyRecord):
        raise TypeError(f'Argument "study" must be a StudyRecord, not {type(study).__name__}.')
    if not isinstance(series, SeriesRecord):
        raise TypeError(f'Argument "series" must be a SeriesRecord, not {type(series).__name__}.')
    if series not in study.series:
        raise ValueError('Argument "series" is not one of the series of argument "study".')
    if series.plan.kind != kind:
        raise ValueError(f'Argument "series" must be a {kind!r} series, not a {series.plan.kind!r} series.')


def add_patient_study_modules(ds: Dataset, study: StudyRecord) -> Dataset:
    """Add the Patient, General Study and Patient Study modules.

    PS3.3 C.7.1.1 Patient (with Patient Identity Removed = YES and a
    De-identification Method, since no real person stands behind the record),
    C.7.2.1 General Study and C.7.2.2 Patient Study.

    Parameters
    ----------
    ds: pydicom.Dataset
        Dataset to fill in place (a highdicom SOP instance too).
    study: synthpacs.archive.universe.StudyRecord
        The study (visit) and, through it, the patient.

    Returns
    -------
    pydicom.Dataset
        ``ds``, for chaining.
    """
    if not isinstance(study, StudyRecord):
        raise TypeError(f'Argument "study" must be a StudyRecord, not {type(study).__name__}.')
    patient = study.patient
    cohort = patient.cohort
    # Patient (C.7.1.1)
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = REFERRING_PHYSICIAN_NAME
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description
    value, scheme, meaning = cohort.procedure_code
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = scheme
    code.CodeMeaning = meaning
    ds.ProcedureCodeSequence = [code]
    # Patient Study (C.7.2.2)
    ds.PatientAge = study.patient_age
    return ds


def add_clinical_trial_modules(ds: Dataset, study: StudyRecord, series: SeriesRecord) -> Dataset:
    """Add the Clinical Trial Subject, Clinical Trial Study and Clinical Trial Series modules.

    PS3.3 C.7.1.3, C.7.2.3 and C.7.3.2. Usable on a highdicom SOP instance
    after construction (highdicom does not write these modules itself).

    Parameters
    ----------
    ds: pydicom.Dataset
        Dataset to fill in place.
    study: synthpacs.archive.universe.StudyRecord
        The study; its patient is the trial subject and its visit the time point.
    series: synthpacs.archive.universe.SeriesRecord
        The series (Clinical Trial Series ID and Description).

    Returns
    -------
    pydicom.Dataset
        ``ds``, for chaining.
    """
    if not isinstance(study, StudyRecord):
        raise TypeError(f'Argument "study" must be a StudyRecord, not {type(study).__name__}.')
    if not isinstance(series, SeriesRecord):
        raise TypeError(f'Argument "series" must be a SeriesRecord, not {type(series).__name__}.')
    patient = study.patient
    cohort = patient.cohort
    # Clinical Trial Subject (C.7.1.3)
    ds.ClinicalTrialSponsorName = cohort.sponsor
    ds.ClinicalTrialProtocolID = cohort.protocol_id
    ds.ClinicalTrialProtocolName = cohort.protocol_name
    ds.ClinicalTrialSiteID = patient.site_id
    ds.ClinicalTrialSiteName = patient.site_name
    ds.ClinicalTrialSubjectID = patient.subject_id
    # Clinical Trial Study (C.7.2.3)
    ds.ClinicalTrialTimePointID = study.time_point_id
    ds.ClinicalTrialTimePointDescription = study.time_point_description
    # Clinical Trial Series (C.7.3.2)
    ds.ClinicalTrialCoordinatingCenterName = cohort.coordinating_center
    ds.ClinicalTrialSeriesID = f"{series.series_number}"
    ds.ClinicalTrialSeriesDescription = series.series_description
    return ds


def add_general_series_module(ds: Dataset, study: StudyRecord, series: SeriesRecord) -> Dataset:
    """Add the General Series module (PS3.3 C.7.3.1) of an image series.

    Patient Position (0018,5100) is written because it is Type 2C for CT
    (head first supine for every synthetic patient).
    """
    ds.Modality = series.modality
    ds.SeriesInstanceUID = series.series_instance_uid
    ds.SeriesNumber = series.series_number
    ds.SeriesDate = series.series_date
    ds.SeriesTime = series.series_time
    ds.SeriesDescription = series.series_description
    ds.BodyPartExamined = study.patient.cohort.body_part
    ds.PatientPosition = PATIENT_POSITION
    return ds


def add_general_equipment_module(ds: Dataset, target: str) -> Dataset:
    """Add the General Equipment module (PS3.3 C.7.5.1): SynthPACS is the "device"."""
    ds.Manufacturer = MANUFACTURER
    ds.InstitutionName = INSTITUTION_NAME
    ds.ManufacturerModelName = manufacturer_model_name(target)
    ds.DeviceSerialNumber = DEVICE_SERIAL_NUMBER
    ds.SoftwareVersions = software_version()
    return ds


def add_sop_common_module(ds: Dataset, study: StudyRecord, sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """Add the SOP Common module (PS3.3 C.12.1), Synthetic Data = YES included.

    Instance Creation Date/Time are the study's date and time, not the wall
    clock, so that a rebuild gives the same bytes (DESIGN §2.1).
    """
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = study.study_date
    ds.InstanceCreationTime = study.study_time
    mark_synthetic(ds)
    return ds


def mark_synthetic(ds: Dataset) -> Dataset:
    """Synthetic Data (0008,001C) = YES (PS3.3 C.12.1, DESIGN §2.4)."""
    ds.SyntheticData = "YES"
    return ds


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str = ExplicitVRLittleEndian
) -> FileMetaDataset:
    """File Meta Information (PS3.10 7.1) for a Part 10 file of one instance."""
    for name, uid in (("sop_class_uid", sop_class_uid), ("sop_instance_uid", sop_instance_uid)):
        if not is_valid_uid(str(uid)):
            raise ValueError(f'Argument "{name}" is not a valid UID: {uid!r}.')
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = implementation_version_name()
    return meta


def finish_highdicom_instance(ds: Dataset, study: StudyRecord, series: SeriesRecord, target: str) -> Dataset:
    """Make a highdicom SOP instance ours and deterministic after construction.

    highdicom stamps Instance Creation Date/Time with the wall clock and its
    own implementation identity; replace them, add the modules highdicom does
    not write (clinical trial, de-identification, equipment details) and mark
    the instance synthetic.
    """
    add_patient_study_modules(ds, study)
    add_clinical_trial_modules(ds, study, series)
    add_general_equipment_module(ds, target)
    ds.SeriesDescription = series.series_description
    ds.SpecificCharacterSet = SPECIFIC_CHARACTER_SET
    ds.InstanceCreationDate = study.study_date
    ds.InstanceCreationTime = study.study_time
    # highdicom lists itself as contributing equipment, stamped with the wall clock.
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = series.series_date + series.series_time
    mark_synthetic(ds)
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID)
    return ds


def check_target_lesions(name: str, items: object, study: StudyRecord, uids: UIDFactory,
                         required: tuple[str, ...] = ()) -> list[dict]:
    """Refuse a list of per-lesion dicts that does not describe this study's target lesions.

    Shared by the SEG and SR builders: one dict per target lesion, each with a
    non-empty ``tracking_id``, a ``tracking_uid`` minted by ``uids`` for this
    patient (TID 1500 Tracking Unique Identifier, stable across visits), a
    ``lung`` of "right" or "left", and the builder's ``required`` keys.

    Raises
    ------
    TypeError
        ``items`` is not a list of dicts, or a dict lacks a key.
    ValueError
        The count differs from the study's target lesions, or a value is invalid or repeated.
    """
    if not isinstance(items, (list, tuple)):
        raise TypeError(f'Argument "{name}" must be a list of dicts, not {type(items).__name__}.')
    if len(items) == 0:
        raise ValueError(f'Argument "{name}" must describe at least one target lesion.')
    if len(items) != len(study.lesion_diameters_mm):
        raise ValueError(
            f'Argument "{name}" describes {len(items)} lesions but the study has '
            f"{len(study.lesion_diameters_mm)} target lesions."
        )
    seen: set[str] = set()
    for j, item in enumerate(items):
        where = f'"{name}[{j}]"'
        if not isinstance(item, dict):
            raise TypeError(f"{where} must be a dict, not {type(item).__name__}.")
        for key in ("tracking_id", "tracking_uid", "lung", *required):
            if key not in item:
                raise TypeError(f'{where} lacks the key "{key}".')
        if not isinstance(item["tracking_id"], str) or not item["tracking_id"].strip():
            raise ValueError(f'{where}["tracking_id"] must be a non-empty string.')
        uid = item["tracking_uid"]
        if not isinstance(uid, str) or not is_valid_uid(uid):
            raise ValueError(f'{where}["tracking_uid"] is not a valid UID: {uid!r}.')
        path = uids.decode(uid)
        if path is None or path.kind != UIDKind.LESION_TRACKING or path.patient != study.patient.index:
            raise ValueError(f'{where}["tracking_uid"] is not a lesion tracking UID of this patient from the UIDFactory.')
        if uid in seen:
            raise ValueError(f'{where}["tracking_uid"] repeats another lesion\'s tracking UID.')
        seen.add(uid)
        if item["lung"] not in ("right", "left"):
            raise ValueError(f'{where}["lung"] must be "right" or "left", not {item["lung"]!r}.')
    return list(items)
