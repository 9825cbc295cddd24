"""DICOMweb building blocks without a server: Accept parsing and negotiation,
multipart bodies, the DICOM JSON encoder and QIDO query parsing."""

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from werkzeug.datastructures import MultiDict

from synthpacs.dicomweb import media
from synthpacs.dicomweb.dicomjson import dataset_json
from synthpacs.dicomweb.errors import BadRequest, NotAcceptable, UnsupportedMediaType
from synthpacs.dicomweb.qido import parse_query

LE, RLE, J2K = media.EXPLICIT_VR_LE, media.RLE_LOSSLESS, media.JPEG2000_LOSSLESS
OHIF_FRAMES_QUOTED = 'multipart/related; type="application/octet-stream"; transfer-syntax="*"'
OHIF_FRAMES_UNQUOTED = "multipart/related; type=application/octet-stream; transfer-syntax=*"
OHIF_COMBINED = "application/dicom+json, multipart/related; type=application/octet-stream; transfer-syntax=*; transfer-syntax=*"


def test_parse_accept_reads_quoted_and_unquoted_parameters_and_alternatives():
    ranges = media.parse_accept([OHIF_COMBINED])
    assert [r.media_type for r in ranges] == ["application/dicom+json", "multipart/related"]
    assert ranges[1].part_type == "application/octet-stream" and ranges[1].transfer_syntax == "*"
    quoted = media.parse_accept(OHIF_FRAMES_QUOTED)[0]
    assert quoted.part_type == "application/octet-stream" and quoted.transfer_syntax == "*"


def test_parse_accept_orders_by_quality_and_drops_q0():
    ranges = media.parse_accept("image/png;q=0.5, image/jpeg, text/html;q=0")
    assert [r.media_type for r in ranges] == ["image/jpeg", "image/png"]
    assert media.parse_accept("*")[0].media_type == "*/*"
    assert media.parse_accept("") == [] and media.parse_accept(None) == []


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, (media.OCTET_STREAM, LE, True)),
        ("*/*", (media.OCTET_STREAM, LE, True)),
        (OHIF_FRAMES_QUOTED, (media.OCTET_STREAM, LE, True)),
        (OHIF_FRAMES_UNQUOTED, (media.OCTET_STREAM, LE, True)),
        ('multipart/related; type="application/octet-stream"', (media.OCTET_STREAM, LE, True)),
        (
            'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
            (media.OCTET_STREAM, LE, True),
        ),
        ('multipart/related; type="*/*"', (media.OCTET_STREAM, LE, True)),  # dicomweb-client's frames default
        ('multipart/related; type="image/jp2"', ("image/jp2", J2K, True)),
        (f'multipart/related; type="image/jp2"; transfer-syntax={J2K}', ("image/jp2", J2K, True)),
        (f'multipart/related; type="image/dicom-rle"; transfer-syntax={RLE}', ("image/dicom-rle", RLE, True)),
        (
            'multipart/related; type="image/jpeg", multipart/related; type="application/octet-stream"',
            (media.OCTET_STREAM, LE, True),
        ),  # the first alternative cannot be served, the second can
        ("application/octet-stream", (media.OCTET_STREAM, LE, False)),
    ],
)
def test_negotiate_frames(accept, expected):
    choice = media.negotiate_pixels(media.parse_accept(accept))
    assert (choice.media_type, choice.transfer_syntax, choice.multipart) == expected


@pytest.mark.parametrize(
    "accept",
    [
        'multipart/related; type="image/jpeg"',
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50',
        "image/png",
    ],
)
def test_negotiate_frames_refuses_what_it_cannot_make(accept):
    with pytest.raises(NotAcceptable, match="available are"):
        media.negotiate_pixels(media.parse_accept(accept))


