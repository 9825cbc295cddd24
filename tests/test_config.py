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
