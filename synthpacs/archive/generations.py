"""Studies being generated: one generation in flight per study, made part by part, shared by every request.

A retrieve of a cold study does not wait for the whole study. The study is
made in the parts its target declares (CT slabs, then SEG and SR); each part
lands in the instance cache as soon as it exists, and a request waits only for
the part that holds its instance. What is asked for is made next:

* **Priorities.** A part some request is waiting on comes first (its study
  is ``WAITED``); a study a client has touched then goes on in order in the
  background (``CONTINUE``, the study touched last first), so that the next
  instance of a series retrieve is ready when it is asked; ``PREFETCH``
  studies (a client opened them but asked for no pixels yet) run last, on
  at most ``workers - 1`` workers. One thread beyond the ``workers`` makes
  only parts a client waits on, so such a request never waits for a thread
  (a new study opened while the last ones go on); the background work
  pauses meanwhile (below).
* **Bounds.** ``workers`` threads make parts (one part of a study at a time), one more the parts clients wait on;
  at most ``max_studies`` studies hold their shared state (geometry, latents)
  at once: a waited-on study displaces one nobody waits on (its remaining
  parts are made again on demand, from the same keyed draws). The prefetch
  queue holds at most ``prefetch_queue`` studies; more are dropped.
* **Clients first.** While a client request is in flight
  (:meth:`Generations.foreground`), work nobody waits on pauses at the
  target's checkpoints (:mod:`synthpacs.generation.cooperative`), for at
  most ``max_pause`` seconds at a time, so that it never slows that request
  down: a ``PREFETCH`` for any request (its own study's metadata included),
  a ``CONTINUE`` study for requests about other studies (a streamed
  retrieve of the study itself never holds it back). A ``PREFETCH`` also
  waits for a ``quiet`` gap after the last request, and a ``CONTINUE`` study
  for that gap after a request about another study, so that the request a
  viewer sends next does not find background work just resumed. It goes on at once
  when a study someone waits on wants a worker, and a request that waits on
  it makes it ``WAITED``.
* **Failures.** A part that fails ends its study's generation: every request
  waiting on it gets :class:`GenerationFailed` with the reason, nothing of it
  is cached as good, and the next request starts afresh.

The archive supplies what to make through a :class:`StudyMaker` factory, so
this module knows nothing of targets or DICOM.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import GenerationFailed
from ..generation.cooperative import pausing

log = logging.getLogger(__name__)


class Priority(enum.IntEnum):
    WAITED = 0
    CONTINUE = 1
    PREFETCH = 2


class StudyMaker(Protocol):
    """One study's parts, made and cached by the archive."""

    @property
    def parts(self) -> Sequence[tuple[str, ...]]:
        """The SOP Instance UIDs of each part, in making order."""

    def cached(self, index: int) -> bool:
        """Whether every instance of part ``index`` is in the cache already."""

    def make(self, index: int) -> None:
        """Make part ``index`` and write its instances to the cache."""

    def close(self) -> None:
        """Release what the parts shared."""


@dataclass(eq=False)
class _Study:
    uid: str
    seq: int
    base: Priority
    touched: int = 0  # when a client last asked for one of its instances (a sequence number)
    maker: StudyMaker | None = None
    part_of: dict[str, int] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)
    waiting: dict[str, int] = field(default_factory=dict)  # SOP Instance UID -> requests waiting on it
    asked: list[str] = field(default_factory=list)  # SOP Instance UIDs in the order they were asked
    running: bool = False
    error: str | None = None
    finished: bool = False

    @property
    def priority(self) -> Priority:
        return Priority.WAITED if self.waiting else self.base

    def next_part(self) -> int | None:
        """The first asked-for part not made, else the first part not made in order."""
        if self.maker is None:
            return None
        for sop in self.asked:
            index = self.part_of.get(sop)
            if index is not None and index not in self.done:
                return index
        return next((i for i in range(len(self.maker.parts)) if i not in self.done), None)


