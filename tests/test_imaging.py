"""synthpacs.imaging: CT, SEG and SR builders and renditions.

Everything is built on a tiny stand-in grid (64 x 64 pixels x 8 slices)
with a synthetic HU/label volume made here, so the tests are fast and do not
depend on the geometry stage. Files are checked with dciodvfy (DESIGN §2.3).
"""

from __future__ import annotations

import copy
import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import make_config
from dicom_validation import dciodvfy_errors
from PIL import Image
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from generators.chest.lung_ct.target import LungLesion, _measurement, _segment
from synthpacs.archive.cohorts import load_cohorts
from synthpacs.archive.uids import is_valid_uid
from synthpacs.archive.universe import Universe
from synthpacs.generation.registry import discover
from synthpacs.imaging import (
    WindowCenterWidthExplanationValues,
    add_clinical_trial_modules,
    add_patient_study_modules,
    build_ct_series,
    build_measurement_report,
    build_segmentation,
    common,
    encode_image,
    render_frame,
)
from synthpacs.imaging.headers import SeriesHeaders
from synthpacs.imaging.registry import build, build_headers
from synthpacs.imaging.spec import CTSeriesSpec, MeasurementReportSpec, SegmentationSpec
from synthpacs.imaging.sr import DEVICE_OBSERVER_UID

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


@dataclasses.dataclass(frozen=True)
class TinyStudy:
    """The real study (its universe record and the contexts the archive hands a generator), CT cut to the stand-in grid."""

    record: object  # the universe's StudyRecord: the values the files must carry
    study: object  # StudyContext
    ct: object  # SeriesContext of the image series, its SOP Instance UIDs cut to n_slices
    seg: object
    sr: object

    def ct_spec(self, hu, grid, series=None, first_slice=0) -> CTSeriesSpec:
        return CTSeriesSpec(study=self.study, series=series or self.ct, hu=hu, grid=grid, first_slice=first_slice)

    def seg_spec(self, labels, lesions) -> SegmentationSpec:
        return SegmentationSpec(
            study=self.study,
            series=self.seg,
            source_series_uid=self.ct.series_instance_uid,
            labels=labels,
            segments=tuple(_segment(j, lesion) for j, lesion in enumerate(lesions)),
            content_label="TARGET_LESIONS",
        )

    def sr_spec(self, lesions) -> MeasurementReportSpec:
        total = sum(float(lesion.diameter_mm) for lesion in lesions)
        return MeasurementReportSpec(
            study=self.study,
            series=self.sr,
            source_series_uid=self.ct.series_instance_uid,
            measurements=tuple(_measurement(lesion) for lesion in lesions),
            measurement_name=codes.SCT.LongAxis,
            finding_type=codes.SCT.Neoplasm,
            finding_category=codes.cid7150.MorphologicallyAbnormalStructure,
            method=codes.cid6147.RECIST1Point1,
            summary=f"Sum of diameters of target lesions (RECIST 1.1): {total:.1f} mm",
        )


def _tiny_study(universe: Universe, archive, n_slices: int) -> TinyStudy:
    """The real study with its image series resized to the stand-in grid."""
    record = universe.study(PATIENT, VISIT)
    request = archive.study_request(record.study_instance_uid)
    ct, seg, sr = (request.by_role(role).context for role in ("image", "segmentation", "measurements"))
    ct = dataclasses.replace(ct, sop_instance_uids=ct.sop_instance_uids[:n_slices])
    return TinyStudy(record=record, study=request.study, ct=ct, seg=seg, sr=sr)


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
        {
            "tracking_id": "Lesion 1",
            "tracking_uid": universe.uids.tracking_uid(PATIENT, 0),
            "lung": "right",
            "lobe": "right upper lobe",
        },
        {
            "tracking_id": "Lesion 2",
            "tracking_uid": universe.uids.tracking_uid(PATIENT, 1),
            "lung": "left",
            "lobe": "left lower lobe",
        },
    ]


