"""DIMSE handlers: translate a request to archive calls and the answer back.

STYLE §3.6: one handler per service, bound with its dependencies as a
3-tuple; query handlers are generators that yield ``(status, identifier)``
and check ``event.is_cancelled`` between matches. No matching logic lives
here: the catalog (:meth:`Archive.find`) and the worklist
(:class:`~synthpacs.archive.worklist.Worklist`) do it, and raise
:class:`~synthpacs.errors.InvalidQuery`, which becomes a failure status with
an Error Comment naming the problem.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import cast

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from ..archive.api import Archive, InstanceRef
from ..archive.catalog import Attributes, QueryLevel, put, to_dataset
from ..archive.uids import is_valid_uid
from ..archive.worklist import Worklist
from ..errors import InvalidQuery, NotFound, StoreRefusalValues, StoreRefused
from . import transport
from .status import StatusValues, status_dataset

log = logging.getLogger(__name__)

CHARACTER_SET = "ISO_IR 192"  # UTF-8, what Weasis and dcm4che send by default
DRAIN_EVERY = 8  # C-FIND matches between two waits for the send queue to empty (see transport.drain)

PATIENT_ROOT, STUDY_ROOT = "Patient Root", "Study Root"
#: Abstract syntax -> information model, for C-FIND, C-MOVE and C-GET.
INFORMATION_MODELS = {
    PatientRootQueryRetrieveInformationModelFind: PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelMove: PATIENT_ROOT,
    PatientRootQueryRetrieveInformationModelGet: PATIENT_ROOT,
    StudyRootQueryRetrieveInformationModelFind: STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelMove: STUDY_ROOT,
    StudyRootQueryRetrieveInformationModelGet: STUDY_ROOT,
}
#: The unique key of each level (PS3.4 C.6.1.1 and C.6.2.1).
UNIQUE_KEYS = {
    QueryLevel.PATIENT: "PatientID",
    QueryLevel.STUDY: "StudyInstanceUID",
    QueryLevel.SERIES: "SeriesInstanceUID",
    QueryLevel.IMAGE: "SOPInstanceUID",
}
_LEVELS = list(UNIQUE_KEYS)
#: Keys the server answers itself; never sent to the catalog as matching keys.
SERVER_KEYS = {
    "QueryRetrieveLevel",
    "SpecificCharacterSet",
    "RetrieveAETitle",
    "InstanceAvailability",
    "TimezoneOffsetFromUTC",
    "QueryRetrieveView",
    "RetrieveURL",
}


class IdentifierError(InvalidQuery):
    """An identifier problem tied to one attribute (sent as Offending Element)."""

    def __init__(self, message: str, keyword: str):
        super().__init__(message)
        self.keyword = keyword


# -- identifiers --------------------------------------------------------------------------


def _text(element: DataElement) -> str:
    """An element's value as DICOM text (multiple values joined by a backslash)."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (MultiValue, list, tuple)):
        return "\\".join("" if v is None else str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def identifier_query(identifier: Dataset) -> dict:
    """The matching keys of a C-FIND identifier, as the archive takes them:
    keyword -> text, or a list of item dicts for a sequence. The identifier
    itself is not modified."""
    query: dict = {}
    for element in identifier:
        tag = element.tag
        if tag.is_private or tag.group in (0x0000, 0x0002) or not element.keyword or element.keyword in SERVER_KEYS:
            continue
        if element.VR == "SQ":
            query[element.keyword] = [identifier_query(item) for item in element.value]
        else:
            query[element.keyword] = _text(element)
    return query


def query_level(identifier: Dataset, model: str) -> QueryLevel:
    """Query/Retrieve Level (0008,0052) of a Q/R identifier; IdentifierError when missing or unknown."""
    if "QueryRetrieveLevel" not in identifier or not _text(identifier["QueryRetrieveLevel"]).strip():
        raise IdentifierError("QueryRetrieveLevel (0008,0052) is missing", "QueryRetrieveLevel")
    text = _text(identifier["QueryRetrieveLevel"]).strip().upper()
    try:
        level = QueryLevel(text)
    except ValueError:
        raise IdentifierError(
            f"QueryRetrieveLevel {text!r} is not PATIENT, STUDY, SERIES or IMAGE", "QueryRetrieveLevel"
        ) from None
    if model == STUDY_ROOT and level is QueryLevel.PATIENT:
        raise IdentifierError("Study Root has no PATIENT level (use Patient Root)", "QueryRetrieveLevel")
    return level


def _empty(tag, vr: str) -> DataElement:
    return DataElement(tag, vr, [] if vr == "SQ" else None)


def _requested_vr(element: DataElement) -> str:
    """The VR to return an empty requested attribute with (an implicit VR identifier says UN)."""
    vr = element.VR
    if vr in ("UN", "OB or OW", "US or SS", "US or OW", "US or SS or OW") and not element.tag.is_private:
        try:
            return dictionary_VR(element.tag).split(" ")[0]
        except KeyError:
            return "UN"
    return vr


def project_attributes(requested: Dataset, found: Attributes) -> Dataset:
    """:func:`project` for a match the catalog gives as plain attributes: only the
    requested attributes become pydicom elements (a match holds about 30)."""
    out = Dataset()
    for element in requested:
        tag, keyword = element.tag, element.keyword
        if tag.group in (0x0000, 0x0002) or keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
            continue
        if keyword not in found:
            out.add(_empty(tag, _requested_vr(element)))
            continue
        value = found[keyword]
        if isinstance(value, list) and value and isinstance(value[0], dict):  # a sequence's items
            template = element.value[0] if element.VR == "SQ" and element.value and len(element.value[0]) else None
            items = [project_attributes(template, item) if template is not None else to_dataset(item) for item in value]
            out.add(DataElement(tag, "SQ", items))
        else:
            put(out, keyword, value)
    return out


def project(requested: Dataset, found: Dataset) -> Dataset:
    """``found`` restricted to the keys of ``requested`` (PS3.4 C.4.1.1.3.2):
    every requested attribute is returned, with its value when the archive
    has one and empty otherwise. A requested sequence with an item returns
    each found item restricted to that item's keys; an empty one returns
    the found items whole."""
    out = Dataset()
    for element in requested:
        tag = element.tag
        if tag.group in (0x0000, 0x0002) or element.keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
            continue
        vr = element.VR
        if tag not in found:
            out.add(_empty(tag, _requested_vr(element)))
            continue
        have = found[tag]
        if vr == "SQ" and have.VR == "SQ":
            template = element.value[0] if element.value and len(element.value[0]) else None
            items = [project(template, item) if template is not None else item for item in have.value]
            out.add(DataElement(tag, "SQ", items))
        else:
            out.add(have)
    return out


def find_response(
    requested: Dataset, found: Dataset | Attributes, level: QueryLevel | None, model: str, ae_title: str
) -> Dataset:
    """One C-FIND pending identifier: the requested keys, the unique keys of
    the level and the levels above it, and the server-filled attributes."""
    out = project(requested, found) if isinstance(found, Dataset) else project_attributes(requested, found)
    out.SpecificCharacterSet = CHARACTER_SET
    if level is not None:
        out.QueryRetrieveLevel = level.value
        top = QueryLevel.PATIENT if model == PATIENT_ROOT else QueryLevel.STUDY
        for above in _LEVELS[_LEVELS.index(top) : _LEVELS.index(level) + 1]:
            key = UNIQUE_KEYS[above]
            if key in found and key not in out:
                if isinstance(found, Dataset):
                    out[key] = found[key]
                else:
                    put(out, key, found[key])
    if "RetrieveAETitle" in requested:
        out.RetrieveAETitle = ae_title
    if "InstanceAvailability" in requested:
        out.InstanceAvailability = "ONLINE"
    return out


# -- handlers -----------------------------------------------------------------------------


def handle_echo(event) -> int:
    """C-ECHO (Verification, PS3.4 A.4)."""
    return StatusValues.SUCCESS


def _note(event, text: str) -> None:
    journal = getattr(event.assoc, "journal", None)
    if journal is not None:
        journal.note(event.request.MessageID, text)


def handle_find(event, archive: Archive, worklist: Worklist, ae_title: str) -> Iterator[tuple]:
    """C-FIND for Patient Root, Study Root (PS3.4 C.4.1) and Modality Worklist (K.4.1).

    Yields one pending identifier per match as the catalog finds it, and
    stops with Cancel as soon as the peer sends C-CANCEL.
    """
    with archive.client_request():  # background prefetch pauses while a peer waits on matches
        yield from _find(event, archive, worklist, ae_title)


def _find(event, archive: Archive, worklist: Worklist, ae_title: str) -> Iterator[tuple]:
    sop_class = str(event.request.AffectedSOPClassUID)
    try:
        identifier = event.identifier
    except Exception as exc:  # pydicom raises many types for a broken data set
        yield status_dataset(StatusValues.UNABLE_TO_PROCESS, f"cannot decode the identifier: {exc}"), None
        return
    results: Iterator[Dataset] | Iterator[Attributes]
    try:
        if sop_class == ModalityWorklistInformationFind:
            model, level = "Worklist", None
            _note(event, "Worklist")
            results = worklist.find(identifier_query(identifier))
        else:
            model = INFORMATION_MODELS[sop_class]
            level = query_level(identifier, model)
            _note(event, f"{model} {level.value}")
            results = archive.find_attributes(level, identifier_query(identifier))
        for i, found in enumerate(cast(Iterator[Dataset | Attributes], results)):  # mypy joins the two to object
            if i % DRAIN_EVERY == DRAIN_EVERY - 1:
                transport.drain(event.assoc)  # lets the DUL read a C-CANCEL (see transport.drain)
            if event.is_cancelled:
                yield StatusValues.CANCEL, None
                return
            yield StatusValues.PENDING, find_response(identifier, found, level, model, ae_title)
    except IdentifierError as exc:
        yield status_dataset(StatusValues.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc), exc.keyword), None
    except InvalidQuery as exc:
        yield status_dataset(StatusValues.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, str(exc)), None
    except Exception as exc:
        log.exception("C-FIND failed")
        yield status_dataset(StatusValues.UNABLE_TO_PROCESS, f"internal error: {type(exc).__name__}: {exc}"), None


