"""Every use of a pynetdicom private name, in one place, for pynetdicom 3.0 only.

The DIMSE front end works around several things in pynetdicom 3.0; the
five below need its internals. This module is the only one in the
project that imports a private pynetdicom module or touches a private
attribute (``tests/test_dimse_compat.py`` checks it); the rest of
:mod:`synthpacs.dimse` calls the names below. It refuses to import with any
other pynetdicom minor release (:func:`check_version`): each patch copies
or replaces 3.0 code, so a new release is a porting job, done here.

The patches, what each replaces and why (measurements in docs/dimse.md,
loopback on the shared 2-core development machine):

1. **Exact reactor pause** (:class:`ReactorCheckpoint`, installed by
   :func:`install_reactor_checkpoint`). Replaces the ``threading.Event``
   ``Association._reactor_checkpoint``. A ``send_*`` call pauses the
   reactor by clearing the event and spinning until ``_is_paused``, but the
   reactor sets ``_is_paused`` *before* it calls ``wait()``, so a sender
   can go ahead while the reactor is about to read the DIMSE queue; the
   reactor then takes the response the sender waits for (and drops it), and
   the sender times out and aborts. 8 pynetdicom clients doing C-ECHO
   against ``storescp --fork`` with 4 CPU-bound threads: 20 of 445
   responses lost in 15 s with the stock event, 0 of 946 with this one.
   :func:`pause_reactor` and :func:`resume_reactor` are the same pause for
   our own code that talks DIMSE on an association from another thread
   (C-MOVE sub-operations).

2. **Our C-MOVE and C-GET SCP** (:class:`InterceptingAssociation`).
   Overrides ``Association._serve_request`` so that a request the
   subclass claims is served by our code (``synthpacs.dimse.retrieve``)
   rather than by pynetdicom's service class, with the same set-up around
   it (C-CANCEL requests cleared, ``_is_paused`` raised). pynetdicom's
   retrieve SCP wants a decoded data set per instance and re-encodes it,
   sends no Error Comment with A801, and sends C-MOVE sub-operations over a
   stock association (without patch 1 or the socket fixes of
   :mod:`synthpacs.dimse.transport`); ours sends the stored Part
   10 bytes as they are. The retrieve reads the DIMSE queue
   (:func:`next_message`) and the C-CANCEL requests (:func:`take_cancel`)
   itself, as pynetdicom's service classes do.

3. **Our acceptor associations** (:class:`AcceptorRequestHandler`).
   Replaces ``RequestHandler._create_association``, which always makes a
   plain ``Association`` (so patch 2 could not apply) and deep-copies the
   server's presentation contexts for every connection although they are
   only read during negotiation. The replacement is 3.0's set-up otherwise,
   plus a hook, :meth:`AcceptorRequestHandler.prepare`, that runs before
   the association's reactor starts: the server installs patch 1, the
   socket fixes of :mod:`synthpacs.dimse.transport` and its journal there.
   :func:`register_server` adds a server made with ``AE.make_server`` to
   ``AE._servers``, as ``AE.start_server`` does, because the server's
   ``shutdown()`` removes itself from that list (ValueError otherwise).

4. **Quiet logging** (:data:`STANDARD_LOG_HANDLERS`, from
   ``pynetdicom._handlers``, and :func:`quiet_identifier_logging`, from
   ``pynetdicom._config``). pynetdicom binds handlers to every server and
   association that format each PDU and message for its DEBUG log, under
   the AE lock, and formats every query identifier, even when nothing logs
   at DEBUG; the server turns both off unless pynetdicom's logger wants DEBUG.

5. **Send backlog** (:func:`outgoing_backlog`, ``dul.to_provider_queue``).
   The DUL thread reads the socket only in a loop turn where it has nothing
   left to send, so a C-FIND handler that queues matches faster than they
   go out never sees a C-CANCEL; ``transport.drain`` waits for the queue
   to empty every few matches (Weasis' query limit sends C-CANCEL).

Two more work-arounds use public names only and live in
:mod:`synthpacs.dimse.transport`: TCP_NODELAY on every DIMSE socket (C-FIND
p50 94.5 ms with Nagle's algorithm, 15.8 ms without) and TCP_QUICKACK re-armed
after every read and write (dcmtk ``findscu --repeat 20``: 63.5 to 18.3 ms
per query; C-MOVE into ``storescp``: 46 to 2.5 ms per instance), plus a
socket timeout so that a peer stalled in the middle of a PDU cannot hold a
thread. No upstream issue is filed for patches 1 and 5 or for TCP_NODELAY
yet; link them here when they are.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pynetdicom

#: The pynetdicom releases these patches are written against (pyproject.toml pins the same).
SUPPORTED_VERSIONS = ">=3.0,<3.1"
_SUPPORTED_MINOR = (3, 0)


def check_version(version: str) -> None:
    """Refuse a pynetdicom release other than 3.0.x.

    Raises
    ------
    ImportError
        ``version`` is not a 3.0 release.
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None or (int(match[1]), int(match[2])) != _SUPPORTED_MINOR:
        raise ImportError(
            f"synthpacs.dimse needs pynetdicom {SUPPORTED_VERSIONS}, found pynetdicom {version}: "
            f"{__name__} patches pynetdicom 3.0 internals and must be ported to a new release first"
        )


