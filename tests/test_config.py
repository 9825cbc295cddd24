"""Configuration: layered sources, validation, and the settings table documented."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from synthpacs.config import SETTINGS, load_config
from synthpacs.errors import ConfigError

ROOT = Path(__file__).parent.parent


def test_precedence_defaults_file_environment_flags(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 5\nhttp_port: 9000\nae_title: FROMFILE\n")
    config = load_config(path, {"http_port": "9100"}, environ={"SYNTHPACS_SEED": "6", "SYNTHPACS_DICOM_PORT": "4242"})
    assert config.seed == 6 and config.sources["seed"] == "environment variable SYNTHPACS_SEED"
    assert config.http_port == 9100 and config.sources["http_port"] == "flag --http-port"
    assert config.ae_title == "FROMFILE"
    assert config.dicom_port == 4242
    assert config.patients == 1000 and config.sources["patients"] == "default"


@pytest.mark.parametrize(
    "text, message",
    [
        ("colour: red\n", "unknown setting 'colour'"),
        ("http_port: 70000\n", "invalid http_port"),
        ("http_port: eighty\n", "expected an integer"),
        ("ae_title: ABCDEFGHIJKLMNOPQ\n", "at most 16 characters"),
        ("seed: -1\n", "invalid seed"),
        ("seed: 1.5\n", "invalid seed"),
        ("peers: {STORESCP: nohostport}\n", "AET=HOST:PORT"),
        ("- a list\n", "must hold a mapping"),
    ],
)
def test_bad_file_values_name_key_and_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(path, environ={})
    if "unknown" not in message and "mapping" not in message:
        assert str(path) in str(info.value)


def test_bad_environment_and_flag_values_name_their_source():
    with pytest.raises(ConfigError, match="environment variable SYNTHPACS_HTTP_PORT"):
        load_config(None, environ={"SYNTHPACS_HTTP_PORT": "-3"})
    with pytest.raises(ConfigError, match="flag --ae-title"):
        load_config(None, {"ae_title": "A" * 17}, environ={})
    with pytest.raises(ConfigError, match="unknown setting 'nonsense'"):
        load_config(None, environ={"SYNTHPACS_NONSENSE": "1"})


def test_peers_from_flags_and_yaml(tmp_path):
    config = load_config(None, {"peers": ["STORESCP=127.0.0.1:11113", "WEASIS=localhost:11114"]}, environ={})
    assert config.peers == {"STORESCP": ("127.0.0.1", 11113), "WEASIS": ("localhost", 11114)}


def test_cli_exits_2_with_a_message_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "synthpacs", "info", "--data-dir", str(tmp_path), "--seed", "banana"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "invalid seed in flag --seed" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in readme]
    assert not missing, f"settings missing from README: {missing}"


# -- today and the cohorts' calendar -----------------------------------------------------------


def test_today_is_a_date_or_0_for_the_real_date(tmp_path):
    import datetime as dt

    path = tmp_path / "c.yaml"
    path.write_text("today: 2026-06-01\n")
    assert load_config(path, environ={}).today == dt.date(2026, 6, 1)
    assert load_config(None, environ={"SYNTHPACS_TODAY": "20250601"}).today == dt.date(2025, 6, 1)
    assert load_config(None, {"today": 20250601}, environ={}).today == dt.date(2025, 6, 1)
    assert load_config(None, {"today": "0"}, environ={}).today is None
    assert load_config(None, environ={}).today is None  # the default: the real date at start-up


@pytest.mark.parametrize("value", ["20251399", "2025061", "tomorrow", "true", "2025-6-1"])
def test_a_bad_today_names_the_setting_and_its_source(tmp_path, value):
    path = tmp_path / "bad.yaml"
    path.write_text(f"today: '{value}'\n")
    with pytest.raises(ConfigError, match=f"invalid today in {re.escape(str(path))}: expected a date as YYYYMMDD"):
        load_config(path, environ={})
    with pytest.raises(ConfigError, match="invalid today in environment variable SYNTHPACS_TODAY"):
        load_config(None, environ={"SYNTHPACS_TODAY": value})


def _cohorts(tmp_path: Path, first: str, last: str) -> Path:
    folder = tmp_path / "cohorts"
    folder.mkdir(exist_ok=True)
    text = (ROOT / "config" / "cohorts" / "lung_cancer.yaml").read_text()
    text = text.replace("first_baseline: -900", f"first_baseline: {first}").replace(
        "last_baseline: -30", f"last_baseline: {last}"
    )
    (folder / "lung_cancer.yaml").write_text(text)
    return folder


@pytest.mark.parametrize(
    "first, last, message",
    [
        ("soon", "-30", "schedule: first_baseline: expected days relative to today (an integer such as -900) or a date"),
        ("-900", "1.5", "schedule: last_baseline: expected days relative to today"),
        ("-900", "99999", "schedule: last_baseline: a relative day must lie within 36500 days of today"),
        ("-30", "-900", "schedule: first_baseline is after last_baseline"),
        ("2025-12-15", "2024-01-08", "schedule: first_baseline is after last_baseline"),
    ],
)
def test_a_bad_schedule_names_the_cohort_file_and_key(tmp_path, first, last, message):
    from synthpacs.archive.cohorts import load_cohorts
    from synthpacs.generation.registry import discover

    folder = _cohorts(tmp_path, first, last)
    with pytest.raises(ConfigError, match=re.escape(f"{folder / 'lung_cancer.yaml'}: {message}")):
        load_cohorts(folder, discover())


def test_relative_and_absolute_schedule_ends_are_checked_on_today(tmp_path):
    import datetime as dt

    from synthpacs.archive.cohorts import load_cohorts
    from synthpacs.archive.universe import Universe
    from synthpacs.generation.registry import discover

    targets = discover()
    folder = _cohorts(tmp_path, "2025-01-01", "-30")
    cohorts = load_cohorts(folder, targets)
    universe = Universe(1, 10, cohorts, targets, dt.date(2026, 6, 1))
    assert universe.baseline_windows == ((dt.date(2025, 1, 1), dt.date(2026, 5, 2)),)
    with pytest.raises(
        ConfigError, match=re.escape(f"{folder / 'lung_cancer.yaml'}: schedule: first_baseline: 2025-01-01 is after")
    ):
        Universe(1, 10, cohorts, targets, dt.date(2024, 6, 1))
