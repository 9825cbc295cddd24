"""Segmentation Storage of the target lesions (PS3.3 A.51 Segmentation IOD).

The geometry stage's label map is the ground truth (DESIGN §2.5): each
target lesion becomes one segment of a BINARY :class:`highdicom.seg.Segmentation`
that references the CT series it was drawn on, shares its Frame of
Reference and carries the lesion's Tracking ID / Tracking UID, stable across
the subject's visits so that a viewer can follow a lesion over time.

Segment Description macro (PS3.3 C.8.20.4 / Table 10-23) per lesion:

* Segmented Property Category: (49755003, SCT, "Morphologically Abnormal
  Structure") from CID 7150 "Segmentation Property Categories";
* Segmented Property Type: (372087000, SCT, "Neoplasm, Primary") from
  CID 7159 "Morphologically Abnormal Structure Segmentation Types";
* Anatomic Region: (39607008, SCT, "Lung") with laterality from CID 244 as an
  Anatomic Region Modifier;
* Segment Algorithm Type AUTOMATIC, algorithm "SynthPACS geometry stage".
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from ..archive.uids import UIDFactory
from ..archive.universe import SeriesRecord, StudyRecord
from . import common

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
ALGORITHM_NAME = "SynthPACS geometry stage"
#: CID 7162 has no family for procedural shape models; morphological operations is the closest.
ALGORITHM_FAMILY = codes.cid7162.MorphologicalOperations
#: Label value of lesion j (0-based position in ``lesions``) in the geometry stage's label map.
LESION_LABEL_BASE = 100
CONTENT_LABEL = "TARGET_LESIONS"

SEGMENTED_PROPERTY_CATEGORY = codes.cid7150.MorphologicallyAbnormalStructure
SEGMENTED_PROPERTY_TYPE = codes.cid7159.NeoplasmPrimary
ANATOMIC_REGION = codes.SCT.Lung
LATERALITY = {"right": codes.cid244.Right, "left": codes.cid244.Left}

#: Recommended Display CIELab Value per segment (PS3.3 C.10.7.1.1), as CIE L*a*b*:
#: red, yellow, cyan, magenta, green, orange.
SEGMENT_COLORS = (
    (53.2, 80.1, 67.2),
    (97.1, -21.6, 94.5),
    (91.1, -48.1, -14.1),
    (60.3, 98.2, -60.8),
    (87.7, -86.2, 83.2),
    (74.9, 23.9, 78.9),
)


def _lesion_label(lesion: dict, index: int) -> int:
    return int(lesion.get("label", LESION_LABEL_BASE + index))


def _check_lesions(lesions: object, study: StudyRecord, uids: UIDFactory) -> list[dict]:
    checked = common.check_target_lesions("lesions", lesions, study, uids)
    if len(checked) > len(SEGMENT_COLORS):
        raise ValueError(f'Argument "lesions" may describe at most {len(SEGMENT_COLORS)} lesions.')
    for j, lesion in enumerate(checked):
        label = _lesion_label(lesion, j)
        if not 1 <= label <= 255:
            raise ValueError(f'"lesions[{j}]" label value {label} does not fit a uint8 label map.')
    labels = [_lesion_label(lesion, j) for j, lesion in enumerate(checked)]
    if len(set(labels)) != len(labels):
        raise ValueError('Argument "lesions" gives two lesions the same label value.')
    return checked


def check_ct_datasets(ct_datasets: object, study: StudyRecord) -> list[Dataset]:
    """Refuse an empty or inconsistent list of CT instances of ``study``.

    Raises
    ------
    TypeError
        When ``ct_datasets`` is not a list of pydicom Datasets.
    ValueError
        When it is empty, mixes series, belongs to another study, or the
        instances are not CT Image Storage with the attributes needed.
    """
    if not isinstance(ct_datasets, (list, tuple)):
        raise TypeError(f'Argument "ct_datasets" must be a list of Datasets, not {type(ct_datasets).__name__}.')
    if len(ct_datasets) == 0:
        raise ValueError('Argument "ct_datasets" must hold at least one CT instance.')
    for i, ds in enumerate(ct_datasets):
        if not isinstance(ds, Dataset):
            raise TypeError(f'"ct_datasets[{i}]" must be a pydicom Dataset, not {type(ds).__name__}.')
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Rows", "Columns"):
            if keyword not in ds:
                raise ValueError(f'"ct_datasets[{i}]" lacks {keyword}.')
        if ds.SOPClassUID != CTImageStorage:
            raise ValueError(f'"ct_datasets[{i}]" is not a CT Image Storage instance.')
        if ds.StudyInstanceUID != study.study_instance_uid:
            raise ValueError(f'"ct_datasets[{i}]" belongs to another study than argument "study".')
    if len({ds.SeriesInstanceUID for ds in ct_datasets}) != 1:
        raise ValueError('Argument "ct_datasets" mixes instances of several series.')
    if len({(ds.Rows, ds.Columns) for ds in ct_datasets}) != 1:
        raise ValueError('Argument "ct_datasets" mixes image sizes.')
    return list(ct_datasets)


def _check_labels(labels: object, ct_datasets: list[Dataset]) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise TypeError(f'Argument "labels" must be a numpy.ndarray, not {type(labels).__name__}.')
    if labels.dtype != np.uint8:
        raise TypeError(f'Argument "labels" must have dtype uint8, not {labels.dtype}.')
    expected = (len(ct_datasets), int(ct_datasets[0].Rows), int(ct_datasets[0].Columns))
    if labels.shape != expected:
        raise ValueError(
            f'Argument "labels" has shape {labels.shape}; the CT series needs (slices, rows, columns) = {expected}.'
        )
    if (expected[1] * expected[2]) % 8:
        raise ValueError(
            "Rows x Columns of the CT images must be divisible by 8 so that BINARY SEG frames are byte-aligned."
        )
    return labels


def segment_description(number: int, lesion: dict) -> hd.seg.SegmentDescription:
    """The Segment Description (PS3.3 C.8.20.2, Segment Sequence item) of one target lesion."""
    laterality = LATERALITY[lesion["lung"]]
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=f"Target lesion {number}",
        segmented_property_category=SEGMENTED_PROPERTY_CATEGORY,
        segmented_property_type=SEGMENTED_PROPERTY_TYPE,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=ALGORITHM_NAME,
            family=ALGORITHM_FAMILY,
            version=common.software_version(),
            source=common.MANUFACTURER,
        ),
        tracking_uid=lesion["tracking_uid"],
        tracking_id=lesion["tracking_id"],
        anatomic_regions=[ANATOMIC_REGION],
        display_color=hd.color.CIELabColor(*SEGMENT_COLORS[number - 1]),
    )
    # Laterality as an Anatomic Region Modifier (PS3.3 Table 10-7), CID 244.
    modifier = Dataset()
    modifier.CodeValue = laterality.value
    modifier.CodingSchemeDesignator = laterality.scheme_designator
    modifier.CodeMeaning = laterality.meaning
    description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [modifier]
    lobe = lesion.get("lobe")
    if lobe:
        description.SegmentDescription = f"{lobe}"[:64]
    return description


def build_segmentation(
    study: StudyRecord,
    series: SeriesRecord,
    uids: UIDFactory,
    ct_datasets: Sequence[Dataset],
    labels: np.ndarray,
    lesions: list[dict],
) -> Dataset:
    """Build the SEG instance of a study's target lesions.

    A BINARY Segmentation (PS3.3 A.51, C.8.20) with one segment per target
    lesion, frames only where a segment is present (empty frames omitted),
    referencing the CT series (Referenced Series Sequence, per-frame Derivation
    Image / Source Image) and sharing its Frame of Reference.

    A lesion without voxels at this visit (RECIST complete response) keeps its
    segment, with no frames. If no lesion has voxels at all, the instance
    holds one empty frame (segment 1 on the first CT slice), because a
    Segmentation needs at least one frame.

    Parameters
    ----------
    study: synthpacs.archive.universe.StudyRecord
        The study (visit).
    series: synthpacs.archive.universe.SeriesRecord
        The study's segmentation series (plan kind ``"segmentation"``).
    uids: synthpacs.archive.uids.UIDFactory
        The universe's UID factory (SOP Instance UID with instance number 1,
        Dimension Organization UID).
    ct_datasets: Sequence[pydicom.Dataset]
        The CT instances in slice order (as returned by
        :func:`synthpacs.imaging.ct.build_ct_series`); their metadata is
        enough, Pixel Data is not read.
    labels: numpy.ndarray
        uint8 label map of shape (slices, rows, columns): lesion j (0-based
        position in ``lesions``) has label value 100 + j unless its dict
        gives ``"label"``.
    lesions: list[dict]
        One dict per target lesion: ``tracking_id`` (e.g. "Lesion 1"),
        ``tracking_uid`` (from ``uids.tracking_uid``), ``lung`` ("right" or
        "left"), optional ``lobe`` (free text) and ``label``.

    Returns
    -------
    highdicom.seg.Segmentation
        The SEG instance (a pydicom Dataset), Explicit VR Little Endian.

    Raises
    ------
    TypeError
        When an argument has the wrong type or a lesion dict lacks a key.
    ValueError
        When ``series`` is not the study's segmentation series, ``ct_datasets``
        is empty or inconsistent, ``labels`` does not match the CT grid or
        holds labels no lesion describes, or a lesion is invalid.
    """
    common.check_study_series(study, series, "segmentation")
    if series.sop_class_uid != SEGMENTATION_STORAGE:
        raise ValueError('Argument "series" must be a Segmentation Storage series.')
    if not isinstance(uids, UIDFactory):
        raise TypeError(f'Argument "uids" must be a UIDFactory, not {type(uids).__name__}.')
    ct_datasets = check_ct_datasets(ct_datasets, study)
    labels = _check_labels(labels, ct_datasets)
    lesions = _check_lesions(lesions, study, uids)
    lesion_labels = [_lesion_label(lesion, j) for j, lesion in enumerate(lesions)]
    unknown = sorted(set(np.unique(labels).tolist()) - set(lesion_labels) - {0})
    lesion_range = [v for v in unknown if v >= LESION_LABEL_BASE]
    if lesion_range:
        raise ValueError(
            f'Argument "labels" holds lesion label(s) {lesion_range} that no item of "lesions" describes.'
        )

    # Stacked-segments array (slices, rows, columns, segments); labels below
    # LESION_LABEL_BASE (anatomy) are not target lesions and stay out.
    masks = np.stack([labels == value for value in lesion_labels], axis=-1).view(np.uint8)
    source_images, further_source_images = ct_datasets, None
    any_voxels = bool(masks.any())
    if not any_voxels:
        # Nothing to segment at this visit: the first slice's empty frames keep
        # the SEG valid; the other slices are still referenced as sources.
        masks = masks[:1]
        source_images, further_source_images = ct_datasets[:1], ct_datasets[1:] or None

    patient = study.patient
    sop_instance_uid = uids.sop_instance_uid(patient.index, study.visit, series.index, 1)
    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(j + 1, lesion) for j, lesion in enumerate(lesions)],
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=common.MANUFACTURER,
        manufacturer_model_name=common.manufacturer_model_name(patient.cohort.target),
        software_versions=common.software_version(),
        device_serial_number=common.DEVICE_SERIAL_NUMBER,
        content_description=series.series_description[:64],
        content_label=CONTENT_LABEL,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        omit_empty_frames=any_voxels,
        further_source_images=further_source_images,
        series_description=series.series_description,
        institution_name=common.INSTITUTION_NAME,
        content_date=series.series_date,
        content_time=series.series_time,
        series_date=series.series_date,
        series_time=series.series_time,
        specific_character_set=common.SPECIFIC_CHARACTER_SET,
    )
    # highdicom mints the Dimension Organization UID: use the universe's instead.
    dimension_uid = uids.dimension_organization_uid(patient.index, study.visit, series.index)
    for item in seg.DimensionOrganizationSequence:
        item.DimensionOrganizationUID = dimension_uid
    for item in seg.get("DimensionIndexSequence", []):
        item.DimensionOrganizationUID = dimension_uid
    common.finish_highdicom_instance(seg, study, series, patient.cohort.target)
    seg.BodyPartExamined = patient.cohort.body_part
    return seg
