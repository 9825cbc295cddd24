"""synthpacs.imaging: CT, SEG and SR builders and renditions.

Everything is built on a tiny stand-in grid (64 x 64 pixels x 8 slices)
with a synthetic HU/label volume made here, so the tests are fast and do not
depend on the geometry stage. Files are checked with dciodvfy (DESIGN §2.3).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from synthpacs.archive.cohorts import load_cohorts
from synthpacs.archive.uids import is_valid_uid
from synthpacs.archive.universe import Universe
from synthpacs.imaging import (
    add_clinical_trial_modules,
    add_patient_study_modules,
    build_ct_series,
    build_measurement_report,
    build_segmentation,
    encode_image,
    render_frame,
    WindowCenterWidthExplanationValues,
)
from synthpacs.imaging import common
from synthpacs.imaging.sr import DEVICE_OBSERVER_UID

from dicom_validation import dciodvfy_errors

ROOT = Path(__file__).resolve().parent.parent
PATIENT, VISIT = 3, 0
ROWS = COLUMNS = 64
SLICES = 8
SPACING_MM = 0.7
SLICE_MM = 2.5
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.33"


@dataclasses.dataclass(frozen=True)
class TinyGrid:
    """Stand-in for the geometry stage's grid: columns along +x, rows along +y, slice k at z = -k * spacing."""

    rows: int = ROWS
    columns: int = COLUMNS
    n_slices: int = SLICES
    pixel_spacing_mm: float = SPACING_MM
    slice_spacing_mm: float = SLICE_MM

    def position_mm(self, k: int, r: int, c: int) -> tuple[float, float, float]:
        x0 = -(self.columns - 1) / 2 * self.pixel_spacing_mm
        y0 = -(self.rows - 1) / 2 * self.pixel_spacing_mm
        return (x0 + c * self.pixel_spacing_mm, y0 + r * self.pixel_spacing_mm, -k * self.slice_spacing_mm)


def _tiny_study(universe: Universe, n_slices: int):
    """The real study record with its image series resized to the stand-in grid."""
    study = universe.study(PATIENT, VISIT)
    ct, seg, sr = study.series
    ct = dataclasses.replace(ct, n_instances=n_slices)
    study = dataclasses.replace(study, series=(ct, seg, sr))
    return study, ct, seg, sr


def _volume(grid: TinyGrid) -> tuple[np.ndarray, np.ndarray]:
    """A chest-like HU volume and its lesion label map (lesion j has label 100 + j)."""
    k, r, c = np.mgrid[0 : grid.n_slices, 0 : grid.rows, 0 : grid.columns]
    hu = np.full(k.shape, -1000.0)
    body = ((r - 32) / 28) ** 2 + ((c - 32) / 30) ** 2 <= 1
    hu[body] = 40.0
    right_lung = ((r - 30) / 16) ** 2 + ((c - 18) / 9) ** 2 <= 1  # low columns: patient right (-x)
    left_lung = ((r - 30) / 16) ** 2 + ((c - 46) / 9) ** 2 <= 1
    hu[right_lung | left_lung] = -850.0
    labels = np.zeros(k.shape, np.uint8)
    lesion_1 = ((k - 3) / 1.6) ** 2 + ((r - 26) / 5) ** 2 + ((c - 18) / 4) ** 2 <= 1
    lesion_2 = ((k - 5) / 1.2) ** 2 + ((r - 34) / 3) ** 2 + ((c - 46) / 3) ** 2 <= 1
    labels[lesion_1], labels[lesion_2] = 100, 101
    hu[labels > 0] = 35.0
    return hu, labels


def _lesions(universe: Universe) -> list[dict]:
    return [
        {"tracking_id": "Lesion 1", "tracking_uid": universe.uids.tracking_uid(PATIENT, 0), "lung": "right",
         "lobe": "right upper lobe"},
        {"tracking_id": "Lesion 2", "tracking_uid": universe.uids.tracking_uid(PATIENT, 1), "lung": "left",
         "lobe": "left lower lobe"},
    ]


