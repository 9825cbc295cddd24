"""The instance cache: atomic writes, a size-capped memory LRU, a size-capped disk cache."""

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


def test_the_cache_reads_what_it_put_and_a_restart_reads_it_from_disk(tmp_path):
    cache = InstanceCache(tmp_path, max_memory_bytes=10_000)
    assert cache.read("u/k/study/series/sop0.dcm") is None and not cache.exists("u/k/study/series/sop0.dcm")
    cache.put("u/k/study/series/sop0.dcm", b"data0")
    assert cache.read("u/k/study/series/sop0.dcm") == b"data0"
    again = InstanceCache(tmp_path, max_memory_bytes=10_000)  # a restart: memory is empty, disk is not
    assert again.exists("u/k/study/series/sop0.dcm") and again.read("u/k/study/series/sop0.dcm") == b"data0"


def test_the_disk_cap_evicts_whole_studies_least_recently_used_first_never_a_protected_one(tmp_path):
    cache = InstanceCache(tmp_path, max_memory_bytes=10_000, max_disk_bytes=250, keep="u")
    for study in ("a", "b", "c"):
        for sop in range(2):
            cache.put(f"u/k/{study}/series/{sop}.dcm", bytes(50))
    cache.read("u/k/a/series/0.dcm")  # a is now the most recently used
    assert cache.evict(lambda: {"b"}) == 1  # b is protected (being generated): c goes
    assert not (tmp_path / "u/k/c").exists() and cache.read("u/k/c/series/0.dcm") is None
    assert cache.read("u/k/a/series/1.dcm") == bytes(50) and cache.disk_bytes == 200


def test_a_restart_counts_the_disk_and_evicts_other_universes_first(tmp_path):
    old = InstanceCache(tmp_path, max_memory_bytes=0)
    old.put("stale/k/x/series/0.dcm", bytes(100))
    time.sleep(0.01)
    current = InstanceCache(tmp_path, max_memory_bytes=0, max_disk_bytes=150, keep="u")
    current.put("u/k/y/series/0.dcm", bytes(100))
    assert current.evict(set) == 1
    assert not (tmp_path / "stale/k/x").exists() and (tmp_path / "u/k/y/series/0.dcm").exists()


def test_the_heap_helpers_work_under_glibc_and_do_nothing_elsewhere():
    import platform

    from synthpacs import heap

    limited = heap.limit_arenas(2)
    heap.return_freed_memory()
    assert limited == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