# Before the private imports below, so that another release fails with the
# message above rather than with a missing name.
check_version(pynetdicom.__version__)

from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt
from pynetdicom._globals import MODE_ACCEPTOR
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket, RequestHandler

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom import AE
    from pynetdicom.presentation import PresentationContext
    from pynetdicom.transport import ThreadedAssociationServer

#: The private pynetdicom attribute and method names this module touches.
#: No other module in synthpacs/ may use them (tests/test_dimse_compat.py).
PRIVATE_NAMES = frozenset(
    {
        "_serve_request",
        "_accepted_cx",
        "_sent_release",
        "_is_paused",
        "_reactor_checkpoint",
        "_kill",
        "_create_association",
        "_server",
        "_handlers",
        "_servers",
        # Public spellings, but internal state with no API around it.
        "to_provider_queue",
        "msg_queue",
        "cancel_req",
    }
)

__all__ = [
    "MODE_ACCEPTOR",
    "PRIVATE_NAMES",
    "STANDARD_LOG_HANDLERS",
    "SUPPORTED_VERSIONS",
    "AcceptorRequestHandler",
    "InterceptingAssociation",
    "ReactorCheckpoint",
    "check_version",
    "install_reactor_checkpoint",
    "next_message",
    "outgoing_backlog",
    "pause_reactor",
    "quiet_identifier_logging",
    "register_server",
    "resume_reactor",
    "take_cancel",
]


# -- 1. the exact reactor pause ------------------------------------------------------------


class ReactorCheckpoint:
    """A drop-in for ``Association._reactor_checkpoint`` (a ``threading.Event``)
    whose :meth:`clear` waits until the association's reactor is parked.

    The reactor thread is the only caller of :meth:`wait`. Any other thread
    that calls :meth:`clear` (a ``send_*`` method, ``release()``, or the
    server's C-MOVE sub-operations) returns only when the reactor is blocked
    inside :meth:`wait`, or when the reactor thread is not running at all, so
    the reactor cannot take a message off the DIMSE queue until :meth:`set`.
    """

    _POLL = 0.05  # seconds between liveness checks while waiting for the reactor

    def __init__(self, assoc: Association):
        self._assoc = weakref.ref(assoc)
        self._cond = threading.Condition(threading.Lock())
        self._flag = True
        self._parked = False

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with self._cond:
            self._flag = True
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        with self._cond:
            if self._flag:
                return True
            self._parked = True
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._flag, timeout)
            finally:
                self._parked = False

    def clear(self) -> None:
        with self._cond:
            self._flag = False
            assoc = self._assoc()
            if assoc is None or threading.current_thread() is assoc:
                return  # the reactor pausing itself (a handler calling send_*)
            while not self._parked and not self._flag:
                if not assoc.is_alive() or assoc._kill:
                    return  # no reactor loop to wait for
                self._cond.wait(self._POLL)

    @property
    def parked(self) -> bool:
        """True while the reactor is blocked in :meth:`wait`."""
        return self._parked


def install_reactor_checkpoint(assoc: Association) -> None:
    """Give ``assoc`` a :class:`ReactorCheckpoint` (once; before its reactor starts)."""
    current = assoc._reactor_checkpoint
    if isinstance(current, ReactorCheckpoint):
        return
    checkpoint = ReactorCheckpoint(assoc)
    if not current.is_set():
        checkpoint.clear()
    # a duck-typed stand-in for the threading.Event pynetdicom declares the attribute as
    assoc._reactor_checkpoint = checkpoint  # type: ignore[assignment]


def pause_reactor(assoc: Association, timeout: float = 5.0) -> None:
    """Stop the reactor of ``assoc`` from reading the DIMSE queue until
    :func:`resume_reactor`, for a caller that talks DIMSE on it directly
    from another thread (what 3.0's ``send_*`` methods do first)."""
    assoc._reactor_checkpoint.clear()
    deadline = time.monotonic() + timeout
    while not assoc._is_paused and time.monotonic() < deadline:
        time.sleep(0.0001)