@pytest.mark.parametrize(
    "accept, single, expected",
    [
        (None, False, (True, (LE,))),
        ('multipart/related; type="application/dicom"', False, (True, (LE,))),
        ('multipart/related; type="application/dicom"; transfer-syntax=*', False, (True, (media.ANY_TS,))),
        ('multipart/related;type="application/dicom";transfer-syntax=*', False, (True, (media.ANY_TS,))),  # Weasis
        (f"multipart/related; type=application/dicom; transfer-syntax={RLE}", False, (True, (RLE,))),
        (
            f'multipart/related; type="application/dicom"; transfer-syntax={J2K}, '
            f'multipart/related; type="application/dicom"; transfer-syntax={LE};q=0.5',
            False,
            (True, (J2K, LE)),
        ),
        ("application/dicom", True, (False, (LE,))),
        ("application/dicom", False, (True, (LE,))),
        ("*/*", False, (True, (LE,))),
    ],
)
def test_negotiate_instances(accept, single, expected):
    choice = media.negotiate_dicom(media.parse_accept(accept), single_part_allowed=single)
    assert (choice.multipart, choice.transfer_syntaxes) == expected


def test_negotiate_instances_names_what_it_can_serve():
    with pytest.raises(NotAcceptable, match="1.2.840.10008.1.2.5"):
        media.negotiate_dicom(
            media.parse_accept('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50')
        )
    with pytest.raises(NotAcceptable):
        media.negotiate_dicom(media.parse_accept("image/jpeg"))


@pytest.mark.parametrize(
    "accept, ok",
    [
        (None, True),
        ("application/dicom+json", True),
        ("application/json", True),
        ("*/*", True),
        ("application/dicom+json, application/json", True),
        (OHIF_COMBINED, True),
        ("multipart/related; type=application/octet-stream", True),
        ("application/dicom+xml", False),
        ("image/jpeg", False),
    ],
)
def test_json_is_served_unless_only_other_types_are_asked_for(accept, ok):
    assert media.accepts_json(media.parse_accept(accept)) is ok


@pytest.mark.parametrize(
    "accept, expected",
    [
        (None, ("image/jpeg", False)),
        ("image/png", ("image/png", False)),
        ("image/*", ("image/jpeg", False)),
        ("image/png, image/jpeg;q=0.9", ("image/png", False)),
        ('multipart/related; type="image/png"', ("image/png", True)),
    ],
)
def test_negotiate_rendered(accept, expected):
    choice = media.negotiate_image(media.parse_accept(accept))
    assert (choice.media_type, choice.multipart) == expected
    with pytest.raises(NotAcceptable):
        media.negotiate_image(media.parse_accept("image/gif"))


def test_multipart_round_trip_with_leading_crlf():
    parts = [("application/dicom", b"first"), ("application/dicom", b"\r\n--x\r\nsecond")]
    body = b"\r\n" + b"".join(media.multipart_chunks(parts, "abc123"))
    assert body.startswith(b"\r\n--abc123\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n--abc123")
    parsed = media.parse_multipart(body, "abc123")
    assert [(p.content_type, p.data) for p in parsed] == parts


def test_multipart_parse_refuses_truncated_bodies():
    body = b"".join(media.multipart_chunks([("application/dicom", b"data")], "b"))
    with pytest.raises(BadRequest, match="truncated"):
        media.parse_multipart(body[:-8], "b")
    with pytest.raises(BadRequest, match="boundary"):
        media.parse_multipart(b"no delimiter here", "b")


def test_boundary_of_request_content_types():
    parsed, boundary = media.boundary_of('multipart/related; type="application/dicom"; boundary="0f3c-ef"')
    assert boundary == "0f3c-ef" and parsed.part_type == "application/dicom"
    with pytest.raises(UnsupportedMediaType):
        media.boundary_of("application/json")
    with pytest.raises(BadRequest, match="no boundary"):
        media.boundary_of('multipart/related; type="application/dicom"')


