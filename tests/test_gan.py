"""The lung-CT GAN with its shipped weights: determinism, truncation, interpolation, coherence, and the CT it makes.

Runs on the small test cohort (128 x 128, 10 mm slices), where one series
renders in about a second on a CPU.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import subject_requests
from dicom_validation import dciodvfy_errors
from scipy import ndimage

from generators.chest.lung_ct.evaluation import HU_RANGES, hu_by_label, tumour_contrast
from generators.chest.lung_ct.geometry import Label
from generators.chest.lung_ct.pipeline import LatentSample, LungCTPipeline
from generators.chest.lung_ct.target import FOLDER, GANLungCT, LatentWalk, fingerprint
from synthpacs.generation.contract import GeneratorOptions


@pytest.fixture(scope="module")
def pipeline():
    return LungCTPipeline.from_pretrained(FOLDER, device="cpu")


def first_baseline_with_a_lesion(archive):
    """The baseline StudyRequest of the first patient whose baseline holds a lesion."""
    for index in range(archive.config.patients):
        request = subject_requests(archive, index)[0]
        if any(d > 0 for d in request.lesion_diameters_mm):
            return request
    pytest.fail("no study with a lesion in the test universe")


@pytest.fixture(scope="module")
def study(shared_archive, pipeline):
    """A study of the test universe that holds at least one lesion, and its geometry."""
    request = first_baseline_with_a_lesion(shared_archive)
    geometry = GANLungCT(pipeline, fingerprint(GeneratorOptions(renderer="gan"))).geometry(request)
    return request, geometry.labels, geometry.grid, geometry.lesions


def render(pipeline, study, seed, **kwargs):
    _, labels, grid, _ = study
    return pipeline(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, rng=np.random.default_rng(seed), **kwargs)


def test_the_shipped_weights_are_small_and_recorded(pipeline):
    size = (FOLDER / "weights.safetensors").stat().st_size
    assert size < 10 * 2**20, f"{size} bytes"
    assert pipeline.record["training"]["steps"] > 0
    assert pipeline.record["pipeline"]["drift_mm"] > 0


def test_same_seed_gives_byte_identical_slices_and_another_seed_does_not(pipeline, study):
    a = render(pipeline, study, 1)
    assert a.dtype == np.int16 and a.shape == study[1].shape
    assert a.tobytes() == render(pipeline, study, 1).tobytes()
    assert (
        a.tobytes() == render(pipeline, study, 1, batch_slices=5).tobytes()
        or np.abs(a.astype(int) - render(pipeline, study, 1, batch_slices=5)).max() <= 1
    ), "batching changes at most rounding"
    b = render(pipeline, study, 2)
    assert not np.array_equal(a, b)
    body = study[1] != Label.AIR
    assert np.abs(a.astype(int) - b)[body].mean() > 2.0, "another seed is another sample, not a rounding difference"


_PROCESS_SCRIPT = r"""
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from conftest import make_config, study_uid
from synthpacs.archive import Archive
archive = Archive(make_config(sys.argv[2]))
request = archive.study_request(study_uid(archive, 0, 0))
generator = archive.generator(request.study.target)
hu = generator.hu(generator.geometry(request), request)
print(type(generator).__name__, hashlib.sha256(hu.tobytes()).hexdigest())
"""


def test_a_study_is_byte_identical_across_processes(tmp_path):
    """DESIGN 2.1: the same study gives the same GAN pixels after a restart (same platform)."""
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).parent)
    outputs = [
        subprocess.run(
            [sys.executable, "-c", _PROCESS_SCRIPT, tests, str(tmp_path / f"d{i}")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(tests).parent,
        )
        for i in range(2)
    ]
    for out in outputs:
        assert out.returncode == 0, out.stderr
    first, second = (o.stdout.strip().splitlines()[-1] for o in outputs)
    assert first.startswith("GANLungCT ") and first == second


def test_psi_changes_the_output_and_psi_zero_gives_the_mean_sample(pipeline, study):
    full = render(pipeline, study, 3, psi=1.0)
    truncated = render(pipeline, study, 3, psi=0.5)
    assert not np.array_equal(full, truncated)
    mean_a = render(pipeline, study, 3, psi=0.0, noise_mode="const")
    mean_b = render(pipeline, study, 4, psi=0.0, noise_mode="const")
    assert np.array_equal(mean_a, mean_b), "psi 0 with constant noise does not depend on the seed"
    _, labels, grid, _ = study
    assert np.array_equal(mean_a, pipeline.mean_volume(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm))


def test_interpolation_starts_and_ends_at_the_two_samples(pipeline, study):
    _, labels, grid, _ = study
    args = (labels.shape, grid.pixel_spacing_mm, grid.slice_spacing_mm)
    a = pipeline.sample(np.random.default_rng(10), *args)
    b = pipeline.sample(np.random.default_rng(11), *args)
    first = pipeline(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, sample=LatentSample.interpolate(a, b, 0.0))
    last = pipeline(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, sample=LatentSample.interpolate(a, b, 1.0))
    assert np.array_equal(first, render(pipeline, study, 10))
    assert np.array_equal(last, render(pipeline, study, 11))
    middle = pipeline(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, sample=LatentSample.interpolate(a, b, 0.5))
    assert not np.array_equal(middle, first) and not np.array_equal(middle, last)


def test_interpolation_frames_of_a_study(pipeline, shared_archive, study):
    from synthpacs.generation.registry import zoo_entry

    request, labels, grid, findings = study
    generator = GANLungCT(pipeline, fingerprint(GeneratorOptions(renderer="gan")))
    walk = zoo_entry(request.study.target).interpolation
    assert isinstance(walk, LatentWalk)
    frames = walk.interpolation_frames(generator, request, 10, 11, 4, slice_choice="lesion")
    k = max((f for f in findings if f.slice is not None), key=lambda f: f.diameter_mm).slice
    assert len(frames) == 4
    alone = pipeline(labels, grid.pixel_spacing_mm, grid.slice_spacing_mm, rng=np.random.default_rng(10), slices=[k])[0]
    assert np.array_equal(frames[0], alone)
    assert not np.array_equal(frames[1], frames[0])


def test_the_series_latent_drifts_smoothly_along_the_body_axis(pipeline):
    sample = pipeline.sample(np.random.default_rng(0), (120, 64, 64), 0.75, 2.5)
    z = pipeline.slice_latents(sample)
    style = pipeline.network.style_dims
    assert np.all(z[:, :style] == z[0, :style]), "the calibration is the same on every slice"
    steps = np.abs(np.diff(z[:, style:], axis=0)).mean()
    assert steps < 0.05, f"adjacent slices' latents differ by {steps:.3f} on average"
    field = sample.noise[-1]
    corr = float((field[1:] * field[:-1]).mean() / field.var())
    assert corr > 0.9, "the density field is smooth along z"


def test_mpr_shows_no_banding(pipeline, study):
    _, labels, _, _ = study
    hu = render(pipeline, study, 5).astype(np.float64)
    means = np.array([hu[k][labels[k] == Label.LUNG].mean() for k in range(len(hu)) if (labels[k] == Label.LUNG).sum() > 200])
    jumps = np.abs(np.diff(means))
    assert jumps.mean() < 15.0, f"mean lung HU jumps {jumps.mean():.1f} HU from slice to slice"


def test_hu_per_label_and_tumour_contrast(pipeline, study):
    _, labels, _, _ = study
    hu = render(pipeline, study, 6)
    assert hu.min() >= -1024 and hu.max() <= 3071
    means = hu_by_label(hu, labels)
    for name in ("AIR", "LUNG", "MUSCLE", "BONE"):
        assert name in means, f"{name} too thin to check on this grid"
    for name, mean in means.items():
        lo, hi = HU_RANGES[name]
        if name == "TUMOUR":
            lo, hi = lo - 40, hi + 40  # 10 mm slices: partial volume with the lung around small lesions
        assert lo <= mean <= hi, (name, mean)
    contrast = tumour_contrast(hu, labels)
    assert contrast is not None and contrast["contrast_hu"] > 400 and contrast["cnr"] > 3, contrast


def test_every_ct_the_gan_makes_in_a_study_is_valid_dicom_and_shows_the_tumour(archive, tmp_path):
    """The archive's default renderer is the GAN: generate a study, validate every CT, check the SEG against the CT."""
    from pydicom import dcmread

    from generators.chest.lung_ct.target import GANLungCT as Gan

    request = first_baseline_with_a_lesion(archive)
    generator = archive.generator(request.study.target)
    assert isinstance(generator, Gan)
    refs = archive.generate_study(request.study.study_instance_uid)
    cts, seg = [], None
    for ref in refs:
        path = tmp_path / f"{ref.sop_instance_uid}.dcm"
        path.write_bytes(archive.instance_bytes(ref))
        ds = dcmread(path)
        if ds.Modality == "CT":
            cts.append(ds)
            assert dciodvfy_errors(path) == [], path
        elif ds.Modality == "SEG":
            seg = ds
            assert dciodvfy_errors(path) == [], path
    assert cts and seg is not None
    cts.sort(key=lambda d: -float(d.ImagePositionPatient[2]))
    volume = np.stack([d.pixel_array.astype(np.int32) * int(d.RescaleSlope) + int(d.RescaleIntercept) for d in cts])
    labels = generator.geometry(request).labels
    # Tumour voxels in the SEG are tumour in the CT: soft-tissue density, far above the lung around them.
    frames = seg.pixel_array.reshape(-1, *volume.shape[1:])
    by_position = {round(float(d.ImagePositionPatient[2]), 3): k for k, d in enumerate(cts)}
    mask = np.zeros(volume.shape, bool)
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        z = round(float(item.PlanePositionSequence[0].ImagePositionPatient[2]), 3)
        mask[by_position[z]] |= frame.astype(bool)
    assert mask.sum() > 0
    assert np.array_equal(mask, labels >= 100)
    core = ndimage.binary_erosion(mask, structure=np.ones((1, 3, 3), bool))
    inside = volume[core if core.sum() >= 5 else mask].mean()
    ring = ndimage.binary_dilation(mask, structure=np.ones((1, 7, 7), bool)) & ~mask & (labels == Label.LUNG)
    assert inside > -300 and inside - volume[ring].mean() > 400, (inside, volume[ring].mean())


