"""No stored object is lost to a bad one (DESIGN §2.6): STOW-RS and C-STORE
accept an object only when it parses completely, so a copy cut short never
replaces an intact one; the STOW-RS body streams (chunked, leading CRLF)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import requests
from conftest import make_config
from e2e.dicomweb import split_multipart, value
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage

from synthpacs.archive.intake import receive
from synthpacs.errors import StoreRefusalValues, StoreRefused

pytestmark = pytest.mark.timeout(120)

HOST = "127.0.0.1"
CANNOT_UNDERSTAND = 0xC000


# -- objects made here ----------------------------------------------------------------------


def make_ct(
    *, sop_uid: str | None = None, study_uid: str | None = None, series_uid: str | None = None, description: str = "INTAKE TEST"
) -> Dataset:
    """A 64 x 64 CT image built with pydicom (its own 2.25 UIDs), Synthetic Data YES."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid(prefix=None)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240301", "101500", "INTAKE1"
    ds.Modality, ds.Manufacturer = "CT", "SynthPACS tests"
    ds.SyntheticData = "YES"
    ds.SeriesDescription = description
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "INTAKE^TEST", "EXT-INTAKE", "19600101", "O"
    ds.StudyInstanceUID = study_uid or generate_uid(prefix=None)
    ds.SeriesInstanceUID = series_uid or generate_uid(prefix=None)
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = 64
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    pixels = (np.add.outer(np.arange(64), np.arange(64)) * 16).astype("<i2")
    ds.PixelData = pixels.tobytes()
    return ds


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_rle_ct(**kwargs) -> Dataset:
    ds = make_ct(**kwargs)
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    return ds


def cut_points(data: bytes) -> dict[str, int]:
    """Places after the file meta where a transfer can stop: inside an element
    header, inside a value, inside the pixel data, just before the last byte."""
    ds = dcmread(io.BytesIO(data))
    series_description = ds.get_item("SeriesDescription")  # a raw element: where its value lies in the file
    pixel_data = ds.get_item("PixelData")
    return {
        "element header": series_description.value_tell - 8 + 3,  # explicit VR LE short header
        "value": series_description.value_tell + 3,
        "pixel data": pixel_data.value_tell + len(pixel_data.value) // 2,
        "last byte": len(data) - 1,
    }


def stow_body(parts: list[bytes], boundary: str = "intake-boundary") -> tuple[bytes, str]:
    body = b"\r\n" + b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + f"--{boundary}--\r\n".encode(), f'multipart/related; type="application/dicom"; boundary={boundary}'


# -- a running server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    from synthpacs.server import RunningServer

    server = RunningServer(make_config(tmp_path_factory.mktemp("intake") / "data", renderer="teacher"))
    yield server
    server.stop()


def stow(server, parts: list[bytes], **kwargs) -> requests.Response:
    body, content_type = stow_body(parts)
    return requests.post(
        f"{server.base_url}/dicom-web/studies",
        data=kwargs.pop("data", body),
        headers={"Content-Type": content_type},
        timeout=60,
        **kwargs,
    )