class Generations:
    """The generations in flight of one archive (see the module docstring).

    ``open_study(study_uid)`` returns the :class:`StudyMaker` of a study;
    ``is_cached(study_uid, sop_uid)`` says whether an instance is in the cache.
    """

    def __init__(
        self,
        open_study: Callable[[str], StudyMaker],
        is_cached: Callable[[str, str], bool],
        *,
        workers: int = 2,
        max_studies: int = 2,
        prefetch_queue: int = 4,
        max_pause: float = 2.0,
        quiet: float = 0.25,
        nice: int = 0,
        on_finished: Callable[[str], None] | None = None,
    ):
        if workers < 1 or max_studies < 1 or prefetch_queue < 0:
            raise ValueError("workers and max_studies must be at least 1, prefetch_queue at least 0")
        self._open, self._is_cached, self._on_finished = open_study, is_cached, on_finished
        self.workers, self.max_studies, self.prefetch_queue = workers, max_studies, prefetch_queue
        self._cond = threading.Condition()
        self._studies: dict[str, _Study] = {}
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._busy_background = 0  # threads making a part nobody waited on when it was picked
        self._busy_prefetch = 0  # of which prefetches
        self.max_pause = max_pause
        self.quiet = quiet
        self.nice = nice
        self._last_request_end = float("-inf")  # monotonic time the last client request ended
        self._last_end_by_study: dict[str | None, float] = {}  # ... per study asked about (recent ones)
        self._clients = threading.Condition()  # its own lock: entered on every request, never held long
        self._client_requests: Counter[str | None] = Counter()  # study UID (None: no one study) -> requests
        self.parts_made = 0  # for tests and benchmarks
        self.studies_opened = 0
        self.pauses = 0

    # -- what clients call ------------------------------------------------------------------

    def wait_for(self, study_uid: str, sop_uid: str, timeout: float | None = None) -> None:
        """Return once ``sop_uid`` is in the cache, making its part first if need be.

        Raises
        ------
        GenerationFailed
            The study's generation failed (the message says why), or the archive is closing.
        """
        with self._cond:
            study = self._studies.get(study_uid)
            if study is None:
                if self._is_cached(study_uid, sop_uid):
                    return
                study = self._add(study_uid, Priority.CONTINUE)
            study.base = min(study.base, Priority.CONTINUE)
            study.touched = next(self._seq)
            study.waiting[sop_uid] = study.waiting.get(sop_uid, 0) + 1
            study.asked.append(sop_uid)
            self._cond.notify_all()
            try:
                while True:
                    if study.error is not None:
                        raise GenerationFailed(f"study {study_uid} could not be generated: {study.error}", study.error)
                    index = study.part_of.get(sop_uid)
                    if index is not None and index in study.done:
                        return
                    if study.maker is not None and index is None:
                        raise GenerationFailed(f"study {study_uid} has no instance {sop_uid} in any part")
                    if study.finished or self._closed:
                        # Released before this part was made (displaced, or the archive closes).
                        if self._closed:
                            raise GenerationFailed("the archive is shutting down")
                        if self._is_cached(study_uid, sop_uid):
                            return
                        study = self._studies.get(study_uid) or self._add(study_uid, Priority.CONTINUE)
                        study.touched = next(self._seq)
                        study.waiting[sop_uid] = study.waiting.get(sop_uid, 0) + 1
                        study.asked.append(sop_uid)
                        self._cond.notify_all()
                    if not self._cond.wait(timeout):
                        raise GenerationFailed(f"instance {sop_uid} was not made within {timeout} s")
            finally:
                left = study.waiting.get(sop_uid, 0) - 1
                if left > 0:
                    study.waiting[sop_uid] = left
                else:
                    study.waiting.pop(sop_uid, None)
                if sop_uid in study.asked and sop_uid not in study.waiting:
                    study.asked = [s for s in study.asked if s != sop_uid]

    def prefetch(self, study_uid: str) -> bool:
        """Start making a study in the background at low priority; False when the queue is full."""
        with self._cond:
            if study_uid in self._studies:
                return True
            queued = sum(1 for s in self._studies.values() if s.base == Priority.PREFETCH and s.maker is None)
            if queued >= self.prefetch_queue:
                return False
            self._add(study_uid, Priority.PREFETCH)
            self._cond.notify_all()
            return True

    @contextmanager
    def foreground(self, study_uid: str | None = None) -> Iterator[None]:
        """A client request in flight (about ``study_uid``, or no one study): background work
        pauses at its checkpoints until it ends (see :meth:`_holds_back`)."""
        with self._clients:
            self._client_requests[study_uid] += 1
        try:
            yield
        finally:
            with self._clients:
                self._client_requests[study_uid] -= 1
                if not self._client_requests[study_uid]:
                    del self._client_requests[study_uid]
                now = self._last_request_end = time.monotonic()
                recent = {k: t for k, t in self._last_end_by_study.items() if now - t < self.quiet}
                recent[study_uid] = now
                self._last_end_by_study = recent
                self._clients.notify_all()

    def has(self, study_uid: str) -> bool:
        """Whether a study is being generated, or queued to be."""
        with self._cond:
            return study_uid in self._studies

    def in_flight(self) -> set[str]:
        with self._cond:
            return set(self._studies)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        for study in list(self._studies.values()):
            if study.maker is not None:
                study.maker.close()
        self._studies.clear()

    # -- the workers ---------------------------------------------------------------------

    def _add(self, study_uid: str, base: Priority) -> _Study:
        study = self._studies[study_uid] = _Study(study_uid, next(self._seq), base)
        # All at once, on first need: ``workers`` threads, and one more for parts a client waits on
        # only, so that such a request never waits for background work to give a thread back.
        while len(self._threads) < self.workers + 1:
            thread = threading.Thread(target=self._work, name=f"generate-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return study

    def _pick(self) -> _Study | None:
        """The study to make a part of next, or None (under the lock)."""
        opened = [s for s in self._studies.values() if s.maker is not None]
        candidates = sorted(
            (s for s in self._studies.values() if not s.running and not s.finished and s.error is None),
            # Studies going on: the one a client touched last first (it is likely asked next).
            key=lambda s: (s.priority, -s.touched if s.priority == Priority.CONTINUE else s.seq),
        )
        for study in candidates:
            if not self._for_a_waiter(study):
                if self._busy_background >= self.workers:
                    continue  # the extra thread is for requests a client waits on
                if study.priority == Priority.PREFETCH and self._busy_prefetch >= max(1, self.workers - 1):
                    continue  # a worker stays for the studies clients are retrieving
            if study.maker is None and len(opened) >= self.max_studies:
                victim = self._displaceable(opened, study)
                if victim is None:
                    continue
                self._release(victim)
                opened.remove(victim)
            return study
        return None

    @staticmethod
    def _for_a_waiter(study: _Study) -> bool:
        """Whether the part a worker would make next holds an instance a client waits on (under the
        lock; the part after the last one waited on is background work, though its waiter may not
        have woken yet)."""
        if not study.waiting:
            return False
        if study.maker is None:
            return True
        index = study.next_part()
        return any(study.part_of.get(sop) == index for sop in study.waiting)

    def _displaceable(self, opened: list[_Study], wanting: _Study) -> _Study | None:
        """An opened study nobody waits on, of lower priority than ``wanting``."""
        idle = [s for s in opened if not s.running and not s.waiting and s.priority > wanting.priority]
        return max(idle, key=lambda s: (s.priority, -s.seq), default=None)

    def _release(self, study: _Study) -> None:
        """Forget a study (under the lock); its maker is closed outside it by the caller's worker."""
        study.finished = True
        self._studies.pop(study.uid, None)
        if study.maker is not None:
            maker, study.maker = study.maker, None
            threading.Thread(target=maker.close, daemon=True).start()
        self._cond.notify_all()

    def _work(self) -> None:
        _lower_own_priority(self.nice)
        while True:
            with self._cond:
                study = None
                while not self._closed:
                    study = self._pick()
                    if study is not None:
                        break
                    self._cond.wait()
                if self._closed or study is None:
                    return
                study.running = True
                background = not self._for_a_waiter(study)
                prefetching = background and study.priority == Priority.PREFETCH
                self._busy_background += background
                self._busy_prefetch += prefetching
            try:
                self._step(study)
            except Exception as exc:  # a target error: every waiter hears it; nothing is cached as good
                log.error("generation of study %s failed: %s: %s", study.uid, type(exc).__name__, exc)
                with self._cond:
                    study.error = f"{type(exc).__name__}: {exc}"
                    study.running = False
                    self._busy_background -= background
                    self._busy_prefetch -= prefetching
                    self._release(study)
                continue
            with self._cond:
                study.running = False
                self._busy_background -= background
                self._busy_prefetch -= prefetching
                finished = study.maker is not None and len(study.done) == len(study.maker.parts)
                if finished:
                    self._release(study)
                self._cond.notify_all()
            if finished and self._on_finished is not None:
                try:  # outside the lock: it may take a while (evicting the disk cache)
                    self._on_finished(study.uid)
                except Exception:
                    log.exception("after generating study %s", study.uid)

    def _yield_to_clients(self, study: _Study) -> None:
        """A worker's checkpoint: work the requests in flight hold back waits (``max_pause`` s at most)."""
        deadline = None
        with self._clients:
            while self._holds_back(study) and not self._waited_queued():
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_pause
                    self.pauses += 1
                elif now >= deadline:
                    return
                self._clients.wait(0.02)  # and look again: a request may have started waiting on this study

    def _holds_back(self, study: _Study) -> bool:
        """Whether a client request in flight holds this study's work back: any request holds a
        prefetch back, and so does the ``quiet`` gap after the last one (a viewer's requests come
        back to back: the next one must not find a prefetch started between them); a study a client
        touched goes on while the requests are about it, and waits for the gap after a request about
        another study."""
        priority = study.priority
        if priority == Priority.WAITED:
            return False
        total = self._client_requests.total()
        now = time.monotonic()
        if priority == Priority.PREFETCH:
            return total > 0 or now - self._last_request_end < self.quiet
        if total > self._client_requests.get(study.uid, 0):
            return True
        return any(uid != study.uid and now - t < self.quiet for uid, t in self._last_end_by_study.items())

    def _waited_queued(self) -> bool:
        """Whether a study someone waits on wants a worker (then a paused part goes on, to free its
        worker sooner), or the archive is closing."""
        with self._cond:
            return self._closed or any(s.priority == Priority.WAITED and not s.running for s in self._studies.values())

    def _step(self, study: _Study) -> None:
        with pausing(lambda: self._yield_to_clients(study)):
            self._make_next(study)

    def _make_next(self, study: _Study) -> None:
        """Open the study if need be, then make (or find cached) its next part."""
        if study.maker is None:
            self._yield_to_clients(study)  # opening draws the patient's anatomy: not while a client waits
            maker = self._open(study.uid)
            part_of = {sop: i for i, sops in enumerate(maker.parts) for sop in sops}
            with self._cond:
                study.maker, study.part_of = maker, part_of
                self.studies_opened += 1
                self._cond.notify_all()
        with self._cond:
            index = study.next_part()
            maker = study.maker
        if index is None or maker is None:
            return
        if not maker.cached(index):
            maker.make(index)
            self.parts_made += 1
        with self._cond:
            study.done.add(index)
            self._cond.notify_all()


def _lower_own_priority(nice: int) -> None:
    """Make the calling thread (and the compute threads it starts, which inherit it) yield the CPU
    to request threads and to other programs: generation is bulk work, a request is short."""
    if nice <= 0 or not sys.platform.startswith("linux"):  # elsewhere a thread id is no process id
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:  # not Linux threads, or not allowed: the generation runs at the server's priority
        log.debug("generation threads keep the server's priority: %s", exc)
