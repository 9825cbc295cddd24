"""Studies end to end with the teacher renderer: determinism, validity, ground truth.

The GAN's own checks live in tests/test_gan.py; these pin the foundation the
GAN learns from and the guarantees every renderer must keep.
"""

import io
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_config, subject_requests
from dicom_validation import dciodvfy_errors
from pydicom import dcmread

from generators.chest.lung_ct.geometry import Label
from generators.chest.lung_ct.plan import acquisition_arrays

CT, SEG, SR = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(scope="module")
def teacher_archive(tmp_path_factory):
    from synthpacs.archive import Archive

    return Archive(make_config(tmp_path_factory.mktemp("teacher") / "data", renderer="teacher"))


def first_subject_with(archive, predicate):
    for p in range(archive.config.patients):
        studies = subject_requests(archive, p)
        if predicate(studies):
            return studies
    raise AssertionError("no subject fits")


def study_geometry(archive, request):
    """The label volume, grid and lesion findings of one study (no pixels yet), from the archive's generator."""
    geometry = archive.generator(request.study.target).geometry(request)
    return geometry.labels, geometry.grid, geometry.lesions


def acquisition(request) -> dict:
    """The study's drawn acquisition (slice thickness, field of view, slice count): the lung target's plan."""
    return {name: values[0] for name, values in acquisition_arrays(request.draws.plan_draws()).items()}


def n_instances(request) -> int:
    return sum(len(s.context.sop_instance_uids) for s in request.series)


@pytest.fixture(scope="module")
def subject(teacher_archive):
    """A subject with two lesions and at least two visits."""
    return first_subject_with(teacher_archive, lambda s: len(s[0].lesion_diameters_mm) >= 2 and len(s) >= 2)


@pytest.fixture(scope="module")
def baseline(teacher_archive, subject):
    study = subject[0]
    datasets = {}
    for ref in teacher_archive.instances(study.study.study_instance_uid):
        datasets.setdefault(ref.sop_class_uid, []).append(dcmread(io.BytesIO(teacher_archive.instance_bytes(ref))))
    return study, datasets


_HASH_SCRIPT = r"""
import hashlib, sys
sys.path.insert(0, "tests")
from conftest import make_config, study_uid
from synthpacs.archive import Archive
archive = Archive(make_config(sys.argv[1], seed=int(sys.argv[2]), renderer="teacher"))
digest = hashlib.sha256()
for ref in archive.instances(study_uid(archive, 3, 1)):
    digest.update(archive.instance_bytes(ref))
print(digest.hexdigest())
"""