def _measurements(universe: Universe, second_gone: bool = False) -> list[dict]:
    lesions = _lesions(universe)
    first = {**lesions[0], "diameter_mm": 7.0, "slice": 3, "points": [(26, 14), (26, 22)]}
    if second_gone:
        second = {**lesions[1], "diameter_mm": 0.0, "slice": None, "points": None}
    else:
        second = {**lesions[1], "diameter_mm": 4.2, "slice": 5, "points": [(31, 46), (37, 46)]}
    return [first, second]


def _to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _write(tmp_path: Path, name: str, ds: Dataset) -> Path:
    path = tmp_path / name
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def universe() -> Universe:
    return Universe(seed=1, n_patients=50, cohorts=load_cohorts(ROOT / "config" / "cohorts"))


@pytest.fixture(scope="module")
def built(universe):
    """CT, SEG and SR of the tiny study, read back from Part 10 bytes."""
    grid = TinyGrid()
    study, ct_series, seg_series, sr_series = _tiny_study(universe, grid.n_slices)
    hu, labels = _volume(grid)
    ct = build_ct_series(study, ct_series, universe.uids, hu, grid)
    seg = build_segmentation(study, seg_series, universe.uids, ct, labels, _lesions(universe))
    sr = build_measurement_report(study, sr_series, universe.uids, ct, _measurements(universe))
    return {
        "study": study, "series": (ct_series, seg_series, sr_series), "grid": grid, "hu": hu, "labels": labels,
        "ct": [pydicom.dcmread(io.BytesIO(_to_bytes(ds))) for ds in ct],
        "ct_built": ct,
        "seg": pydicom.dcmread(io.BytesIO(_to_bytes(seg))),
        "sr": pydicom.dcmread(io.BytesIO(_to_bytes(sr))),
    }


# -- dciodvfy ------------------------------------------------------------------------------------


def test_ct_passes_dciodvfy(built, tmp_path):
    for k in (0, SLICES - 1):
        path = _write(tmp_path, f"ct{k}.dcm", built["ct_built"][k])
        assert dciodvfy_errors(path) == []


def test_512_ct_slice_passes_dciodvfy(universe, tmp_path):
    grid = TinyGrid(rows=512, columns=512, n_slices=1)
    study, ct_series, _, _ = _tiny_study(universe, 1)
    hu = np.linspace(-1100, 3200, 512 * 512).reshape(1, 512, 512)  # out-of-range values are clipped
    (ds,) = build_ct_series(study, ct_series, universe.uids, hu, grid)
    assert (ds.Rows, ds.Columns) == (512, 512)
    assert dciodvfy_errors(_write(tmp_path, "ct512.dcm", ds)) == []


def test_seg_passes_dciodvfy(built, tmp_path):
    assert dciodvfy_errors(_write(tmp_path, "seg.dcm", built["seg"])) == []


def test_sr_passes_dciodvfy(built, tmp_path):
    assert dciodvfy_errors(_write(tmp_path, "sr.dcm", built["sr"])) == []


# -- shared modules, UIDs, determinism -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ct", "seg", "sr"])
def test_synthetic_and_clinical_trial_attributes(built, kind):
    ds = built[kind][0] if kind == "ct" else built[kind]
    study = built["study"]
    patient = study.patient
    assert ds.SyntheticData == "YES"
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.PatientIdentityRemoved == "YES"
    assert ds.DeidentificationMethod == "Synthetic data; no real patient"
    assert ds.PatientID == patient.patient_id and str(ds.PatientName) == patient.patient_name
    assert ds.StudyInstanceUID == study.study_instance_uid
    assert ds.AccessionNumber == study.accession_number
    assert ds.ClinicalTrialSponsorName == patient.cohort.sponsor
    assert ds.ClinicalTrialProtocolID == patient.cohort.protocol_id
    assert ds.ClinicalTrialSiteID == patient.site_id
    assert ds.ClinicalTrialSubjectID == patient.subject_id
    assert ds.ClinicalTrialTimePointID == study.time_point_id
    assert ds.ClinicalTrialCoordinatingCenterName == patient.cohort.coordinating_center
    assert ds.Manufacturer == "SynthPACS"
    assert ds.ManufacturerModelName == "SynthPACS chest/lung-ct"
    assert ds.SoftwareVersions == common.software_version()
    assert ds.InstitutionName == "SynthPACS Synthetic Hospital"
    assert ds.ReferringPhysicianName == "SYNTHETIC^REFERRER"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def _all_uids(ds: Dataset) -> list[str]:
    found = []

    def visit(dataset, element):
        if element.VR == "UI" and element.value:
            values = element.value if element.VM > 1 else [element.value]
            found.extend(str(v) for v in values)

    ds.walk(visit)
    ds.file_meta.walk(visit)
    return found


