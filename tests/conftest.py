"""Shared fixtures: a tiny universe built in code, and servers on free loopback ports."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from synthpacs.config import load_config

TESTS = Path(__file__).parent
SMALL_COHORTS = TESTS / "data" / "cohorts"
IN_CI = os.environ.get("CI", "").lower() == "true"
#: The day test archives are anchored on (the ``today`` setting), so that no test depends on the real date.
#: The test cohorts' calendars are absolute and end before it: every visit is a performed study.
PINNED_TODAY = "20261231"


def require_tool(name: str) -> str:
    """The path of an external tool; skipped when missing, but a failure under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it: scripts/install-system-tools.sh)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def make_config(data_dir: Path, **overrides):
    """A configuration isolated from the environment and config/default.yaml, anchored on PINNED_TODAY
    unless ``today`` (or the deprecated ``worklist_today``) is given."""
    settings = {
        "data_dir": str(data_dir),
        "seed": 7,
        "patients": 40,
        "cohorts_dir": str(SMALL_COHORTS),
        "http_port": 0,
        "dicom_port": 0,
        "cache_memory_mb": 64,
    }
    if "today" not in overrides and "worklist_today" not in overrides:
        settings["today"] = PINNED_TODAY
    settings.update(overrides)
    return load_config(TESTS / "data" / "empty.yaml", settings, environ={})


def study_uid(archive, patient: int, visit: int) -> str:
    """The Study Instance UID of a synthetic patient's visit, found as a client finds it (a STUDY-level query)."""
    from synthpacs.archive import records

    matches = list(
        archive.find(
            "STUDY", {"PatientID": records.patient_id(patient), "StudyID": records.study_id(visit), "StudyInstanceUID": ""}
        )
    )
    assert len(matches) == 1, f"patient {patient} visit {visit}: {len(matches)} studies"
    return str(matches[0].StudyInstanceUID)


def subject_requests(archive, patient: int) -> list:
    """Every study of a synthetic patient as its generator is asked for it (StudyRequest), in visit order."""
    from synthpacs.archive import records

    matches = archive.find("STUDY", {"PatientID": records.patient_id(patient), "StudyInstanceUID": ""})
    return sorted((archive.study_request(str(m.StudyInstanceUID)) for m in matches), key=lambda r: r.visit)


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path / "data")


@pytest.fixture
def archive(config):
    from synthpacs.archive import Archive

    return Archive(config)


@pytest.fixture(scope="session")
def shared_archive(tmp_path_factory):
    """One archive for read-only tests (its studies are generated once per session)."""
    from synthpacs.archive import Archive

    return Archive(make_config(tmp_path_factory.mktemp("shared") / "data"))


@pytest.fixture
def server(config):
    """Both front ends on free loopback ports, stopped after the test."""
    from synthpacs.server import RunningServer

    running = RunningServer(config)
    yield running
    running.stop()
