"""The DICOM JSON Model (PS3.18 Annex F): Dataset -> ``application/dicom+json``.

Written here rather than with ``Dataset.to_json_dict`` so that every value is
encoded the way viewers read it (research/viewers.md §1.4) whatever a stored
object holds: person names as ``{"Alphabetic": ...}`` objects, IS/DS as JSON
numbers, AT as hex strings, whole sequences inline (SR content trees and SEG
functional groups), and large binary values as BulkDataURIs built from the
element's path, so that nested ones resolve too.
"""

from __future__ import annotations

import base64
import functools
import math
from collections.abc import Callable
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag

BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "OW or OB"}
PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # Pixel Data, Float and Double Float Pixel Data
INT_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "US or SS", "US or SS or OW"}
FLOAT_VRS = {"FL", "FD"}
BULK_THRESHOLD = 1024  # binary values longer than this go out as BulkDataURIs
_TYPED_VRS = {"PN", "IS", "DS", "AT", "SQ"} | INT_VRS | FLOAT_VRS | BINARY_VRS  # values that are not plain text in JSON
_INTEGER_VRS = {"IS"} | INT_VRS
TEXT_VRS = {"LT", "ST", "UT"}  # a backslash in these is a character, not a value separator (as pydicom reads it)

# A function that turns the path of a binary element (tags and item indexes) into a URI.
BulkURI = Callable[[tuple], str]


def tag_hex(tag: int) -> str:
    return f"{int(tag):08X}"


def _number(value: Any, integer: bool) -> Any:
    """IS/DS/int/float -> a JSON number; a malformed string stays a string (never a 500)."""
    if value is None or value == "":
        return None
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
    if isinstance(number, float):
        if not math.isfinite(number):
            return str(value)
        if integer and number.is_integer():
            return int(number)
    return number


def _person_name(value: Any) -> dict | None:
    text = str(value) if value is not None else ""
    if not text:
        return None
    groups = text.split("=")
    out = {}
    for key, group in zip(("Alphabetic", "Ideographic", "Phonetic"), groups):
        if group:
            out[key] = group
    return out or None


def _values(element: DataElement) -> list:
    value = element.value
    if value is None:
        return []
    if element.VM > 1 or isinstance(value, (list, tuple)) and not isinstance(value, (str, bytes)):
        return list(value)
    if isinstance(value, str) and value == "":
        return []
    return [value]


def element_json(element: DataElement, path: tuple, bulk_uri: BulkURI | None, threshold: int = BULK_THRESHOLD) -> dict:
    """One element as a DICOM JSON attribute object (PS3.18 F.2.2)."""
    vr = str(element.VR)
    out: dict[str, Any] = {"vr": vr.split(" ")[0]}
    tag = int(element.tag)
    if vr == "SQ":
        items = [dataset_json(item, bulk_uri, path + (tag, i), threshold) for i, item in enumerate(element.value or [])]
        if items:
            out["Value"] = items
        return out
    if vr in BINARY_VRS:
        out["vr"] = "OW" if vr.startswith("OW") else "OB" if vr.startswith("OB") else vr
        value = element.value
        if value is None or value == b"" or value == []:
            return out
        if isinstance(value, (list, tuple)):  # encapsulated fragments read as a list: only a URI can carry them
            size = threshold + 1
        else:
            size = len(value)
        if bulk_uri is not None and (tag in PIXEL_TAGS or size > threshold):
            out["BulkDataURI"] = bulk_uri(path + (tag,))
        elif isinstance(value, (bytes, bytearray)):
            out["InlineBinary"] = base64.b64encode(bytes(value)).decode("ascii")
        return out
    return _with_values(out, vr, _values(element))


def _with_values(out: dict, vr: str, values: list) -> dict:
    """``out`` with the ``Value`` of these values of a non-binary, non-sequence VR (none if all are empty)."""
    if not values:
        return out
    encoded: list[object]
    if vr == "PN":
        encoded = [_person_name(v) for v in values]
    elif vr == "IS":
        encoded = [_number(v, True) for v in values]
    elif vr == "DS":
        encoded = [_number(v, False) for v in values]
    elif vr in INT_VRS:
        encoded = [_number(v, True) for v in values]
    elif vr in FLOAT_VRS:
        encoded = [_number(v, False) for v in values]
    elif vr == "AT":
        encoded = [tag_hex(BaseTag(v)) if v is not None else None for v in values]
    else:
        encoded = [None if v is None or v == "" else str(v) for v in values]
    if all(v is None for v in encoded):
        return out
    out["Value"] = encoded
    return out