def _measurements(universe: Universe, second_gone: bool = False) -> list[dict]:
    lesions = _lesions(universe)
    first = {**lesions[0], "diameter_mm": 7.0, "slice": 3, "points": [(26, 14), (26, 22)]}
    if second_gone:
        second = {**lesions[1], "diameter_mm": 0.0, "slice": None, "points": None}
    else:
        second = {**lesions[1], "diameter_mm": 4.2, "slice": 5, "points": [(31, 46), (37, 46)]}
    return [first, second]


def _findings(items: list[dict]) -> list[LungLesion]:
    """The lung target's findings (what its geometry stage measures) from the dicts above."""
    out = []
    for item in items:
        points = item.get("points")
        out.append(
            LungLesion(
                tracking_id=item["tracking_id"],
                tracking_uid=item["tracking_uid"],
                diameter_mm=float(item.get("diameter_mm", 0.0)),
                lung=item["lung"],
                lobe=item["lobe"],
                slice=item.get("slice"),
                points=tuple(tuple(float(v) for v in p) for p in points) if points else None,
            )
        )
    return out


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
    targets = discover()
    return Universe(seed=1, n_patients=50, cohorts=load_cohorts(ROOT / "config" / "cohorts", targets), targets=targets)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """The archive of the same universe: it hands out the study and series contexts."""
    from synthpacs.archive import Archive

    return Archive(
        make_config(
            tmp_path_factory.mktemp("imaging") / "data", seed=1, patients=50, cohorts_dir=str(ROOT / "config" / "cohorts")
        )
    )


@pytest.fixture(scope="module")
def tiny(universe, archive) -> TinyStudy:
    return _tiny_study(universe, archive, SLICES)


