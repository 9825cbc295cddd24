"""Comprehensive SR measurement reports of the target lesions (PS3.16 TID 1500).

The geometry stage knows every lesion's longest diameter (DESIGN §2.5); the
report carries it the way OHIF and other TID 1500 readers expect:

* root CONTAINER (126000, DCM, "Imaging Measurement Report") (CID 7021),
  language, observation context with a device observer (TID 1004)
  "SynthPACS geometry stage", procedure reported from the cohort
  (e.g. (24627-2, LN, "Chest CT"));
* (126010, DCM, "Imaging Measurements") holding one TID 1501 Measurement
  Group per target lesion: Tracking Identifier (112039) and Tracking Unique
  Identifier (112040), stable across visits; time point context (TID 1502);
  finding (108369006, SCT, "Neoplasm"); finding site lung (lobe) with
  laterality; method RECIST 1.1 (CID 6147); and one TID 300 NUM
  (103339001, SCT, "Long Axis") in mm (UCUM) INFERRED FROM a SCOORD POLYLINE
  of two points, the diameter line, SELECTED FROM the CT image it lies on.
  A lesion that has disappeared (RECIST complete response) is reported with
  0 mm and no SCOORD;
* (C0034375, UMLS, "Qualitative Evaluations") with a TEXT comment giving the
  sum of diameters of the target lesions (TID 1500 has no numeric slot at
  report level).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from ..archive.uids import UIDFactory
from ..archive.universe import SeriesRecord, StudyRecord
from . import common
from .seg import check_ct_datasets

COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
DEVICE_OBSERVER_NAME = "SynthPACS geometry stage"
#: Device Observer UID (TID 1004) of the geometry stage: a constant, UUID-derived (PS3.5 B.2) UID.
DEVICE_OBSERVER_UID = "2.25.36335372488571904852186804596034215777"

MEASUREMENT_NAME = codes.SCT.LongAxis  # (103339001, SCT, "Long Axis"), CID 7470
MEASUREMENT_UNIT = codes.UCUM.Millimeter
FINDING_TYPE = codes.SCT.Neoplasm  # (108369006, SCT, "Neoplasm")
FINDING_CATEGORY = codes.cid7150.MorphologicallyAbnormalStructure
METHOD = codes.cid6147.RECIST1Point1
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = codes.DCM.Comment  # (121106, DCM, "Comment")
LATERALITY = {"right": codes.cid244.Right, "left": codes.cid244.Left}
LOBES = {
    "upper": codes.SCT.UpperLobeOfLung,
    "middle": codes.SCT.MiddleLobeOfRightLung,
    "lower": codes.SCT.LowerLobeOfLung,
}


def _finding_site(measurement: dict, where: str) -> hd.sr.FindingSite:
    """Finding site (TID 1501 row 7): lung or its lobe, with laterality (CID 244)."""
    lung = measurement["lung"]
    lobe = (measurement.get("lobe") or "").lower()
    other = "left" if lung == "right" else "right"
    if other in lobe.split():
        raise ValueError(f'{where}["lobe"] {measurement["lobe"]!r} contradicts "lung" {lung!r}.')
    location = codes.SCT.Lung
    for word, code in LOBES.items():
        if word in lobe.split():
            if word == "middle" and lung != "right":
                raise ValueError(f'{where}: only the right lung has a middle lobe.')
            location = code
            break
    return hd.sr.FindingSite(anatomic_location=location, laterality=LATERALITY[lung])


def _check_measurements(
    measurements: object, study: StudyRecord, uids: UIDFactory, ct_datasets: list[Dataset]
) -> list[dict]:
    measurements = common.check_target_lesions(
        "measurements", measurements, study, uids, required=("diameter_mm", "slice", "points"))
    rows, columns = int(ct_datasets[0].Rows), int(ct_datasets[0].Columns)
    for j, m in enumerate(measurements):
        where = f'"measurements[{j}]"'
        d = m["diameter_mm"]
        if isinstance(d, bool) or not isinstance(d, (int, float, np.integer, np.floating)):
            raise TypeError(f'{where}["diameter_mm"] must be a number, not {type(d).__name__}.')
        if not math.isfinite(float(d)) or float(d) < 0:
            raise ValueError(f'{where}["diameter_mm"] must be a finite number >= 0, got {d!r}.')
        if float(d) == 0:
            if m["slice"] is not None or m["points"] is not None:
                raise ValueError(f'{where} has diameter 0 (lesion gone): "slice" and "points" must be None.')
            continue
        k = m["slice"]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f'{where}["slice"] must be an integer slice index, not {type(k).__name__}.')
        if not 0 <= k < len(ct_datasets):
            raise ValueError(f'{where}["slice"] {k} is outside the {len(ct_datasets)} CT slices.')
        points = m["points"]
        if not isinstance(points, (list, tuple)) or len(points) != 2:
            raise ValueError(f'{where}["points"] must be two (row, column) pairs.')
        for point in points:
            if not isinstance(point, (list, tuple)) or len(point) != 2:
                raise ValueError(f'{where}["points"] must be two (row, column) pairs.')
            r, c = (float(v) for v in point)
            if not (0 <= r <= rows - 1 and 0 <= c <= columns - 1):
                raise ValueError(f'{where}["points"] {point!r} lies outside the {rows}x{columns} image.')
        if tuple(points[0]) == tuple(points[1]):
            raise ValueError(f'{where}["points"] are one point; a diameter needs two distinct end points.')
        _finding_site(m, where)
    return list(measurements)


def graphic_data(points: Sequence[Sequence[float]]) -> np.ndarray:
    """SCOORD Graphic Data (column, row) of voxel-index points (row, column).

    PS3.3 C.18.6.1.1: image coordinates put (0, 0) at the top left corner of
    the top left pixel, so the centre of voxel (r, c) is (c + 0.5, r + 0.5).
    """
    return np.array([[float(c) + 0.5, float(r) + 0.5] for r, c in points], dtype=np.float32)


def _measurement_group(
    m: dict, ct_datasets: list[Dataset], time_point: hd.sr.TimePointContext
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One TID 1501 Measurement Group for one target lesion."""
    referenced = None
    if float(m["diameter_mm"]) > 0:
        ct = ct_datasets[int(m["slice"])]
        source = hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=ct.SOPClassUID,
            referenced_sop_instance_uid=ct.SOPInstanceUID,
        )
        referenced = [
            hd.sr.CoordinatesForMeasurement(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=graphic_data(m["points"]),
                source_image=source,
            )
        ]
    measurement = hd.sr.Measurement(
        name=MEASUREMENT_NAME,
        value=round(float(m["diameter_mm"]), 3),
        unit=MEASUREMENT_UNIT,
        referenced_coordinates=referenced,
    )
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=m["tracking_uid"], identifier=m["tracking_id"]),
        time_point_context=time_point,
        finding_type=FINDING_TYPE,
        finding_category=FINDING_CATEGORY,
        method=METHOD,
        finding_sites=[_finding_site(m, "measurements")],
        measurements=[measurement],
    )


