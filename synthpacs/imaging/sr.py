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
* a finding may carry coded TID 1501 Qualitative Evaluations and further NUMs
  (a mass's clock position, its distance from the nipple), and a report may
  add groups of findings that are described, not measured (a calcification
  cluster's type and distribution, a breast's assessment category);
* (C0034375, UMLS, "Qualitative Evaluations") with a TEXT comment giving the
  sum of diameters of the target lesions (TID 1500 has no numeric slot at
  report level).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian

from . import common
from .seg import check_source_datasets
from .spec import CodedEvaluation, LinearMeasurement, MeasurementReportSpec, QualitativeFinding

COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"
#: Device Observer UID (TID 1004) of the geometry stage: a constant, UUID-derived (PS3.5 B.2) UID.
DEVICE_OBSERVER_UID = "2.25.36335372488571904852186804596034215777"
MEASUREMENT_UNIT = codes.UCUM.Millimeter
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
COMMENT = codes.DCM.Comment  # (121106, DCM, "Comment")


def _check_measurements(spec: MeasurementReportSpec, source: list[Dataset]) -> None:
    rows, columns = int(source[0].Rows), int(source[0].Columns)
    for j, f in enumerate(spec.findings):
        if not isinstance(f, QualitativeFinding):
            raise TypeError(f'"findings[{j}]" must be a QualitativeFinding, not {type(f).__name__}.')
    for j, m in enumerate(spec.measurements):
        if not isinstance(m, LinearMeasurement):
            raise TypeError(f'"measurements[{j}]" must be a LinearMeasurement, not {type(m).__name__}.')
        if m.frame is None or m.points is None:
            continue
        where = f'"measurements[{j}]"'
        if not 0 <= m.frame < len(source):
            raise ValueError(f"{where} frame {m.frame} is outside the {len(source)} source frames.")
        for point in m.points:
            r, c = (float(v) for v in point)
            if not (0 <= r <= rows - 1 and 0 <= c <= columns - 1):
                raise ValueError(f"{where} point {point!r} lies outside the {rows}x{columns} image.")


def graphic_data(points: Sequence[Sequence[float]]) -> np.ndarray:
    """SCOORD Graphic Data (column, row) of voxel-index points (row, column).

    PS3.3 C.18.6.1.1: image coordinates put (0, 0) at the top left corner of
    the top left pixel, so the centre of voxel (r, c) is (c + 0.5, r + 0.5).
    """
    return np.array([[float(c) + 0.5, float(r) + 0.5] for r, c in points], dtype=np.float32)


def _measurement_group(
    spec: MeasurementReportSpec, m: LinearMeasurement, source: list[Dataset], time_point: hd.sr.TimePointContext
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One TID 1501 Measurement Group for one finding."""
    referenced = None
    if m.frame is not None and m.points is not None:
        image = source[int(m.frame)]
        region = hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=image.SOPClassUID,
            referenced_sop_instance_uid=image.SOPInstanceUID,
        )
        referenced = [
            hd.sr.CoordinatesForMeasurement(
                graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                graphic_data=graphic_data(m.points),
                source_image=region,
            )
        ]
    measurement = hd.sr.Measurement(
        name=spec.measurement_name or codes.SCT.LongAxis,
        value=round(float(m.value_mm), 3),
        unit=MEASUREMENT_UNIT,
        referenced_coordinates=referenced,
    )
    others = [hd.sr.Measurement(name=q.name, value=round(float(q.value), 3), unit=q.unit) for q in m.quantities]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=m.tracking_uid, identifier=m.tracking_id),
        time_point_context=time_point,
        finding_type=m.finding_type or spec.finding_type,
        finding_category=spec.finding_category,
        method=spec.method,
        finding_sites=[hd.sr.FindingSite(anatomic_location=m.finding_site, laterality=m.laterality)],
        measurements=[measurement, *others],
        qualitative_evaluations=_evaluations(m.evaluations),
    )


def _evaluations(evaluations: Sequence[CodedEvaluation]) -> list[hd.sr.QualitativeEvaluation] | None:
    return [hd.sr.QualitativeEvaluation(name=e.name, value=e.value) for e in evaluations] or None


def _finding_group(
    spec: MeasurementReportSpec, f: QualitativeFinding, time_point: hd.sr.TimePointContext
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """One TID 1501 group for a finding described by coded evaluations only."""
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=f.tracking_uid, identifier=f.tracking_id),
        time_point_context=time_point,
        finding_type=f.finding_type,
        finding_category=spec.finding_category,
        finding_sites=[hd.sr.FindingSite(anatomic_location=f.finding_site, laterality=f.laterality)],
        qualitative_evaluations=_evaluations(f.evaluations),
    )


def _qualitative_evaluations(text: str) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12: Qualitative Evaluations, here a summary as text (e.g. the RECIST sum of diameters)."""
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=COMMENT,
                value=text,
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        ]
    )
    return container


def build_measurement_report(spec: MeasurementReportSpec, source: Sequence[Dataset]) -> Dataset:
    """Build the Comprehensive SR (PS3.3 A.35.3) TID 1500 report of a spec's measurements.

    Parameters
    ----------
    spec: synthpacs.imaging.spec.MeasurementReportSpec
        Contexts, the measurements (one TID 1501 group each, with tracking
        identity, finding site and laterality, value and the SCOORD end
        points on one source frame) and the report's concept codes.
    source: Sequence[pydicom.Dataset]
        The source series' instances in frame order; all are listed as
        evidence in the Current Requested Procedure Evidence Sequence.
        Metadata suffices.

    Returns
    -------
    highdicom.sr.ComprehensiveSR
        The SR instance (a pydicom Dataset), Explicit VR Little Endian,
        COMPLETE and FINAL, UNVERIFIED.

    Raises
    ------
    TypeError
        When an argument has the wrong type.
    ValueError
        When ``source`` is empty or inconsistent, or a measurement points
        outside it.
    """
    if not isinstance(spec, MeasurementReportSpec):
        raise TypeError(f'Argument "spec" must be a MeasurementReportSpec, not {type(spec).__name__}.')
    study, series = spec.study, spec.series
    common.check_contexts(study, series)
    if series.sop_class_uid != COMPREHENSIVE_SR_STORAGE:
        raise ValueError('Argument "series" must be a Comprehensive SR Storage series.')
    source = check_source_datasets(source, study.study_instance_uid)
    _check_measurements(spec, source)

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_OBSERVER_UID,
            name=spec.observer_name,
            manufacturer_name=common.MANUFACTURER,
            model_name=common.manufacturer_model_name(study.target),
        ),
    )
    time_point_id = study.trial.time_point_id if study.trial else study.study_id
    time_point = hd.sr.TimePointContext(
        time_point=time_point_id,
        time_point_type=codes.cid6146.Baseline if study.visit == 0 else codes.cid6146.Posttreatment,
        time_point_order=study.visit + 1,
        protocol_time_point_identifier=time_point_id,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=study.procedure_code,
        imaging_measurements=[_measurement_group(spec, m, source, time_point) for m in spec.measurements]
        + [_finding_group(spec, f, time_point) for f in spec.findings],
        title=codes.cid7021.ImagingMeasurementReport,
    )
    if spec.summary:
        report[0].ContentSequence.append(_qualitative_evaluations(spec.summary))

    sr = hd.sr.ComprehensiveSR(
        evidence=source,
        performed_procedure_codes=[study.procedure_code],
        content=report[0],
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number,
        sop_instance_uid=series.sop_instance_uids[0],
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
    common.finish_highdicom_instance(sr, study, series, study.target)
    return sr
