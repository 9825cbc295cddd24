"""What every DICOMweb view shares: the archive of the running SynthPACS, the
URLs clients can resolve, UID checks and instance lookups."""

from __future__ import annotations

import io
import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable

from flask import Response, current_app, g, request, stream_with_context
from pydicom import Dataset, dcmread

from ..archive.api import Archive, InstanceRef
from ..archive.store import MemoryLRU
from ..archive.uids import is_valid_uid
from .errors import BadRequest
from .media import DICOM_JSON, multipart_chunks, multipart_content_type, new_boundary, parse_accept

ROOT = "/dicom-web"
EXTENSION = "synthpacs.dicomweb"
METADATA_CACHE_BYTES = 64 * 2**20


def pacs():
    return current_app.config["pacs"]


def archive() -> Archive:
    return pacs().archive


def metadata_cache() -> MemoryLRU:
    """Encoded instance metadata of this app (see :func:`synthpacs.dicomweb.wado.metadata`)."""
    return current_app.extensions[EXTENSION]["metadata"]


def base_url() -> str:
    """The server's URL as the client sees it: ``public_base_url`` when set,
    else the forwarded or direct Host of this request (pitfall 5); worked out once per request."""
    known = g.get("base_url")
    if known is None:
        known = g.base_url = _base_url()
    return known


def _base_url() -> str:
    configured = (pacs().config.public_base_url or "").rstrip("/")
    if configured:
        return configured
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() or request.scheme
    forwarded = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    if forwarded:
        return f"{proto}://{forwarded}"
    host = request.host
    port = str(request.environ.get("SERVER_PORT", ""))
    proxied = any(name in request.headers for name in ("X-Forwarded-Proto", "X-Forwarded-For", "Forwarded"))
    if ":" not in host.rsplit("]", 1)[-1] and port and port not in ("80", "443") and not proxied:
        # dicomweb-client sends "Host: 127.0.0.1" without the port; the socket knows it.
        # (Behind a proxy the socket's port is not the client's: set public_base_url there.)
        host = f"{host}:{port}"
    return f"{proto}://{host}"


def dicomweb_root() -> str:
    return base_url() + ROOT


def study_url(study_uid: str) -> str:
    return f"{dicomweb_root()}/studies/{study_uid}"


def series_url(study_uid: str, series_uid: str) -> str:
    return f"{study_url(study_uid)}/series/{series_uid}"


def instance_url(study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"{series_url(study_uid, series_uid)}/instances/{sop_uid}"


def check_uid(uid: str, name: str) -> str:
    """Raises BadRequest unless ``uid`` is a valid UID (PS3.5 9.1)."""
    if not is_valid_uid(uid):
        raise BadRequest(f"{uid!r} is not a valid {name} UID")
    return uid


def accept_ranges():
    """The client's Accept alternatives: the ``accept`` query parameter (PS3.18 8.3.3.1) wins over the header."""
    values = request.args.getlist("accept")
    if not values:
        values = request.headers.getlist("Accept")
    return parse_accept(values)


# -- instance lookups ------------------------------------------------------------------

REF_CACHE_SIZE = 20_000


class RefCache:
    """One app's memo of one-instance lookups (bounded LRU; it lives and dies with the app)."""

    def __init__(self, size: int = REF_CACHE_SIZE):
        self.items: OrderedDict[tuple, InstanceRef] = OrderedDict()
        self.size = size
        self.lock = threading.Lock()


def _refs() -> RefCache:
    return current_app.extensions[EXTENSION]["refs"]


def instance_refs(study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> list[InstanceRef]:
    """The instances under a path (UIDs checked first: a malformed one is a 400).

    One-instance lookups of synthetic objects are memoised: OHIF asks for
    every frame of a series separately, and a synthetic ref never changes.
    """
    check_uid(study_uid, "study")
    if series_uid is not None:
        check_uid(series_uid, "series")
    if sop_uid is not None:
        check_uid(sop_uid, "SOP instance")
        key = (study_uid, series_uid, sop_uid)
        cache = _refs()
        with cache.lock:
            ref = cache.items.get(key)
            if ref is not None:
                cache.items.move_to_end(key)
                return [ref]
        refs = archive().instances(study_uid, series_uid, sop_uid)
        if len(refs) == 1 and refs[0].synthetic:
            with cache.lock:
                cache.items[key] = refs[0]
                while len(cache.items) > cache.size:
                    cache.items.popitem(last=False)
        return refs
    return archive().instances(study_uid, series_uid)


def instance_dataset(ref: InstanceRef) -> Dataset:
    return dcmread(io.BytesIO(archive().instance_bytes(ref)))


# -- responses ---------------------------------------------------------------------------


def json_response(payload, status: int = 200, content_type: str = DICOM_JSON, headers: dict | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return Response(body.encode("utf-8"), status=status, content_type=content_type, headers=headers)


def multipart_response(parts: Iterable[tuple[str, bytes]], part_type: str, status: int = 200) -> Response:
    """A streamed multipart/related response.

    The first part is made before the status line goes out, so a failure on
    it (an unknown instance, a codec that cannot serve) is a proper error
    response rather than a truncated body.
    """
    boundary = new_boundary()
    chunks = multipart_chunks(parts, boundary)
    primed = [next(chunks), next(chunks, b"")]
    return Response(
        stream_with_context(itertools.chain(primed, chunks)),
        status=status,
        content_type=multipart_content_type(part_type, boundary),
    )