def _qualitative_evaluations(total_mm: float) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: Qualitative Evaluations, here the RECIST sum of diameters as text."""
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=COMMENT,
                value=f"Sum of diameters of target lesions (RECIST 1.1): {total_mm:.1f} mm",
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        ]
    )
    return container


def build_measurement_report(
    study: StudyRecord,
    series: SeriesRecord,
    uids: UIDFactory,
    ct_datasets: list[Dataset],
    measurements: list[dict],
) -> Dataset:
    """Build the Comprehensive SR (PS3.3 A.35.3) TID 1500 report of the target lesions.

    Parameters
    ----------
    study: synthpacs.archive.universe.StudyRecord
        The study (visit).
    series: synthpacs.archive.universe.SeriesRecord
        The study's measurements series (plan kind ``"measurements"``).
    uids: synthpacs.archive.uids.UIDFactory
        The universe's UID factory (SOP Instance UID, instance number 1).
    ct_datasets: list[pydicom.Dataset]
        The CT instances in slice order; all are listed as evidence in the
        Current Requested Procedure Evidence Sequence. Metadata suffices.
    measurements: list[dict]
        One dict per target lesion, in lesion order: ``tracking_id``,
        ``tracking_uid`` (``uids.tracking_uid(patient, lesion)``),
        ``diameter_mm`` (>= 0), ``slice`` (CT slice index, or None when the
        diameter is 0), ``points`` (two voxel-index (row, column) end points
        of the diameter on that slice, or None), ``lung`` ("right"/"left"),
        optional ``lobe`` (e.g. "right upper lobe").

    Returns
    -------
    highdicom.sr.ComprehensiveSR
        The SR instance (a pydicom Dataset), Explicit VR Little Endian,
        COMPLETE and FINAL, UNVERIFIED.

    Raises
    ------
    TypeError
        When an argument has the wrong type or a measurement lacks a key.
    ValueError
        When ``series`` is not the study's measurements series, ``ct_datasets``
        is empty or inconsistent, the measurements do not match the study's
        target lesions, or a measurement is invalid (negative diameter, slice
        out of range, end points outside the image, tracking UID not minted
        for this patient).
    """
    common.check_study_series(study, series, "measurements")
    if series.sop_class_uid != COMPREHENSIVE_SR_STORAGE:
        raise ValueError('Argument "series" must be a Comprehensive SR Storage series.')
    if not isinstance(uids, UIDFactory):
        raise TypeError(f'Argument "uids" must be a UIDFactory, not {type(uids).__name__}.')
    ct_datasets = check_ct_datasets(ct_datasets, study)
    measurements = _check_measurements(measurements, study, uids, ct_datasets)

    patient = study.patient
    cohort = patient.cohort
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID,
            name=DEVICE_OBSERVER_NAME,
            manufacturer_name=common.MANUFACTURER,
            model_name=common.manufacturer_model_name(cohort.target),
        ),
    )
    time_point = hd.sr.TimePointContext(
        time_point=study.time_point_id,
        time_point_type=codes.cid6146.Baseline if study.visit == 0 else codes.cid6146.Posttreatment,
        time_point_order=study.visit + 1,
        protocol_time_point_identifier=study.time_point_id,
    )
    value, scheme, meaning = cohort.procedure_code
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=Code(value, scheme, meaning),
        imaging_measurements=[_measurement_group(m, ct_datasets, time_point) for m in measurements],
        title=codes.cid7021.ImagingMeasurementReport,
    )
    total = sum(float(m["diameter_mm"]) for m in measurements)
    report[0].ContentSequence.append(_qualitative_evaluations(total))

    sop_instance_uid = uids.sop_instance_uid(patient.index, study.visit, series.index, 1)
    sr = hd.sr.ComprehensiveSR(
        evidence=ct_datasets,
        performed_procedure_codes=[Code(value, scheme, meaning)],
        content=report[0],
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=common.MANUFACTURER,
        is_complete=True,
        is_final=True,
        is_verified=False,
        institution_name=common.INSTITUTION_NAME,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        series_description=series.series_description,
        content_date=series.series_date,
        content_time=series.series_time,
        series_date=series.series_date,
        series_time=series.series_time,
        specific_character_set=common.SPECIFIC_CHARACTER_SET,
    )
    common.finish_highdicom_instance(sr, study, series, cohort.target)
    return sr
