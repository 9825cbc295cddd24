"""Generations in flight: one per study, parts in the order clients need them, failures told and retried."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from synthpacs.archive.generations import Generations
from synthpacs.errors import GenerationFailed


class FakeStudies:
    """Studies of ``n_parts`` parts of two instances each ("<study>-<part>-<i>"), made into a dict."""

    def __init__(self, n_parts: int = 6):
        self.n_parts = n_parts
        self.cache: set[str] = set()
        self.made: list[tuple[str, int]] = []
        self.opened: list[str] = []
        self.gates: dict[tuple[str, int], threading.Event] = {}
        self.entered: dict[tuple[str, int], threading.Event] = {}
        self.fail: set[tuple[str, int]] = set()
        self.lock = threading.Lock()

    def gate(self, study: str, part: int) -> threading.Event:
        self.entered[(study, part)] = threading.Event()
        gate = self.gates[(study, part)] = threading.Event()
        return gate

    def open(self, study: str):
        self.opened.append(study)
        owner = self

        class Maker:
            parts = tuple(tuple(f"{study}-{p}-{i}" for i in range(2)) for p in range(owner.n_parts))

            def cached(self, index: int) -> bool:
                return all(sop in owner.cache for sop in self.parts[index])

            def make(self, index: int) -> None:
                key = (study, index)
                if key in owner.entered:
                    owner.entered[key].set()
                    assert owner.gates[key].wait(30), "the test never opened its gate"
                if key in owner.fail:
                    owner.fail.discard(key)
                    raise RuntimeError(f"part {index} broke")
                with owner.lock:
                    owner.made.append(key)
                    owner.cache.update(self.parts[index])

            def close(self) -> None:
                pass

        return Maker()

    def is_cached(self, study: str, sop: str) -> bool:
        return sop in self.cache


def generations(fake: FakeStudies, **kwargs) -> Generations:
    return Generations(fake.open, fake.is_cached, **kwargs)


def test_many_clients_of_one_study_share_one_generation_and_each_part_is_made_once():
    fake = FakeStudies()
    gen = generations(fake)
    try:
        threads = [
            threading.Thread(target=gen.wait_for, args=("s", f"s-{i % fake.n_parts}-{i % 2}"), kwargs={"timeout": 30})
            for i in range(12)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert fake.opened == ["s"]
        assert sorted(fake.made) == [("s", p) for p in range(fake.n_parts)]
        assert gen.studies_opened == 1 and gen.parts_made == fake.n_parts
    finally:
        gen.close()


def test_an_asked_part_is_made_next_not_after_the_parts_before_it():
    fake = FakeStudies()
    first = fake.gate("s", 0)
    gen = generations(fake, workers=1)
    try:
        waiter = threading.Thread(target=gen.wait_for, args=("s", "s-0-0"), kwargs={"timeout": 30})
        waiter.start()
        assert fake.entered[("s", 0)].wait(10)
        late = threading.Thread(target=gen.wait_for, args=("s", "s-4-1"), kwargs={"timeout": 30})
        late.start()
        while not gen._studies["s"].waiting.get("s-4-1"):  # the request for part 4 is registered
            threading.Event().wait(0.01)
        first.set()
        late.join(30)
        waiter.join(30)
        assert fake.made[:2] == [("s", 0), ("s", 4)]
    finally:
        gen.close()


def test_a_failed_part_fails_every_waiter_with_its_reason_and_the_next_request_starts_again():
    fake = FakeStudies()
    fake.fail.add(("s", 1))
    gen = generations(fake)
    try:
        with pytest.raises(GenerationFailed) as failed:
            gen.wait_for("s", "s-1-0", timeout=30)
        assert failed.value.reason == "RuntimeError: part 1 broke" and "study s" in str(failed.value)
        gen.wait_for("s", "s-1-0", timeout=30)  # retried: opened afresh
        assert fake.opened == ["s", "s"] and "s-1-0" in fake.cache
    finally:
        gen.close()


def test_prefetch_keeps_a_worker_free_for_a_request_a_client_waits_on():
    fake = FakeStudies(n_parts=2)
    held = fake.gate("p", 0)
    gen = generations(fake, workers=2, max_studies=4)
    try:
        assert gen.prefetch("p")
        assert fake.entered[("p", 0)].wait(10)  # one worker is busy prefetching p
        assert gen.prefetch("q")  # queued, but not started: only one worker is free
        gen.wait_for("r", "r-1-1", timeout=30)  # a client's request runs on the free worker
        assert "q" not in fake.opened and ("r", 1) in fake.made
        held.set()
    finally:
        gen.close()


def test_a_request_finds_a_thread_while_the_workers_go_on_with_studies_in_the_background():
    """Studies a client touched and left go on on every worker: a new study asked for starts at once."""
    fake = FakeStudies(n_parts=3)
    first, second = fake.gate("a", 1), fake.gate("b", 1)
    gen = generations(fake, workers=2, max_studies=4)
    try:
        gen.wait_for("a", "a-0-0", timeout=30)  # a client touched a and b, then went away
        gen.wait_for("b", "b-0-0", timeout=30)
        assert fake.entered[("a", 1)].wait(10) and fake.entered[("b", 1)].wait(10)  # both workers busy
        gen.wait_for("c", "c-2-0", timeout=30)  # the thread kept for waiters serves a new request
        assert ("c", 2) in fake.made and ("a", 1) not in fake.made and ("b", 1) not in fake.made
        first.set()
        second.set()
    finally:
        gen.close()


def test_the_study_a_client_touched_last_goes_on_first():
    fake = FakeStudies(n_parts=2)
    held = fake.gate("z", 1)
    gen = generations(fake, workers=1, max_studies=4)
    try:
        gen.wait_for("z", "z-0-0", timeout=30)
        assert fake.entered[("z", 1)].wait(10)  # z goes on in the background, on the one worker
        gen.wait_for("a", "a-0-0", timeout=30)  # on the thread kept for waiters
        gen.wait_for("b", "b-0-0", timeout=30)
        held.set()
        deadline = time.monotonic() + 10
        while len(fake.made) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [key for key in fake.made if key[0] != "z" and key[1] == 1] == [("b", 1), ("a", 1)]  # b was touched last
    finally:
        gen.close()


def test_the_prefetch_queue_is_bounded():
    fake = FakeStudies(n_parts=1)
    held = fake.gate("a", 0)
    gen = generations(fake, workers=2, prefetch_queue=2)
    try:
        assert gen.prefetch("a")
        assert fake.entered[("a", 0)].wait(10)
        assert gen.prefetch("b") and gen.prefetch("c")
        assert not gen.prefetch("d")  # the queue holds two studies not started
        held.set()
    finally:
        gen.close()


def test_background_work_pauses_while_client_requests_are_in_flight_and_goes_on_after():
    from synthpacs.generation.cooperative import checkpoint

    fake = FakeStudies(n_parts=3)

    def open_with_checkpoints(study: str):
        maker = fake.open(study)
        make = maker.make

        def make_after_a_checkpoint(index: int) -> None:
            checkpoint()
            make(index)

        maker.make = make_after_a_checkpoint  # type: ignore[method-assign]
        return maker

    def until(condition) -> None:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    gen = Generations(open_with_checkpoints, fake.is_cached, workers=2, max_pause=30)
    try:
        with gen.foreground():
            assert gen.prefetch("s")
            until(lambda: gen.pauses == 1)
            time.sleep(0.2)
            assert fake.made == []  # held at its first checkpoint while the request is in flight
            gen.wait_for("s", "s-1-0", timeout=10)  # a client waiting on the study lets it go on at once
        assert ("s", 1) in fake.made
        until(lambda: len(fake.made) == 3)
        with gen.foreground():
            assert gen.prefetch("t")
            until(lambda: gen.pauses == 2)
            time.sleep(0.2)
            assert not [part for part in fake.made if part[0] == "t"]
        until(lambda: len(fake.made) == 6)  # the request ended: the prefetch goes on
        with gen.foreground("u"):  # even one about its own study holds a prefetch back (its metadata)
            assert gen.prefetch("u")
            until(lambda: gen.pauses == 3)
            time.sleep(0.2)
            assert not [part for part in fake.made if part[0] == "u"]
            gen.wait_for("u", "u-0-0", timeout=10)  # now a client touched it: requests about it let it go on
            until(lambda: len(fake.made) == 9)
        assert gen.pauses == 3
    finally:
        gen.close()


def test_a_prefetch_waits_for_a_quiet_gap_after_the_last_request():
    """A viewer's requests come back to back: a prefetch must not start in the gap between two."""
    fake = FakeStudies(n_parts=2)
    gen = generations(fake, workers=2, quiet=0.6, max_pause=30)
    try:
        with gen.foreground():
            assert gen.prefetch("s")
        ended = time.monotonic()
        time.sleep(0.3)
        with gen.foreground():  # the next request, within the gap: nothing of the prefetch ran
            assert fake.opened == [] and fake.made == []
        deadline = time.monotonic() + 10
        while len(fake.made) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fake.made == [("s", 0), ("s", 1)]  # once the clients are quiet, it goes on
        assert time.monotonic() - ended >= 0.6
    finally:
        gen.close()