@pytest.mark.parametrize("kind", ["ct", "seg", "sr"])
def test_every_uid_is_valid_and_from_the_factory(built, universe, kind):
    constants = {str(common.IMPLEMENTATION_CLASS_UID), DEVICE_OBSERVER_UID}
    for ds in built[kind] if kind == "ct" else [built[kind]]:
        for uid in _all_uids(ds):
            assert is_valid_uid(uid), uid
            if uid.startswith("1.2.840.10008.") or uid in constants:
                continue  # standard SOP class / transfer syntax / coding UIDs, SynthPACS constants
            assert universe.uids.decode(uid) is not None, f"{kind}: UID {uid} was not minted by the UIDFactory"


def test_sop_instance_uids_follow_the_universe(built, universe):
    study = built["study"]
    ct_series, seg_series, sr_series = built["series"]
    p = study.patient.index
    assert [ds.SOPInstanceUID for ds in built["ct"]] == [
        universe.uids.sop_instance_uid(p, VISIT, ct_series.index, k + 1) for k in range(SLICES)
    ]
    assert built["seg"].SOPInstanceUID == universe.uids.sop_instance_uid(p, VISIT, seg_series.index, 1)
    assert built["sr"].SOPInstanceUID == universe.uids.sop_instance_uid(p, VISIT, sr_series.index, 1)
    assert built["seg"].SeriesInstanceUID == seg_series.series_instance_uid
    assert built["sr"].SeriesInstanceUID == sr_series.series_instance_uid
    assert built["seg"].InstanceNumber == built["sr"].InstanceNumber == 1


def test_building_twice_gives_identical_bytes(built, universe):
    study, grid = built["study"], built["grid"]
    ct_series, seg_series, sr_series = built["series"]
    ct_again = build_ct_series(study, ct_series, universe.uids, built["hu"], grid)
    assert [_to_bytes(ds) for ds in ct_again] == [_to_bytes(ds) for ds in built["ct_built"]]
    seg = [build_segmentation(study, seg_series, universe.uids, ct_again, built["labels"], _lesions(universe))
           for _ in range(2)]
    assert _to_bytes(seg[0]) == _to_bytes(seg[1])
    sr = [build_measurement_report(study, sr_series, universe.uids, ct_again, _measurements(universe))
          for _ in range(2)]
    assert _to_bytes(sr[0]) == _to_bytes(sr[1])


def test_common_modules_fill_a_plain_dataset(built):
    study = built["study"]
    ds = add_clinical_trial_modules(add_patient_study_modules(Dataset(), study), study, built["series"][0])
    assert ds.PatientAge == study.patient_age
    assert ds.ClinicalTrialTimePointDescription == study.time_point_description
    assert ds.ProcedureCodeSequence[0].CodeValue == study.patient.cohort.procedure_code[0]


# -- CT ---------------------------------------------------------------------------------------------


def test_ct_geometry_pixels_and_windows(built):
    grid, hu = built["grid"], built["hu"]
    for k, ds in enumerate(built["ct"]):
        assert ds.SOPClassUID == CTImageStorage
        assert ds.InstanceNumber == k + 1
        assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(grid.position_mm(k, 0, 0))
        assert float(ds.SliceLocation) == pytest.approx(-k * SLICE_MM)
        hu_back = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu_back, np.clip(np.rint(hu[k]), -1024, 3071))
    ds = built["ct"][0]
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in ds.PixelSpacing] == [SPACING_MM, SPACING_MM]
    assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == SLICE_MM
    assert float(ds.KVP) == 120 and float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert [float(v) for v in ds.WindowCenter] == [-600, 40]
    assert [float(v) for v in ds.WindowWidth] == [1500, 400]
    assert list(ds.WindowCenterWidthExplanation) == ["LUNG", "MEDIASTINUM"]
    assert ds.ContrastBolusAgent == "Iodinated contrast (synthetic)"
    assert ds.PositionReferenceIndicator == ""
    assert len({d.FrameOfReferenceUID for d in built["ct"]}) == 1


