"""Segmentation Storage of ground-truth label maps (PS3.3 A.51 Segmentation IOD).

The geometry stage's label map is the ground truth (DESIGN §2.5): each
segment of a :class:`~synthpacs.imaging.spec.SegmentationSpec` becomes one
segment of a BINARY :class:`highdicom.seg.Segmentation` that references the
source series it was drawn on, shares its Frame of Reference and carries the
finding's Tracking ID / Tracking UID, stable across the subject's visits so
that a viewer can follow a lesion over time.

Segment Description macro (PS3.3 C.8.20.4 / Table 10-23) per segment: the
spec's Segmented Property Category (CID 7150) and Type (e.g. CID 7159), its
Anatomic Region with laterality (CID 244) as an Anatomic Region Modifier,
Segment Algorithm Type AUTOMATIC and the spec's algorithm name.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

from . import common
from .spec import Segment, SegmentationSpec

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: CID 7162 has no family for procedural shape models; morphological operations is the closest.
ALGORITHM_FAMILY = codes.cid7162.MorphologicalOperations

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


def check_source_datasets(ct_datasets: object, study_instance_uid: str) -> list[Dataset]:
    """Refuse an empty or inconsistent list of source instances of a study.

    Raises
    ------
    TypeError
        When ``ct_datasets`` is not a list of pydicom Datasets.
    ValueError
        When it is empty, mixes series, belongs to another study, or the
        instances are not CT Image Storage with the attributes needed.
    """
    if not isinstance(ct_datasets, (list, tuple)):
        raise TypeError(f"The source must be a list of Datasets, not {type(ct_datasets).__name__}.")
    if len(ct_datasets) == 0:
        raise ValueError("The source series must hold at least one instance.")
    for i, ds in enumerate(ct_datasets):
        if not isinstance(ds, Dataset):
            raise TypeError(f"Source instance {i} must be a pydicom Dataset, not {type(ds).__name__}.")
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Rows", "Columns"):
            if keyword not in ds:
                raise ValueError(f"Source instance {i} lacks {keyword}.")
        if ds.StudyInstanceUID != study_instance_uid:
            raise ValueError(f"Source instance {i} belongs to another study than the spec.")
    if len({ds.SeriesInstanceUID for ds in ct_datasets}) != 1:
        raise ValueError("The source mixes instances of several series.")
    if len({(ds.Rows, ds.Columns) for ds in ct_datasets}) != 1:
        raise ValueError("The source mixes image sizes.")
    return list(ct_datasets)


def _check_labels(labels: object, ct_datasets: list[Dataset]) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise TypeError(f'Argument "labels" must be a numpy.ndarray, not {type(labels).__name__}.')
    if labels.dtype != np.uint8:
        raise TypeError(f'Argument "labels" must have dtype uint8, not {labels.dtype}.')
    expected = (len(ct_datasets), int(ct_datasets[0].Rows), int(ct_datasets[0].Columns))
    if labels.shape != expected:
        raise ValueError(
            f'Argument "labels" has shape {labels.shape}; the source series needs (frames, rows, columns) = {expected}.'
        )
    if (expected[1] * expected[2]) % 8:
        raise ValueError("Rows x Columns of the source images must be divisible by 8 so that BINARY SEG frames are byte-aligned.")
    return labels


def segment_description(number: int, segment: Segment, algorithm_name: str) -> hd.seg.SegmentDescription:
    """The Segment Description (PS3.3 C.8.20.2, Segment Sequence item) of one segment."""
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=segment.label,
        segmented_property_category=segment.category,
        segmented_property_type=segment.property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm_name,
            family=ALGORITHM_FAMILY,
            version=common.software_version(),
            source=common.MANUFACTURER,
        ),
        tracking_uid=segment.tracking_uid,
        tracking_id=segment.tracking_id,
        anatomic_regions=[segment.anatomic_region],
        display_color=hd.color.CIELabColor(*SEGMENT_COLORS[(number - 1) % len(SEGMENT_COLORS)]),
    )
    if segment.laterality is not None:
        # Laterality as an Anatomic Region Modifier (PS3.3 Table 10-7), CID 244.
        modifier = Dataset()
        modifier.CodeValue = segment.laterality.value
        modifier.CodingSchemeDesignator = segment.laterality.scheme_designator
        modifier.CodeMeaning = segment.laterality.meaning
        description.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [modifier]
    if segment.description:
        description.SegmentDescription = segment.description[:64]
    return description


def build_segmentation(spec: SegmentationSpec, source: Sequence[Dataset]) -> Dataset:
    """Build the SEG instance of a spec's label map.

    A BINARY Segmentation (PS3.3 A.51, C.8.20) with one segment per item of
    ``spec.segments``, frames only where a segment is present (empty frames
    omitted), referencing the source series (Referenced Series Sequence,
    per-frame Derivation Image / Source Image) and sharing its Frame of
    Reference.

    A segment without voxels at this visit (RECIST complete response) keeps
    its place, with no frames. If no segment has voxels at all, the instance
    holds one empty frame (segment 1 on the first source frame), because a
    Segmentation needs at least one frame.

    Parameters
    ----------
    spec: synthpacs.imaging.spec.SegmentationSpec
        Contexts, the uint8 label map (frames, rows, columns) on the source
        grid and the segments (label value, tracking identity, codes).
    source: Sequence[pydicom.Dataset]
        The source series' instances in frame order; their metadata is
        enough, Pixel Data is not read.

    Returns
    -------
    highdicom.seg.Segmentation
        The SEG instance (a pydicom Dataset), Explicit VR Little Endian.

    Raises
    ------
    TypeError
        When an argument has the wrong type.
    ValueError
        When ``source`` is empty or inconsistent, ``labels`` does not match
        its grid or holds lesion-range labels no segment describes.
    """
    if not isinstance(spec, SegmentationSpec):
        raise TypeError(f'Argument "spec" must be a SegmentationSpec, not {type(spec).__name__}.')
    study, series = spec.study, spec.series
    common.check_contexts(study, series)
    if series.sop_class_uid != SEGMENTATION_STORAGE:
        raise ValueError('Argument "series" must be a Segmentation Storage series.')
    source = check_source_datasets(source, study.study_instance_uid)
    if spec.source_instances is not None:
        if any(not 0 <= i < len(source) for i in spec.source_instances):
            raise ValueError(f'"source_instances" {spec.source_instances} lie outside the {len(source)} source instances.')
        source = [source[i] for i in spec.source_instances]
    labels = _check_labels(spec.labels, source)
    if len(spec.segments) > 255:
        raise ValueError("A BINARY SEG of a uint8 label map holds at most 255 segments.")
    segment_values = [s.label_value for s in spec.segments]
    lesion_range = min(segment_values)
    unknown = sorted(set(np.unique(labels).tolist()) - set(segment_values) - {0})
    stray = [v for v in unknown if v >= lesion_range]
    if stray:
        raise ValueError(f'Argument "labels" holds label(s) {stray} in the segments\' range that no segment describes.')

    # A label map of segment numbers (frames, rows, columns); labels outside the
    # segments (anatomy) stay out. Segments of one label map cannot overlap, and
    # highdicom checks a label map with one max() where a stack of one mask per
    # segment costs a sum over the segments (0.8 s for a 117-slice series).
    masks = np.zeros(labels.shape, np.uint8)
    for number, value in enumerate(segment_values, start=1):
        masks[labels == value] = number
    source_images, further_source_images = list(source), None
    any_voxels = bool(masks.any())
    if not any_voxels:
        # Nothing to segment at this visit: the first frame's empty masks keep
        # the SEG valid; the other frames are still referenced as sources.
        masks = masks[:1]
        source_images, further_source_images = source_images[:1], source_images[1:] or None

    seg = hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment_description(j + 1, s, spec.algorithm_name) for j, s in enumerate(spec.segments)],
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number,
        sop_instance_uid=series.sop_instance_uids[spec.instance_index],
        instance_number=spec.instance_index + 1,
        manufacturer=common.MANUFACTURER,
        manufacturer_model_name=common.manufacturer_model_name(study.target),
        software_versions=common.software_version(),
        device_serial_number=common.DEVICE_SERIAL_NUMBER,
        content_description=series.series_description[:64],
        content_label=spec.content_label,
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
    if series.dimension_organization_uid:
        for item in seg.DimensionOrganizationSequence:
            item.DimensionOrganizationUID = series.dimension_organization_uid
        for item in seg.get("DimensionIndexSequence", []):
            item.DimensionOrganizationUID = series.dimension_organization_uid
    common.finish_highdicom_instance(seg, study, series, study.target)
    seg.BodyPartExamined = study.body_part_examined
    if "FrameOfReferenceUID" not in seg:
        # General Image (C.7.6.1): Patient Orientation is Type 2C without an image plane; take the source's.
        seg.PatientOrientation = source[0].get("PatientOrientation", "")
    return seg
