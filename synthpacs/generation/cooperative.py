"""Safe points where background generation gives the CPU back to clients.

A prefetch (a study a client opened but asked no pixels of) runs in a worker
thread of the same process as the requests clients wait on, and with two
cores and one GIL it would slow them down: a metadata request that takes
60 ms alone took over 500 ms beside a generation. Targets call
:func:`checkpoint` at points where stopping a while costs nothing (between
slices, between slabs of labels); the archive's workers install a hook with
:func:`pausing` that waits there while a client request is in flight and the
work is only a prefetch. Outside a worker, :func:`checkpoint` does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_local = threading.local()


def checkpoint() -> None:
    """Pause here if this thread's generation is background work and a client is waiting."""
    hook = getattr(_local, "hook", None)
    if hook is not None:
        hook()


@contextmanager
def pausing(hook: Callable[[], None]) -> Iterator[None]:
    """Run :func:`checkpoint` calls of this thread through ``hook`` inside the block."""
    previous = getattr(_local, "hook", None)
    _local.hook = hook
    try:
        yield
    finally:
        _local.hook = previous
