"""The generator framework: zoo registry, weights on disk, devices, settings, training and CLI plumbing.

Tiny seeded networks keep these fast; the shipped lung-CT GAN is exercised
in tests/test_gan.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_config

from synthpacs.errors import ConfigError
from synthpacs.generation import pipeline as gp
from synthpacs.generation.contract import GeneratorOptions, ZooTarget
from synthpacs.generation.devices import resolve_device
from synthpacs.generation.registry import GENERATORS_ROOT, check_renderer_setting, discover, generator_options, zoo_entry
from synthpacs.generation.weights import CONFIG_NAME, WEIGHTS_NAME, WeightsError, load_pretrained, save_pretrained

ROOT = Path(__file__).resolve().parent.parent
TINY = {"z_dim": 12, "w_dim": 16, "style_dims": 8, "channels": [4, 4, 8, 8], "embed_dim": 4, "mapping_layers": 1}


def tiny_generator(seed: int = 0):
    from generators.chest.lung_ct.networks import LungCTGenerator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = LungCTGenerator(**TINY)
        with torch.no_grad():  # make every path matter (the output layer starts at zero)
            net.out.weight.normal_(0, 0.5)
            for module in net.modules():
                if hasattr(module, "strength"):
                    module.strength.normal_(0, 1.0)
    return net


@pytest.fixture
def tiny_weights(tmp_path):
    folder = tmp_path / "tiny"
    save_pretrained(folder, tiny_generator(), "LungCTGenerator", TINY, extra={"pipeline": {}})
    return folder


def load_target(name, config):
    """A target's generator as a configuration says (what the archive does on its first retrieve)."""
    target = zoo_entry(name)
    return target.load(generator_options(config, target))


def fingerprint(config, name):
    """The cheap fingerprint the archive keys its instance cache by (reads no weights, imports no torch)."""
    target = zoo_entry(name)
    return target.fingerprint(generator_options(config, target))


def build(cfg):
    from generators.chest.lung_ct.networks import LungCTGenerator

    return LungCTGenerator(**cfg)


# -- the zoo ----------------------------------------------------------------------------------


def test_every_target_has_a_folder_a_model_card_and_the_standard_modules():
    zoo = discover()
    assert "chest/lung-ct" in zoo
    for name, entry in zoo.items():
        assert isinstance(entry, ZooTarget) and entry.name == name
        assert entry.folder.is_dir(), entry.name
        assert entry.model_card.is_file(), f"{entry.name} has no MODEL_CARD.md"
        assert entry.folder.parent.parent == GENERATORS_ROOT  # generators/<system>/<target>/
        assert entry.folder.parent.name == entry.name.split("/")[0]
        assert (entry.folder / "target.py").is_file(), entry.name
        # A declared capability lives in its standard module.
        for module, capability in (("training", entry.training), ("evaluation", entry.evaluation)):
            if capability is not None:
                assert (entry.folder / f"{module}.py").is_file(), (entry.name, module)


def test_discovering_a_folder_that_is_not_there_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="generator_paths.*nowhere"):
        discover([tmp_path / "nowhere"])


def test_targets_are_found_by_name_and_alias_and_unknown_ones_are_named():
    assert zoo_entry("lung-ct").name == "chest/lung-ct"
    assert zoo_entry("chest/lung-ct") is zoo_entry("lung_ct")
    with pytest.raises(ConfigError, match="unknown generator target 'brain/ms-mr'.*chest/lung-ct"):
        zoo_entry("brain/ms-mr")


