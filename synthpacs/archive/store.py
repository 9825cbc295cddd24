"""Where instances live once made: a memory LRU over a disk cache, plus the
folder of objects received by STOW-RS and C-STORE.

Files are written atomically (temporary file in the same folder, fsync,
``os.replace``), so a reader never sees half a file and a crash leaves either
the old state or the new one. What is generated, and when, is
:mod:`.generations`' business.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` so that it appears whole or not at all.

    ``durable`` also syncs the folder, so that the new name survives a crash
    as well (objects received by STOW-RS and C-STORE; cached instances can be made again).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable and hasattr(os, "O_DIRECTORY"):  # POSIX: a folder can be opened and synced
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


class MemoryLRU:
    """A thread-safe least-recently-used map of bytes, capped by total size."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)

    @property
    def size(self) -> int:
        return self._size

    def drop_prefix(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k.startswith(prefix)]:
                self._size -= len(self._items.pop(key))

    def __len__(self) -> int:
        return len(self._items)


class InstanceCache:
    """Synthetic instances as Part 10 bytes: a memory LRU over a disk cache capped by size.

    Files live at ``root/<relative>``, where ``relative`` starts with the
    cache key and the Study Instance UID (``key/study/series/sop.dcm``). The
    disk cap evicts whole studies, least recently used first, never one in
    ``protected()`` (being generated); stored objects live elsewhere and are
    never touched. Folders under ``root`` that other universes (another seed,
    another ``today``) left behind are counted and go first.
    """

    def __init__(self, root: Path, max_memory_bytes: int, max_disk_bytes: int = 0, keep: str = ""):
        self.root = Path(root)
        self.memory = MemoryLRU(max_memory_bytes)
        self.max_disk_bytes = max_disk_bytes
        self._keep = keep  # the folder of this universe; others are stale
        self._lock = threading.Lock()
        self._studies: OrderedDict[str, int] = OrderedDict()  # "folder/key/study" -> bytes, oldest first
        self._disk = 0
        self.evicted = 0
        if max_disk_bytes:
            self._scan()

    def _scan(self) -> None:
        """Sizes of the studies on disk, oldest first (by modification time); stale universes first."""
        found = []
        if self.root.is_dir():
            for universe in self.root.iterdir():
                for key in universe.iterdir() if universe.is_dir() else ():
                    for study in key.iterdir() if key.is_dir() else ():
                        size = sum(f.stat().st_size for f in study.rglob("*.dcm"))
                        stale = universe.name != self._keep
                        found.append((not stale, study.stat().st_mtime, str(study.relative_to(self.root)), size))
        for _, _, name, size in sorted(found):
            self._studies[name] = size
            self._disk += size

    @staticmethod
    def study_of(relative: str) -> str:
        return "/".join(relative.split("/")[:3])

    def path_of(self, relative: str) -> Path:
        return self.root / relative

    def read(self, relative: str) -> bytes | None:
        """The bytes of a cached instance, or None."""
        data = self.memory.get(relative)
        if data is None:
            try:
                data = self.path_of(relative).read_bytes()
            except FileNotFoundError:
                return None
            self.memory.put(relative, data)
        if self.max_disk_bytes:
            with self._lock:
                name = self.study_of(relative)
                if name in self._studies:
                    self._studies.move_to_end(name)
        return data

    def exists(self, relative: str) -> bool:
        return self.memory.get(relative) is not None or self.path_of(relative).exists()

    def put(self, relative: str, data: bytes) -> None:
        """Write one instance (atomically) and keep it in memory."""
        path = self.path_of(relative)
        existed = path.exists()
        atomic_write(path, data)
        self.memory.put(relative, data)
        if self.max_disk_bytes and not existed:
            with self._lock:
                name = self.study_of(relative)
                self._studies[name] = self._studies.get(name, 0) + len(data)
                self._studies.move_to_end(name)
                self._disk += len(data)

    @property
    def disk_bytes(self) -> int:
        return self._disk

    def evict(self, protected: Callable[[], set[str]]) -> int:
        """Remove least recently used studies until the disk cache is under its cap; returns how many."""
        if not self.max_disk_bytes:
            return 0
        removed = 0
        busy = protected()
        while True:
            with self._lock:
                if self._disk <= self.max_disk_bytes:
                    return removed
                victim = next((n for n in self._studies if n.split("/")[-1] not in busy), None)
                if victim is None:
                    return removed
                self._disk -= self._studies.pop(victim)
            shutil.rmtree(self.root / victim, ignore_errors=True)
            self.memory.drop_prefix(victim + "/")
            removed += 1
            self.evicted += 1