def test_dicom_json_values_are_typed_as_viewers_read_them():
    ds = Dataset()
    ds.PatientName = "DOE^JANE=ドウ^ジェーン"
    ds.ReferringPhysicianName = ""
    ds.InstanceNumber = "7"
    ds.PixelSpacing = ["0.5", "0.25"]
    ds.Rows = 4
    ds.FrameIncrementPointer = 0x00181063
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    item = Dataset()
    item.CodeValue = "126000"
    item.ReferencedImageSequence = Sequence([Dataset()])
    item.ReferencedImageSequence[0].add_new(0x00091010, "OB", b"\x01" * 2000)
    ds.ConceptNameCodeSequence = Sequence([item])
    ds.add_new(0x00091011, "OB", b"\x01\x02")
    ds.PixelData = b"\x00" * 32
    out = dataset_json(ds, bulk_uri=lambda path: "/bulk/" + "/".join(map(str, path)))
    assert out["00100010"]["Value"] == [{"Alphabetic": "DOE^JANE", "Ideographic": "ドウ^ジェーン"}]
    assert "Value" not in out["00080090"] and out["00080090"]["vr"] == "PN"
    assert out["00200013"]["Value"] == [7] and out["00280030"]["Value"] == [0.5, 0.25]
    assert out["00280010"]["Value"] == [4] and out["00280009"]["Value"] == ["00181063"]
    assert out["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]
    nested = out["0040A043"]["Value"][0]["00081140"]["Value"][0]["00091010"]
    assert nested["BulkDataURI"] == f"/bulk/{0x0040A043}/0/{0x00081140}/0/{0x00091010}"
    assert out["00091011"]["InlineBinary"] == "AQI="
    assert out["7FE00010"]["BulkDataURI"] == f"/bulk/{0x7FE00010}"


@pytest.mark.filterwarnings("ignore:Invalid value for VR IS")
def test_dicom_json_survives_a_malformed_number():
    from pydicom.dataelem import RawDataElement

    ds = Dataset()
    ds[0x00200013] = RawDataElement(0x00200013, "IS", 6, b"seven ", 0, False, True)  # as read from a stored file
    ds.Rows = 2
    out = dataset_json(ds)
    assert out["00200013"]["vr"] == "IS" and out["00200013"].get("Value") in (None, ["seven"])
    assert out["00280010"]["Value"] == [2]


def test_query_keys_as_keywords_or_tags_with_lists_and_sequences():
    args = MultiDict(
        [
            ("00100020", "SYN*"),
            ("ModalitiesInStudy", "CT,MR"),
            ("StudyInstanceUID", "1.2.3,1.2.4"),
            ("StudyDescription", "CT, CHEST"),
            ("ProcedureCodeSequence.CodeValue", "24627-2"),
            ("NotAnAttribute", "x"),
            ("00991010", "private"),
            ("limit", "5"),
            ("offset", "10"),
            ("fuzzymatching", "true"),
            ("includefield", "00081030,StudyDescription"),
            ("includefield", "00080060"),
            ("includefield", "Bogus"),
        ]
    )
    query, include, fuzzy, limit, offset = parse_query(args)
    assert query == {
        "PatientID": "SYN*",
        "ModalitiesInStudy": "CT\\MR",
        "StudyInstanceUID": "1.2.3\\1.2.4",
        "StudyDescription": "CT, CHEST",
        "ProcedureCodeSequence": [{"CodeValue": "24627-2"}],
    }
    assert include == {"StudyDescription", "Modality"} and fuzzy and (limit, offset) == (5, 10)
    assert parse_query(MultiDict([("includefield", "all")]))[1] is None


@pytest.mark.parametrize(
    "args, message",
    [
        ([("limit", "-1")], "limit"),
        ([("offset", "ten")], "offset"),
        ([("fuzzymatching", "maybe")], "fuzzymatching"),
    ],
)
def test_query_control_parameters_are_checked(args, message):
    with pytest.raises(BadRequest, match=message):
        parse_query(MultiDict(args))