def test_renderer_setting_switches_between_gan_and_teacher(tmp_path, tiny_weights):
    from generators.chest.lung_ct.target import GANLungCT, LungCTGenerator

    teacher = load_target("chest/lung-ct", make_config(tmp_path, renderer="teacher"))
    assert isinstance(teacher, LungCTGenerator) and not isinstance(teacher, GANLungCT)
    assert teacher.renderer == "teacher" and teacher.fingerprint == "teacher"
    gan = load_target("chest/lung-ct", make_config(tmp_path, weights=str(tiny_weights), device="cpu", truncation_psi=0.5))
    assert isinstance(gan, GANLungCT) and gan.renderer == "gan"
    assert gan.pipeline.source == str(tiny_weights) and gan.pipeline.psi == 0.5
    assert gan.fingerprint.startswith("gan-") and gan.fingerprint.endswith("-psi0.5")
    # The loaded generator's fingerprint is the cheap one the archive keys its cache by.
    config = make_config(tmp_path, weights=str(tiny_weights), device="cpu", truncation_psi=0.5)
    assert gan.fingerprint == fingerprint(config, "chest/lung-ct")
    # The renderer may also be set per target.
    per_target = load_target("lung-ct", make_config(tmp_path, renderer={"chest/lung-ct": "teacher"}))
    assert per_target.renderer == "teacher"


def test_an_unknown_renderer_is_a_config_error_naming_it(tmp_path):
    lung = zoo_entry("chest/lung-ct")
    assert lung.renderers == ("gan", "teacher")
    with pytest.raises(ConfigError, match="renderer 'diffusion' is not offered by chest/lung-ct"):
        lung.load(GeneratorOptions(renderer="diffusion"))
    zoo = discover()
    with pytest.raises(ConfigError, match="renderer 'diffusion' .*is offered by no target.*gan, teacher"):
        check_renderer_setting(make_config(tmp_path, renderer="diffusion"), zoo)
    with pytest.raises(ConfigError, match="renderer 'diffusion' for chest/lung-ct .*is not offered.*gan, teacher"):
        check_renderer_setting(make_config(tmp_path, renderer={"lung-ct": "diffusion"}), zoo)
    with pytest.raises(ConfigError, match="unknown generator target 'brain/ms-mr'"):
        check_renderer_setting(make_config(tmp_path, renderer={"brain/ms-mr": "gan"}), zoo)
    check_renderer_setting(make_config(tmp_path, renderer="teacher"), zoo)
    from synthpacs.archive import Archive

    with pytest.raises(ConfigError, match="renderer 'diffusion'"):
        Archive(make_config(tmp_path / "data", renderer="diffusion"))


def test_weights_per_target_mapping_and_options_from_config(tmp_path, tiny_weights):
    config = make_config(tmp_path, weights={"chest/lung-ct": str(tiny_weights)}, gan_batch_slices=3)
    options = generator_options(config, zoo_entry("chest/lung-ct"))
    assert options.weights == tiny_weights and options.batch_slices == 3 and options.renderer == "gan"
    assert generator_options(make_config(tmp_path, renderer="teacher"), zoo_entry("lung-ct")).renderer == "teacher"


def test_unusable_weights_setting_is_a_config_error_naming_the_folder_and_the_setting(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError) as info:
        load_target("chest/lung-ct", make_config(tmp_path, weights=str(missing)))
    assert str(missing) in str(info.value) and "weights" in str(info.value)


def test_generators_load_ahead_of_the_first_retrieve_and_a_broken_one_only_warns(tmp_path, tiny_weights, caplog):
    from synthpacs.archive import Archive

    archive = Archive(make_config(tmp_path / "good", weights=str(tiny_weights), device="cpu"))
    try:
        archive.load_generators()
        assert set(archive._generators) == set(archive.targets)  # the first retrieve finds them loaded
    finally:
        archive.close()
    missing = tmp_path / "nowhere"
    archive = Archive(make_config(tmp_path / "bad", weights=str(missing)))
    try:
        archive.load_generators()  # serve goes on; the retrieve answers with the error
        assert not archive._generators
        assert "chest/lung-ct" in caplog.text and str(missing) in caplog.text
    finally:
        archive.close()


def test_generator_fingerprint_follows_renderer_weights_and_psi(tmp_path, tiny_weights):
    shipped = fingerprint(make_config(tmp_path), "chest/lung-ct")
    assert shipped.startswith("gan-") and shipped.endswith("-psi1")
    assert fingerprint(make_config(tmp_path, renderer="teacher"), "lung-ct") == "teacher"
    assert fingerprint(make_config(tmp_path, truncation_psi=0.7), "chest/lung-ct") != shipped
    custom = fingerprint(make_config(tmp_path, weights=str(tiny_weights)), "chest/lung-ct")
    assert custom != shipped and custom.startswith("gan-")


