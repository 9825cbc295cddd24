"""The instance cache: atomic writes, a size-capped LRU, one generation per study."""

import threading
import time

from synthpacs.archive.store import InstanceCache, MemoryLRU, atomic_write


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "a" / "b.dcm"
    atomic_write(target, b"x" * 10)
    atomic_write(target, b"y" * 5)
    assert target.read_bytes() == b"yyyyy"
    assert [p.name for p in target.parent.iterdir()] == ["b.dcm"]


def test_lru_respects_its_size_cap():
    lru = MemoryLRU(max_bytes=100)
    for i in range(10):
        lru.put(str(i), bytes(30))
    assert lru.size <= 100 and len(lru) == 3
    assert lru.get("9") is not None and lru.get("0") is None
    lru.put("big", bytes(101))  # larger than the cap: not kept, nothing evicted
    assert lru.get("big") is None and len(lru) == 3


def test_concurrent_requests_generate_a_study_once(tmp_path):
    cache = InstanceCache(tmp_path, max_memory_bytes=10_000)
    calls = []

    def generate():
        calls.append(1)
        time.sleep(0.2)  # long enough for every thread to be waiting
        return {f"sop{i}": (f"study/series/sop{i}.dcm", f"data{i}".encode()) for i in range(5)}

    results = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(cache.get("study", f"study/series/sop{i % 5}.dcm", generate)))
        for i in range(12)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(set(results)) == [f"data{i}".encode() for i in range(5)]
    # A new cache over the same folder (a restart) reads from disk, no generation.
    again = InstanceCache(tmp_path, max_memory_bytes=10_000)
    assert again.get("study", "study/series/sop3.dcm", lambda: calls.append(1) or {}) == b"data3"
    assert len(calls) == 1
