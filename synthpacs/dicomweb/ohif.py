"""The OHIF Viewer, served same-origin at ``/ohif/`` (so no CORS, no preflight).

``scripts/install-ohif.sh`` unpacks the prebuilt viewer that ``@ohif/app``
publishes on npm (its ``dist/``) into ``ohif_dir``. That build is made for the
site root: ``index.html`` sets ``window.PUBLIC_URL="/"`` and names its assets
``/...``, each webpack runtime loads chunks from ``__webpack_require__.p =
"/"``, the stylesheet loads its font from ``url(/...)`` and the manifest names
``/assets/`` icons. Those few strings are rewritten to ``/ohif/`` as the files are served
(the installed files stay untouched), ``app-config.js`` is generated with this
server's ``/dicom-web`` as the data source, and any other path without a file
extension is answered with ``index.html`` (the viewer's own router handles
``/ohif/viewer?StudyInstanceUIDs=...``).
"""

from __future__ import annotations

import json
import mimetypes
import re
import threading
from pathlib import Path

from flask import Blueprint, Response, redirect, request
from werkzeug.security import safe_join

from .common import pacs
from .errors import NotFound

PREFIX = "/ohif"
bp = Blueprint("ohif", __name__)

_INDEX_ASSETS = re.compile(r'(\b(?:href|src|content)=")/(?!/)')
_PUBLIC_URL = 'window.PUBLIC_URL="/"'
# Root-relative references in the build, by file type: (pattern, replacement).
_PATCHES = {
    ".js": [
        (re.compile(rb'__webpack_require__\.p = "/"'), f'__webpack_require__.p = "{PREFIX}/"'.encode()),
        (re.compile(rb"\('/dicom-microscopy-viewer/"), f"('{PREFIX}/dicom-microscopy-viewer/".encode()),
    ],
    ".css": [(re.compile(rb"url\(/(?!/)"), f"url({PREFIX}/".encode())],
    ".json": [(re.compile(rb'"/assets/'), f'"{PREFIX}/assets/'.encode())],
}
TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".map": "application/json",
}

_patched: dict[tuple[str, float], bytes | None] = {}
_patched_lock = threading.Lock()


def dist_dir() -> Path | None:
    """The folder holding the viewer's index.html, or None when OHIF is not installed."""
    root = Path(pacs().config.ohif_dir)
    for candidate in (root / "dist", root):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def _require_dist() -> Path:
    dist = dist_dir()
    if dist is None:
        raise NotFound(
            f"the OHIF Viewer is not installed in {pacs().config.ohif_dir}: run scripts/install-ohif.sh "
            "(or set ohif_dir to a folder holding OHIF's dist/)"
        )
    return dist


#: OHIF's viewport overlay, top right: an image's laterality and view as readers label them
#: (LCC, RMLO; PS3.3 C.8.11.7 ImageLaterality, ViewPosition), for any image that has them.
#: JavaScript, not JSON: overlay items are functions of the displayed instance. Pushed onto
#: OHIF's default item list (cornerstone extension), which is in place when this is applied.
_OVERLAY_CUSTOMIZATION = """{
    'viewportOverlay.topRight': {
      $push: [{
        id: 'LateralityAndView',
        inheritsFrom: 'ohif.overlayItem',
        label: '',
        title: 'Laterality and view',
        condition: function (props) {
          var r = props.referenceInstance;
          return !!(r && (r.ImageLaterality || r.ViewPosition));
        },
        contentF: function (props) {
          var r = props.referenceInstance;
          return String(r.ImageLaterality || '') + String(r.ViewPosition || '');
        }
      }]
    }
  }"""


def app_config_js() -> str:
    """``window.config`` for OHIF 3 with this server as its one DICOMweb data source
    (research/viewers.md §1.1: wadors rendering, lazy study loading, same-origin roots)."""
    public = (pacs().config.public_base_url or "").rstrip("/")
    data_source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "synthpacs",
        "configuration": {
            "friendlyName": "SynthPACS (synthetic studies)",
            "name": "synthpacs",
            "qidoSupportsIncludeField": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": False,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "",
            "omitQuotationForMultipartRequest": False,
            "dicomUploadEnabled": True,
            "bulkDataURI": {"enabled": True},
        },
    }
    config = {
        "routerBasename": PREFIX,
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "maxNumRequests": {"interaction": 100, "thumbnail": 75, "prefetch": 25},
        "defaultDataSourceName": "synthpacs",
        "dataSources": [data_source],
    }
    return (
        "/* Generated by SynthPACS (synthpacs/dicomweb/ohif.py): OHIF's data source is this server's /dicom-web. */\n"
        f"(function () {{\n  var root = {json.dumps(public + '/dicom-web' if public else None)}"
        " || (window.location.origin + '/dicom-web');\n"
        f"  var config = {json.dumps(config, indent=2)};\n"
        "  var source = config.dataSources[0].configuration;\n"
        "  source.qidoRoot = source.wadoRoot = source.stowRoot = root;\n"
        "  source.wadoUriRoot = root + '/wado';\n"
        f"  config.customizationService = {_OVERLAY_CUSTOMIZATION};\n"
        "  window.config = config;\n"
        "})();\n"
    )


def _patched_bytes(path: Path) -> bytes | None:
    """The file with its root paths moved under /ohif/, or None when it needs no change."""
    key = (str(path), path.stat().st_mtime)
    with _patched_lock:
        if key in _patched:
            return _patched[key]
    data = path.read_bytes()
    out: bytes | None
    if path.name == "index.html":
        text = data.decode("utf-8").replace(_PUBLIC_URL, f'window.PUBLIC_URL="{PREFIX}/"')
        out = _INDEX_ASSETS.sub(rf"\1{PREFIX}/", text).encode("utf-8")
    else:
        out = data
        for pattern, replacement in _PATCHES.get(path.suffix, []):
            out = pattern.sub(replacement, out)
        if out == data:
            out = None
    with _patched_lock:
        _patched[key] = out
    return out


def _file_response(path: Path) -> Response:
    content_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    patched = _patched_bytes(path)
    body = patched if patched is not None else path.read_bytes()
    response = Response(body, content_type=content_type)
    hashed = re.search(r"\.[0-9a-f]{16}\.|^[0-9a-f]{16}\.", path.name)
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if hashed else "no-cache"
    return response


def _index() -> Response:
    response = _file_response(_require_dist() / "index.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get(PREFIX)
def ohif_redirect():
    query = request.query_string.decode("latin-1")
    return redirect(f"{PREFIX}/" + (f"?{query}" if query else ""), code=308)


@bp.get(f"{PREFIX}/")
def ohif_index():
    return _index()


@bp.get(f"{PREFIX}/app-config.js")
def ohif_app_config():
    _require_dist()
    return Response(app_config_js(), content_type="text/javascript", headers={"Cache-Control": "no-cache"})


@bp.get(f"{PREFIX}/<path:path>")
def ohif_file(path: str):
    dist = _require_dist()
    full = safe_join(str(dist), path)
    if full is not None and Path(full).is_file():
        return _file_response(Path(full))
    if "." in path.rsplit("/", 1)[-1]:
        raise NotFound(f"no such OHIF file {path}")
    return _index()  # a route of the viewer's single-page app