# -- weights on disk ---------------------------------------------------------------------------


def test_weights_round_trip_through_safetensors_and_a_recorded_config(tiny_weights):
    net, record = load_pretrained(tiny_weights, "LungCTGenerator", build)
    reference = tiny_generator()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(net.state_dict()[name], tensor), name
    assert record["config"] == TINY and record["class_name"] == "LungCTGenerator"
    assert len(record["weights_sha256"]) == 64 and record["parameters"] > 0
    assert not list(tiny_weights.glob("*.pt")) and not list(tiny_weights.glob("*.pkl")), "never pickles"


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "truncated or replaced"),
        ("flip", "does not match the SHA-256"),
        ("no-weights", "weights.safetensors is missing"),
        ("no-config", "generator.json is missing"),
        ("bad-json", "not valid JSON"),
        ("other-class", "describes a 'Discriminator' network"),
        ("other-shape", "does not fit the network"),
    ],
)
def test_damaged_weights_are_refused_with_a_message_naming_the_file(tiny_weights, damage, message):
    weights, config = tiny_weights / WEIGHTS_NAME, tiny_weights / CONFIG_NAME
    record = json.loads(config.read_text())
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-100])
    elif damage == "flip":
        blob = bytearray(weights.read_bytes())
        blob[-10] ^= 0xFF
        weights.write_bytes(bytes(blob))
    elif damage == "no-weights":
        weights.unlink()
    elif damage == "no-config":
        config.unlink()
    elif damage == "bad-json":
        config.write_text("{not json")
    elif damage == "other-class":
        config.write_text(json.dumps({**record, "class_name": "Discriminator"}))
    elif damage == "other-shape":
        config.write_text(json.dumps({**record, "config": {**TINY, "channels": [8, 8, 8, 8]}}))
    with pytest.raises(WeightsError, match=message) as info:
        load_pretrained(tiny_weights, "LungCTGenerator", build)
    assert str(tiny_weights) in str(info.value)


def test_unreadable_safetensors_without_a_recorded_hash_is_still_refused(tiny_weights):
    config = tiny_weights / CONFIG_NAME
    record = json.loads(config.read_text())
    del record["weights_sha256"], record["weights_bytes"]
    config.write_text(json.dumps(record))
    (tiny_weights / WEIGHTS_NAME).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_pretrained(tiny_weights, "LungCTGenerator", build)


# -- devices ---------------------------------------------------------------------------------


def test_device_selection(monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ConfigError, match=r"device 'cuda' in flag --device asks for CUDA, but none is available"):
        resolve_device("cuda", "flag --device")
    with pytest.raises(ConfigError, match="must be auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    # Loading a target on a device that is not here says so, naming the setting.
    with pytest.raises(ConfigError, match=r"device 'cuda' in flag --device asks for CUDA, but none is available"):
        zoo_entry("lung-ct").load(GeneratorOptions(renderer="gan", device="cuda", device_source="flag --device"))


def test_device_and_renderer_settings_are_validated_on_load(tmp_path):
    with pytest.raises(ConfigError, match="invalid device in flag --device"):
        make_config(tmp_path, device="gpu")
    with pytest.raises(ConfigError, match="invalid renderer"):
        make_config(tmp_path, renderer=["gan", "teacher"])
    # A renderer no target offers is refused once the targets are known (test_an_unknown_renderer_...).
    with pytest.raises(ConfigError, match="invalid truncation_psi"):
        make_config(tmp_path, truncation_psi=1.5)


# -- latent helpers ----------------------------------------------------------------------------


def test_variance_preserving_mix_is_exact_at_both_ends():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 64), dtype=np.float32), rng.standard_normal((64, 64), dtype=np.float32)
    assert np.array_equal(gp.mix(a, b, 0.0), a) and np.array_equal(gp.mix(a, b, 1.0), b)
    middle = gp.mix(a, b, 0.5)
    assert abs(float(middle.std()) - 1.0) < 0.05


