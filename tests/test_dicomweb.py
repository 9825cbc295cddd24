"""DICOMweb through a real client: the Python ``dicomweb-client`` against a
running server (waitress on a free loopback port), plus the store rules,
WADO-URI and the bad-input contract (a 4xx JSON body, never a 500)."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from e2e.dicomweb import dcm, find_synthetic_study, qido, split_multipart, start_server, value
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

pytestmark = pytest.mark.integration

FOREIGN_FILES = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm", "test-SR.dcm"]
RLE, J2K, LE = "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("dicomweb") / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def base(server):
    return server.base_url


@pytest.fixture(scope="module")
def client(base):
    return DICOMwebClient(f"{base}/dicom-web")


@pytest.fixture(scope="module")
def study(base):
    return find_synthetic_study(base)


@pytest.fixture(scope="module")
def archive(server):
    return server.pacs.archive


# -- QIDO-RS -------------------------------------------------------------------------------


def test_search_for_studies_pages_to_the_end(client, archive):
    everything = client.search_for_studies(get_remaining=True)
    paged = client.search_for_studies(limit=7, get_remaining=True)
    uids = [value(s, "0020000D") for s in paged]
    figures = archive.figures()
    assert len(uids) == len(set(uids)) == len(everything) == figures["studies"] + figures["stored_studies"]
    assert client.search_for_studies(offset=len(everything)) == []


def test_search_for_series_and_instances_at_every_level(client, study):
    series = client.search_for_series(study.study)
    assert sorted(value(s, "00080060") for s in series) == ["CT", "SEG", "SR"]
    assert {value(s, "0020000D") for s in series} == {study.study}
    segs = client.search_for_series(search_filters={"Modality": "SEG", "PatientID": study.patient_id})
    assert [value(s, "0020000E") for s in segs if value(s, "0020000D") == study.study] == [study.seg_series]
    instances = client.search_for_instances(study.study, study.ct_series, get_remaining=True)
    assert [value(i, "00080018") for i in instances] == study.ct_instances
    assert len(client.search_for_instances(study.study)) == len(study.ct_instances) + 2
    found = client.search_for_instances(search_filters={"SOPInstanceUID": study.seg_instance})
    assert [value(i, "0020000E") for i in found] == [study.seg_series]
    paged = client.search_for_instances(study.study, study.ct_series, limit=10, get_remaining=True)
    assert [value(i, "00080018") for i in paged] == study.ct_instances


def test_counts_and_retrieve_urls_are_those_of_the_objects(client, study):
    item = client.search_for_studies(search_filters={"StudyInstanceUID": study.study})[0]
    assert value(item, "00201206") == 3
    assert value(item, "00201208") == len(study.ct_instances) + 2
    assert item["00080061"]["Value"] == ["CT", "SEG", "SR"]
    assert item["00100010"]["Value"][0]["Alphabetic"]
    series = {value(s, "00080060"): s for s in client.search_for_series(study.study)}
    assert value(series["CT"], "00201209") == len(study.ct_instances)
    url = value(series["CT"], "00081190")
    assert url.endswith(f"/dicom-web/studies/{study.study}/series/{study.ct_series}")
    assert requests.get(url + "/metadata", timeout=60).status_code == 200


@pytest.mark.parametrize(
    "params, expect",
    [
        ({"PatientName": "*"}, "all"),
        ({"00100020": "{pid}"}, "patient"),
        ({"PatientID": "{pid_prefix}*"}, "prefix"),
        ({"PatientName": "{name_lower}", "fuzzymatching": "true"}, "patient"),
        ({"ModalitiesInStudy": "MR,SEG"}, "all"),
        ({"ModalitiesInStudy": "MR"}, "none"),
        ({"StudyDate": "19000101-"}, "all"),
        ({"StudyDate": "-19000101"}, "none"),
        ({"StudyInstanceUID": "{study},1.2.3"}, "study"),
        ({"StudyInstanceUID": "{study}\\1.2.3"}, "study"),
        ({"NotADicomKeyword": "x", "00991010": "y", "includefield": "Bogus"}, "all"),
        ({"ProcedureCodeSequence.CodeValue": "24627-2"}, "all"),
    ],
)
def test_qido_matching_forms(base, study, params, expect):
    subject = qido(base, "/studies", StudyInstanceUID=study.study)[0]
    name = subject["00100010"]["Value"][0]["Alphabetic"]
    fill = {"pid": study.patient_id, "pid_prefix": study.patient_id[:-1], "name_lower": name.lower(), "study": study.study}
    query = {k: v.format(**fill) for k, v in params.items()}
    found = qido(base, "/studies", **query)
    uids = {value(s, "0020000D") for s in found}
    everyone = {value(s, "0020000D") for s in qido(base, "/studies")}
    if expect == "all":
        assert uids == everyone
    elif expect == "none":
        assert uids == set()
    elif expect == "study":
        assert uids == {study.study}
    elif expect == "prefix":
        assert study.study in uids and all(value(s, "00100020").startswith(fill["pid_prefix"]) for s in found)
    else:
        assert study.study in uids and all(value(s, "00100020") == study.patient_id for s in found)


def test_includefield_keyword_tag_and_all(client, base, study):
    # Slicer's keyword form and OHIF's comma-joined tags; unknown names are ignored.
    items = client.search_for_studies(fields=["StudyDescription", "Bogus"], search_filters={"StudyInstanceUID": study.study})
    assert value(items[0], "00081030") == "CT CHEST WITH CONTRAST"
    items = qido(base, "/studies", includefield="00081030,00080060,00080090,00100030", StudyInstanceUID=study.study)
    assert {"00081030", "00080060", "00080090", "00100030", "00201208", "00080061", "00081190"} <= set(items[0])
    series = qido(base, f"/studies/{study.study}/series", Modality="CT")[0]
    assert "00100010" not in series  # a series answer carries series attributes, not the patient's...
    series = qido(base, f"/studies/{study.study}/series", Modality="CT", includefield="all")[0]
    assert value(series, "00100020") == study.patient_id  # ...unless all are asked for


# -- WADO-RS -------------------------------------------------------------------------------


def test_retrieve_study_series_and_instance(client, study, archive):
    instances = client.retrieve_study(study.study)
    assert len(instances) == len(study.ct_instances) + 2
    assert {str(ds.SeriesInstanceUID) for ds in instances} == {study.ct_series, study.seg_series, study.sr_series}
    series = client.retrieve_series(study.study, study.ct_series)
    assert sorted(int(ds.InstanceNumber) for ds in series) == list(range(1, len(study.ct_instances) + 1))
    ds = client.retrieve_instance(study.study, study.ct_series, study.ct_instances[0])
    ref = archive.instances(study.study, study.ct_series, study.ct_instances[0])[0]
    assert ds.PixelData == dcm(archive.instance_bytes(ref)).PixelData
    assert ds.file_meta.TransferSyntaxUID == LE


def test_metadata_has_bulk_data_uris_that_resolve_and_inline_sr_and_seg(client, study, archive):
    series = client.retrieve_series_metadata(study.study, study.ct_series)
    assert len(series) == len(study.ct_instances)
    first = sorted(series, key=lambda i: value(i, "00200013"))[0]
    assert {"00280010", "00280011", "00281052", "00281053", "00200032", "00200037", "00280030"} <= set(first)
    uri = first["7FE00010"]["BulkDataURI"]
    assert uri.startswith("http://127.0.0.1:")
    ref = archive.instances(study.study, study.ct_series, study.ct_instances[0])[0]
    pixels = dcm(archive.instance_bytes(ref)).PixelData
    assert client.retrieve_bulkdata(uri) == [pixels]
    whole = client.retrieve_study_metadata(study.study)
    assert len(whole) == len(study.ct_instances) + 2
    (sr,) = client.retrieve_series_metadata(study.study, study.sr_series)
    assert sr["0040A043"]["Value"][0]["00080100"]["Value"] == ["126000"]  # TID 1500 root, inline
    assert "0040A730" in sr and "BulkDataURI" not in str(sr["0040A730"])
    seg = client.retrieve_instance_metadata(study.study, study.seg_series, study.seg_instance)
    assert seg["00081115"]["Value"][0]["0020000E"]["Value"] == [study.ct_series]  # ReferencedSeriesSequence
    assert "00620002" in seg and "52009230" in seg  # SegmentSequence, per-frame functional groups


def test_frames_single_and_lists(client, study, archive):
    ref = archive.instances(study.study, study.ct_series, study.ct_instances[2])[0]
    ds = dcm(archive.instance_bytes(ref))
    (frame,) = client.retrieve_instance_frames(study.study, study.ct_series, study.ct_instances[2], [1])
    assert frame == ds.PixelData
    seg_ref = archive.instances(study.study, study.seg_series, study.seg_instance)[0]
    seg = dcm(archive.instance_bytes(seg_ref))
    count = int(seg.NumberOfFrames)
    frames = client.retrieve_instance_frames(study.study, study.seg_series, study.seg_instance, list(range(1, count + 1)))
    assert len(frames) == count and b"".join(frames) == seg.PixelData[: len(b"".join(frames))]


def test_rendered_and_thumbnails(client, base, study):
    st, se, sop = study.study, study.ct_series, study.ct_instances[len(study.ct_instances) // 2]
    jpeg = client.retrieve_instance_rendered(st, se, sop, media_types=("image/jpeg",))
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"
    png = client.retrieve_instance_frames_rendered(st, se, sop, [1], media_types=("image/png",), params={"viewport": "64,64"})
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and max(image.size) == 64
    series_jpeg = client.retrieve_series_rendered(st, se, media_types=("image/jpeg",))
    assert Image.open(io.BytesIO(series_jpeg)).format == "JPEG"
    lung = Image.open(io.BytesIO(client.retrieve_instance_rendered(st, se, sop, params={"window": "-600,1500"})))
    soft = Image.open(io.BytesIO(client.retrieve_instance_rendered(st, se, sop, params={"window": "40,400"})))
    assert np.asarray(lung).mean() != np.asarray(soft).mean()
    for path in (f"/studies/{st}", f"/studies/{st}/series/{se}", f"/studies/{st}/series/{se}/instances/{sop}"):
        response = requests.get(f"{base}/dicom-web{path}/thumbnail", params={"viewport": "96,96"}, timeout=60)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(response.content)).size) == 96
    sr = requests.get(
        f"{base}/dicom-web/studies/{st}/series/{study.sr_series}/instances/{study.sr_instance}/rendered", timeout=60
    )
    assert sr.status_code == 200 and sr.headers["Content-Type"] == "image/jpeg"  # a text card


@pytest.mark.parametrize("ts", [RLE, J2K])
def test_transfer_syntax_negotiation_for_instances_and_frames(client, study, archive, ts):
    sop = study.ct_instances[1]
    ref = archive.instances(study.study, study.ct_series, sop)[0]
    native = dcm(archive.instance_bytes(ref))
    ds = client.retrieve_instance(study.study, study.ct_series, sop, media_types=(("application/dicom", ts),))
    assert ds.file_meta.TransferSyntaxUID == ts
    assert np.array_equal(ds.pixel_array, native.pixel_array)
    media_type = "image/dicom-rle" if ts == RLE else "image/jp2"
    (frame,) = client.retrieve_instance_frames(study.study, study.ct_series, sop, [1], media_types=((media_type, ts),))
    assert frame != native.PixelData and len(frame) > 0
    # An SR has no pixels to compress: it still arrives, as Explicit VR Little Endian.
    sr = client.retrieve_instance(study.study, study.sr_series, study.sr_instance, media_types=(("application/dicom", ts),))
    assert sr.file_meta.TransferSyntaxUID == LE


def test_unsupported_transfer_syntax_is_406_naming_the_alternatives(base, study):
    url = f"{base}/dicom-web/studies/{study.study}/series/{study.ct_series}/instances/{study.ct_instances[0]}"
    response = requests.get(
        url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'}
    )
    assert response.status_code == 406 and "1.2.840.10008.1.2.4.90" in response.json()["message"]
    frames = requests.get(url + "/frames/1", headers={"Accept": 'multipart/related; type="image/jpeg"'})
    assert frames.status_code == 406 and frames.json()["status"] == 406


# -- STOW-RS -------------------------------------------------------------------------------


def _big_dataset() -> pydicom.Dataset:
    """A CT-like object of about 1.2 MB made here, so dicomweb-client uploads it chunked."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Rows = ds.Columns = 768
    ds.PixelData = (np.arange(768 * 768, dtype=np.uint16) % 4000).astype("<u2").tobytes()
    ds.PatientID = "STOW-BIG"
    return ds