# The archive's refusals as C-STORE statuses (PS3.4 B.2.3), each sent with an Error Comment.
_STORE_STATUS = {
    StoreRefusalValues.NOT_DICOM: StatusValues.CANNOT_UNDERSTAND,  # C001
    StoreRefusalValues.CANNOT_ENCODE: StatusValues.CANNOT_UNDERSTAND,  # C001
    StoreRefusalValues.INCOMPLETE: StatusValues.UNABLE_TO_PROCESS,  # C000 "Cannot understand"
    StoreRefusalValues.MISSING_UID: StatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,  # A901
    StoreRefusalValues.INVALID_UID: StatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    StoreRefusalValues.UID_MISMATCH: StatusValues.DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    StoreRefusalValues.SYNTHETIC_UID: StatusValues.NOT_AUTHORIZED,  # 0124: the UID policy
    StoreRefusalValues.SYNTHETIC_SERIES: StatusValues.NOT_AUTHORIZED,
    StoreRefusalValues.KIND_MISMATCH: StatusValues.NOT_AUTHORIZED,
}


def handle_store(event, archive: Archive) -> Dataset | int:
    """C-STORE (Storage, PS3.4 B.2): keep the object as received, indexed at once.

    The archive checks the object whole (:meth:`Archive.store`); its refusal
    reason becomes the status, with an Error Comment: C000 the object is
    incomplete (cut short, Pixel Data of the wrong size); C001 it cannot be
    decoded; A901 a required UID is missing, invalid or contradicts the
    command; 0124 the archive's UID policy refuses it (it reuses a synthetic
    UID); A700 it could not be written.
    """
    request = event.request
    # The data set must carry the UIDs its command names (PS3.4 B.2.3, A900-A9FF).
    expected = {"SOPInstanceUID": str(request.AffectedSOPInstanceUID), "SOPClassUID": str(request.AffectedSOPClassUID)}
    try:
        archive.store(event.encoded_dataset(), expected=expected, source="the command")
    except StoreRefused as exc:
        _note(event, f"refused: {exc}")
        return status_dataset(_STORE_STATUS[exc.reason], str(exc), exc.keyword)
    except OSError as exc:
        log.error("C-STORE of %s could not be written: %s", expected["SOPInstanceUID"], exc)
        return status_dataset(StatusValues.OUT_OF_RESOURCES, f"cannot write the object: {exc.strerror or exc}")
    return StatusValues.SUCCESS


