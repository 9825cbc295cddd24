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

* **A lost response.** The association's reactor can take a response off
  the DIMSE queue that a ``send_*`` call is waiting for;
  :func:`harden` installs the exact pause of
  :class:`~synthpacs.dimse._pynetdicom_compat.ReactorCheckpoint`, which says
  how the race happens.

These use pynetdicom's public names only; everything that needs its
internals is in :mod:`synthpacs.dimse._pynetdicom_compat`.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING

from pynetdicom import evt

from ._pynetdicom_compat import (
    STANDARD_LOG_HANDLERS,
    ReactorCheckpoint,
    install_reactor_checkpoint,
    outgoing_backlog,
    pause_reactor,
    resume_reactor,
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
    install_reactor_checkpoint(assoc)


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


def drain(assoc: Association, timeout: float = 10.0) -> None:
    """Wait until the association has sent everything queued so far.

    pynetdicom's DUL thread reads from the socket only in a loop turn where
    it has nothing left to send, so a handler that queues responses faster
    than they go out keeps it from ever reading a C-CANCEL. Handlers that
    stream (C-FIND) call this between matches: the DUL then gets a turn to
    read, and the response backlog stays short.
    """
    deadline = time.monotonic() + timeout
    while outgoing_backlog(assoc) and assoc.is_established and assoc.dul.is_alive() and time.monotonic() < deadline:
        time.sleep(0.0002)


__all__ = [
    "HARDEN_HANDLERS",
    "STANDARD_LOG_HANDLERS",
    "ReactorCheckpoint",
    "associate",
    "drain",
    "harden",
    "pause_reactor",
    "quick_ack",
    "quiet",
    "resume_reactor",
    "set_nodelay",
]
