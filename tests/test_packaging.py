"""Packaging: the wheel holds everything the server reads, and an installed wheel finds it.

The wheel is built from a copy of what the Dockerfile copies (pyproject.toml,
setup.py, README.md, synthpacs/, generators/, config/), so the build leaves nothing in the
working tree, and installed with ``pip install --target`` into a folder that is
then the only copy of synthpacs on PYTHONPATH. Building takes a few seconds.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "synthpacs", "generators", "config")
# Data the server reads at run time (weights, generator.json, model cards, cohorts) and the run records.
DATA_PATTERNS = ("*.safetensors", "*.json", "*.jsonl", "*.yaml", "*.md")


def _files(folder: Path, patterns) -> list[Path]:
    found = {path for pattern in patterns for path in folder.rglob(pattern)}
    return sorted(p for p in found if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """A copy of the sources the wheel is built from (the expectations below read this copy)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    return src


@pytest.fixture(scope="module")
def wheel(src, tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        timeout=120,
    )
    (path,) = out.glob("synthpacs-*.whl")
    return path


def test_the_wheel_holds_every_module_cohort_file_and_generator_file(src, wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"synthpacs/defaults/{p.relative_to(src / 'config').as_posix()}" for p in _files(src / "config", ("*.yaml",))}
    assert "synthpacs/defaults/default.yaml" in expected and any("/cohorts/" in name for name in expected)
    expected |= {p.relative_to(src).as_posix() for p in _files(src / "generators", DATA_PATTERNS)}
    assert any(name.endswith(".safetensors") for name in expected)
    # Every module of the tree, so a new subpackage or target is found without a packaging edit.
    expected |= {p.relative_to(src).as_posix() for folder in ("synthpacs", "generators") for p in _files(src / folder, ("*.py",))}
    missing = sorted(expected - names)
    assert not missing, f"not in {wheel.name} (setup.py packages, pyproject.toml package-data): {missing}"


def test_an_installed_wheel_reads_its_own_defaults_and_cohorts(src, wheel, tmp_path):
    target, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    script = (
        "import json, synthpacs\n"
        "from synthpacs.config import load_config\n"
        "from synthpacs.archive.cohorts import load_cohorts\n"
        "from synthpacs.generation.registry import discover\n"
        "config = load_config()\n"
        "cohorts = load_cohorts(config.cohorts_dir, discover())\n"
        "print(json.dumps({'package': synthpacs.__file__, 'cohorts_dir': config.cohorts_dir, 'files': config.files,\n"
        "                  'cohorts': len(cohorts), 'ohif_dir': config.ohif_dir}))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SYNTHPACS_")}
    environ["PYTHONPATH"] = str(target)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=environ, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    target = target.resolve()
    assert Path(seen["package"]).resolve().is_relative_to(target)  # the installed copy, not the source tree
    assert Path(seen["cohorts_dir"]) == target / "synthpacs" / "defaults" / "cohorts"
    assert seen["cohorts"] == len(_files(src / "config" / "cohorts", ("*.yaml",))) > 0
    assert [Path(f) for f in seen["files"]] == [target / "synthpacs" / "defaults" / "default.yaml"]
    assert not Path(seen["ohif_dir"]).exists()  # optional: /ohif/ is off, nothing fails


def test_a_source_checkout_reads_config_at_the_top_of_the_repository():
    from synthpacs import config

    if (Path(config.__file__).parent / "defaults").is_dir():
        pytest.skip("synthpacs is installed from a wheel here")
    assert config.DEFAULT_CONFIG_FILE == ROOT.resolve() / "config" / "default.yaml"
    assert Path(config.load_config(environ={}).cohorts_dir) == ROOT.resolve() / "config" / "cohorts"
