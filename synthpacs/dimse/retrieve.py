"""C-MOVE and C-GET (PS3.4 C.4.2 and C.4.3): C-STORE sub-operations sent from Part 10 bytes.

pynetdicom's own retrieve SCP wants a decoded ``Dataset`` per instance (it
re-encodes each one), answers an unknown Move Destination without an Error
Comment, and sends C-MOVE sub-operations over a stock association (see
:mod:`transport`). This module replaces it for the Q/R MOVE and GET models:

* the instances come from :func:`handlers.retrieve_refs` (the archive), and
  their bytes from :meth:`Archive.instance_bytes`, which generates a study on
  first use; a sub-operation sends the stored data set as it is when the
  peer accepted its transfer syntax, and converts between the uncompressed
  little-endian syntaxes otherwise;
* an instance whose SOP class (or transfer syntax) has no accepted
  presentation context is a failed sub-operation, and the rest still go
  (Weasis offers no context for SEG or Comprehensive SR);
* a pending response with the sub-operation counts follows every
  sub-operation; C-CANCEL stops the retrieve with status Cancel;
* the final status is Success, Warning B000 (some failed; Failed SOP
  Instance UID List in the identifier) or A702 (all failed).

The server hands each request over in the association's reactor thread
(``_pynetdicom_compat.InterceptingAssociation``) with a
:class:`RetrieveContext`: the archive, the peers, the AE and the limits,
nothing else of the server.
"""

from __future__ import annotations

import io
import logging
import queue
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydicom import Dataset, dcmread
from pydicom.filereader import read_dataset, read_preamble
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dimse_primitives import C_GET, C_MOVE, C_STORE
from pynetdicom.dsutils import decode, encode
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.status import (
    STATUS_FAILURE,
    STATUS_SUCCESS,
    STATUS_WARNING,
    code_to_category,
)

from ..archive.api import Archive, InstanceRef
from ..errors import InvalidQuery
from . import _pynetdicom_compat as compat
from . import transport
from .handlers import INFORMATION_MODELS, IdentifierError, retrieve_refs
from .status import StatusValues, error_comment

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom import AE
    from pynetdicom.association import Association

log = logging.getLogger(__name__)

MAX_SUB_OPERATIONS = 65535  # the counters are US (PS3.7 C.4.2.1)
MAX_CONTEXTS = 128  # presentation contexts in one A-ASSOCIATE-RQ (PS3.8 9.3.2.2)
PRIORITY_MEDIUM = 0x0000  # Priority (0000,0700) of the C-STORE sub-operations (PS3.7 Table 9.3-1)


@dataclass(frozen=True)
class RetrieveContext:
    """What a retrieve needs from the server, built once by it.

    Attributes
    ----------
    archive
        Where the instances and their bytes come from.
    peers
        C-MOVE destinations: AE title -> (host, port).
    ae
        The server's AE, which opens the C-MOVE sub-associations (with its
        ACSE, network and connection timeouts).
    dimse_timeout
        Seconds to wait for each C-STORE response (None: forever).
    max_pdu
        Largest PDU we accept on a C-MOVE sub-association (0: no limit).
    """

    archive: Archive
    peers: Mapping[str, tuple[str, int]]
    ae: AE
    dimse_timeout: float | None
    max_pdu: int


class SubOperationsLost(Exception):
    """The association carrying the sub-operations is gone (aborted, closed, silent)."""


@dataclass
class Tally:
    """Sub-operation counts (PS3.4 C.4.2.1.5)."""

    total: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    problem: str | None = None  # why instances could not be made (the first reason), for the Error Comment

    @property
    def remaining(self) -> int:
        return self.total - self.completed - self.failed - self.warning

    def fail(self, sop_instance_uid: str) -> None:
        self.failed += 1
        self.failed_uids.append(sop_instance_uid)

    def fail_rest(self, refs: list[InstanceRef]) -> None:
        for ref in refs:
            self.fail(ref.sop_instance_uid)


# -- Part 10 bytes --------------------------------------------------------------------------


