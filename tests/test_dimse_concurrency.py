"""Concurrent load: eight clients at once doing C-ECHO, C-FIND and C-MOVE for
a few seconds lose no response and no instance.

This is where pynetdicom 3.0's reactor race bites (a response taken off the
queue by the association's own reactor): the server sends C-MOVE
sub-operations over associations it opens itself while other associations
compete for the CPU. See synthpacs/dimse/transport.py.
"""

from __future__ import annotations

import threading
import time

import pytest
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from test_dimse import (
    make_series,
    part10,
    query,
    scu,
    serve,
    smallest_synthetic_study,
    storescp,
)

pytestmark = pytest.mark.timeout(120)

CLIENTS = 8
SECONDS = 5.0
RECONNECT_EVERY = 6  # operations per association, so that associations come and go too


def test_eight_clients_lose_no_response_and_no_instance(tmp_path):
    received = tmp_path / "received"
    with storescp(received, "--fork", "+uf") as store_port:
        with serve(tmp_path / "data", peers=[f"STORESCP=127.0.0.1:{store_port}"], dicom_dimse_timeout=20) as server:
            archive = server.pacs.archive
            series = make_series(4, patient_id="LOAD-0001", patient_name="LOAD^TEST")
            for ds in series:
                archive.store(part10(ds))
            # Moves alternate between a stored series and a synthetic CT series, which
            # is generated on the first request (cold: concurrent requests wait for one
            # generation) and served from the cache afterwards.
            targets = [(str(series[0].StudyInstanceUID), str(series[0].SeriesInstanceUID), len(series))]
            synthetic = smallest_synthetic_study(archive)
            ct = next(
                archive.find(
                    "SERIES",
                    {"StudyInstanceUID": str(synthetic.StudyInstanceUID), "Modality": "CT", "NumberOfSeriesRelatedInstances": ""},
                )
            )
            try:
                archive.generator(archive.study_request(str(synthetic.StudyInstanceUID)).study.target)
                targets.append((str(ct.StudyInstanceUID), str(ct.SeriesInstanceUID), int(ct.NumberOfSeriesRelatedInstances)))
            except Exception as exc:  # the pixel pipeline is not installed here: stored objects only
                print(f"synthetic moves left out: {type(exc).__name__}: {exc}")
            moved_instances = [0]
            moves_per_target = [0] * len(targets)
            find_keys = {
                "QueryRetrieveLevel": "STUDY",
                "PatientID": "SYN-000000?",
                "StudyInstanceUID": "",
                "NumberOfStudyRelatedInstances": "",
            }
            expected_matches = len(list(archive.find("STUDY", {"PatientID": "SYN-000000?"})))
            assert expected_matches > 5

            errors: list[str] = []
            done = {"echo": 0, "find": 0, "move": 0}
            lock = threading.Lock()
            deadline = time.monotonic() + SECONDS

            def check(ok: bool, what: str) -> None:
                if not ok:
                    with lock:
                        errors.append(what)

            def client(n: int) -> None:
                assoc = None
                i = n
                try:
                    while time.monotonic() < deadline:
                        if assoc is None or i % RECONNECT_EVERY == 0:
                            if assoc is not None:
                                assoc.release()
                            assoc = scu(
                                server.dicom_port,
                                Verification,
                                StudyRootQueryRetrieveInformationModelFind,
                                StudyRootQueryRetrieveInformationModelMove,
                                ae_title=f"LOAD{n}",
                            )
                        op = ("echo", "find", "move")[i % 3]
                        i += 1
                        if op == "echo":
                            status = assoc.send_c_echo()
                            check(status.get("Status") == 0x0000, f"client {n}: C-ECHO answered {status!r}")
                        elif op == "find":
                            responses = list(assoc.send_c_find(query(**find_keys), StudyRootQueryRetrieveInformationModelFind))
                            pending = sum(1 for s, _ in responses if s.get("Status") == 0xFF00)
                            final = responses[-1][0].get("Status")
                            check(
                                final == 0x0000 and pending == expected_matches,
                                f"client {n}: C-FIND final {final}, {pending} of {expected_matches} matches",
                            )
                        else:
                            study_uid, series_uid, count = targets[(i // 3) % len(targets)]
                            statuses = [
                                s
                                for s, _ in assoc.send_c_move(
                                    query(QueryRetrieveLevel="SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid),
                                    "STORESCP",
                                    StudyRootQueryRetrieveInformationModelMove,
                                )
                            ]
                            final = statuses[-1]
                            ok = (
                                final.get("Status") == 0x0000
                                and final.get("NumberOfCompletedSuboperations") == count
                                and final.get("NumberOfFailedSuboperations") == 0
                            )
                            check(ok, f"client {n}: C-MOVE final {final!r}")
                            if ok:
                                with lock:
                                    moved_instances[0] += count
                                    moves_per_target[(i // 3) % len(targets)] += 1
                        with lock:
                            done[op] += 1
                except Exception as exc:  # anything unexpected fails the test with its story
                    check(False, f"client {n}: {type(exc).__name__}: {exc}")
                finally:
                    if assoc is not None and assoc.is_established:
                        assoc.release()

            threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors[:5]
            # Enough happened at once (the machine may be slow: a cold study takes seconds).
            assert all(count >= 3 for count in done.values()) and all(moves_per_target), (done, moves_per_target)
            # Every sub-operation reported as completed arrived at the destination.
            expected_files = moved_instances[0]
            wait_until = time.monotonic() + 15
            while len(list(received.iterdir())) < expected_files and time.monotonic() < wait_until:
                time.sleep(0.1)
            assert len(list(received.iterdir())) == expected_files, done
            print(f"{CLIENTS} clients in {SECONDS:g} s: {done}, {expected_files} instances moved")