@pytest.fixture(scope="module")
def built(universe, tiny):
    """CT, SEG and SR of the tiny study, read back from Part 10 bytes."""
    grid = TinyGrid()
    hu, labels = _volume(grid)
    ct = build_ct_series(tiny.ct_spec(hu, grid))
    seg = build_segmentation(tiny.seg_spec(labels, _findings(_lesions(universe))), ct)
    sr = build_measurement_report(tiny.sr_spec(_findings(_measurements(universe))), ct)
    return {
        "tiny": tiny,
        "record": tiny.record,
        "study": tiny.study,
        "series": (tiny.ct, tiny.seg, tiny.sr),
        "grid": grid,
        "hu": hu,
        "labels": labels,
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


def test_512_ct_slice_passes_dciodvfy(universe, archive, tmp_path):
    grid = TinyGrid(rows=512, columns=512, n_slices=1)
    tiny = _tiny_study(universe, archive, 1)
    hu = np.linspace(-1100, 3200, 512 * 512).reshape(1, 512, 512)  # out-of-range values are clipped
    (ds,) = build_ct_series(tiny.ct_spec(hu, grid))
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
    study = built["record"]
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
    study = built["record"]
    ct_series, seg_series, sr_series = study.series
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
    tiny, grid = built["tiny"], built["grid"]
    ct_again = build_ct_series(tiny.ct_spec(built["hu"], grid))
    assert [_to_bytes(ds) for ds in ct_again] == [_to_bytes(ds) for ds in built["ct_built"]]
    seg = [build_segmentation(tiny.seg_spec(built["labels"], _findings(_lesions(universe))), ct_again) for _ in range(2)]
    assert _to_bytes(seg[0]) == _to_bytes(seg[1])
    sr = [build_measurement_report(tiny.sr_spec(_findings(_measurements(universe))), ct_again) for _ in range(2)]
    assert _to_bytes(sr[0]) == _to_bytes(sr[1])
    # Through the SOP-class registry (as the archive builds a study): the same bytes again.
    made = build(
        [
            tiny.ct_spec(built["hu"], grid),
            tiny.seg_spec(built["labels"], _findings(_lesions(universe))),
            tiny.sr_spec(_findings(_measurements(universe))),
        ]
    )
    assert [_to_bytes(ds) for ds in made[tiny.ct.series_instance_uid]] == [_to_bytes(ds) for ds in ct_again]
    assert [_to_bytes(ds) for ds in made[tiny.seg.series_instance_uid]] == [_to_bytes(seg[0])]
    assert [_to_bytes(ds) for ds in made[tiny.sr.series_instance_uid]] == [_to_bytes(sr[0])]


def test_a_slab_of_the_series_has_the_bytes_of_those_slices_in_the_whole(built):
    tiny, grid, hu = built["tiny"], built["grid"], built["hu"]
    slab = build_ct_series(tiny.ct_spec(hu[2:5], grid, first_slice=2))
    assert [_to_bytes(ds) for ds in slab] == [_to_bytes(ds) for ds in built["ct_built"][2:5]]


def _without_pixels(ds: Dataset) -> bytes:
    ds = copy.deepcopy(ds)
    ds.PixelData = bytes(len(ds.PixelData))
    return _to_bytes(ds)


def test_header_instances_have_every_attribute_of_the_built_ones(built):
    """CT headers are made without pixels (template + each slice's own attributes), and the
    generic path takes the pixels out of built instances: both equal the built files but for
    the Pixel Data value, which is zeros of the same length."""
    tiny, grid, hu = built["tiny"], built["grid"], built["hu"]
    placeholder = np.broadcast_to(np.int16(-1000), hu.shape)
    fast = build_headers([tiny.ct_spec(placeholder, grid)])[tiny.ct.series_instance_uid]
    generic = SeriesHeaders.from_datasets(build_ct_series(tiny.ct_spec(hu, grid)))
    expected = [_without_pixels(ds) for ds in built["ct_built"]]
    for headers in (fast, generic):
        assert [_to_bytes(ds) for ds in headers.datasets()] == expected
        assert headers.sop_instance_uids == list(tiny.ct.sop_instance_uids[: len(hu)])
    assert len(fast.own[0]) < 8 < len(fast.shared)  # the template holds what the slices share


def test_common_modules_fill_a_plain_dataset(built):
    context, study = built["study"], built["record"]
    ds = add_clinical_trial_modules(add_patient_study_modules(Dataset(), context), context, built["series"][0])
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
    tiny, ct = built["tiny"], built["ct_built"]
    metadata = []
    for ds in ct:
        copy = Dataset(ds)
        copy.file_meta = ds.file_meta
        del copy.PixelData
        metadata.append(copy)
    spec = tiny.seg_spec(built["labels"], _findings(_lesions(universe)))
    with_pixels = build_segmentation(spec, ct)
    without = build_segmentation(spec, metadata)
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
    tiny, ct = built["tiny"], built["ct_built"]
    partial = built["labels"].copy()
    partial[partial == 101] = 0  # lesion 2 has gone (complete response)
    seg = build_segmentation(tiny.seg_spec(partial, _findings(_lesions(universe))), ct)
    assert len(seg.SegmentSequence) == 2
    numbers = {i.SegmentIdentificationSequence[0].ReferencedSegmentNumber for i in seg.PerFrameFunctionalGroupsSequence}
    assert numbers == {1}
    assert dciodvfy_errors(_write(tmp_path, "partial.dcm", seg)) == []
    empty = build_segmentation(tiny.seg_spec(np.zeros_like(partial), _findings(_lesions(universe))), ct)
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
    tiny, ct = built["tiny"], built["ct_built"]
    sr = build_measurement_report(tiny.sr_spec(_findings(_measurements(universe, True))), ct)
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
    tiny, grid, hu = built["tiny"], built["grid"], built["hu"]
    # A spec may hold a slab of the series (fewer slices from first_slice), but never more than fits the grid.
    with pytest.raises(ValueError, match='"hu"'):
        build_ct_series(tiny.ct_spec(np.concatenate([hu, hu[:1]]), grid))
    with pytest.raises(ValueError, match='"hu"'):
        build_ct_series(tiny.ct_spec(hu[1:], grid, first_slice=2))
    with pytest.raises(ValueError, match='"hu"'):
        build_ct_series(tiny.ct_spec(hu[:, :-1], grid))
    with pytest.raises(TypeError, match='"hu"'):
        build_ct_series(tiny.ct_spec(hu.astype(bool), grid))
    with pytest.raises(TypeError, match='"hu"'):
        tiny.ct_spec(hu.tolist(), grid)
    bad = hu.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match='"hu"'):
        build_ct_series(tiny.ct_spec(bad, grid))
    seg_series = dataclasses.replace(tiny.seg, sop_instance_uids=tiny.ct.sop_instance_uids)
    with pytest.raises(ValueError, match='"series"'):
        build_ct_series(tiny.ct_spec(hu, grid, series=seg_series))
    with pytest.raises(ValueError, match='"series"'):
        tiny.ct_spec(hu, grid, series=tiny.seg)  # one SOP Instance UID for eight slices
    with pytest.raises(ValueError, match='"series"'):
        tiny.ct_spec(hu[:4], TinyGrid(n_slices=4))
    with pytest.raises(TypeError, match='"grid"'):
        tiny.ct_spec(hu, object())
    with pytest.raises(TypeError, match='"spec"'):
        build_ct_series(tiny.sr_spec(_findings(_measurements(universe))))