def test_store_instances_then_search_and_retrieve_byte_identical(client, base):
    originals = [pydicom.dcmread(get_testdata_file(name)) for name in FOREIGN_FILES] + [_big_dataset()]
    report = client.store_instances(originals)  # the store report, as a Dataset
    stored = [item.ReferencedSOPInstanceUID for item in report.ReferencedSOPSequence]
    assert stored == [str(ds.SOPInstanceUID) for ds in originals]
    assert "FailedSOPSequence" not in report
    for ds in originals:
        st, se, sop = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        hits = client.search_for_instances(search_filters={"SOPInstanceUID": sop})
        assert [value(h, "0020000D") for h in hits] == [st]
        assert client.search_for_studies(search_filters={"StudyInstanceUID": st})
        sent = io.BytesIO()
        pydicom.dcmwrite(sent, ds)  # as dicomweb-client encodes it
        response = requests.get(
            f"{base}/dicom-web/studies/{st}/series/{se}/instances/{sop}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
        )
        ((headers, body),) = split_multipart(response)
        assert body == sent.getvalue()  # byte for byte, as sent
        back = client.retrieve_instance(st, se, sop)
        assert back == ds


def test_stored_objects_are_kept_across_restarts(tmp_path):
    original = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    with start_server(tmp_path / "data") as first:
        DICOMwebClient(f"{first.base_url}/dicom-web").store_instances([original])
    with start_server(tmp_path / "data") as second:
        client = DICOMwebClient(f"{second.base_url}/dicom-web")
        assert client.search_for_instances(search_filters={"SOPInstanceUID": original.SOPInstanceUID})
        assert (
            client.retrieve_instance(original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID) == original
        )