def split_part10(blob: bytes) -> tuple[UID, int]:
    """(Transfer Syntax UID, offset of the data set) of a DICOM Part 10 file in memory."""
    fp = io.BytesIO(blob)
    read_preamble(fp, False)
    meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=lambda tag, vr, length: tag.group != 2)
    return UID(str(meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))), fp.tell()


def _convertible(source: UID, target: UID) -> bool:
    """Whether pydicom can re-encode a data set from one syntax to the other
    (the uncompressed little-endian ones; never pixel data compression)."""
    plain = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    return source in plain and target in plain


def choose_context(contexts: list[PresentationContext], sop_class: str, transfer_syntax: UID) -> PresentationContext | None:
    """The accepted context to send an instance on, with us as SCU: the
    instance's own transfer syntax if accepted, else one it converts to."""
    usable = [cx for cx in contexts if cx.abstract_syntax == sop_class and cx.as_scu]
    for cx in usable:
        if cx.transfer_syntax[0] == transfer_syntax:
            return cx
    for cx in usable:
        if _convertible(transfer_syntax, UID(cx.transfer_syntax[0])):
            return cx
    return None


def data_set_bytes(blob: bytes, target: UID) -> bytes:
    """The data set of a Part 10 file encoded in ``target``, without its file meta.

    Raises
    ------
    ValueError
        When the data set cannot be converted to ``target``.
    """
    source, offset = split_part10(blob)
    if source == target:
        return blob[offset:]
    if not _convertible(source, target):
        raise ValueError(f"cannot convert {source.name} to {target.name}")
    ds = dcmread(io.BytesIO(blob))
    encoded = encode(ds, target.is_implicit_VR, target.is_little_endian)
    if encoded is None:
        raise ValueError(f"the data set cannot be encoded in {target.name}")
    return encoded


def requested_contexts(refs: list[InstanceRef]) -> list[PresentationContext]:
    """Presentation contexts for a C-MOVE sub-association: per SOP class, one per
    uncompressed syntax and one per compressed syntax in use.

    One syntax per context: an acceptor picks a context's syntax in its own order
    (pynetdicom's SCPs put implicit VR first), so offering explicit and implicit VR
    in one context would have every explicit VR instance decoded and re-encoded.
    """
    syntaxes: dict[str, set[str]] = defaultdict(set)
    for ref in refs:
        syntaxes[ref.sop_class_uid].add(ref.transfer_syntax_uid)
    contexts = []
    for sop_class, used in syntaxes.items():
        plain = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        for ts in (*plain, *sorted(used - set(plain))):
            contexts.append(build_context(sop_class, [ts]))
    if len(contexts) > MAX_CONTEXTS:
        log.warning("C-MOVE needs %d presentation contexts; proposing the first %d", len(contexts), MAX_CONTEXTS)
    return contexts[:MAX_CONTEXTS]


def _context_id(context: PresentationContext) -> int:
    """The context's ID (an accepted context always has one)."""
    if context.context_id is None:
        raise ValueError(f"presentation context {context.abstract_syntax} has no ID")
    return context.context_id


def _message_id(request: C_MOVE | C_GET) -> int:
    """The request's Message ID (the server claims only valid requests, which have one)."""
    if request.MessageID is None:
        raise ValueError(f"{type(request).__name__} request without a Message ID")
    return request.MessageID


# -- C-STORE over one association --------------------------------------------------------


