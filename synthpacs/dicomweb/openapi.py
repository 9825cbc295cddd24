"""The OpenAPI 3.0 document of the HTTP interface, served at ``/openapi.json``.

For client authors and for fuzzers (schemathesis reads it). Kept beside the
views: ``tests/test_dicomweb_openapi.py`` fails when a route is missing here.
"""

from __future__ import annotations

from flask import Blueprint

from .. import __version__
from .common import archive, json_response

bp = Blueprint("openapi", __name__)

UID_PATTERN = r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$"
_UIDS = {
    "study": "Study Instance UID (0020,000D)",
    "series": "Series Instance UID (0020,000E)",
    "instance": "SOP Instance UID (0008,0018)",
}


def _path_param(name: str, examples: dict) -> dict:
    if name in _UIDS:
        out = {
            "name": name,
            "in": "path",
            "required": True,
            "description": _UIDS[name],
            "schema": {"type": "string", "maxLength": 64, "pattern": UID_PATTERN},
        }
    elif name == "frame_list":
        out = {
            "name": name,
            "in": "path",
            "required": True,
            "description": "1-based frame numbers, comma separated (1 or 1,2,3)",
            "schema": {"type": "string", "pattern": r"^[1-9][0-9]*(,[1-9][0-9]*)*$"},
        }
    elif name == "tag_path":
        out = {
            "name": name,
            "in": "path",
            "required": True,
            "description": "Element path from a BulkDataURI: a tag (7FE00010) or tag/item/.../tag",
            "schema": {"type": "string"},
        }
    else:
        raise KeyError(name)
    if name in examples:
        out["example"] = examples[name]
    return out


def _query(name: str, description: str, schema: dict | None = None, required: bool = False, example=None) -> dict:
    out = {"name": name, "in": "query", "required": required, "description": description, "schema": schema or {"type": "string"}}
    if example is not None:
        out["example"] = example
    return out


ACCEPT = {
    "name": "Accept",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Media types, several alternatives joined by commas; quoted or unquoted parameters",
}
QIDO_PARAMS = [
    _query("limit", "At most this many results (capped by the qido_limit setting)", {"type": "integer", "minimum": 0}),
    _query("offset", "Skip this many results of the stable order", {"type": "integer", "minimum": 0}),
    _query("fuzzymatching", "Case-insensitive person-name matching", {"type": "string", "enum": ["true", "false"]}),
    {
        "name": "includefield",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": "Attributes to return (keyword or tag), comma-joined or repeated, or all",
        "schema": {"type": "array", "items": {"type": "string"}},
    },
    {
        "name": "match",
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "description": "Any attribute as a keyword or tag (PatientID=X, 00100020=X), with wildcards (*, ?), "
        "ranges (20240101-20241231, 20240101-), lists (a,b or a\\b) and sequence paths "
        "(ProcedureCodeSequence.CodeValue=X); keys that are no DICOM attribute are ignored",
        "schema": {"type": "object", "additionalProperties": {"type": "string"}},
    },
]
RENDER_PARAMS = [
    _query("viewport", "vw,vh: fit the image within this many pixels", {"type": "string", "pattern": r"^\d+,\d+$"}),
    _query("window", "center,width[,function]: VOI window; function linear, linear-exact or sigmoid"),
    _query("quality", "JPEG quality 1-100", {"type": "integer", "minimum": 1, "maximum": 100}),
]
ERROR = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
DICOM_JSON = {"application/dicom+json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/DicomJson"}}}}


def _multipart(part: str) -> dict:
    return {f'multipart/related; type="{part}"': {"schema": {"type": "string", "format": "binary"}}}


def _op(
    summary: str,
    *,
    params: list | None = None,
    responses: dict | None = None,
    tags: list | None = None,
    request_body: dict | None = None,
) -> dict:
    out = {
        "summary": summary,
        "tags": tags or ["DICOMweb"],
        "parameters": [ACCEPT] + (params or []),
        "responses": {**(responses or {}), "400": ERROR, "404": ERROR, "406": ERROR},
    }
    if request_body:
        out["requestBody"] = request_body
    return out


def _qido(level: str) -> dict:
    return {
        "get": _op(
            f"QIDO-RS: search for {level}",
            params=QIDO_PARAMS,
            tags=["QIDO-RS"],
            responses={"200": {"description": "Matches (an empty array past the end)", "content": DICOM_JSON}},
        )
    }


def _retrieve(what: str) -> dict:
    return {
        "get": _op(
            f"WADO-RS: retrieve the {what} as Part 10 objects",
            tags=["WADO-RS"],
            responses={
                "200": {
                    "description": "One part per instance, each labelled with its transfer syntax",
                    "content": {
                        **_multipart("application/dicom"),
                        "application/dicom": {"schema": {"type": "string", "format": "binary"}},
                    },
                }
            },
        )
    }


def _metadata(what: str) -> dict:
    return {
        "get": _op(
            f"WADO-RS: metadata of the {what} (BulkDataURIs for pixel data)",
            tags=["WADO-RS"],
            responses={"200": {"description": "One dataset per instance", "content": DICOM_JSON}},
        )
    }