# -- SEG --------------------------------------------------------------------------------------------


def test_seg_frames_match_the_lesion_masks(built):
    seg, labels, ct = built["seg"], built["labels"], built["ct"]
    slice_of = {ds.SOPInstanceUID: k for k, ds in enumerate(ct)}
    pixels = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    seen = set()
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        segment = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = slice_of[source]
        np.testing.assert_array_equal(pixels[f], (labels[k] == 99 + segment).astype(np.uint8))
        seen.add((k, segment))
    present = {(k, v - 99) for k in range(SLICES) for v in (100, 101) if (labels[k] == v).any()}
    assert seen == present  # empty frames are omitted


def test_seg_needs_only_ct_metadata(built, universe):
    study, ct = built["study"], built["ct_built"]
    metadata = []
    for ds in ct:
        copy = Dataset(ds)
        copy.file_meta = ds.file_meta
        del copy.PixelData
        metadata.append(copy)
    args = (study, built["series"][1], universe.uids)
    with_pixels = build_segmentation(*args, ct, built["labels"], _lesions(universe))
    without = build_segmentation(*args, metadata, built["labels"], _lesions(universe))
    assert _to_bytes(with_pixels) == _to_bytes(without)


def test_seg_references_the_ct_series(built):
    seg, ct = built["seg"], built["ct"]
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.SegmentationType == "BINARY"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == ct[0].FrameOfReferenceUID
    assert (seg.Rows * seg.Columns) % 8 == 0


def test_seg_segments_carry_tracking_and_codes(built, universe):
    segments = built["seg"].SegmentSequence
    assert len(segments) == 2
    for j, (segment, lesion) in enumerate(zip(segments, _lesions(universe))):
        assert segment.SegmentNumber == j + 1
        assert segment.SegmentLabel == f"Target lesion {j + 1}"
        assert segment.TrackingID == lesion["tracking_id"]
        assert segment.TrackingUID == lesion["tracking_uid"] == universe.uids.tracking_uid(PATIENT, j)
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert segment.AnatomicRegionSequence[0].CodeValue == "39607008"
        laterality = segment.AnatomicRegionSequence[0].AnatomicRegionModifierSequence[0].CodeMeaning
        assert laterality == lesion["lung"].capitalize()
        assert len(segment.RecommendedDisplayCIELabValue) == 3
        assert segment.SegmentAlgorithmName == "SynthPACS geometry stage"


def test_seg_keeps_a_disappeared_lesion_and_survives_an_empty_visit(built, universe, tmp_path):
    study, ct = built["study"], built["ct_built"]
    seg_series = built["series"][1]
    partial = built["labels"].copy()
    partial[partial == 101] = 0  # lesion 2 has gone (complete response)
    seg = build_segmentation(study, seg_series, universe.uids, ct, partial, _lesions(universe))
    assert len(seg.SegmentSequence) == 2
    numbers = {i.SegmentIdentificationSequence[0].ReferencedSegmentNumber for i in seg.PerFrameFunctionalGroupsSequence}
    assert numbers == {1}
    assert dciodvfy_errors(_write(tmp_path, "partial.dcm", seg)) == []
    empty = build_segmentation(study, seg_series, universe.uids, ct, np.zeros_like(partial), _lesions(universe))
    assert int(empty.NumberOfFrames) >= 1 and not empty.pixel_array.any()
    assert len(empty.ReferencedSeriesSequence[0].ReferencedInstanceSequence) == SLICES
    assert dciodvfy_errors(_write(tmp_path, "empty.dcm", empty)) == []


# -- SR ---------------------------------------------------------------------------------------------


def _groups(sr: Dataset) -> list[Dataset]:
    (measurements,) = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"]
    return list(measurements.ContentSequence)


def _child(item: Dataset, code: str) -> Dataset:
    (found,) = [c for c in item.ContentSequence if c.ConceptNameCodeSequence[0].CodeValue == code]
    return found