class StoreChannel:
    """Sends C-STORE requests over an association and waits for each answer.

    The caller owns the association's reactor: for C-GET it is the reactor
    thread itself (serving the request); for C-MOVE's sub-association the
    reactor is paused with the exact checkpoint of :mod:`transport` while
    the channel is in use.
    """

    def __init__(
        self, assoc: Association, timeout: float | None, first_message_id: int, originator: tuple[str, int] | None = None
    ):
        self.assoc = assoc
        self.timeout = timeout
        self._message_id = first_message_id
        self.originator = originator

    def _next_id(self) -> int:
        self._message_id = self._message_id % 65535 + 1
        return self._message_id

    def gone(self) -> bool:
        return not self.assoc.dul.is_alive() or self.assoc.acse.is_aborted() or self.assoc.is_aborted

    def store(self, ref: InstanceRef, blob: bytes) -> tuple[int | None, str]:
        """Send one instance; returns (status, reason). A status of None
        means no context accepts it (a failed sub-operation).

        Raises
        ------
        SubOperationsLost
            The association was aborted or closed, or the peer did not answer in time.
        """
        transfer_syntax, _ = split_part10(blob)
        context = choose_context(self.assoc.accepted_contexts, ref.sop_class_uid, transfer_syntax)
        if context is None:
            return None, f"no accepted presentation context for {UID(ref.sop_class_uid).name} in {transfer_syntax.name}"
        try:
            body = data_set_bytes(blob, UID(context.transfer_syntax[0]))
        except (ValueError, TypeError, AttributeError, KeyError, EOFError) as exc:
            return None, f"cannot encode {ref.sop_instance_uid}: {exc}"
        request = C_STORE()
        request.MessageID = self._next_id()
        request.AffectedSOPClassUID = ref.sop_class_uid
        request.AffectedSOPInstanceUID = ref.sop_instance_uid
        request.Priority = PRIORITY_MEDIUM
        if self.originator is not None:
            request.MoveOriginatorApplicationEntityTitle, request.MoveOriginatorMessageID = self.originator
        request.DataSet = io.BytesIO(body)
        if self.gone():
            raise SubOperationsLost("the association is gone")
        self.assoc.dimse.send_msg(request, _context_id(context))
        return self._response(request.MessageID), ""

    def _response(self, message_id: int) -> int:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                _, rsp = compat.next_message(self.assoc, 0.05)
            except queue.Empty:
                if self.gone():
                    raise SubOperationsLost("the association was aborted") from None
                if deadline is not None and time.monotonic() > deadline:
                    raise SubOperationsLost(f"no C-STORE response within {self.timeout:g} s") from None
                continue
            if rsp is None:
                raise SubOperationsLost("the connection was closed")
            if isinstance(rsp, C_STORE) and rsp.MessageIDBeingRespondedTo == message_id:
                return int(rsp.Status) if rsp.Status is not None else int(StatusValues.UNABLE_TO_PROCESS)
            log.warning("ignored an unexpected %s while waiting for a C-STORE response", type(rsp).__name__)


# -- the retrieve ---------------------------------------------------------------------------