@functools.lru_cache(maxsize=4096)
def keyword_tag_vr(keyword: str) -> tuple[str, str]:
    """(tag as 8 hex digits, VR) of a data dictionary keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown attribute {keyword!r}")
    return tag_hex(tag), dictionary_VR(tag).split(" ")[0]


def value_json(vr: str, value: Any) -> dict:
    """A plain value as a DICOM JSON attribute object: text, a number, a list of them, or for a
    sequence a list of item dicts (keyword -> value). The result is what :func:`element_json`
    gives for the element pydicom would make of the value, without making it."""
    kind = type(value)
    if kind is str and vr not in _TYPED_VRS and "\\" not in value:  # the common case, quickly
        return {"vr": vr, "Value": [value]} if value else {"vr": vr}
    if kind is int and vr in _INTEGER_VRS:
        return {"vr": vr, "Value": [value]}
    out: dict[str, Any] = {"vr": vr}
    if vr == "SQ":
        items = [attributes_json(item) for item in value or ()]
        if items:
            out["Value"] = items
        return out
    if value is None:
        values = []
    elif isinstance(value, (list, tuple)):
        values = list(value)
    elif isinstance(value, str):
        values = [] if value == "" else value.split("\\") if vr not in TEXT_VRS else [value]
    else:
        values = [value]
    return _with_values(out, vr, values)


def attributes_json(attributes: dict[str, Any]) -> dict:
    """Plain attributes (keyword -> value) as a DICOM JSON object, in tag order."""
    out = {}
    for keyword, value in attributes.items():
        tag, vr = keyword_tag_vr(keyword)
        out[tag] = value_json(vr, value)
    return dict(sorted(out.items()))


def dataset_json(ds: Dataset, bulk_uri: BulkURI | None = None, path: tuple = (), threshold: int = BULK_THRESHOLD) -> dict:
    """A dataset as a DICOM JSON object (group lengths and file meta left out)."""
    out = {}
    for element in ds:
        tag = int(element.tag)
        if tag >> 16 == 0x0002 or tag & 0xFFFF == 0:
            continue
        try:
            out[tag_hex(tag)] = element_json(element, path, bulk_uri, threshold)
        except Exception:  # a value pydicom cannot decode: send the attribute empty rather than fail the response
            out[tag_hex(tag)] = {"vr": str(element.VR).split(" ")[0]}
    return out


def store_report(retrieve_url: str | None, referenced: list[dict], failed: list[dict]) -> dict:
    """The Store Instances response (PS3.18 10.5.3, Table 10.5.3-3) as DICOM JSON.

    ``referenced`` items carry sop_class_uid, sop_instance_uid, retrieve_url;
    ``failed`` items carry sop_class_uid, sop_instance_uid (either may be empty) and failure_reason.
    """
    out: dict[str, Any] = {}
    if retrieve_url:
        out["00081190"] = {"vr": "UR", "Value": [retrieve_url]}
    if failed:
        out["00081198"] = {"vr": "SQ", "Value": [_reference(f, failure=True) for f in failed]}
    if referenced:
        out["00081199"] = {"vr": "SQ", "Value": [_reference(r) for r in referenced]}
    return out


def _reference(item: dict, failure: bool = False) -> dict:
    out: dict[str, Any] = {
        "00081150": {"vr": "UI", **({"Value": [item["sop_class_uid"]]} if item.get("sop_class_uid") else {})},
        "00081155": {"vr": "UI", **({"Value": [item["sop_instance_uid"]]} if item.get("sop_instance_uid") else {})},
    }
    if failure:
        out["00081197"] = {"vr": "US", "Value": [int(item["failure_reason"])]}
    elif item.get("retrieve_url"):
        out["00081190"] = {"vr": "UR", "Value": [item["retrieve_url"]]}
    if item.get("warning_reason"):
        out["00081196"] = {"vr": "US", "Value": [int(item["warning_reason"])]}
    return out