def test_sr_is_a_tid_1500_report(built, universe):
    sr = built["sr"]
    assert sr.SOPClassUID == COMPREHENSIVE_SR_STORAGE
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.CompletionFlag == "COMPLETE"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == built["ct"][0].SeriesInstanceUID
    assert len(evidence.ReferencedSOPSequence) == SLICES
    procedure = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121058"]
    assert procedure[0].ConceptCodeSequence[0].CodeValue == "24627-2"
    observer = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121013"]
    assert observer[0].TextValue == "SynthPACS geometry stage"


def test_sr_groups_carry_tracking_diameter_and_polyline(built, universe):
    sr, ct = built["sr"], built["ct"]
    groups = _groups(sr)
    assert len(groups) == 2
    for group, m in zip(groups, _measurements(universe)):
        assert group.ConceptNameCodeSequence[0].CodeValue == "125007"
        assert _child(group, "112039").TextValue == m["tracking_id"]
        assert _child(group, "112040").UID == m["tracking_uid"]
        assert _child(group, "121071").ConceptCodeSequence[0].CodeValue == "108369006"
        assert _child(group, "363698007").ConceptCodeSequence[0].CodingSchemeDesignator == "SCT"
        num = _child(group, "103339001")
        assert float(num.MeasuredValueSequence[0].NumericValue) == pytest.approx(m["diameter_mm"])
        assert num.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == "mm"
        (scoord,) = num.ContentSequence
        assert scoord.ValueType == "SCOORD" and scoord.GraphicType == "POLYLINE"
        (r0, c0), (r1, c1) = m["points"]
        assert list(scoord.GraphicData) == pytest.approx([c0 + 0.5, r0 + 0.5, c1 + 0.5, r1 + 0.5])
        image = scoord.ContentSequence[0].ReferencedSOPSequence[0]
        assert image.ReferencedSOPInstanceUID == ct[m["slice"]].SOPInstanceUID
        assert image.ReferencedSOPClassUID == CTImageStorage


def test_sr_reports_a_disappeared_lesion_as_zero_without_region(built, universe, tmp_path):
    study, ct = built["study"], built["ct_built"]
    sr = build_measurement_report(study, built["series"][2], universe.uids, ct, _measurements(universe, True))
    assert dciodvfy_errors(_write(tmp_path, "sr_gone.dcm", sr)) == []
    gone = _child(_groups(sr)[1], "103339001")
    assert float(gone.MeasuredValueSequence[0].NumericValue) == 0
    assert "ContentSequence" not in gone
    (qualitative,) = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "C0034375"]
    assert "7.0 mm" in qualitative.ContentSequence[0].TextValue


# -- renditions -------------------------------------------------------------------------------------


def test_ct_rendition_is_a_jpeg_and_windows_differ(built):
    ds = built["ct"][3]
    lung = render_frame(ds)  # default: the first window, lung
    mediastinum = render_frame(ds, window=(40, 400))
    assert lung.mode == "L" and lung.size == (COLUMNS, ROWS)
    assert not np.array_equal(np.asarray(lung), np.asarray(mediastinum))
    assert np.array_equal(np.asarray(lung), np.asarray(render_frame(ds, window=(-600, 1500))))
    named = render_frame(ds, window=WindowCenterWidthExplanationValues.MEDIASTINUM)
    assert np.array_equal(np.asarray(named), np.asarray(mediastinum))
    data = encode_image(lung, "image/jpeg", quality=80)
    assert data[:2] == b"\xff\xd8"
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "JPEG" and decoded.size == (COLUMNS, ROWS)
    png = Image.open(io.BytesIO(encode_image(mediastinum, "image/png")))
    assert png.format == "PNG"
    assert np.array_equal(np.asarray(png), np.asarray(mediastinum))  # PNG is lossless


def test_viewport_keeps_the_aspect_ratio(built):
    ds = built["ct"][0]
    assert render_frame(ds, viewport=(32, 32)).size == (32, 32)
    assert render_frame(ds, viewport=(128, 40)).size == (40, 40)
    assert render_frame(built["sr"], viewport=(100, 300)).size == (100, 100)