class _Responder:
    """Builds and sends the C-MOVE / C-GET responses of one request."""

    def __init__(self, assoc: Association, request: C_MOVE | C_GET, context: PresentationContext):
        self.assoc = assoc
        self.request = request
        self.context_id = _context_id(context)
        self.transfer_syntax = UID(context.transfer_syntax[0])

    def send(
        self,
        status: StatusValues,
        tally: Tally | None = None,
        *,
        comment: str | None = None,
        offending: str | None = None,
        failed_uids: list[str] | None = None,
    ) -> None:
        rsp = C_MOVE() if isinstance(self.request, C_MOVE) else C_GET()
        rsp.MessageIDBeingRespondedTo = self.request.MessageID
        rsp.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        rsp.Status = int(status)
        if comment:
            rsp.ErrorComment = error_comment(comment)  # type: ignore[assignment]  # pynetdicom types it None (its default)
        if offending:
            rsp.OffendingElement = [Tag(offending)]  # type: ignore[assignment]  # as above
        if tally is not None:
            if status in (StatusValues.PENDING, StatusValues.CANCEL):
                rsp.NumberOfRemainingSuboperations = tally.remaining
            rsp.NumberOfCompletedSuboperations = tally.completed
            rsp.NumberOfFailedSuboperations = tally.failed
            rsp.NumberOfWarningSuboperations = tally.warning
        if failed_uids:
            identifier = Dataset()
            identifier.FailedSOPInstanceUIDList = failed_uids
            ts = self.transfer_syntax
            encoded = encode(identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
            rsp.Identifier = io.BytesIO(encoded if encoded is not None else b"")  # None (encoding failed): empty
        self.assoc.dimse.send_msg(rsp, self.context_id)

    def final(self, tally: Tally) -> None:
        if tally.failed == 0 and tally.warning == 0:
            self.send(StatusValues.SUCCESS, tally)
        elif tally.completed == 0 and tally.warning == 0:
            self.send(
                StatusValues.UNABLE_TO_PERFORM_SUB_OPERATIONS,
                tally,
                failed_uids=tally.failed_uids,
                comment=f"all {tally.failed} failed: {tally.problem}"
                if tally.problem
                else f"all {tally.failed} sub-operations failed",
            )
        else:
            comment = f"{tally.failed} failed: {tally.problem}" if tally.problem else None
            self.send(StatusValues.SUB_OPERATIONS_WARNING, tally, failed_uids=tally.failed_uids, comment=comment)


def serve_retrieve(assoc: Association, request: C_MOVE | C_GET, context: PresentationContext, retrieve: RetrieveContext) -> None:
    """Serve one C-MOVE or C-GET request on the acceptor association ``assoc``
    (runs in its reactor thread)."""
    responder = _Responder(assoc, request, context)
    model = INFORMATION_MODELS.get(str(context.abstract_syntax))
    if model is None:  # the server claims only requests on these models
        raise ValueError(f"{context.abstract_syntax} is not a Query/Retrieve MOVE or GET model")
    journal = getattr(assoc, "journal", None)
    try:
        ts = responder.transfer_syntax
        if request.Identifier is None:
            raise ValueError("the request has no Identifier")
        identifier = decode(request.Identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)
    except Exception as exc:  # pydicom raises many types for broken data
        responder.send(StatusValues.UNABLE_TO_PROCESS, comment=f"cannot decode the identifier: {exc}")
        return
    destination = None
    if isinstance(request, C_MOVE):
        move_destination = str(request.MoveDestination or "").strip()
        destination = retrieve.peers.get(move_destination)
        if journal is not None:
            journal.note(request.MessageID, f"to {move_destination or '(none)'}")
        if destination is None:
            responder.send(
                StatusValues.MOVE_DESTINATION_UNKNOWN,
                comment=f"unknown move destination {move_destination!r}; configure it as a peer",
            )
            return
    try:
        level, refs = retrieve_refs(retrieve.archive, model, identifier)
    except IdentifierError as exc:
        responder.send(StatusValues.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment=str(exc), offending=exc.keyword)
        return
    except InvalidQuery as exc:
        responder.send(StatusValues.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment=str(exc))
        return
    if journal is not None:
        journal.note(request.MessageID, f"{model} {level.value}, {len(refs)} instances")
    tally = Tally(len(refs))
    if not refs:
        responder.send(StatusValues.SUCCESS, tally)  # nothing matched: nothing to do
        return
    if len(refs) > MAX_SUB_OPERATIONS:
        responder.send(
            StatusValues.UNABLE_TO_PROCESS, comment=f"{len(refs)} instances; at most {MAX_SUB_OPERATIONS} per retrieve"
        )
        return
    if isinstance(request, C_MOVE) and destination is not None:  # a C-MOVE's destination is known by now
        _move(assoc, request, responder, refs, tally, retrieve, destination)
    else:
        channel = StoreChannel(assoc, retrieve.dimse_timeout, _message_id(request))
        _run(assoc, request, responder, refs, tally, retrieve.archive, channel)


def _move(
    assoc: Association,
    request: C_MOVE,
    responder: _Responder,
    refs: list[InstanceRef],
    tally: Tally,
    retrieve: RetrieveContext,
    destination: tuple[str, int],
) -> None:
    host, port = destination
    aet = str(request.MoveDestination).strip()
    sub: Association | None
    try:
        sub = transport.associate(retrieve.ae, host, port, aet, contexts=requested_contexts(refs), max_pdu=retrieve.max_pdu)
    except Exception as exc:  # bad address and the like: pynetdicom raises several types
        sub, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = "association rejected" if sub.is_rejected else "refused or silent"
    if sub is None or not sub.is_established:
        tally.fail_rest(refs)
        log.warning("C-MOVE to %s at %s:%d: cannot associate (%s)", aet, host, port, reason)
        responder.send(
            StatusValues.UNABLE_TO_PERFORM_SUB_OPERATIONS,
            tally,
            failed_uids=tally.failed_uids,
            comment=f"cannot reach {aet} at {host}:{port} ({reason})",
        )
        return
    originator = (str(assoc.requestor.ae_title).strip(), _message_id(request))
    channel = StoreChannel(sub, retrieve.dimse_timeout, 0, originator)
    transport.pause_reactor(sub)
    try:
        _run(assoc, request, responder, refs, tally, retrieve.archive, channel)
    finally:
        transport.resume_reactor(sub)
        if sub.is_established and not channel.gone():
            sub.release()
        else:
            sub.abort()


def _run(
    assoc: Association,
    request: C_MOVE | C_GET,
    responder: _Responder,
    refs: list[InstanceRef],
    tally: Tally,
    archive: Archive,
    channel: StoreChannel,
) -> None:
    """The sub-operations, with a pending response after each."""
    unmade: dict[str, str] = {}  # studies whose generation failed, and why: not retried for each instance
    responder.send(StatusValues.PENDING, tally)
    for i, ref in enumerate(refs):
        if compat.take_cancel(assoc, _message_id(request)):
            responder.send(StatusValues.CANCEL, tally, failed_uids=tally.failed_uids or None)
            return
        if not assoc.is_established:
            return  # the requestor went away; nothing to answer
        with archive.client_request(ref.study_instance_uid):  # background work on other studies pauses
            blob = _instance_bytes(archive, ref, unmade)
        if blob is None:
            tally.problem = tally.problem or unmade.get(ref.study_instance_uid) or unmade.get(ref.sop_instance_uid)
            tally.fail(ref.sop_instance_uid)
        else:
            try:
                with archive.client_request(ref.study_instance_uid):
                    status, reason = channel.store(ref, blob)
            except SubOperationsLost as exc:
                log.warning(
                    "%s sub-operations stopped after %d of %d: %s",
                    "C-MOVE" if isinstance(request, C_MOVE) else "C-GET",
                    i,
                    len(refs),
                    exc,
                )
                tally.fail_rest(refs[i:])
                if channel.assoc is assoc:  # C-GET: our own association is broken; nothing more to say
                    if assoc.is_established:
                        assoc.abort(block=False)
                    return
                break
            _count(tally, ref, status, reason)
        if tally.remaining:
            responder.send(StatusValues.PENDING, tally)
    responder.final(tally)


def _instance_bytes(archive: Archive, ref: InstanceRef, unmade: dict[str, str]) -> bytes | None:
    """The instance's Part 10 bytes (waiting for its part of a cold study), or
    None when they cannot be made (the reason goes into ``unmade``)."""
    if ref.study_instance_uid in unmade:
        return None
    try:
        return archive.instance_bytes(ref)
    except Exception as exc:  # generation failed: this study's instances fail, the rest go on
        log.error("cannot make instance %s: %s: %s", ref.sop_instance_uid, type(exc).__name__, exc)
        # A synthetic study fails as a whole (one generation); a stored object alone.
        unmade[ref.study_instance_uid if ref.synthetic else ref.sop_instance_uid] = getattr(exc, "reason", None) or str(exc)
        return None


def _count(tally: Tally, ref: InstanceRef, status: int | None, reason: str) -> None:
    """Count one sub-operation by the C-STORE status (None: it was not sent)."""
    if status is None:
        log.info("sub-operation for %s failed: %s", ref.sop_instance_uid, reason)
        tally.fail(ref.sop_instance_uid)
        return
    category = code_to_category(status)
    if category == STATUS_SUCCESS:
        tally.completed += 1
    elif category == STATUS_WARNING:
        tally.warning += 1
    else:
        if category != STATUS_FAILURE:
            log.warning("C-STORE answered with unknown status 0x%04X", status)
        tally.fail(ref.sop_instance_uid)