def test_same_seed_is_byte_identical_across_processes_and_another_seed_differs(tmp_path):
    def run(data, seed):
        out = subprocess.run(
            [sys.executable, "-c", _HASH_SCRIPT, str(tmp_path / data), str(seed)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
        return out.stdout.strip().splitlines()[-1]

    first, second, other = run("a", 7), run("b", 7), run("c", 8)
    assert first == second
    assert other != first


def test_every_object_passes_dciodvfy(baseline, tmp_path):
    study, datasets = baseline
    for sop_class in (CT, SEG, SR):
        ds = datasets[sop_class][0]
        path = tmp_path / f"{sop_class}.dcm"
        ds.save_as(path, enforce_file_format=True)
        assert dciodvfy_errors(path) == [], sop_class
    assert len(datasets[CT]) == acquisition(study)["n_slices"] == len(study.by_role("image").context.sop_instance_uids)


def test_synthetic_and_trial_attributes_on_every_object(baseline):
    study, datasets = baseline
    for items in datasets.values():
        for ds in items[:3]:
            assert ds.SyntheticData == "YES"
            assert ds.ClinicalTrialSubjectID == study.study.trial.subject_id
            assert ds.ClinicalTrialTimePointID == study.study.trial.time_point_id
            assert ds.StudyInstanceUID == study.study.study_instance_uid


def ct_volume(datasets):
    slices = sorted(datasets[CT], key=lambda d: int(d.InstanceNumber))
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
    return slices, hu


def test_hounsfield_units_by_label(teacher_archive, baseline):
    from scipy import ndimage

    study, datasets = baseline
    labels, _, _ = study_geometry(teacher_archive, study)
    _, hu = ct_volume(datasets)
    assert hu.shape == labels.shape

    def mean(mask):
        # Away from boundaries (partial volume), as far as a small structure allows.
        for iterations in (2, 1, 0):
            interior = ndimage.binary_erosion(mask, iterations=iterations) if iterations else mask
            if interior.sum() >= 20:
                return float(hu[interior].mean())
        raise AssertionError("label absent")

    assert mean(labels == Label.AIR) < -950
    assert -900 <= mean(labels == Label.LUNG) <= -700
    assert -120 <= mean(labels == Label.FAT) <= -60
    for tissue in (Label.MUSCLE, Label.HEART, Label.MEDIASTINUM):
        assert 0 <= mean(labels == tissue) <= 80, tissue.name
    assert mean(np.isin(labels, [Label.BONE, Label.STERNUM])) > 300


def test_tumour_voxels_in_the_seg_are_tumour_in_the_ct(teacher_archive, baseline):
    from scipy import ndimage

    study, datasets = baseline
    labels, _, findings = study_geometry(teacher_archive, study)
    slices, hu = ct_volume(datasets)
    index_of = {d.SOPInstanceUID: k for k, d in enumerate(slices)}
    seg = datasets[SEG][0]
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == slices[0].SeriesInstanceUID
    assert seg.FrameOfReferenceUID == slices[0].FrameOfReferenceUID
    checked, largest = 0, {}
    for f, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        segment = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = index_of[source]
        mask = frames[f].astype(bool)
        if not mask.any():
            continue
        assert np.all(labels[k][mask] == Label.TUMOUR + segment - 1)
        largest.setdefault(segment, (0, None, None))
        if mask.sum() > largest[segment][0]:
            largest[segment] = (int(mask.sum()), k, mask)
        checked += 1
    assert checked >= len(study.lesion_diameters_mm)
    # On each lesion's largest cross-section, away from its edge, the CT shows solid tissue, not lung
    # (a small lesion in thick slices keeps some partial volume with the lung around it).
    for segment, (_, k, mask) in largest.items():
        core = ndimage.binary_erosion(mask)
        value = float(hu[k][core].mean())
        assert value > -200, segment
        if core.sum() >= 20:
            assert 0 <= value <= 80, segment


def test_sr_measures_each_lesion_with_stable_tracking_uids(teacher_archive, subject):
    reports = []
    for study in subject[:2]:
        sr_ref = next(r for r in teacher_archive.instances(study.study.study_instance_uid) if r.sop_class_uid == SR)
        reports.append((study, dcmread(io.BytesIO(teacher_archive.instance_bytes(sr_ref)))))
    tracking = []
    for study, sr in reports:
        assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"
        text = sr.to_json()
        uids = [study.draws.tracking_uid(i) for i in range(len(study.lesion_diameters_mm))]
        assert all(uid in text for uid in uids)
        tracking.append(uids)
        _, grid, findings = study_geometry(teacher_archive, study)
        assert [f.tracking_uid for f in findings] == uids
        for finding, planned in zip(findings, study.lesion_diameters_mm):
            spacing = acquisition(study)["fov"] / study.acquisition.columns
            assert spacing == grid.pixel_spacing_mm
            assert abs(finding.diameter_mm - planned) <= 1.5 * spacing + 0.1
    assert tracking[0] == tracking[1]


def test_the_same_patient_keeps_the_same_anatomy(teacher_archive, subject):
    a, _, _ = study_geometry(teacher_archive, subject[0])
    b, _, _ = study_geometry(teacher_archive, subject[1])
    outside = (a < Label.TUMOUR) & (b < Label.TUMOUR)
    assert np.array_equal(a[outside], b[outside])
    assert (a >= Label.TUMOUR).sum() != (b >= Label.TUMOUR).sum()  # the lesions changed size


def test_geometry_is_consistent_across_the_series_for_mpr(baseline):
    study, datasets = baseline
    slices, _ = ct_volume(datasets)
    z = [float(d.ImagePositionPatient[2]) for d in slices]
    steps = np.diff(z)
    assert np.allclose(steps, steps[0]) and abs(abs(steps[0]) - acquisition(study)["slice_thickness"]) < 1e-6
    assert all(list(d.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0] for d in slices)
    assert len({d.FrameOfReferenceUID for d in slices}) == 1


def test_generate_command_writes_dicom_and_jpeg(teacher_archive, subject, tmp_path):
    study = subject[0]
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthpacs",
            "generate",
            "--study",
            study.study.study_instance_uid,
            "--out",
            str(out),
            "--data-dir",
            str(teacher_archive.config.data_dir),
            "--seed",
            "7",
            "--patients",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **__import__("os").environ,
            "SYNTHPACS_COHORTS_DIR": teacher_archive.config.cohorts_dir,
            "SYNTHPACS_RENDERER": "teacher",
        },
    )
    assert result.returncode == 0, result.stderr
    dicoms, jpegs = sorted(out.rglob("*.dcm")), sorted(out.rglob("*.jpg"))
    assert len(dicoms) == len(jpegs) == n_instances(study)
    assert jpegs[0].read_bytes()[:3] == b"\xff\xd8\xff"
    # What was written is what the archive serves.
    ref = teacher_archive.instances(study.study.study_instance_uid)[0]
    name = f"{ref.instance_number:04d}_{ref.sop_instance_uid}.dcm"
    assert (out / ref.series_instance_uid / name).read_bytes() == teacher_archive.instance_bytes(ref)
    assert "100%" in result.stderr  # the progress bar ran to the end
