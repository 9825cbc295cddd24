"""The DIMSE front end: a pynetdicom AE, its presentation contexts and handlers.

:class:`DIMSEServer` listens on ``host:dicom_port`` beside the HTTP front
end and serves, from the same :class:`~synthpacs.archive.Archive`:

* Verification (C-ECHO);
* Patient Root and Study Root C-FIND, C-MOVE and C-GET at every level;
* Modality Worklist C-FIND;
* Storage (C-STORE SCP) for every standard storage SOP class, which C-GET
  also uses with SCP/SCU role selection.

Associations are served by pynetdicom's threaded server, one thread each,
with two changes made per association (:mod:`transport`): TCP_NODELAY and an
exact reactor pause. C-MOVE and C-GET requests are taken before pynetdicom's
own retrieve SCP and served by :mod:`retrieve`, which gets a
:class:`~synthpacs.dimse.retrieve.RetrieveContext` rather than this server.
Every association and every request ends in one log line (logger
``synthpacs.dimse``). The hooks into pynetdicom's internals are in
:mod:`synthpacs.dimse._pynetdicom_compat`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from types import MappingProxyType

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import (
    AE,
    ALL_TRANSFER_SYNTAXES,
    AllStoragePresentationContexts,
    evt,
)
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import time
    ModalityWorklistInformationFind,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from .. import __version__
from ..errors import StartupError
from . import _pynetdicom_compat as compat
from . import transport
from .handlers import INFORMATION_MODELS, handle_echo, handle_find, handle_store
from .retrieve import RetrieveContext, serve_retrieve
from .status import StatusValues, category, is_pending

log = logging.getLogger("synthpacs.dimse")

#: Our Implementation Class UID (PS3.7 D.3.3.2): a UUID-derived UID, fixed for the project.
IMPLEMENTATION_CLASS_UID = "2.25." + str(uuid.uuid5(uuid.NAMESPACE_URL, "https://synthpacs.invalid/implementation").int)
IMPLEMENTATION_VERSION_NAME = f"SYNTHPACS_{__version__}"[:16]

#: Identifiers and commands: explicit VR first, then what every SCU can do.
QUERY_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"]
#: Stored objects keep the syntax they arrive in; uncompressed explicit VR is preferred.
STORAGE_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian] + [
    ts for ts in ALL_TRANSFER_SYNTAXES if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
]

#: Command Field (0000,0100) of each request (PS3.7 E.1), for the log lines.
COMMANDS = {
    0x0001: "C-STORE",
    0x0010: "C-GET",
    0x0020: "C-FIND",
    0x0021: "C-MOVE",
    0x0030: "C-ECHO",
    0x0FFF: "C-CANCEL",
    0x0100: "N-EVENT-REPORT",
    0x0110: "N-GET",
    0x0120: "N-SET",
    0x0130: "N-ACTION",
    0x0140: "N-CREATE",
    0x0150: "N-DELETE",
}
C_CANCEL_RQ = 0x0FFF
RESPONSE_BIT = 0x8000  # set in the Command Field of every response (PS3.7 E.1)


# -- one log line per association and per request ------------------------------------------


@dataclass
class _Request:
    command: str
    started: float
    responses: int = 0
    detail: str = ""


class Journal:
    """What one association did, for its log lines (STYLE: one line per
    association and per request, with its status)."""

    _ids = iter(range(1, 2**62))
    _ids_lock = threading.Lock()

    def __init__(self) -> None:
        with Journal._ids_lock:
            self.id = next(Journal._ids)
        self.started = time.monotonic()
        self.requests = 0
        self._open: dict[int, _Request] = {}
        self._lock = threading.Lock()

    def note(self, message_id: int, text: str) -> None:
        """Add a detail (model, level, destination...) to the line of a request."""
        with self._lock:
            request = self._open.get(message_id)
            if request is not None:
                request.detail = f"{request.detail}, {text}" if request.detail else text

    def received(self, assoc: Association, command_set) -> None:
        field = int(command_set.CommandField)
        if field & RESPONSE_BIT or field == C_CANCEL_RQ:  # responses (to C-GET sub-operations) and C-CANCEL
            if field == C_CANCEL_RQ:
                log.info("[%d] C-CANCEL for request %s", self.id, command_set.get("MessageIDBeingRespondedTo"))
            return
        with self._lock:
            self.requests += 1
            self._open[int(command_set.MessageID)] = _Request(COMMANDS.get(field, f"0x{field:04X}"), time.monotonic())

    def sent(self, assoc: Association, command_set) -> None:
        field = int(command_set.CommandField)
        if not field & RESPONSE_BIT:
            return  # our own C-STORE requests (C-GET sub-operations)
        status = int(command_set.get("Status", StatusValues.UNABLE_TO_PROCESS))
        message_id = int(command_set.get("MessageIDBeingRespondedTo", 0))
        with self._lock:
            request = self._open.get(message_id)
            if request is None:
                return
            if is_pending(status):
                request.responses += 1
                return
            del self._open[message_id]
        parts = [f"[{self.id}] {request.command} #{message_id} from {_calling(assoc)}"]
        if request.detail:
            parts.append(f"({request.detail})")
        parts.append(f"-> {category(status)} 0x{status:04X}")
        counts = [
            f"{name} {int(command_set.get(f'NumberOf{name.title()}Suboperations'))}"
            for name in ("completed", "failed", "warning")
            if command_set.get(f"NumberOf{name.title()}Suboperations") is not None
        ]
        if request.command == "C-FIND" and status in (StatusValues.SUCCESS, StatusValues.CANCEL):
            counts.insert(0, f"{request.responses} matches")
        if counts:
            parts.append(", ".join(counts))
        if command_set.get("ErrorComment"):
            parts.append(f"'{command_set.ErrorComment}'")
        parts.append(f"in {1000 * (time.monotonic() - request.started):.1f} ms")
        log.info(" ".join(parts))

    def close(self, assoc: Association, server: DIMSEServer) -> None:
        """The association's line (and one for each request left unanswered),
        once its reactor has stopped."""
        elapsed = time.monotonic() - self.started
        who = f"{_calling(assoc)}@{_address(assoc)}"
        with self._lock:
            unanswered, self._open = self._open, {}
        for message_id, request in unanswered.items():
            detail = f" ({request.detail})" if request.detail else ""
            log.info(
                "[%d] %s #%d from %s%s -> no final response (%d pending sent): the association ended after %.1f ms",
                self.id,
                request.command,
                message_id,
                _calling(assoc),
                detail,
                request.responses,
                1000 * (time.monotonic() - request.started),
            )
        if assoc.is_rejected:
            log.info("[%d] association from %s rejected: %s", self.id, who, server.rejection_reason(assoc))
        elif assoc.requestor.primitive is None:
            log.info("[%d] connection from %s closed without an association request (%.1f s)", self.id, who, elapsed)
        else:
            outcome = "released" if assoc.is_released else "aborted"
            log.info(
                "[%d] association from %s: %s after %.2f s, %d request%s",
                self.id,
                who,
                outcome,
                elapsed,
                self.requests,
                "" if self.requests == 1 else "s",
            )


def _calling(assoc: Association) -> str:
    title = assoc.requestor.ae_title
    return str(title).strip() if title else "?"


def _address(assoc: Association) -> str:
    info = assoc.requestor.address_info
    return f"{info.address}:{info.port}" if info is not None else "?"


# -- pynetdicom classes, one change each ------------------------------------------------------


class ServerAssociation(compat.InterceptingAssociation):
    """An acceptor association that serves C-MOVE and C-GET with :mod:`retrieve`,
    keeps a :class:`Journal`, and tidies up its thread's resources when done."""

    dimse_server: DIMSEServer
    journal: Journal

    def claims(self, msg, context) -> bool:
        return isinstance(msg, (C_MOVE, C_GET)) and msg.is_valid_request and str(context.abstract_syntax) in INFORMATION_MODELS

    def serve_claimed(self, msg, context) -> None:
        try:
            serve_retrieve(self, msg, context, self.dimse_server.retrieve_context)
        except Exception:
            log.exception("[%d] %s failed", self.journal.id, type(msg).__name__.replace("_", "-"))
            self.abort(block=False)

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            self.dimse_server._association_ended(self)


