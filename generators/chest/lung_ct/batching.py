"""Slices of several requests in one forward pass, for accelerators.

On a 2-core CPU one slice per pass is as fast as any batch (the activations
stay in the caches: :class:`networks.SliceRenderer`). A GPU is fed well only
by large batches, and one CT part is two to eight slices, so on a GPU the
slices that the generation threads ask for at about the same time, from any
study, share one pass of :meth:`LungCTGenerator.forward`.

The bytes must not depend on who else was in a batch. So every pass has the
same shape, ``batch`` slices, the empty places filled with copies of the
first slice, and cuDNN is held to deterministic algorithms. Then a slice's
result is the same function of its own inputs whatever shares its pass
(``tests/test_gan.py`` checks it on the CPU).

One thread at a time leads: the first to find no pass running waits
``gather_s`` for others to join, takes up to ``batch`` slices of its grid
and runs the pass; the rest wait for their results. There is no thread of
its own, so nothing is left running when generation stops.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import torch

from .networks import LungCTGenerator


@dataclass
class SliceInputs:
    """One slice for :meth:`LungCTGenerator.forward`, each tensor with a batch dimension of 1."""

    labels: torch.Tensor  # (1, 3, H, W) labels of slices k-1, k, k+1
    spacing: torch.Tensor  # (1, 2)
    y_mm: torch.Tensor  # (1, H)
    w: torch.Tensor  # (1, w_dim), truncated
    noise: list[torch.Tensor] | None  # maps of noise_shapes, each (1, 1, h, w); None: no noise
    caller: int = 0  # which render() call it came with
    result: torch.Tensor | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def key(self) -> tuple:
        """Slices that may share a pass: the same grid, with or without noise."""
        return (tuple(self.labels.shape[-2:]), self.noise is None)


class SliceBatcher:
    """Renders slices in passes of exactly ``batch`` slices, gathering them across threads."""

    def __init__(self, net: LungCTGenerator, batch: int = 16, gather_s: float = 0.004):
        if batch < 1:
            raise ValueError(f"a batch holds at least one slice, not {batch}")
        self.net, self.batch, self.gather_s = net, int(batch), float(gather_s)
        self._lock = threading.Condition()
        self._queue: list[SliceInputs] = []
        self._leading = False
        self._callers = itertools.count(1)
        self.passes = 0  # for tests and benchmarks
        self.mixed_passes = 0  # passes that held slices of more than one caller
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False

    def render(self, slices: list[SliceInputs]) -> list[torch.Tensor]:
        """HU of each slice, (1, 1, H, W) float32, once a pass has made it."""
        with self._lock:
            caller = next(self._callers)
            for s in slices:
                s.caller = caller
            self._queue.extend(slices)
            self._lock.notify_all()
        while True:
            with self._lock:
                if all(s.done.is_set() for s in slices):
                    break
                if self._leading:
                    self._lock.wait(0.05)
                    continue
                self._leading = True
            try:
                self._lead()
            finally:
                with self._lock:
                    self._leading = False
                    self._lock.notify_all()
        for s in slices:
            if s.error is not None:
                raise s.error
        return [s.result for s in slices if s.result is not None]

    def _lead(self) -> None:
        """Gather for a moment (or until a pass is full), then run one pass of one grid."""
        deadline = time.monotonic() + self.gather_s
        with self._lock:
            while len(self._queue) < self.batch and time.monotonic() < deadline:
                self._lock.wait(max(0.0, deadline - time.monotonic()))
            if not self._queue:
                return
            key = self._queue[0].key()
            taken = [s for s in self._queue if s.key() == key][: self.batch]
            self._queue = [s for s in self._queue if not any(s is t for t in taken)]
        try:
            outputs = self._pass(taken)
        except BaseException as exc:  # every slice of the pass hears it
            for s in taken:
                s.error = exc
                s.done.set()
            raise
        self.passes += 1
        self.mixed_passes += len({s.caller for s in taken}) > 1
        for s, out in zip(taken, outputs):
            s.result = out
            s.done.set()

    @torch.inference_mode()
    def _pass(self, taken: list[SliceInputs]) -> list[torch.Tensor]:
        filled = taken + [taken[0]] * (self.batch - len(taken))  # always the same shape
        noise = None
        if taken[0].noise is not None:
            noise = [torch.cat([s.noise[level] for s in filled]) for level in range(len(taken[0].noise))]  # type: ignore[index]
        hu = self.net(
            torch.cat([s.labels for s in filled]),
            torch.cat([s.spacing for s in filled]),
            torch.cat([s.y_mm for s in filled]),
            torch.cat([s.w for s in filled]),
            noise,
        )
        return [hu[i : i + 1].float() for i in range(len(taken))]