def test_a_study_going_on_waits_for_the_gap_after_a_request_about_another_study_only():
    from synthpacs.archive.generations import Priority, _Study

    gen = generations(FakeStudies(), workers=1, quiet=0.5)
    try:
        going_on = _Study("a", 0, Priority.CONTINUE)
        with gen.foreground("a"):  # its own streamed retrieve never holds it back
            assert not gen._holds_back(going_on)
        assert not gen._holds_back(going_on)
        with gen.foreground("b"):
            assert gen._holds_back(going_on)
        assert gen._holds_back(going_on)  # the viewer's next request about b may follow at once
        time.sleep(0.6)
        assert not gen._holds_back(going_on)
    finally:
        gen.close()


def test_a_monitors_health_probe_holds_no_background_work_back_but_a_dicomweb_request_does(config, monkeypatch):
    from contextlib import nullcontext

    from synthpacs.app import SynthPACS

    pacs = SynthPACS(config)
    pacs.ready = True
    counted: list[str | None] = []

    def client_request(study_uid=None):
        counted.append(study_uid)
        return nullcontext()

    monkeypatch.setattr(pacs.archive, "client_request", client_request)
    client = pacs.http_app().test_client()
    health = client.get("/healthz").get_json()
    assert health["studies_generating"] == 0 and counted == []
    assert client.get("/dicom-web/studies?limit=1").status_code == 200
    assert counted == [None]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's; elsewhere nothing changes")
def test_parts_are_made_at_the_configured_niceness_while_the_callers_thread_keeps_its_own():
    seen: list[int] = []

    class NiceStudies(FakeStudies):
        def open(self, study: str):
            maker = super().open(study)
            make = maker.make

            def make_and_look(index: int) -> None:
                seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
                make(index)

            maker.make = make_and_look
            return maker

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    gen = generations(NiceStudies(n_parts=2), nice=5)
    try:
        gen.wait_for("s", "s-1-0", timeout=30)
        assert seen and set(seen) == {min(19, own + 5)}
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
    finally:
        gen.close()
