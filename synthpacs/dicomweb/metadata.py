"""Instance metadata as DICOM JSON (WADO-RS ``/metadata``), as viewers read it.

A generated or stored instance is encoded from its dataset. An image series
not generated yet is encoded from its headers: the attributes every instance
shares are encoded once per series and each instance adds its own few, which
gives the very bytes its dataset would (the cold-equals-warm metadata test
holds them equal) at a fraction of the cost, so a client opening a never
viewed series has its metadata at once.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.dataelem import DataElement

from ..archive.api import InstanceRef
from ..imaging.headers import PIXEL_DATA, SeriesHeaders
from .common import archive, dicomweb_root, instance_url, metadata_cache
from .dicomjson import dataset_json, element_json, tag_hex
from .pixels import decoded_photometric, has_pixels, transfer_syntax_of

__all__ = ["instance_metadata", "metadata_bytes"]

# What the viewer fixes below read: instances whose own attributes touch these are encoded alone.
_FIXES_READ = {0x00280002, 0x00280004, 0x00280006, 0x00281056, PIXEL_DATA}
_TEMPLATES = 16  # series templates kept


def _bulk_base(ref: InstanceRef) -> str:
    return instance_url(ref.study_instance_uid, ref.series_instance_uid, ref.sop_instance_uid) + "/bulk/"


def _bulk_uri(base: str):
    def uri(path: tuple) -> str:
        return base + "/".join(tag_hex(p) if i % 2 == 0 else str(p) for i, p in enumerate(path))

    return uri


def _viewer_fixes(ds: Dataset, out: dict) -> dict:
    """What viewers need beyond the plain encoding of ``ds`` (applied to ``out`` in place)."""
    photometric = decoded_photometric(ds)
    if photometric and photometric != ds.get("PhotometricInterpretation"):
        # Frames of compressed colour objects are decoded to interleaved RGB (pitfall 4).
        out["00280004"] = {"vr": "CS", "Value": [photometric]}
        out["00280006"] = {"vr": "US", "Value": [0]}
    if has_pixels(ds):
        out.setdefault("00083002", {"vr": "UI", "Value": [str(transfer_syntax_of(ds))]})  # AvailableTransferSyntaxUID
    if out.get("00281056", {}).get("Value") == ["LINEAR"]:
        # OHIF 3.13's image loader takes VOILUTFunction[0] of the naturalised string, "L", and stops
        # drawing ("Invalid VOI LUT function"). LINEAR is the meaning of an absent VOI LUT Function
        # (PS3.3 C.11.2.1.3), so leaving it out of the metadata changes nothing else.
        del out["00281056"]
    return out


def instance_metadata(ref: InstanceRef, ds: Dataset | None = None) -> dict:
    """One instance as DICOM JSON with BulkDataURIs under its own URL (at once, even for a study not generated yet)."""
    ds = archive().metadata_dataset(ref) if ds is None else ds
    return _viewer_fixes(ds, dataset_json(ds, _bulk_uri(_bulk_base(ref))))


@dataclass(frozen=True)
class _Template:
    """A header series' shared attributes, encoded once, and an instance that shows the fixes."""

    shared: dict
    first: Dataset


class _Templates:
    def __init__(self):
        self._items: OrderedDict[tuple[str, str], _Template | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, series_uid: str, headers: SeriesHeaders, root: str) -> _Template | None:
        """The template of a series (None: its shared attributes hold bulk data, so none)."""
        key = (series_uid, root)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        bulk: list[tuple] = []
        shared = dataset_json(headers.shared, bulk.append)  # type: ignore[arg-type]
        first = headers.dataset(0)
        template = None if bulk else _Template(shared, first)
        with self._lock:
            self._items[key] = template
            while len(self._items) > _TEMPLATES:
                self._items.popitem(last=False)
        return template


_templates = _Templates()


def _header_metadata(ref: InstanceRef, headers: SeriesHeaders, index: int) -> dict:
    """Instance ``index`` of a header series, as :func:`instance_metadata` encodes its dataset."""
    own = headers.own[index]
    template = _templates.get(ref.series_instance_uid, headers, dicomweb_root())
    if template is None or any(int(e.tag) in _FIXES_READ for e in own):
        return instance_metadata(ref, headers.dataset(index))
    uri = _bulk_uri(_bulk_base(ref))
    out = dict(template.shared)
    out.update(dataset_json(own, uri))
    if headers.pixel_vr is not None:
        pixel = DataElement(PIXEL_DATA, headers.pixel_vr, b"\0" * 2)  # a URI is sent whatever the length
        out[tag_hex(PIXEL_DATA)] = element_json(pixel, (), uri)
    return _viewer_fixes(template.first, dict(sorted(out.items())))


def metadata_bytes(ref: InstanceRef) -> bytes:
    """One instance's metadata, JSON-encoded; synthetic ones are kept in a memory LRU
    (they never change), keyed by the URL base their BulkDataURIs carry."""
    cache = metadata_cache()
    key = f"{ref.sop_instance_uid}|{dicomweb_root()}" if ref.synthetic else None
    if key is not None:
        cached = cache.get(key)
        if cached is not None:
            return cached
    header = archive().header_instance(ref) if ref.synthetic else None
    out = _header_metadata(ref, *header) if header is not None else instance_metadata(ref)
    data = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if key is not None:
        cache.put(key, data)
    return data