def _rendered(what: str, tag: str = "WADO-RS rendered") -> dict:
    return {
        "get": _op(
            f"{what} as JPEG (PNG on request)",
            params=RENDER_PARAMS,
            tags=[tag],
            responses={
                "200": {
                    "description": "The image",
                    "content": {
                        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                    },
                }
            },
        )
    }


def _stow(summary: str) -> dict:
    body = {
        "required": True,
        "content": {**_multipart("application/dicom"), "application/dicom": {"schema": {"type": "string", "format": "binary"}}},
    }
    report = {"content": {"application/dicom+json": {"schema": {"$ref": "#/components/schemas/DicomJson"}}}}
    return {
        "post": _op(
            summary,
            tags=["STOW-RS"],
            request_body=body,
            responses={
                "200": {"description": "Every object stored", **report},
                "202": {"description": "Some objects stored; FailedSOPSequence lists the others", **report},
                "409": {"description": "No object stored", **report},
                "413": ERROR,
                "415": ERROR,
            },
        )
    }


INSTANCE = ["study", "series", "instance"]


def document(examples: dict | None = None) -> dict:
    """The document; ``examples`` gives path parameters example values (real UIDs of this universe)."""
    examples = examples or {}

    def _with_params(item: dict, names: list[str]) -> dict:
        item["parameters"] = [_path_param(n, examples) for n in names]
        return item

    st, se, sop = "{study}", "{series}", "{instance}"
    r = "/dicom-web"
    paths = {
        f"{r}/studies": {**_qido("studies"), **_stow("STOW-RS: store instances")},
        f"{r}/series": _qido("series"),
        f"{r}/instances": _qido("instances"),
        f"{r}/studies/{st}": _with_params({**_retrieve("study"), **_stow("STOW-RS: store instances into this study")}, ["study"]),
        f"{r}/studies/{st}/series": _with_params(_qido("the study's series"), ["study"]),
        f"{r}/studies/{st}/instances": _with_params(_qido("the study's instances"), ["study"]),
        f"{r}/studies/{st}/metadata": _with_params(_metadata("study"), ["study"]),
        f"{r}/studies/{st}/thumbnail": _with_params(_rendered("Thumbnail of the study", "Thumbnails"), ["study"]),
        f"{r}/studies/{st}/series/{se}": _with_params(_retrieve("series"), ["study", "series"]),
        f"{r}/studies/{st}/series/{se}/instances": _with_params(_qido("the series' instances"), ["study", "series"]),
        f"{r}/studies/{st}/series/{se}/metadata": _with_params(_metadata("series"), ["study", "series"]),
        f"{r}/studies/{st}/series/{se}/rendered": _with_params(
            _rendered("The series rendered (one image, or multipart of all)"), ["study", "series"]
        ),
        f"{r}/studies/{st}/series/{se}/thumbnail": _with_params(
            _rendered("Thumbnail of the series", "Thumbnails"), ["study", "series"]
        ),
        f"{r}/studies/{st}/series/{se}/instances/{sop}": _with_params(_retrieve("instance"), INSTANCE),
        f"{r}/studies/{st}/series/{se}/instances/{sop}/metadata": _with_params(_metadata("instance"), INSTANCE),
        f"{r}/studies/{st}/series/{se}/instances/{sop}/rendered": _with_params(_rendered("The instance rendered"), INSTANCE),
        f"{r}/studies/{st}/series/{se}/instances/{sop}/thumbnail": _with_params(
            _rendered("Thumbnail of the instance", "Thumbnails"), INSTANCE
        ),
        f"{r}/studies/{st}/series/{se}/instances/{sop}/frames/{{frame_list}}": _with_params(
            {
                "get": _op(
                    "WADO-RS: frames as native little-endian pixels (RLE or JPEG 2000 Lossless on request)",
                    tags=["WADO-RS"],
                    responses={
                        "200": {
                            "description": "One part per frame, Content-Type application/octet-stream; "
                            "transfer-syntax=1.2.840.10008.1.2.1",
                            "content": {
                                **_multipart("application/octet-stream"),
                                **_multipart("image/jp2"),
                                **_multipart("image/dicom-rle"),
                            },
                        }
                    },
                )
            },
            ["study", "series", "instance", "frame_list"],
        ),
        f"{r}/studies/{st}/series/{se}/instances/{sop}/frames/{{frame_list}}/rendered": _with_params(
            _rendered("Frames rendered (multipart when several)"), ["study", "series", "instance", "frame_list"]
        ),
        f"{r}/studies/{st}/series/{se}/instances/{sop}/frames/{{frame_list}}/thumbnail": _with_params(
            _rendered("Thumbnail of a frame", "Thumbnails"), ["study", "series", "instance", "frame_list"]
        ),
        f"{r}/studies/{st}/series/{se}/instances/{sop}/bulk/{{tag_path}}": _with_params(
            {
                "get": _op(
                    "WADO-RS: bulk data named by a BulkDataURI",
                    tags=["WADO-RS"],
                    responses={
                        "200": {
                            "description": "The value's bytes",
                            "content": {
                                **_multipart("application/octet-stream"),
                                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                            },
                        }
                    },
                )
            },
            ["study", "series", "instance", "tag_path"],
        ),
    }
    wado_uri = {
        "get": _op(
            "WADO-URI: one object as DICOM or JPEG/PNG",
            tags=["WADO-URI"],
            params=[
                _query("requestType", "WADO", {"type": "string", "enum": ["WADO"]}, required=True),
                _query(
                    "studyUID",
                    "Study Instance UID",
                    {"type": "string", "pattern": UID_PATTERN},
                    required=True,
                    example=examples.get("study"),
                ),
                _query(
                    "seriesUID",
                    "Series Instance UID",
                    {"type": "string", "pattern": UID_PATTERN},
                    required=True,
                    example=examples.get("series"),
                ),
                _query(
                    "objectUID",
                    "SOP Instance UID",
                    {"type": "string", "pattern": UID_PATTERN},
                    required=True,
                    example=examples.get("instance"),
                ),
                _query("contentType", "application/dicom, image/jpeg or image/png (comma list allowed)"),
                _query("transferSyntax", "For application/dicom: a transfer syntax UID or *"),
                _query("rows", "Rendered height", {"type": "integer", "minimum": 1}),
                _query("columns", "Rendered width", {"type": "integer", "minimum": 1}),
                _query("windowCenter", "VOI window center", {"type": "number"}),
                _query("windowWidth", "VOI window width", {"type": "number", "minimum": 1}),
                _query("frameNumber", "1-based frame", {"type": "integer", "minimum": 1}),
                _query("imageQuality", "JPEG quality 1-100", {"type": "integer", "minimum": 1, "maximum": 100}),
            ],
            responses={
                "200": {
                    "description": "The object",
                    "content": {
                        "application/dicom": {"schema": {"type": "string", "format": "binary"}},
                        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}},
                    },
                }
            },
        )
    }
    paths["/wado"] = wado_uri
    paths[f"{r}/wado"] = wado_uri
    json_object = {"application/json": {"schema": {"type": "object"}}}
    paths["/healthz"] = {
        "get": {
            "summary": "Readiness (200 once both front ends serve), the universe's figures and the work in hand "
            "(studies_generating, memory_cache_bytes, memory_cache_max_bytes)",
            "tags": ["Server"],
            "responses": {"200": {"description": "Ready", "content": json_object}, "503": {"description": "Starting"}},
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "tags": ["Server"],
            "responses": {"200": {"description": "OpenAPI 3.0", "content": json_object}},
        }
    }
    ohif_page = {"description": "HTML or the viewer's assets", "content": {"text/html": {"schema": {"type": "string"}}}}
    paths["/ohif"] = {
        "get": {"summary": "Redirects to /ohif/", "tags": ["OHIF"], "responses": {"308": {"description": "Redirect"}}}
    }
    paths["/ohif/"] = {
        "get": {
            "summary": "The OHIF Viewer (when installed by scripts/install-ohif.sh)",
            "tags": ["OHIF"],
            "responses": {"200": ohif_page, "404": ERROR},
        }
    }
    paths["/ohif/app-config.js"] = {
        "get": {
            "summary": "OHIF configuration: this server's /dicom-web as data source",
            "tags": ["OHIF"],
            "responses": {"200": {"description": "JavaScript"}, "404": ERROR},
        }
    }
    paths["/ohif/{path}"] = {
        "get": {
            "summary": "OHIF assets; other paths without an extension answer index.html",
            "tags": ["OHIF"],
            "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": ohif_page, "404": ERROR},
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "SynthPACS HTTP interface",
            "version": __version__,
            "description": "DICOMweb (PS3.18: QIDO-RS, WADO-RS, STOW-RS, WADO-URI) over a synthetic universe, "
            "plus the OHIF Viewer. CORS on every response; OPTIONS answers preflight on every path.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message", "status"],
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "status": {"type": "integer"}},
                },
                "DicomJson": {
                    "type": "object",
                    "description": "A dataset in the DICOM JSON Model (PS3.18 Annex F)",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {
                            "vr": {"type": "string"},
                            "Value": {"type": "array"},
                            "BulkDataURI": {"type": "string"},
                            "InlineBinary": {"type": "string"},
                        },
                    },
                },
            }
        },
    }


def _examples() -> dict:
    """UIDs of one synthetic image, so that a fuzzer reaches the real resources."""
    from ..archive.catalog import QueryLevel
    from ..imaging.registry import renders

    found = next(
        (ds for ds in archive().find(QueryLevel.IMAGE, {"InstanceNumber": "1"}, limit=20) if renders(str(ds.SOPClassUID))), None
    )
    if found is None:
        return {}
    return {
        "study": str(found.StudyInstanceUID),
        "series": str(found.SeriesInstanceUID),
        "instance": str(found.SOPInstanceUID),
        "frame_list": "1",
        "tag_path": "7FE00010",
    }


@bp.get("/openapi.json")
def openapi_json():
    return json_response(document(_examples()), content_type="application/json")