def test_cli_writes_an_interpolation_gif_and_frames(tmp_path, monkeypatch):
    """``synthpacs generate --interpolate``: a GIF, or PNG frames, from custom weights too; bad weights are one line."""
    import os
    import subprocess
    import sys

    from conftest import SMALL_COHORTS, make_config, study_uid
    from PIL import Image
    from test_generators import TINY, tiny_generator

    from synthpacs.archive import Archive
    from synthpacs.generation.weights import save_pretrained

    uid = study_uid(Archive(make_config(tmp_path / "probe", patients=30)), 0, 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHPACS_")}
    env["SYNTHPACS_COHORTS_DIR"] = str(SMALL_COHORTS)

    def run(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "synthpacs",
                "generate",
                "--data-dir",
                str(tmp_path / "data"),
                "--seed",
                "7",
                "--patients",
                "30",
                "--study",
                uid,
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=300,
        )

    result = run("--interpolate", "1,2", "--frames", "3", "--out", str(tmp_path / "walk.gif"))
    assert result.returncode == 0, result.stderr
    gif = Image.open(tmp_path / "walk.gif")
    assert gif.n_frames == 4  # 3 frames there and one back (bounce)
    custom = tmp_path / "custom"
    save_pretrained(custom, tiny_generator(), "LungCTGenerator", TINY, extra={"pipeline": {}})
    result = run(
        "--interpolate",
        "1,2",
        "--frames",
        "2",
        "--slice",
        "middle",
        "--window",
        "mediastinum",
        "--weights",
        str(custom),
        "--out",
        str(tmp_path / "frames"),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_000.png", "frame_001.png"]
    (custom / "weights.safetensors").write_bytes(b"broken")
    result = run("--interpolate", "1,2", "--weights", str(custom), "--out", str(tmp_path / "x.gif"))
    assert result.returncode == 2 and "weights.safetensors" in result.stderr and "Traceback" not in result.stderr
    result = run("--interpolate", "one,two", "--out", str(tmp_path / "x.gif"))
    assert result.returncode == 2 and "--interpolate expects two integer seeds" in result.stderr
    result = run("--interpolate", "1,2", "--window", "bone", "--out", str(tmp_path / "x.gif"))
    assert result.returncode == 2 and "--window 'bone'" in result.stderr and "lung, mediastinum" in result.stderr


def test_slices_batched_across_requests_are_the_same_whoever_shares_their_pass(study):
    """The accelerator path: slices of concurrent requests share fixed-size passes of the network's
    forward function; a slice's HU depend only on its own inputs, not on its batch-mates."""
    import threading

    _, labels, grid, _ = study
    spacing = (grid.pixel_spacing_mm, grid.slice_spacing_mm)
    per_slice = LungCTPipeline.from_pretrained(FOLDER, device="cpu", precision="float32")
    batched = LungCTPipeline.from_pretrained(FOLDER, device="cpu")
    batcher = batched.batch_across_requests(batch=4, gather_s=0.2)
    middle = labels.shape[0] // 2
    alone = batched(labels, *spacing, rng=np.random.default_rng(5), slices=[middle])  # padded with copies of itself
    results: dict[int, np.ndarray] = {}

    def request(seed: int, slices: list[int]) -> None:
        results[seed] = batched(labels, *spacing, rng=np.random.default_rng(seed), slices=slices, batch_slices=2)

    threads = [threading.Thread(target=request, args=(seed, [middle, middle + 1])) for seed in (5, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert batcher.mixed_passes >= 1  # the two requests' slices did share a pass
    assert np.array_equal(results[5][:1], alone)  # the same bytes with other company
    assert not np.array_equal(results[5], results[6])  # and each its own sample
    # The same function as the per-slice renderer in float32 (rounding moves a few voxels by 1 HU).
    reference = per_slice(labels, *spacing, rng=np.random.default_rng(5), slices=[middle, middle + 1])
    assert np.abs(results[5].astype(np.int32) - reference).max() <= 1
    assert (results[5] != reference).mean() < 0.001