def test_smoothing_along_z_correlates_neighbours_and_keeps_unit_variance():
    draws = gp.standard_normal(np.random.default_rng(1), (200, 64, 64))
    smooth = gp.smooth_along(draws, 3.0, axis=0)
    assert abs(float(smooth.std()) - 1.0) < 0.05
    corr = float((smooth[1:] * smooth[:-1]).mean())
    assert corr > 0.9, corr
    assert gp.smooth_along(draws, 0.0) is draws


@pytest.mark.parametrize(
    ("shape", "sigma", "axis"), [((9, 80, 64), 0.35, 0), ((9, 80, 64), 0.9, 1), ((5, 6), 0.35, 0), ((40, 9), 6.0, 0)]
)
def test_smoothing_is_scipys_gaussian_filter_rescaled_to_unit_variance(shape, sigma, axis):
    from scipy.ndimage import gaussian_filter1d

    draws = gp.standard_normal(np.random.default_rng(2), shape)
    radius = int(3.0 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    expected = gaussian_filter1d(draws, sigma, axis=axis, mode="reflect", truncate=3.0) / np.sqrt((kernel**2).sum())
    got = gp.smooth_along(draws, sigma, axis=axis)
    assert got.dtype == np.float32 and got.shape == draws.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_truncation():
    w, avg = torch.ones(3), torch.zeros(3)
    assert torch.equal(gp.truncate(w, avg, 1.0), w)
    assert torch.equal(gp.truncate(w, avg, 0.0), avg)


# -- training ----------------------------------------------------------------------------------


TINY_TRAINING = {
    **TINY,
    "pool": 2,
    "refresh_every": 2,
    "resolutions": {"128": 1.0},
    "thicknesses": [10.0],
    "max_slices": {"128": 6, "256": 6, "512": 6},
    "validation": [[128, 10.0, 4]],
}


def test_a_few_training_steps_write_a_run_record_and_loadable_weights(tmp_path):
    from generators.chest.lung_ct.pipeline import LungCTPipeline
    from generators.chest.lung_ct.training import train
    from synthpacs.generation.train import TrainingRequest

    out = tmp_path / "run"
    request = TrainingRequest(
        target="chest/lung-ct",
        out=out,
        steps=3,
        seed=5,
        batch=2,
        crop=32,
        sample_every=2,
        checkpoint_every=2,
        log_every=1,
        device="cpu",
        progress=False,
        extra=dict(TINY_TRAINING),
    )
    train(request)
    for name in ("training_options.json", "stats.jsonl", "metrics.jsonl", CONFIG_NAME, WEIGHTS_NAME):
        assert (out / name).is_file(), name
    stats = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [row["step"] for row in stats] == [1, 2, 3] and all(np.isfinite(row["loss_g"]) for row in stats)
    assert (out / "samples" / "step-000002.png").is_file() and (out / "checkpoints" / "step-000002" / WEIGHTS_NAME).is_file()
    record = json.loads((out / CONFIG_NAME).read_text())
    assert record["training"]["steps"] == 3 and record["training"]["seed"] == 5
    assert record["style_statistics"]["names"][0] == "lung_hu"
    pipe = LungCTPipeline.from_pretrained(out)
    labels = np.full((3, 32, 32), 3, np.uint8)
    assert pipe(labels, 2.0, 5.0, rng=np.random.default_rng(0)).shape == (3, 32, 32)


def test_training_is_reproducible_from_its_seed(tmp_path):
    from generators.chest.lung_ct.training import train
    from synthpacs.generation.train import TrainingRequest

    def run(name, seed):
        out = tmp_path / name
        train(
            TrainingRequest(
                target="chest/lung-ct",
                out=out,
                steps=2,
                seed=seed,
                batch=2,
                crop=32,
                sample_every=100,
                checkpoint_every=100,
                device="cpu",
                progress=False,
                threads=1,
                extra={**TINY_TRAINING, "pool": 1},
            )
        )
        return (out / WEIGHTS_NAME).read_bytes()

    first = run("a", 3)
    assert run("b", 3) == first
    assert run("c", 4) != first


def test_training_on_a_folder_of_user_pairs(tmp_path):
    from generators.chest.lung_ct.training import folder_volumes, train
    from synthpacs.generation.train import TrainingRequest

    data = tmp_path / "pairs"
    data.mkdir()
    rng = np.random.default_rng(0)
    labels = np.zeros((4, 48, 48), np.uint8)
    labels[:, 8:40, 8:40] = 2
    labels[:, 14:34, 12:24] = 3
    labels[:, 18:24, 16:20] = 100
    image = np.array([-1000, -100, 45, -850], np.float32)[np.minimum(labels, 3)] + rng.normal(0, 10, labels.shape)
    image[labels == 100] = 40
    np.savez(data / "case1.npz", image=image.astype(np.int16), labels=labels, pixel_spacing_mm=1.5, slice_thickness_mm=5.0)
    np.savez(data / "case2.npz", image=image[0], labels=labels[0])  # one 2-D slice, default spacing
    volumes = folder_volumes(data)
    assert [v.labels.shape for v in volumes] == [(4, 48, 48), (1, 48, 48)]
    assert volumes[0].pixel_spacing_mm == 1.5 and volumes[1].pixel_spacing_mm == 0.75
    out = tmp_path / "run"
    train(
        TrainingRequest(
            target="chest/lung-ct",
            out=out,
            steps=2,
            seed=1,
            batch=2,
            crop=32,
            data=data,
            device="cpu",
            sample_every=100,
            checkpoint_every=100,
            progress=False,
            extra={**TINY_TRAINING},
        )
    )
    assert "pairs" in json.loads((out / CONFIG_NAME).read_text())["training"]["data"]
    (data / "bad.npz").write_bytes(b"")
    np.savez(data / "bad.npz", image=image)
    with pytest.raises(ConfigError, match="bad.npz lacks the array 'labels'"):
        folder_volumes(data)


# -- the command line ------------------------------------------------------------------------


def synthpacs(*args, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHPACS_")}
    return subprocess.run(
        [sys.executable, "-m", "synthpacs", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_cli_errors_are_one_line_and_name_the_problem(tmp_path):
    result = synthpacs("train", "brain/ms-mr", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 2 and "unknown generator target 'brain/ms-mr'" in result.stderr
    assert "Traceback" not in result.stderr
    result = synthpacs("evaluate", "lung-ct", "--device", "tpu", cwd=tmp_path)
    assert result.returncode == 2 and "invalid device in flag --device" in result.stderr and "Traceback" not in result.stderr
    result = synthpacs(
        "evaluate", "lung-ct", "--weights", str(tmp_path / "missing"), "--volumes", "2", "--rows", "128", cwd=tmp_path
    )
    assert result.returncode == 2 and "missing" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cli_asking_for_cuda_without_cuda_is_a_clear_error(tmp_path):
    for command in (
        ["train", "lung-ct", "--steps", "1", "--out", str(tmp_path / "run")],
        ["serve", "--data-dir", str(tmp_path / "d")],
    ):
        result = synthpacs(*command, "--device", "cuda", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "invalid device in flag --device: 'cuda' asks for CUDA, but none is available" in result.stderr
        assert "Traceback" not in result.stderr


def test_keyed_noise_is_the_smoothed_stack_of_per_slice_draws_and_any_slice_alone_is_the_same():
    whole = gp.KeyedNoise(7, 0, (12, 16, 20), 0.35)
    stack = np.asarray(whole)
    white = np.stack([gp.KeyedNoise(7, 0, (12, 16, 20), 0.0)[k] for k in range(12)])  # sigma 0: the draws
    np.testing.assert_allclose(stack, gp.smooth_along(white, 0.35, axis=0), atol=1e-5)
    for k in (0, 5, 11):  # a slice made alone, by a fresh stack, is the same slice
        assert np.array_equal(gp.KeyedNoise(7, 0, (12, 16, 20), 0.35)[k], stack[k])
    assert not np.array_equal(np.asarray(gp.KeyedNoise(7, 1, (12, 16, 20), 0.35)), stack)  # another level
    assert not np.array_equal(np.asarray(gp.KeyedNoise(8, 0, (12, 16, 20), 0.35)), stack)  # another key
    assert abs(float(stack.std()) - 1.0) < 0.05
    with pytest.raises(IndexError):
        whole[12]