def _multipart(parts: list[tuple[str, bytes]], boundary: str = "stow-test") -> tuple[bytes, str]:
    body = b"\r\n" + b"".join(f"--{boundary}\r\nContent-Type: {ct}\r\n\r\n".encode() + data + b"\r\n" for ct, data in parts)
    return body + f"--{boundary}--".encode(), f'multipart/related; type="application/dicom"; boundary="{boundary}"'


def _part10(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _fresh_ct() -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def _stored_count(archive) -> int:
    return archive.figures()["stored_instances"]


def test_store_refuses_non_dicom_parts_and_study_mismatch_without_writing(base, archive):
    before = _stored_count(archive)
    body, content_type = _multipart([("application/dicom", b"this is not DICOM"), ("text/plain", b"hello")])
    response = requests.post(f"{base}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 409 and response.headers["Content-Type"] == "application/dicom+json"
    failed = response.json()["00081198"]["Value"]
    assert [value(f, "00081197") for f in failed] == [0xC000, 0xC000]
    assert "not a DICOM" in response.headers["Warning"]
    good, other = _fresh_ct(), _fresh_ct()
    body, content_type = _multipart([("application/dicom", _part10(good)), ("application/dicom", _part10(other))])
    response = requests.post(
        f"{base}/dicom-web/studies/{good.StudyInstanceUID}", data=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 202
    report = response.json()
    assert [value(r, "00081155") for r in report["00081199"]["Value"]] == [good.SOPInstanceUID]
    assert [(value(f, "00081155"), value(f, "00081197")) for f in report["00081198"]["Value"]] == [(other.SOPInstanceUID, 0xA900)]
    assert value(report, "00081190").endswith(f"/studies/{good.StudyInstanceUID}")
    assert _stored_count(archive) == before + 1
    assert qido(base, "/instances", SOPInstanceUID=other.SOPInstanceUID) == []


def test_store_refuses_oversized_and_malformed_bodies_whole(tmp_path):
    with start_server(tmp_path / "data", max_upload_mb=1) as small:
        archive = small.pacs.archive
        big = _big_dataset()  # 1.2 MB > 1 MiB
        body, content_type = _multipart([("application/dicom", _part10(_fresh_ct())), ("application/dicom", _part10(big))])
        url = f"{small.base_url}/dicom-web/studies"
        response = requests.post(url, data=body, headers={"Content-Type": content_type})
        assert response.status_code == 413 and "max_upload_mb" in response.json()["message"]
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        chunked = requests.post(
            url, data=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]), headers={"Content-Type": content_type}
        )
        assert chunked.status_code == 413
        truncated, content_type = _multipart([("application/dicom", _part10(_fresh_ct()))])
        response = requests.post(url, data=truncated[:-12], headers={"Content-Type": content_type})
        assert response.status_code == 400 and "truncated" in response.json()["message"]
        response = requests.post(url, data=b"{}", headers={"Content-Type": "application/json"})
        assert response.status_code == 415
        assert _stored_count(archive) == 0
        assert not (tmp_path / "data" / "stored").exists() or not any((tmp_path / "data" / "stored").rglob("*.dcm"))


def test_store_refuses_a_synthetic_uid(base, study):
    ds = _fresh_ct()
    ds.SOPInstanceUID = study.ct_instances[0]
    body, content_type = _multipart([("application/dicom", _part10(ds))])
    response = requests.post(f"{base}/dicom-web/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 409 and "synthetic" in response.headers["Warning"]


# -- WADO-URI --------------------------------------------------------------------------------


def test_wado_uri_serves_dicom_and_jpeg(base, study, archive):
    params = {"requestType": "WADO", "studyUID": study.study, "seriesUID": study.ct_series, "objectUID": study.ct_instances[0]}
    ref = archive.instances(study.study, study.ct_series, study.ct_instances[0])[0]
    response = requests.get(f"{base}/wado", params={**params, "contentType": "application/dicom", "transferSyntax": "*"})
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/dicom"
    assert response.content == archive.instance_bytes(ref)
    response = requests.get(
        f"{base}/dicom-web/wado", params={**params, "contentType": "image/jpeg", "rows": "64", "columns": "64"}
    )
    assert response.status_code == 200 and max(Image.open(io.BytesIO(response.content)).size) == 64
    png = requests.get(f"{base}/wado", params={**params, "contentType": "image/png", "windowCenter": "40", "windowWidth": "400"})
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
    assert requests.get(f"{base}/wado", params={**params, "requestType": "WADO-RS"}).status_code == 400
    assert requests.get(f"{base}/wado", params={**params, "contentType": "video/mp4"}).status_code == 406


# -- bad input ---------------------------------------------------------------------------------


def test_bad_input_is_a_4xx_json_naming_the_problem(base, study):
    st, se, sop = study.study, study.ct_series, study.ct_instances[0]
    inst = f"/dicom-web/studies/{st}/series/{se}/instances/{sop}"
    cases = [
        ("/dicom-web/studies/not.a..uid", 400, "not a valid study UID"),
        ("/dicom-web/studies/01.2.3/series", 400, "not a valid"),
        ("/dicom-web/studies/1.2.3", 404, "no such study"),
        ("/dicom-web/studies/1.2.3/series", 404, "no such study"),
        (f"/dicom-web/studies/{st}/series/1.2.3/metadata", 404, "no such series"),
        (f"/dicom-web/studies/{st}/series/{se}/instances/1.2.3/frames/1", 404, "no such instance"),
        ("/dicom-web/studies?limit=-5", 400, "limit"),
        ("/dicom-web/studies?offset=x", 400, "offset"),
        ("/dicom-web/studies?StudyDate=yesterday", 400, "StudyDate"),
        (f"{inst}/frames/0", 400, "frame numbers"),
        (f"{inst}/frames/1,a", 400, "frame numbers"),
        (f"{inst}/frames/99", 404, "out of range"),
        (f"{inst}/rendered?viewport=0,10", 400, "viewport"),
        (f"{inst}/rendered?viewport=abc", 400, "viewport"),
        (f"{inst}/rendered?window=40", 400, "window"),
        (f"{inst}/rendered?window=40,0", 400, "window"),
        (f"{inst}/rendered?quality=101", 400, "quality"),
        (f"{inst}/rendered?window=1e400,10", 400, "finite"),
        ("/dicom-web/studies?offset=99999999999999999999999", 400, "offset"),
        (
            f"/wado?requestType=WADO&studyUID={st}&seriesUID={se}&objectUID={sop}&windowCenter=inf&windowWidth=9",
            400,
            "windowCenter",
        ),
        (f"{inst}/bulk/zzzz", 400, "bulk data path"),
        (f"{inst}/bulk/00100010", 404, "no bulk data"),
        ("/wado?requestType=WADO&studyUID=1.2", 400, "seriesUID"),
        ("/dicom-web/nothing-here", 404, ""),
        ("/ohif/missing-file.js", 404, ""),
    ]
    for path, status, words in cases:
        response = requests.get(base + path, timeout=60)
        assert response.status_code == status, (path, response.status_code, response.text)
        body = response.json()
        assert body["status"] == status and words in body["message"], (path, body)
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    rendered = requests.get(f"{base}{inst}/rendered", headers={"Accept": "image/gif"})
    assert rendered.status_code == 406 and "image/png" in rendered.json()["message"]
    metadata = requests.get(f"{base}{inst}/metadata", headers={"Accept": "application/dicom+xml"})
    assert metadata.status_code == 406
    assert requests.delete(f"{base}/dicom-web/studies/{st}").status_code == 405


def test_cors_preflight_on_any_path(base, study):
    url = f"{base}/dicom-web/studies/{study.study}/series/{study.ct_series}/instances/{study.ct_instances[0]}/frames/1"
    response = requests.options(
        url,
        headers={
            "Origin": "http://viewer.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept, authorization",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()
    assert requests.get(f"{base}/dicom-web/studies?limit=1").headers["Access-Control-Allow-Origin"] == "*"


def test_openapi_document_is_served(base):
    document = requests.get(f"{base}/openapi.json").json()
    assert document["openapi"].startswith("3.") and "/dicom-web/studies" in document["paths"]
