"""DIMSE status codes the server answers with (PS3.4 C.4, B.2.3, K.4; PS3.7 C).

Named so that handlers never yield raw hex, a helper that builds a status
dataset with an Error Comment that fits its VR, and the category of any
status for the log lines.
"""

from __future__ import annotations

import enum
import re

from pydicom import Dataset
from pydicom.tag import Tag
from pynetdicom.status import (
    STATUS_FAILURE,
    STATUS_PENDING,
    STATUS_UNKNOWN,
    code_to_category,
)


class StatusValues(enum.IntEnum):
    """Status (0000,0900) values used by this server."""

    SUCCESS = 0x0000
    PENDING = 0xFF00
    #: C-FIND: a match, but some optional keys were not supported (C.4.1.1.4); a peer's status, never ours.
    PENDING_WARNING = 0xFF01
    CANCEL = 0xFE00
    #: C-MOVE / C-GET: sub-operations complete, one or more failures or warnings (C.4.2.1.5).
    SUB_OPERATIONS_WARNING = 0xB000
    #: C-MOVE / C-GET: every sub-operation failed (Refused: out of resources, unable to perform sub-operations).
    UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
    #: C-MOVE: the Move Destination is not a configured peer.
    MOVE_DESTINATION_UNKNOWN = 0xA801
    #: C-FIND / C-MOVE / C-GET: the identifier is malformed (missing or unknown level, bad key value).
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: C-FIND / C-MOVE / C-GET: an unexpected error while processing (C000-CFFF).
    UNABLE_TO_PROCESS = 0xC000
    #: C-STORE: the data set cannot be decoded (C000-CFFF "Cannot understand").
    CANNOT_UNDERSTAND = 0xC001
    #: C-STORE: the data set lacks, or contradicts, the UIDs of its command (A900-A9FF).
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA901
    #: C-STORE: refused by the archive's UID policy (PS3.7 C.5.10, "Refused: Not authorized").
    NOT_AUTHORIZED = 0x0124
    #: C-STORE: the object could not be written (A700-A7FF "Out of resources").
    OUT_OF_RESOURCES = 0xA700


ERROR_COMMENT_MAX = 64  # LO, VM 1 (PS3.7 Table C.4-1 and friends)


_LONG_UID = re.compile(r"\b\d+(?:\.\d+){2,}\b")


def error_comment(text: str) -> str:
    """Text that fits Error Comment (0000,0902): printable ASCII, no backslash,
    64 characters (long UIDs are shortened first, then the end is cut)."""
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(text).replace("\\", "/"))
    if len(clean) > ERROR_COMMENT_MAX:
        clean = _LONG_UID.sub(lambda m: m.group(0) if len(m.group(0)) <= 12 else m.group(0)[:8] + "...", clean)
    return clean if len(clean) <= ERROR_COMMENT_MAX else clean[: ERROR_COMMENT_MAX - 3] + "..."


def status_dataset(status: StatusValues, comment: str | None = None, offending: str | int | None = None) -> Dataset:
    """A status dataset for a handler to return or yield, with an optional
    Error Comment and Offending Element (a keyword or a tag)."""
    ds = Dataset()
    ds.Status = int(status)
    if comment:
        ds.ErrorComment = error_comment(comment)
    if offending is not None:
        ds.OffendingElement = [Tag(offending)]
    return ds


def category(status: int) -> str:
    """The category of a Status value (PS3.7 C): ``Success``, ``Pending``,
    ``Cancel``, ``Warning`` or ``Failure``; a value PS3.7 does not name
    counts as a failure."""
    found = code_to_category(int(status))
    return STATUS_FAILURE if found == STATUS_UNKNOWN else found


def is_pending(status: int) -> bool:
    """True for the Pending statuses (FF00 and FF01), which a final response follows."""
    return code_to_category(int(status)) == STATUS_PENDING