# -- retrieve -----------------------------------------------------------------------------


def _uid_list(identifier: Dataset, keyword: str) -> list[str]:
    text = _text(identifier[keyword]) if keyword in identifier else ""
    uids = [u.strip() for u in text.split("\\") if u.strip()]
    for uid in uids:
        if not is_valid_uid(uid):
            raise IdentifierError(f"{keyword}: {uid!r} is not a valid UID", keyword)
    return uids


def retrieve_refs(archive: Archive, model: str, identifier: Dataset) -> tuple[QueryLevel, list[InstanceRef]]:
    """The instances a C-MOVE or C-GET identifier names (PS3.4 C.4.2.2.1):
    the unique key of its level, a single value or a list of UIDs. Unknown
    UIDs name nothing; a missing or universal unique key is refused, so that
    a retrieve never means "everything".

    Raises
    ------
    IdentifierError
        The level is missing or unknown, or its unique key is missing, empty
        or has wildcards, or a UID is malformed.
    """
    level = query_level(identifier, model)
    key = UNIQUE_KEYS[level]
    text = _text(identifier[key]).strip() if key in identifier else ""
    if not text or "*" in text or "?" in text:
        raise IdentifierError(f"a {level.value} retrieve needs {key} (no wildcards)", key)
    refs: list[InstanceRef] = []
    if level is QueryLevel.IMAGE:
        for uid in _uid_list(identifier, key):
            try:
                refs.append(archive.instance_ref(uid))
            except NotFound:
                continue
    elif level is QueryLevel.STUDY:
        for uid in _uid_list(identifier, key):
            try:
                refs.extend(archive.instances(uid))
            except NotFound:
                continue
    elif level is QueryLevel.SERIES:
        uids = _uid_list(identifier, key)
        study = _uid_list(identifier, "StudyInstanceUID") if "StudyInstanceUID" in identifier else []
        for found in archive.find(
            QueryLevel.SERIES, {"SeriesInstanceUID": "\\".join(uids), "StudyInstanceUID": "\\".join(study)}
        ):
            refs.extend(archive.instances(str(found.StudyInstanceUID), str(found.SeriesInstanceUID)))
    else:  # PATIENT
        patient_ids = [p for p in text.split("\\") if p]
        for found in archive.find(QueryLevel.STUDY, {"PatientID": "\\".join(patient_ids)}):
            refs.extend(archive.instances(str(found.StudyInstanceUID)))
    seen: set[str] = set()
    unique = []
    for ref in refs:
        if ref.sop_instance_uid not in seen:
            seen.add(ref.sop_instance_uid)
            unique.append(ref)
    return level, unique