def resume_reactor(assoc: Association) -> None:
    """Let the reactor of ``assoc`` read the DIMSE queue again."""
    assoc._reactor_checkpoint.set()


# -- 2. our own service for some requests -----------------------------------------------------


class InterceptingAssociation(Association):
    """An association that serves the requests :meth:`claims` with
    :meth:`serve_claimed` (in its reactor thread) instead of pynetdicom's
    service classes. Subclasses override both."""

    def claims(self, msg: Any, context: PresentationContext) -> bool:
        """Whether :meth:`serve_claimed` serves this request (a valid one, on an accepted context)."""
        return False

    def serve_claimed(self, msg: Any, context: PresentationContext) -> None:
        """Serve a claimed request; exceptions are the subclass's to handle."""
        raise NotImplementedError

    def _serve_request(self, msg: Any, context_id: int) -> None:
        context = self._accepted_cx.get(context_id)
        if context is None or self._sent_release or not self.claims(msg, context):
            super()._serve_request(msg, context_id)
            return
        # What 3.0's _serve_request does around a service class's SCP.
        self.dimse.cancel_req = {}
        self._is_paused = True  # the SCP talks DIMSE from the reactor thread itself
        try:
            self.serve_claimed(msg, context)
        finally:
            self._is_paused = False
            self.dimse.cancel_req = {}


def next_message(assoc: Association, timeout: float) -> tuple[int | None, Any]:
    """The next (context ID, DIMSE message) off the association's queue,
    waiting at most ``timeout`` seconds; ``(None, None)`` means the
    connection closed. Unlike ``assoc.dimse.get_msg`` the wait is the
    caller's, not the DIMSE timeout, so a caller can check for an abort
    between polls.

    Raises
    ------
    queue.Empty
        Nothing arrived within ``timeout``.
    """
    return assoc.dimse.msg_queue.get(timeout=timeout)


def take_cancel(assoc: Association, message_id: int) -> bool:
    """Whether a C-CANCEL for request ``message_id`` has arrived (and forget it)."""
    return assoc.dimse.cancel_req.pop(message_id, None) is not None


# -- 3. our acceptor associations -------------------------------------------------------------


class AcceptorRequestHandler(RequestHandler):
    """pynetdicom's request handler, making :attr:`association_class` objects
    and calling :meth:`prepare` on each before its reactor starts."""

    association_class: type[Association] = Association

    def prepare(self, assoc: Association) -> None:
        """Override: set up a new acceptor association (socket in place, reactor not started)."""

    def _create_association(self) -> Association:
        # The same set-up as pynetdicom 3.0's RequestHandler._create_association.
        server = self.server
        assoc = self.association_class(self.ae, MODE_ACCEPTOR)
        assoc._server = server
        assoc.name = f"AcceptorThread@{datetime.now():%Y%m%d%H%M%S}"
        assoc.set_socket(AssociationSocket(assoc, client_socket=self.request))
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        assoc.acceptor.supported_contexts = server.contexts  # read only during negotiation: no copy needed
        assoc.requestor.address_info = self.remote
        for event, bound in server._handlers.items():
            if event.is_intervention and bound:
                assoc.bind(event, *bound)
            elif isinstance(event, evt.NotificationEvent) and isinstance(bound, list):  # a list of (handler, args)
                for handler, args in bound:
                    assoc.bind(event, handler, args)
        self.prepare(assoc)
        return assoc


def register_server(ae: AE, server: ThreadedAssociationServer) -> None:
    """Record a server made with ``ae.make_server`` on the AE, as
    ``ae.start_server`` does, so that ``server.shutdown()`` can remove it."""
    ae._servers.append(server)


# -- 4. quiet logging -------------------------------------------------------------------------


#: pynetdicom's default logging handlers, bound to every association and server.
STANDARD_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


def quiet_identifier_logging() -> None:
    """Turn off pynetdicom's formatting of every C-FIND, C-GET and C-MOVE identifier for its
    DEBUG log (done whether or not anything logs it: 5 % of a 1,000-match C-FIND), with the
    switches its ``_config`` documents."""
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False


# -- 5. the send backlog ----------------------------------------------------------------------


def outgoing_backlog(assoc: Association) -> int:
    """How many PDUs and primitives the association's DUL has yet to send."""
    return assoc.dul.to_provider_queue.qsize()
