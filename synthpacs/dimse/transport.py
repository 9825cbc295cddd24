"""Transport fixes for pynetdicom 3.0: TCP_NODELAY, quick ACKs, socket timeouts and an exact reactor pause.

Four things go wrong on a stock pynetdicom association, and all are fixed
here for every association the server touches, in both roles:

* **Nagle's algorithm.** pynetdicom writes a DIMSE message as several PDUs
  (command set, then data set) and never sets ``TCP_NODELAY``, so a small
  second write waits for the peer's delayed ACK: about 40 ms per exchange.
  :func:`set_nodelay` turns it off on the accepted sockets and on the sockets
  of the associations the server opens for C-MOVE sub-operations.

* **Delayed ACKs.** A peer that keeps Nagle's algorithm on waits for our
  ACK between the two writes of a PDU; Linux delays it by up to 40 ms.
  :func:`quick_ack` re-arms TCP_QUICKACK after every read and write.

* **A stalled peer.** pynetdicom reads PDUs with blocking ``recv`` calls on
  sockets without a timeout; :func:`harden` gives each socket one.

* **A lost response.** Each association runs a reactor thread that polls the
  DIMSE queue. Before a ``send_*`` call waits for its response it pauses the
  reactor: it clears ``_reactor_checkpoint`` and spins until ``_is_paused``
  is true. The reactor sets ``_is_paused = True`` *before* it calls
  ``checkpoint.wait()`` and resets it only after ``wait()`` returns, so a
  sender that clears the checkpoint while the reactor is between those two
  lines sees ``_is_paused`` true, goes ahead, and the reactor then takes the
  response off the queue itself (and drops it as an unexpected message);
  the sender waits out the DIMSE timeout and aborts. Under concurrent
  associations, where threads are descheduled for milliseconds at a time,
  this happens. :class:`ReactorCheckpoint` replaces the event with one whose
  ``clear()`` returns only once the reactor is really parked inside
  ``wait()``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING

from pynetdicom import evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom import AE
    from pynetdicom.association import Association

log = logging.getLogger(__name__)


def set_nodelay(sock: socket.socket | None) -> bool:
    """Turn off Nagle's algorithm on a TCP socket; False if it cannot be set."""
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True
    except OSError:  # not a TCP socket (or already closed)
        return False


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


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def _ack_now(sock: socket.socket | None) -> None:
    if sock is not None and _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass


def quick_ack(wrapper) -> None:
    """Re-arm TCP_QUICKACK after every read and write of an
    :class:`~pynetdicom.transport.AssociationSocket` (Linux).

    A peer that keeps Nagle's algorithm on (dcmtk's tools do, unless
    ``TCP_NODELAY=1`` is in their environment) writes a PDU in two pieces
    and holds the second until the first is acknowledged, and Linux delays
    that ACK by up to 40 ms. The flag does not stick (the kernel falls back
    to delayed ACKs as soon as the exchange looks interactive), hence once
    per read and write.
    """
    if _QUICKACK is None or getattr(wrapper, "_synthpacs_quick_ack", False):
        return
    recv, send = wrapper.recv, wrapper.send

    def recv_and_ack(nr_bytes: int) -> bytearray:
        data = recv(nr_bytes)
        _ack_now(wrapper.socket)
        return data

    def send_and_ack(bytestream: bytes) -> None:
        send(bytestream)
        _ack_now(wrapper.socket)

    wrapper.recv, wrapper.send = recv_and_ack, send_and_ack
    wrapper._synthpacs_quick_ack = True
    _ack_now(wrapper.socket)


def harden(assoc: Association) -> None:
    """Apply the fixes to an association whose reactor has not started yet.

    Besides TCP_NODELAY, quick ACKs (:func:`quick_ack`) and the exact
    reactor pause, the socket gets a timeout (the association's DIMSE timeout): pynetdicom reads a PDU with
    blocking ``recv`` calls, so a peer that stops in the middle of a PDU (or
    sends a garbage length) would otherwise hold the association's thread
    until it closes the connection; with a timeout the read fails and the
    DUL treats it as a closed connection.
    """
    sock = getattr(assoc.dul, "socket", None)
    raw = getattr(sock, "socket", None)
    set_nodelay(raw)
    if raw is not None and assoc.dimse_timeout:
        raw.settimeout(assoc.dimse_timeout)
    if sock is not None:
        quick_ack(sock)
    if not isinstance(assoc._reactor_checkpoint, ReactorCheckpoint):
        checkpoint = ReactorCheckpoint(assoc)
        if not assoc._reactor_checkpoint.is_set():
            checkpoint.clear()
        assoc._reactor_checkpoint = checkpoint


#: pynetdicom's default logging handlers, bound to every association and server.
STANDARD_LOG_HANDLERS = (
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
)


def quiet(assoc: Association) -> None:
    """Unbind pynetdicom's standard per-PDU and per-message logging handlers
    (they format every PDU under the AE lock) unless its logger wants DEBUG."""
    if logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
        return
    for event, handler in STANDARD_LOG_HANDLERS:
        assoc.unbind(event, handler)


def _on_connection_open(event: evt.Event) -> None:
    # EVT_CONN_OPEN fires once the socket is connected and before the
    # association's reactor thread starts (requestor and acceptor alike).
    harden(event.assoc)
    quiet(event.assoc)


#: Bind this on any association the project opens as a requestor.
HARDEN_HANDLERS = [(evt.EVT_CONN_OPEN, _on_connection_open)]


def associate(ae: AE, host: str, port: int, ae_title: str, **kwargs) -> Association:
    """``ae.associate`` with TCP_NODELAY and the exact reactor pause.

    Used for C-MOVE sub-operations, and by tests and benchmarks that drive the
    server with pynetdicom, so that neither side of a test loses a response.
    """
    handlers = list(kwargs.pop("evt_handlers", None) or []) + HARDEN_HANDLERS
    return ae.associate(host, port, ae_title=ae_title, evt_handlers=handlers, **kwargs)


def pause_reactor(assoc: Association, timeout: float = 5.0) -> None:
    """Stop the reactor of ``assoc`` from reading the DIMSE queue (until
    ``assoc._reactor_checkpoint.set()``), for a caller that talks DIMSE on it
    directly from another thread."""
    assoc._reactor_checkpoint.clear()
    deadline = time.monotonic() + timeout
    while not assoc._is_paused and time.monotonic() < deadline:
        time.sleep(0.0001)


def drain(assoc: Association, timeout: float = 10.0) -> None:
    """Wait until the association has sent everything queued so far.

    pynetdicom's DUL thread reads from the socket only in a loop turn where
    it has nothing left to send, so a handler that queues responses faster
    than they go out keeps it from ever reading a C-CANCEL. Handlers that
    stream (C-FIND) call this between matches: the DUL then gets a turn to
    read, and the response backlog stays short.
    """
    outgoing = assoc.dul.to_provider_queue
    deadline = time.monotonic() + timeout
    while outgoing.qsize() and assoc.is_established and assoc.dul.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0002)
