"""The command line, run as a user runs it: in a subprocess."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import SMALL_COHORTS


def synthpacs(*args, cwd):
    return subprocess.run([sys.executable, "-m", "synthpacs", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def common(tmp_path):
    return ["--data-dir", str(tmp_path / "data"), "--seed", "7", "--patients", "30"]


@pytest.fixture
def env_cohorts(monkeypatch):
    monkeypatch.setenv("SYNTHPACS_COHORTS_DIR", str(SMALL_COHORTS))


def test_info_prints_the_universe(tmp_path, env_cohorts):
    result = synthpacs("info", *common(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "patients" in result.stdout and "30" in result.stdout
    assert "lung-cancer" in result.stdout


def test_query_prints_a_table_with_uids(tmp_path, env_cohorts):
    result = synthpacs("query", *common(tmp_path), "PatientID=SYN-000000*", "StudyDate=20240101-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "StudyInstanceUID" in result.stdout and "2.25." in result.stdout
    assert "matches" in result.stdout.splitlines()[-1]
    series = synthpacs("query", *common(tmp_path), "--level", "SERIES", "Modality=SEG", "--limit", "2", cwd=tmp_path)
    assert series.stdout.count("SEG") == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["StudyDate=tomorrow"], "StudyDate: 'tomorrow' is not a date"),
        (["PatientNam=X"], "unknown attribute 'PatientNam'"),
        (["PatientName"], "expected KEY=VALUE"),
        (["--level", "FRAME"], "Invalid value for '--level'"),
    ],
)
def test_query_mistakes_are_one_sentence(tmp_path, env_cohorts, args, message):
    result = synthpacs("query", *common(tmp_path), *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_generate_an_unknown_study_is_a_clear_error(tmp_path, env_cohorts):
    result = synthpacs("generate", *common(tmp_path), "--study", "1.2.3", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert "no such study 1.2.3" in result.stderr and "Traceback" not in result.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_healthz_and_stops_on_sigterm(tmp_path, env_cohorts):
    port, dicom_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synthpacs",
            "serve",
            *common(tmp_path),
            "--http-port",
            str(port),
            "--dicom-port",
            str(dicom_port),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    body = json.load(response)
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(
                        f"server did not answer: {proc.stderr.read() if proc.poll() is not None else ''}"
                    ) from None
                time.sleep(0.2)
        assert body["status"] == "ok" and body["patients"] == 30
        assert body["studies_generating"] == 0 and body["memory_cache_bytes"] == 0
        assert body["memory_cache_max_bytes"] == 512 * 2**20
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_serve_on_a_busy_port_says_so(tmp_path, env_cohorts):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = synthpacs("serve", *common(tmp_path), "--http-port", str(port), "--dicom-port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen for HTTP on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
