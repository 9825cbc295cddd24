"""The exact requests real viewers send (research/viewers.md §1-§4), checked
on the wire: status, Content-Type, boundary, part headers and the bytes."""

from __future__ import annotations

import io

import pytest
import requests
from e2e.dicomweb import dcm, find_synthetic_study, split_multipart, start_server, value
from PIL import Image

pytestmark = pytest.mark.integration

NATIVE_PART = "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
FRAME_ACCEPTS = {
    "ohif": 'multipart/related; type="application/octet-stream"; transfer-syntax="*"',
    "ohif-omit-quotation": "multipart/related; type=application/octet-stream; transfer-syntax=*",
    "cornerstone-default": "multipart/related; type=application/octet-stream; transfer-syntax=*",
    "ohif-2021": 'multipart/related; type="application/octet-stream"; transfer-syntax=*',
    "explicit-uid": 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
    "dicomweb-client": 'multipart/related; type="*/*"',
    "any": "*/*",
}
COMBINED_METADATA_ACCEPT = (
    "application/dicom+json, multipart/related; type=application/octet-stream; transfer-syntax=*; transfer-syntax=*"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("viewers") / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def base(server):
    return server.base_url


@pytest.fixture(scope="module")
def study(base):
    return find_synthetic_study(base, index=1)


@pytest.fixture(scope="module")
def ct_pixels(server, study):
    archive = server.pacs.archive
    ref = archive.instances(study.study, study.ct_series, study.ct_instances[0])[0]
    return dcm(archive.instance_bytes(ref)).PixelData


@pytest.mark.parametrize("client", sorted(FRAME_ACCEPTS))
def test_frames_for_every_accept_form(base, study, ct_pixels, client):
    url = f"{base}/dicom-web/studies/{study.study}/series/{study.ct_series}/instances/{study.ct_instances[0]}/frames/1"
    response = requests.get(url, headers={"Accept": FRAME_ACCEPTS[client]})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith('multipart/related; type="application/octet-stream"; boundary=')
    ((headers, data),) = split_multipart(response)
    assert headers == {"Content-Type": NATIVE_PART}  # cornerstone needs exactly "Content-Type:" first
    assert data == ct_pixels
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_frame_lists_come_as_one_part_per_frame(server, base, study):
    archive = server.pacs.archive
    ref = archive.instances(study.study, study.seg_series, study.seg_instance)[0]
    seg = dcm(archive.instance_bytes(ref))
    frame_bytes = int(seg.Rows) * int(seg.Columns) // 8
    url = f"{base}/dicom-web/studies/{study.study}/series/{study.seg_series}/instances/{study.seg_instance}/frames/1,2"
    parts = split_multipart(requests.get(url, headers={"Accept": FRAME_ACCEPTS["ohif"]}))
    assert [data for _, data in parts] == [seg.PixelData[:frame_bytes], seg.PixelData[frame_bytes : 2 * frame_bytes]]


@pytest.mark.parametrize("path", ["metadata", "series"])
def test_older_ohif_combined_accept_gets_json(base, study, path):
    url = f"{base}/dicom-web/studies/{study.study}/{path}"
    if path == "metadata":
        url = f"{base}/dicom-web/studies/{study.study}/series/{study.ct_series}/metadata"
    response = requests.get(url, headers={"Accept": COMBINED_METADATA_ACCEPT})
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/dicom+json"
    assert isinstance(response.json(), list) and response.json()


def test_ohif_study_list_and_viewer_queries(base, study):
    studies = requests.get(
        f"{base}/dicom-web/studies?limit=101&offset=0&fuzzymatching=false"
        f"&includefield=00081030%2C00080060%2C00080090%2C00100030&00100020=*{study.patient_id[-4:]}*"
        f"&ModalitiesInStudy=CT%2CMR&StudyDate=19700102-20991231",
        headers={"Accept": "application/dicom+json"},
    ).json()
    assert study.study in {value(s, "0020000D") for s in studies}
    item = next(s for s in studies if value(s, "0020000D") == study.study)
    for tag in (
        "0020000D",
        "00080020",
        "00080030",
        "00080050",
        "00100020",
        "00100010",
        "00100030",
        "00201208",
        "00081030",
        "00080061",
        "00080090",
        "00081190",
    ):
        assert tag in item, tag
    series = requests.get(
        f"{base}/dicom-web/studies/{study.study}/series?includefield=00080021,00080031,0008103E,00200011",
        headers={"Accept": "application/dicom+json"},
    ).json()
    for s in series:
        assert {"0020000E", "00080060", "00200011", "00080021", "00201209", "0008103E"} <= set(s)


def test_ohif_seg_instance_retrieve(server, base, study):
    url = f"{base}/dicom-web/studies/{study.study}/series/{study.seg_series}/instances/{study.seg_instance}"
    response = requests.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    ((headers, data),) = split_multipart(response)
    assert headers["Content-Type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    ref = server.pacs.archive.instances(study.study, study.seg_series, study.seg_instance)[0]
    assert data == server.pacs.archive.instance_bytes(ref)


def test_weasis_query_series_retrieve_and_thumbnails(server, base, study):
    fields = (
        "00080020,00080030,00080050,00080061,00080090,00081030,00100010,00100020,00100021,00100030,00100040,0020000D,00200010"
    )
    studies = requests.get(f"{base}/dicom-web/studies?00100020={study.patient_id}&includefield={fields}").json()
    assert study.study in {value(s, "0020000D") for s in studies}
    series = requests.get(
        f"{base}/dicom-web/studies/{study.study}/series?includefield=0008103E,00080060,0020000E,00200011,00081190"
    ).json()
    ct = next(s for s in series if value(s, "00080060") == "CT")
    retrieve_url = value(ct, "00081190")
    response = requests.get(retrieve_url, headers={"Accept": 'multipart/related;type="application/dicom";transfer-syntax=*'})
    assert response.status_code == 200 and "boundary=" in response.headers["Content-Type"]
    parts = split_multipart(response)
    assert len(parts) == len(study.ct_instances)
    assert sorted(str(dcm(data).SOPInstanceUID) for _, data in parts) == sorted(study.ct_instances)
    thumb = requests.get(
        f"{base}/dicom-web/studies/{study.study}/series/{study.ct_series}/thumbnail?viewport=64%2C64",
        headers={"Accept": "image/jpeg"},
    )
    assert thumb.status_code == 200 and thumb.headers["Content-Type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 64
    rendered = requests.get(
        f"{base}/dicom-web/studies/{study.study}/series/{study.ct_series}/instances/"
        f"{study.ct_instances[0]}/rendered?viewport=64%2C64",
        headers={"Accept": "image/jpeg"},
    )
    assert rendered.status_code == 200 and Image.open(io.BytesIO(rendered.content)).format == "JPEG"
    uri = requests.get(
        f"{base}/wado",
        params={
            "requestType": "WADO",
            "studyUID": study.study,
            "seriesUID": study.ct_series,
            "objectUID": study.ct_instances[0],
            "contentType": "image/jpeg",
            "rows": "64",
            "columns": "64",
        },
    )
    assert uri.status_code == 200 and uri.headers["Content-Type"] == "image/jpeg"


def test_slicer_keyword_includefield(base, study):
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(f"{base}/dicom-web")
    studies = client.search_for_studies(fields=["StudyDescription"], search_filters={"PatientID": study.patient_id})
    assert all("00081030" in s for s in studies) and studies
    series = client.search_for_series(study.study, fields=["SeriesNumber"])
    assert all("00200011" in s for s in series)
    instances = client.search_for_instances(study.study, study.ct_series, fields=["InstanceNumber"])
    assert [value(i, "00200013") for i in instances] == list(range(1, len(study.ct_instances) + 1))