class _RequestHandler(compat.AcceptorRequestHandler):
    """pynetdicom's request handler, making hardened :class:`ServerAssociation` objects."""

    association_class = ServerAssociation

    def prepare(self, assoc: Association) -> None:
        server = self.server
        assert isinstance(assoc, ServerAssociation) and isinstance(server, _AssociationServer)
        assoc.dimse_server = server.dimse_server
        assoc.journal = Journal()
        assoc.name = f"AcceptorThread@{dt.datetime.now():%Y%m%d%H%M%S}-{assoc.journal.id}"
        transport.harden(assoc)


class _AssociationServer(ThreadedAssociationServer):
    daemon_threads = True  # association threads never hold up shutdown

    def __init__(self, *args, dimse_server: DIMSEServer, **kwargs):
        self.dimse_server = dimse_server
        super().__init__(*args, **kwargs)


# -- the server ---------------------------------------------------------------------------


class DIMSEServer:
    """The DIMSE front end of one :class:`~synthpacs.app.SynthPACS`.

    Binds its port on construction (``dicom_port``; 0 picks a free one) and
    serves once :meth:`start` is called, until :meth:`stop`.

    Raises
    ------
    StartupError
        The port cannot be bound, or a DIMSE setting is unusable.
    """

    def __init__(self, pacs, host: str | None = None, port: int | None = None):
        self.pacs = pacs
        self.config = config = pacs.config
        self.archive = pacs.archive
        host = config.host if host is None else host
        port = config.dicom_port if port is None else port
        self.worklist = self.archive.worklist
        pynetdicom_log = logging.getLogger("pynetdicom")
        if pynetdicom_log.level == logging.NOTSET:
            pynetdicom_log.setLevel(logging.WARNING)  # our own lines say what happened
        self.ae = self._make_ae()
        self.retrieve_context = RetrieveContext(
            archive=self.archive,
            peers=MappingProxyType(dict(config.peers)),
            ae=self.ae,
            dimse_timeout=config.dicom_dimse_timeout,
            max_pdu=config.dicom_max_pdu,
        )
        handlers: list[evt.EventHandlerType] = [
            (evt.EVT_C_ECHO, handle_echo),
            (evt.EVT_C_FIND, handle_find, [self.archive, self.worklist, config.ae_title]),
            (evt.EVT_C_STORE, handle_store, [self.archive]),
            (evt.EVT_DIMSE_RECV, _journal_received),
            (evt.EVT_DIMSE_SENT, _journal_sent),
        ]
        try:
            self._listener = self.ae.make_server(
                (host, port),
                evt_handlers=handlers,
                server_class=_AssociationServer,
                request_handler=_RequestHandler,
                dimse_server=self,
            )
        except OSError as exc:
            raise StartupError(f"cannot listen for DICOM on {host}:{port}: {exc.strerror or exc}") from None
        if not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            for event, handler in compat.STANDARD_LOG_HANDLERS:  # they format every PDU
                self._listener.unbind(event, handler)
            compat.quiet_identifier_logging()
        self._thread: threading.Thread | None = None

    def _make_ae(self) -> AE:
        config = self.config
        ae = AE(ae_title=config.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.maximum_associations = config.dicom_max_associations
        ae.acse_timeout = config.dicom_acse_timeout
        ae.dimse_timeout = config.dicom_dimse_timeout
        ae.network_timeout = config.dicom_network_timeout
        ae.connection_timeout = config.dicom_connection_timeout
        ae.maximum_pdu_size = config.dicom_max_pdu
        ae.require_calling_aet = list(config.dicom_allowed_aets)
        ae.add_supported_context(Verification, QUERY_SYNTAXES)
        for sop_class in (*INFORMATION_MODELS, ModalityWorklistInformationFind):
            ae.add_supported_context(sop_class, QUERY_SYNTAXES)
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None  # each names its Storage SOP Class
            # scu_role and scp_role: the requestor may store to us (C-STORE) and,
            # with role selection, receive from us (C-GET sub-operations).
            ae.add_supported_context(context.abstract_syntax, STORAGE_SYNTAXES, scu_role=True, scp_role=True)
        return ae

    # -- life cycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._listener.server_address[1])

    @property
    def host(self) -> str:
        return str(self._listener.server_address[0])

    def start(self) -> None:
        compat.register_server(self.ae, self._listener)  # so that its shutdown() can remove it
        self._thread = threading.Thread(
            target=self._listener.serve_forever, kwargs={"poll_interval": 0.1}, name=f"dimse@{self.port}", daemon=True
        )
        self._thread.start()
        log.info(
            "DIMSE: %s listening on %s:%d (max %d associations, PDU %d, calling AE titles: %s)",
            self.config.ae_title,
            self.host,
            self.port,
            self.config.dicom_max_associations,
            self.config.dicom_max_pdu,
            ", ".join(self.config.dicom_allowed_aets) or "any",
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, abort every association (served or opened for
        C-MOVE), and wait for their threads."""
        if self._thread is not None:
            self._listener.shutdown()
            self._thread.join(timeout)
            self._thread = None
        else:
            self._listener.server_close()
        associations = list(self.ae.active_associations)
        for assoc in associations:
            try:
                assoc.abort()
            except Exception:  # an association ending by itself meanwhile
                pass
        deadline = time.monotonic() + timeout
        for assoc in associations:
            assoc.join(max(0.0, deadline - time.monotonic()))

    @property
    def active_associations(self) -> list[Association]:
        return list(self.ae.active_associations)

    # -- hooks --------------------------------------------------------------------------

    def rejection_reason(self, assoc: Association) -> str:
        allowed = self.config.dicom_allowed_aets
        if allowed and _calling(assoc) not in allowed:
            return "calling AE title not allowed"
        return f"more than {self.config.dicom_max_associations} associations"

    def _association_ended(self, assoc: ServerAssociation) -> None:
        try:
            assoc.journal.close(assoc, self)
        finally:
            self.archive.release_thread()  # this thread's SQLite connection


def _journal_received(event) -> None:
    journal = getattr(event.assoc, "journal", None)
    if journal is not None:
        journal.received(event.assoc, event.message.command_set)


def _journal_sent(event) -> None:
    journal = getattr(event.assoc, "journal", None)
    if journal is not None:
        journal.sent(event.assoc, event.message.command_set)


__all__ = ["IMPLEMENTATION_CLASS_UID", "DIMSEServer", "ServerAssociation"]