def test_seg_builder_refuses_invalid_input(built, universe):
    tiny, ct, labels = built["tiny"], built["ct_built"], built["labels"]
    lesions = _findings(_lesions(universe))
    with pytest.raises(ValueError, match="source"):
        build_segmentation(tiny.seg_spec(labels, lesions), [])
    with pytest.raises(ValueError, match='"labels"'):  # lesion 2 has voxels but no segment
        build_segmentation(tiny.seg_spec(labels, lesions[:1]), ct)
    with pytest.raises(TypeError, match='"labels"'):
        tiny.seg_spec(labels.astype(np.int16), lesions)
    with pytest.raises(ValueError, match='"labels"'):
        build_segmentation(tiny.seg_spec(labels[:, :32], lesions), ct)
    unknown = labels.copy()
    unknown[0, 0, 0] = 102
    with pytest.raises(ValueError, match='"labels"'):
        build_segmentation(tiny.seg_spec(unknown, lesions), ct)
    with pytest.raises(ValueError, match='"segments"'):
        tiny.seg_spec(labels, [])
    with pytest.raises(ValueError, match="tracking UID"):
        tiny.seg_spec(labels, [lesions[0], dataclasses.replace(lesions[1], tracking_uid=lesions[0].tracking_uid)])
    wrong = _lesions(universe)
    wrong[1]["lung"] = "middle"
    with pytest.raises(ValueError, match="lung"):
        tiny.seg_spec(labels, _findings(wrong))


def test_sr_builder_refuses_invalid_input(built, universe):
    tiny, ct = built["tiny"], built["ct_built"]
    with pytest.raises(ValueError, match="source"):
        build_measurement_report(tiny.sr_spec(_findings(_measurements(universe))), [])
    with pytest.raises(ValueError, match='"measurements"'):
        tiny.sr_spec([])
    cases = [
        {"diameter_mm": -1.0},
        {"slice": SLICES},
        {"points": [(0, 0), (0, COLUMNS)]},
        {"points": [(26, 14), (26, 14)]},
        {"slice": None},
        {"tracking_uid": universe.uids.tracking_uid(PATIENT, 1)},  # lesion 2's
        {"tracking_uid": "1.2.03"},
        {"tracking_id": " "},
        {"lobe": "left upper lobe"},
        {"lung": "middle"},
        {"lobe": "left middle lobe", "lung": "left"},
    ]
    for change in cases:
        measurements = _measurements(universe)
        measurements[0].update(change)
        with pytest.raises(ValueError):
            build_measurement_report(tiny.sr_spec(_findings(measurements)), ct)