def test_seg_and_sr_renditions(built):
    seg = built["seg"]
    frame = np.asarray(render_frame(seg, frame=1))
    assert set(np.unique(frame)) <= {0, 255} and frame.max() == 255
    card = render_frame(built["sr"])
    assert card.mode == "L" and np.asarray(card).max() > 0
    assert Image.open(io.BytesIO(encode_image(card))).format == "JPEG"
    with pytest.raises(ValueError, match="frame"):
        render_frame(seg, frame=int(seg.NumberOfFrames) + 1)


def test_render_refuses_bad_arguments(built):
    ds = built["ct"][0]
    with pytest.raises(ValueError, match="window"):
        render_frame(ds, window=(40, 0))
    with pytest.raises(ValueError, match="viewport"):
        render_frame(ds, viewport=(0, 10))
    with pytest.raises(ValueError, match="media_type"):
        encode_image(render_frame(ds), "image/gif")
    with pytest.raises(ValueError, match="quality"):
        encode_image(render_frame(ds), quality=0)


# -- builders refuse invalid input --------------------------------------------------------------------


def test_ct_builder_refuses_invalid_input(built, universe):
    study, grid, hu = built["study"], built["grid"], built["hu"]
    ct_series, seg_series, _ = built["series"]
    with pytest.raises(ValueError, match='"hu"'):
        build_ct_series(study, ct_series, universe.uids, hu[:-1], grid)
    with pytest.raises(TypeError, match='"hu"'):
        build_ct_series(study, ct_series, universe.uids, hu.astype(bool), grid)
    with pytest.raises(TypeError, match='"hu"'):
        build_ct_series(study, ct_series, universe.uids, hu.tolist(), grid)
    bad = hu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match='"hu"'):
        build_ct_series(study, ct_series, universe.uids, bad, grid)
    with pytest.raises(ValueError, match='"series"'):
        build_ct_series(study, seg_series, universe.uids, hu, grid)
    with pytest.raises(ValueError, match='"series"'):
        build_ct_series(study, ct_series, universe.uids, hu[:4], TinyGrid(n_slices=4))
    with pytest.raises(TypeError, match='"grid"'):
        build_ct_series(study, ct_series, universe.uids, hu, object())


def test_seg_builder_refuses_invalid_input(built, universe):
    study, ct, labels = built["study"], built["ct_built"], built["labels"]
    seg_series = built["series"][1]
    with pytest.raises(ValueError, match='"ct_datasets"'):
        build_segmentation(study, seg_series, universe.uids, [], labels, _lesions(universe))
    with pytest.raises(ValueError, match='"lesions"'):
        build_segmentation(study, seg_series, universe.uids, ct, labels, _lesions(universe)[:1])
    with pytest.raises(TypeError, match='"labels"'):
        build_segmentation(study, seg_series, universe.uids, ct, labels.astype(np.int16), _lesions(universe))
    with pytest.raises(ValueError, match='"labels"'):
        build_segmentation(study, seg_series, universe.uids, ct, labels[:, :32], _lesions(universe))
    unknown = labels.copy()
    unknown[0, 0, 0] = 102
    with pytest.raises(ValueError, match='"labels"'):
        build_segmentation(study, seg_series, universe.uids, ct, unknown, _lesions(universe))
    lesions = _lesions(universe)
    lesions[1]["lung"] = "middle"
    with pytest.raises(ValueError, match="lung"):
        build_segmentation(study, seg_series, universe.uids, ct, labels, lesions)


def test_sr_builder_refuses_invalid_input(built, universe):
    study, ct = built["study"], built["ct_built"]
    sr_series = built["series"][2]
    with pytest.raises(ValueError, match='"ct_datasets"'):
        build_measurement_report(study, sr_series, universe.uids, [], _measurements(universe))
    with pytest.raises(ValueError, match='"measurements"'):
        build_measurement_report(study, sr_series, universe.uids, ct, _measurements(universe)[:1])
    cases = [
        {"diameter_mm": -1.0},
        {"slice": SLICES},
        {"points": [(0, 0), (0, COLUMNS)]},
        {"tracking_uid": universe.uids.tracking_uid(PATIENT + 1, 0)},
        {"lobe": "left upper lobe"},
    ]
    for change in cases:
        measurements = _measurements(universe)
        measurements[0].update(change)
        with pytest.raises(ValueError):
            build_measurement_report(study, sr_series, universe.uids, ct, measurements)