def c_store(server, paths, *, transfer_syntax=ExplicitVRLittleEndian) -> list[Dataset]:
    """Each file sent by a pynetdicom SCU as it is on disk (not decoded first)."""
    ae = AE("INTAKESCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(CTImageStorage, [transfer_syntax])
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True  # the bytes of the file, cut or not, go as they are
    assoc = ae.associate(HOST, server.dicom_port, ae_title="SYNTHPACS")
    try:
        assert assoc.is_established
        return [assoc.send_c_store(path) for path in paths]
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
        assoc.release()


def retrieve(server, ds: Dataset) -> bytes:
    url = f"{server.base_url}/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    response = requests.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}, timeout=60)
    assert response.status_code == 200, response.text
    ((_, body),) = split_multipart(response)
    return body


def stored_count(server) -> int:
    archive = server.pacs.archive
    figures = archive.figures() if hasattr(archive, "figures") else archive.catalog.figures()
    return figures["stored_instances"]


# -- cut copies never replace an intact one ---------------------------------------------------


@pytest.mark.filterwarnings("ignore:End of file reached before delimiter")  # pydicom, on the cut RLE stream
@pytest.mark.parametrize("make", [make_ct, make_rle_ct], ids=["native", "rle"])
def test_a_cut_copy_is_refused_by_stow_and_c_store_and_the_intact_copy_survives(running, tmp_path, make):
    original = make(description="INTACT")
    intact = part10(original)
    response = stow(running, [intact])
    assert response.status_code == 200, response.text
    before = stored_count(running)
    replacement = make(
        sop_uid=str(original.SOPInstanceUID),
        study_uid=str(original.StudyInstanceUID),
        series_uid=str(original.SeriesInstanceUID),
        description="REPLACEMENT",
    )
    data = part10(replacement)
    cuts = cut_points(data)
    paths = []
    for name, cut in cuts.items():
        response = stow(running, [data[:cut]])
        assert response.status_code == 409, (name, response.text)
        (failure,) = response.json()["00081198"]["Value"]
        assert value(failure, "00081197") == CANNOT_UNDERSTAND, name
        assert value(failure, "00081155") == str(original.SOPInstanceUID), name
        assert "incomplete" in response.headers["Warning"], name
        path = tmp_path / f"{name.replace(' ', '-')}.dcm"
        path.write_bytes(data[:cut])
        paths.append(path)
    transfer_syntax = original.file_meta.TransferSyntaxUID
    for name, status in zip(cuts, c_store(running, paths, transfer_syntax=transfer_syntax), strict=True):
        assert status.Status == CANNOT_UNDERSTAND, (name, status)
        assert "incomplete" in status.ErrorComment, name
    assert stored_count(running) == before
    assert retrieve(running, original) == intact  # byte for byte, pixels and all
    archive = running.pacs.archive
    (ref,) = archive.instances(str(original.StudyInstanceUID), str(original.SeriesInstanceUID), str(original.SOPInstanceUID))
    assert archive.instance_bytes(ref) == intact
    found = list(archive.find("SERIES", {"SeriesInstanceUID": str(original.SeriesInstanceUID), "SeriesDescription": ""}))
    assert [str(ds.SeriesDescription) for ds in found] == ["INTACT"]
    # The whole replacement is accepted, by either front end, and replaces the copy.
    whole = tmp_path / "whole.dcm"
    whole.write_bytes(data)
    (status,) = c_store(running, [whole], transfer_syntax=transfer_syntax)
    assert status.Status == 0x0000
    back = dcmread(io.BytesIO(retrieve(running, original)))  # C-STORE: the file meta is the receiver's
    assert back.SeriesDescription == "REPLACEMENT" and back.PixelData == replacement.PixelData
    assert stored_count(running) == before


def test_the_stow_report_names_refused_parts_beside_stored_ones(running):
    good, cut = make_ct(), make_ct()
    response = stow(running, [part10(good), part10(cut)[:-1]])
    assert response.status_code == 202
    report = response.json()
    assert [value(r, "00081155") for r in report["00081199"]["Value"]] == [str(good.SOPInstanceUID)]
    assert [(value(f, "00081155"), value(f, "00081197")) for f in report["00081198"]["Value"]] == [
        (str(cut.SOPInstanceUID), CANNOT_UNDERSTAND)
    ]


# -- the STOW-RS body streams -------------------------------------------------------------------


def test_a_chunked_upload_and_a_body_that_starts_with_crlf_are_stored(running):
    first, second = make_ct(), make_ct()
    body, content_type = stow_body([part10(first), part10(second)])
    assert body.startswith(b"\r\n--")
    url = f"{running.base_url}/dicom-web/studies"
    chunked = requests.post(
        url,
        data=iter([body[i : i + 1000] for i in range(0, len(body), 1000)]),
        headers={"Content-Type": content_type},
        timeout=60,
    )  # Transfer-Encoding: chunked
    assert chunked.status_code == 200, chunked.text
    assert [value(r, "00081155") for r in chunked.json()["00081199"]["Value"]] == [
        str(first.SOPInstanceUID),
        str(second.SOPInstanceUID),
    ]
    assert retrieve(running, first) == part10(first) and retrieve(running, second) == part10(second)
    single = make_ct()  # one object as the whole body (Content-Type: application/dicom)
    response = requests.post(url, data=iter([part10(single)]), headers={"Content-Type": "application/dicom"}, timeout=60)
    assert response.status_code == 200 and retrieve(running, single) == part10(single)


def test_a_truncated_multipart_body_stores_nothing(running):
    before = stored_count(running)
    body, content_type = stow_body([part10(make_ct())])
    response = requests.post(
        f"{running.base_url}/dicom-web/studies", data=iter([body[:-30]]), headers={"Content-Type": content_type}, timeout=60
    )
    assert response.status_code == 400 and "truncated" in response.json()["message"]
    assert stored_count(running) == before


# -- intake itself --------------------------------------------------------------------------------


def test_intake_names_the_reason():
    ds = make_ct()
    assert receive(part10(ds)).sop_instance_uid == str(ds.SOPInstanceUID)
    cases = [
        (b"not DICOM at all", StoreRefusalValues.NOT_DICOM),
        (part10(ds)[:-2], StoreRefusalValues.INCOMPLETE),
    ]
    short = make_ct()
    short.PixelData = short.PixelData[:-64]  # a whole element, but fewer pixels than Rows x Columns
    cases.append((part10(short), StoreRefusalValues.INCOMPLETE))
    no_pixels = make_ct()
    del no_pixels.PixelData  # as if cut just before it
    cases.append((part10(no_pixels), StoreRefusalValues.INCOMPLETE))
    no_series = make_ct()
    del no_series.SeriesInstanceUID
    cases.append((part10(no_series), StoreRefusalValues.MISSING_UID))
    for data, reason in cases:
        with pytest.raises(StoreRefused) as refused:
            receive(data)
        assert refused.value.reason is reason, refused.value
    with pytest.raises(StoreRefused, match="differs from the command") as refused:
        receive(part10(ds), expected={"SOPInstanceUID": "2.25.1"}, source="the command")
    assert refused.value.reason is StoreRefusalValues.UID_MISMATCH and refused.value.keyword == "SOPInstanceUID"


def test_odd_pixel_data_may_carry_its_pad_byte():
    ds = make_ct()
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 3, 3, 8, 8, 7, 0
    ds.PixelData = bytes(range(9))  # 9 bytes, written with one pad byte
    assert len(receive(part10(ds)).dataset.PixelData) in (9, 10)


def test_an_encapsulated_object_with_a_fragment_cut_short_is_refused():
    ds = make_rle_ct()
    assert receive(part10(ds)).transfer_syntax_uid == RLELossless
    (fragment,) = generate_frames(ds.PixelData, number_of_frames=1)  # RLE: one fragment per frame
    second_segment = int.from_bytes(fragment[8:12], "little")
    ds.PixelData = encapsulate([fragment[: second_segment - 2]])  # item lengths agree, the fragment lacks a segment
    with pytest.raises(StoreRefused, match="RLE header") as refused:
        receive(part10(ds))
    assert refused.value.reason is StoreRefusalValues.INCOMPLETE
    ds.PixelData = encapsulate([fragment])[:-6]  # the last item declares more than the stream holds
    with pytest.raises(StoreRefused, match="incomplete") as refused:
        receive(part10(ds))


def test_concurrent_stores_of_one_uid_leave_the_index_and_the_disk_agreeing(archive):
    first = make_ct()
    uids = {
        "sop_uid": str(first.SOPInstanceUID),
        "study_uid": str(first.StudyInstanceUID),
        "series_uid": str(first.SeriesInstanceUID),
    }
    copies = [part10(make_ct(description=f"COPY {i}", **uids)) for i in range(8)]
    results = []
    threads = [threading.Thread(target=lambda data=data: results.append(archive.store(data))) for data in copies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.replaced for r in results) == [False] + [True] * 7  # exactly one was first
    (ref,) = archive.instances(uids["study_uid"], uids["series_uid"], uids["sop_uid"])
    on_disk = dcmread(io.BytesIO(archive.instance_bytes(ref)))
    (indexed,) = archive.find("SERIES", {"SeriesInstanceUID": uids["series_uid"], "SeriesDescription": ""})
    assert indexed.SeriesDescription == on_disk.SeriesDescription
