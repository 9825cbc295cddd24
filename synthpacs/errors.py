"""Exceptions that carry a user-facing message. Front ends map them to
HTTP 4xx JSON bodies, DIMSE failure statuses or a one-line CLI error."""

import enum


class SynthPACSError(Exception):
    """Base class: the message is meant for the user, never a traceback."""


class ConfigError(SynthPACSError):
    """A setting is unknown or invalid; the message names the key and its source."""


class StartupError(SynthPACSError):
    """The server cannot start (port in use, unreadable data directory...)."""


class InvalidQuery(SynthPACSError):
    """A query key or value is malformed; the message names it."""


class NotFound(SynthPACSError):
    """No such patient, study, series or instance."""


class GenerationFailed(SynthPACSError):
    """A study could not be generated (a target error, unreadable weights); the next request tries again.

    ``reason`` is the cause alone, short enough for a DIMSE Error Comment.
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


class StoreRefusalValues(enum.Enum):
    """Why an object offered for storage (STOW-RS, C-STORE) was refused.

    Front ends map each to their protocol's status: a DIMSE status with an
    Error Comment, a STOW-RS Failure Reason with a Warning header.
    """

    #: Not a DICOM Part 10 object (no preamble and ``DICM`` prefix, no File Meta Information).
    NOT_DICOM = "not-dicom"
    #: It does not parse completely: it ends early (inside an element, a sequence or the
    #: encapsulated pixel data), an element cannot be read, or Pixel Data does not have the
    #: size its attributes declare.
    INCOMPLETE = "incomplete"
    #: A required UID (SOP Class, SOP Instance, Study, Series) is absent or empty.
    MISSING_UID = "missing-uid"
    #: A required UID is not a valid UID (PS3.5 9.1).
    INVALID_UID = "invalid-uid"
    #: A UID differs from the one the protocol names (the C-STORE command's Affected SOP
    #: Instance/Class UID, the study of the STOW-RS URL).
    UID_MISMATCH = "uid-mismatch"
    #: The SOP Instance UID is that of a synthetic instance, which is immutable.
    SYNTHETIC_UID = "synthetic-uid"
    #: The Series Instance UID names a synthetic series, which a stored object cannot join.
    SYNTHETIC_SERIES = "synthetic-series"
    #: The Study or Series Instance UID names a synthetic object of another kind.
    KIND_MISMATCH = "kind-mismatch"
    #: A data set handed to the archive cannot be written as a Part 10 object.
    CANNOT_ENCODE = "cannot-encode"


class StoreRefused(SynthPACSError):
    """An object offered for storage was refused; nothing was written.

    ``reason`` says why (a :class:`StoreRefusalValues`), the message says it in
    words; ``keyword`` names the offending attribute where there is one, and
    ``sop_class_uid``/``sop_instance_uid`` name the object as far as it could
    be read ("" where it could not).
    """

    def __init__(
        self,
        reason: StoreRefusalValues,
        message: str,
        *,
        keyword: str | None = None,
        sop_class_uid: str = "",
        sop_instance_uid: str = "",
    ):
        super().__init__(message)
        self.reason = StoreRefusalValues(reason)
        self.message = message
        self.keyword = keyword
        self.sop_class_uid = sop_class_uid
        self.sop_instance_uid = sop_instance_uid
