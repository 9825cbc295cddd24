"""A running server for DICOMweb tests, and small helpers to read its answers."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import pydicom
import requests
from conftest import make_config


@dataclass
class SyntheticStudy:
    """One synthetic study of the test universe, found by QIDO: its CT, SEG and SR series."""

    study: str
    ct_series: str
    ct_instances: list[str]
    seg_series: str
    seg_instance: str
    sr_series: str
    sr_instance: str
    patient_id: str


def start_server(data_dir, **overrides):
    """Both front ends on free loopback ports, over the tiny test universe.

    ``TEST_RENDERER=teacher`` runs them with the teacher renderer
    (for a checkout without GAN weights)."""
    from synthpacs.server import RunningServer

    if os.environ.get("TEST_RENDERER"):
        overrides.setdefault("renderer", os.environ["TEST_RENDERER"])
    return RunningServer(make_config(data_dir, **overrides))


def qido(base: str, path: str, **params) -> list[dict]:
    response = requests.get(f"{base}/dicom-web{path}", params=params, headers={"Accept": "application/dicom+json"}, timeout=60)
    response.raise_for_status()
    return response.json()


def value(item: dict, tag: str):
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


def find_synthetic_study(base: str, index: int = 0) -> SyntheticStudy:
    study_item = qido(base, "/studies", limit=1, offset=index, ModalitiesInStudy="SEG")[0]
    study = value(study_item, "0020000D")
    series = {value(s, "00080060"): value(s, "0020000E") for s in qido(base, f"/studies/{study}/series")}

    def sops(series_uid: str) -> list[str]:
        items = qido(base, f"/studies/{study}/series/{series_uid}/instances")
        return [value(i, "00080018") for i in sorted(items, key=lambda i: value(i, "00200013") or 0)]

    return SyntheticStudy(
        study,
        series["CT"],
        sops(series["CT"]),
        series["SEG"],
        sops(series["SEG"])[0],
        series["SR"],
        sops(series["SR"])[0],
        value(study_item, "00100020"),
    )


def split_multipart(response: requests.Response) -> list[tuple[dict, bytes]]:
    """(part headers, part body) of a multipart/related response, strictly as cornerstone reads it:
    the body must start with the delimiter and end with the closing one."""
    content_type = response.headers["Content-Type"]
    assert content_type.startswith("multipart/related"), content_type
    params = dict(p.strip().split("=", 1) for p in content_type.split(";")[1:])
    boundary = params["boundary"].strip('"').encode()
    body = response.content
    assert body.startswith(b"--" + boundary + b"\r\n"), body[:80]
    assert body.rstrip(b"\r\n").endswith(b"--" + boundary + b"--")
    parts = []
    for chunk in body.split(b"--" + boundary)[1:-1]:
        chunk = chunk[2:]  # the CRLF after the delimiter line
        head, _, data = chunk.partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, text = line.partition(":")
            headers[name] = text.strip()
        parts.append((headers, data[:-2]))
    return parts


def dcm(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))
