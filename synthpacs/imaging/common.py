"""Modules shared by every SynthPACS IOD, filled from a spec's study and series contexts.

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

Nothing here mints a UID: identity comes in through the contexts, whose UIDs
the universe minted (DESIGN §2.1).
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from .. import identity
from .spec import SeriesContext, StudyContext, _valid_uid

SPECIFIC_CHARACTER_SET = identity.SPECIFIC_CHARACTER_SET
MANUFACTURER = identity.MANUFACTURER
INSTITUTION_NAME = identity.INSTITUTION_NAME
REFERRING_PHYSICIAN_NAME = identity.REFERRING_PHYSICIAN_NAME
DEVICE_SERIAL_NUMBER = identity.DEVICE_SERIAL_NUMBER
IMPLEMENTATION_CLASS_UID = UID(identity.IMPLEMENTATION_CLASS_UID)
manufacturer_model_name = identity.manufacturer_model_name
#: Patient Position (0018,5100) of every synthetic patient: head first, supine.
PATIENT_POSITION = "HFS"


def software_version() -> str:
    """The SynthPACS version written to Software Versions (0018,1020)."""
    return identity.SOFTWARE_VERSION


def implementation_version_name() -> str:
    """Implementation Version Name (0002,0013): SH, at most 16 characters."""
    return identity.IMPLEMENTATION_VERSION_NAME


def check_contexts(study: object, series: object) -> None:
    """Refuse arguments that are not the spec's context types (TypeError naming the argument)."""
    if not isinstance(study, StudyContext):
        raise TypeError(f'Argument "study" must be a StudyContext, not {type(study).__name__}.')
    if not isinstance(series, SeriesContext):
        raise TypeError(f'Argument "series" must be a SeriesContext, not {type(series).__name__}.')


def add_patient_study_modules(ds: Dataset, study: StudyContext) -> Dataset:
    """Add the Patient, General Study and Patient Study modules.

    PS3.3 C.7.1.1 Patient (with Patient Identity Removed = YES and a
    De-identification Method, since no real person stands behind the record),
    C.7.2.1 General Study and C.7.2.2 Patient Study.

    Parameters
    ----------
    ds: pydicom.Dataset
        Dataset to fill in place (a highdicom SOP instance too).
    study: synthpacs.imaging.spec.StudyContext
        The study (visit) and its patient.

    Returns
    -------
    pydicom.Dataset
        ``ds``, for chaining.
    """
    if not isinstance(study, StudyContext):
        raise TypeError(f'Argument "study" must be a StudyContext, not {type(study).__name__}.')
    # Patient (C.7.1.1)
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = identity.DEIDENTIFICATION_METHOD
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = REFERRING_PHYSICIAN_NAME
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description
    code = Dataset()
    code.CodeValue = study.procedure_code.value
    code.CodingSchemeDesignator = study.procedure_code.scheme_designator
    code.CodeMeaning = study.procedure_code.meaning
    ds.ProcedureCodeSequence = [code]
    # Patient Study (C.7.2.2)
    ds.PatientAge = study.patient_age
    return ds


def add_clinical_trial_modules(ds: Dataset, study: StudyContext, series: SeriesContext) -> Dataset:
    """Add the Clinical Trial Subject, Clinical Trial Study and Clinical Trial Series modules.

    PS3.3 C.7.1.3, C.7.2.3 and C.7.3.2, when the study belongs to a trial.
    Usable on a highdicom SOP instance after construction (highdicom does not
    write these modules itself).

    Returns
    -------
    pydicom.Dataset
        ``ds``, for chaining.
    """
    check_contexts(study, series)
    trial = study.trial
    if trial is None:
        return ds
    # Clinical Trial Subject (C.7.1.3)
    ds.ClinicalTrialSponsorName = trial.sponsor_name
    ds.ClinicalTrialProtocolID = trial.protocol_id
    ds.ClinicalTrialProtocolName = trial.protocol_name
    ds.ClinicalTrialSiteID = trial.site_id
    ds.ClinicalTrialSiteName = trial.site_name
    ds.ClinicalTrialSubjectID = trial.subject_id
    # Clinical Trial Study (C.7.2.3)
    ds.ClinicalTrialTimePointID = trial.time_point_id
    ds.ClinicalTrialTimePointDescription = trial.time_point_description
    # Clinical Trial Series (C.7.3.2)
    ds.ClinicalTrialCoordinatingCenterName = trial.coordinating_center_name
    ds.ClinicalTrialSeriesID = f"{series.series_number}"
    ds.ClinicalTrialSeriesDescription = series.series_description
    return ds


def add_general_series_module(ds: Dataset, study: StudyContext, series: SeriesContext) -> Dataset:
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
    ds.BodyPartExamined = study.body_part_examined
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


def add_sop_common_module(ds: Dataset, study: StudyContext, sop_class_uid: str, sop_instance_uid: str) -> Dataset:
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


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str = ExplicitVRLittleEndian) -> FileMetaDataset:
    """File Meta Information (PS3.10 7.1) for a Part 10 file of one instance."""
    for name, uid in (("sop_class_uid", sop_class_uid), ("sop_instance_uid", sop_instance_uid)):
        if not _valid_uid(str(uid)):
            raise ValueError(f'Argument "{name}" is not a valid UID: {uid!r}.')
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax_uid)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = implementation_version_name()
    return meta


def finish_highdicom_instance(ds: Dataset, study: StudyContext, series: SeriesContext, target: str) -> Dataset:
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
