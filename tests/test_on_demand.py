"""On-demand generation: metadata before pixels, studies made in parts, streamed, shared, bounded.

The order of events is asserted (a gate holds the last CT slab), never times.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
import requests
from conftest import make_config, study_uid
from pydicom import dcmread
from pydicom.filewriter import dcmwrite
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    SegmentationStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from test_dimse import HOST, STORE_AET, dcmtk, query, storescp

from synthpacs.archive import Archive
from synthpacs.imaging.registry import build
from synthpacs.server import RunningServer

TARGET = "chest/lung-ct"
DICOM_MULTIPART = 'multipart/related; type="application/dicom"'
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


def _encode(ds) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _ct_series(archive: Archive, study: str):
    refs = archive.instances(study)
    ct = [r for r in refs if r.sop_class_uid == CTImageStorage]
    return refs, ct


class Gate:
    """Holds one part of every study opened (by its index among the parts) until released."""

    def __init__(self, archive: Archive, monkeypatch, which, *, fail_once: bool = False):
        self.release = threading.Event()
        self.held = threading.Event()
        self.timed_out = False
        self.opened = 0
        generator = archive.generator(TARGET)
        real_open = generator.open

        def gated_open(request):
            self.opened += 1
            if fail_once and self.opened == 1:
                raise RuntimeError("the test's broken weights")
            work = real_open(request)
            held = work.parts[which(work.parts)]
            real_make = work.make

            def make(part):
                if part == held:
                    self.held.set()
                    self.timed_out = not self.release.wait(60)
                return real_make(part)

            work.make = make
            return work

        monkeypatch.setattr(generator, "open", gated_open)


def _c_get(port: int, study: str, storage_classes: tuple[str, ...]) -> tuple[list, list[str]]:
    """A C-GET of a study with pynetdicom under a 10 s DIMSE timeout: (responses, SOP Instance UIDs received)."""
    received: list[str] = []
    ae = AE("ONDEMAND")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for sop_class in storage_classes:
        ae.add_requested_context(sop_class)
    handlers = [(evt.EVT_C_STORE, lambda event: received.append(str(event.dataset.SOPInstanceUID)) or 0x0000)]
    roles = [build_role(c, scp_role=True) for c in storage_classes]
    assoc = ae.associate(HOST, port, ae_title="SYNTHPACS", ext_neg=roles, evt_handlers=handlers)
    assert assoc.is_established
    try:
        identifier = query(QueryRetrieveLevel="STUDY", StudyInstanceUID=study)
        statuses = [s for s, _ in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)]
    finally:
        assoc.release()
    return statuses, received


def _last_ct_slab(parts) -> int:
    image = parts[-1].series_index  # the CT slabs come last
    return max(i for i, p in enumerate(parts) if p.series_index == image)


# -- parts give the whole study's bytes ----------------------------------------------------------


@pytest.mark.parametrize("renderer", ["teacher", "gan"])
def test_parts_made_in_any_order_are_the_whole_study_byte_for_byte(tmp_path, renderer):
    archive = Archive(make_config(tmp_path / "data", renderer=renderer, prefetch=False))
    try:
        study = study_uid(archive, 3, 1)
        request = archive.study_request(study)
        whole = {
            str(ds.SOPInstanceUID): _encode(ds)
            for datasets in build(archive.generator(TARGET).generate(request)).values()
            for ds in datasets
        }
        refs, ct = _ct_series(archive, study)
        assert len(ct) > 20, "the test cohort's CT must span several slabs"
        # The SR first (it needs the CT's headers, not its pixels), then the last slice, the middle, the rest.
        order = [r for r in refs if r.sop_class_uid == COMPREHENSIVE_SR] + [ct[-1], ct[len(ct) // 2]] + refs
        got = {ref.sop_instance_uid: archive.instance_bytes(ref) for ref in order}
        assert set(got) == set(whole)
        assert [uid for uid in whole if got[uid] != whole[uid]] == []
        assert archive.studies_generated == 1
    finally:
        archive.close()


def test_two_clients_asking_one_cold_study_share_one_generation(tmp_path):
    archive = Archive(make_config(tmp_path / "data", renderer="teacher", prefetch=False))
    try:
        study = study_uid(archive, 5, 0)
        refs, ct = _ct_series(archive, study)
        results: dict[int, list[bytes]] = {}

        def client(n: int, wanted):
            results[n] = [archive.instance_bytes(r) for r in wanted]

        threads = [threading.Thread(target=client, args=(0, refs)), threading.Thread(target=client, args=(1, refs[::-1]))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert results[0] == results[1][::-1]
        assert archive.studies_generated == 1
        assert archive.parts_generated == len(archive.generator(TARGET).open(archive.study_request(study)).parts)
    finally:
        archive.close()


# -- metadata before pixels ----------------------------------------------------------------------


def test_cold_metadata_is_answered_without_pixels_and_equals_warm_metadata(tmp_path):
    data = tmp_path / "data"
    config = make_config(data, renderer="teacher", prefetch=False, public_base_url="http://pacs.example")
    with RunningServer(config) as server:
        archive = server.pacs.archive
        study = study_uid(archive, 2, 0)
        _, ct = _ct_series(archive, study)
        path = f"/dicom-web/studies/{study}/series/{ct[0].series_instance_uid}/metadata"
        cold = requests.get(server.base_url + path, timeout=30)
        assert cold.status_code == 200
        assert archive.parts_generated == 0, "series metadata generated pixels"
        frame = requests.get(
            f"{server.base_url}/dicom-web/studies/{study}/series/{ct[0].series_instance_uid}"
            f"/instances/{ct[0].sop_instance_uid}/frames/2",
            timeout=30,
        )
        assert frame.status_code == 404 and "frame 2" in frame.json()["message"]
        assert archive.parts_generated == 0, "a frame that does not exist started a generation"
        archive.generate_study(study)
    with RunningServer(config) as server:  # a new process's view: metadata read from the cached files
        warm = requests.get(server.base_url + path, timeout=30)
        assert server.pacs.archive.studies_generated == 0
    assert warm.status_code == 200
    assert cold.content == warm.content


# -- streaming ------------------------------------------------------------------------------------


def test_a_cold_series_retrieve_streams_its_first_parts_before_the_last_slab_is_made(tmp_path, monkeypatch):
    config = make_config(tmp_path / "data", renderer="teacher", prefetch=False)
    with RunningServer(config) as server:
        archive = server.pacs.archive
        gate = Gate(archive, monkeypatch, _last_ct_slab)
        study = study_uid(archive, 4, 0)
        _, ct = _ct_series(archive, study)
        url = f"{server.base_url}/dicom-web/studies/{study}/series/{ct[0].series_instance_uid}"
        with requests.get(url, headers={"Accept": DICOM_MULTIPART}, stream=True, timeout=90) as response:
            assert response.status_code == 200
            boundary = response.headers["Content-Type"].split("boundary=")[1].split(";")[0].strip('"').encode()
            received = b""
            chunks = response.iter_content(8192)
            while received.count(b"--" + boundary) < 3:  # two whole parts have arrived
                received += next(chunks)
            first_parts_before_release = not gate.release.is_set()
            gate.release.set()
            for chunk in chunks:
                received += chunk
        assert first_parts_before_release and not gate.timed_out
        assert received.count(b"--" + boundary) == len(ct) + 1  # one boundary per part and the closing one
        assert received.count(b"DICM") == len(ct)


# -- DIMSE with a short timeout ---------------------------------------------------------------------


@pytest.mark.integration
def test_cold_c_move_and_c_get_complete_under_a_10_s_dimse_timeout(tmp_path):
    with storescp(tmp_path / "received") as store_port:
        config = make_config(tmp_path / "data", peers=[f"{STORE_AET}=127.0.0.1:{store_port}"], prefetch=False)
        with RunningServer(config) as server:
            archive = server.pacs.archive
            moved, got = study_uid(archive, 6, 0), study_uid(archive, 7, 0)
            ae = AE("ONDEMAND")
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = ae.associate(HOST, server.dicom_port, ae_title="SYNTHPACS")
            assert assoc.is_established
            try:
                statuses = [
                    s
                    for s, _ in assoc.send_c_move(
                        query(QueryRetrieveLevel="STUDY", StudyInstanceUID=moved),
                        STORE_AET,
                        StudyRootQueryRetrieveInformationModelMove,
                    )
                ]
            finally:
                assoc.release()
            n_moved = len(archive.instances(moved))
            assert statuses[-1].Status == 0x0000 and statuses[-1].NumberOfCompletedSuboperations == n_moved
            assert len(list((tmp_path / "received").iterdir())) == n_moved

            statuses, received = _c_get(server.dicom_port, got, (CTImageStorage, SegmentationStorage, COMPREHENSIVE_SR))
            assert statuses[-1].Status == 0x0000
            assert len(received) == len(archive.instances(got))


@pytest.mark.integration
def test_cold_movescu_into_storescp(tmp_path):
    with storescp(tmp_path / "received") as store_port:
        config = make_config(tmp_path / "data", peers=[f"{STORE_AET}=127.0.0.1:{store_port}"], dicom_dimse_timeout=10)
        with RunningServer(config) as server:
            study = study_uid(server.pacs.archive, 8, 1)
            result = dcmtk(
                "movescu",
                "-S",
                "-to",
                "10",
                "-td",
                "10",
                "-aec",
                "SYNTHPACS",
                "-aem",
                STORE_AET,
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study}",
                HOST,
                str(server.dicom_port),
                timeout=300,
            )
            assert result.returncode == 0, result.stderr
            wanted = {r.sop_instance_uid for r in server.pacs.archive.instances(study)}
            got = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in (tmp_path / "received").iterdir()}
            assert got == wanted


# -- failures -------------------------------------------------------------------------------------


def test_a_failed_generation_answers_503_and_dimse_failure_then_is_retried(tmp_path, monkeypatch):
    config = make_config(tmp_path / "data", renderer="teacher", prefetch=False)
    with RunningServer(config) as server:
        archive = server.pacs.archive
        Gate(archive, monkeypatch, lambda parts: 0, fail_once=True).release.set()
        study = study_uid(archive, 9, 0)
        _, ct = _ct_series(archive, study)
        url = f"{server.base_url}/dicom-web/studies/{study}/series/{ct[0].series_instance_uid}/instances/{ct[0].sop_instance_uid}"
        failed = requests.get(url, headers={"Accept": "application/dicom"}, timeout=60)
        assert failed.status_code == 503
        body = failed.json()
        assert body["status"] == 503 and "broken weights" in body["message"] and study in body["message"]
        again = requests.get(url, headers={"Accept": "application/dicom"}, timeout=60)
        assert again.status_code == 200 and dcmread(io.BytesIO(again.content)).SOPInstanceUID == ct[0].sop_instance_uid


def test_a_failed_generation_fails_the_c_get_with_an_error_comment(tmp_path, monkeypatch):
    config = make_config(tmp_path / "data", renderer="teacher", prefetch=False)
    with RunningServer(config) as server:
        archive = server.pacs.archive
        Gate(archive, monkeypatch, lambda parts: 0, fail_once=True).release.set()
        statuses, _ = _c_get(server.dicom_port, study_uid(archive, 10, 0), (CTImageStorage,))
        final = statuses[-1]
        assert final.Status == 0xA702 and "broken weights" in final.ErrorComment


# -- bounded disk cache -----------------------------------------------------------------------------


def _bytes_on_disk(folder) -> int:
    total = 0
    for path in folder.rglob("*.dcm"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:  # evicted while we looked
            pass
    return total


def test_the_disk_cache_evicts_least_recently_used_studies_but_never_stored_objects(tmp_path):
    from pydicom.data import get_testdata_file

    archive = Archive(make_config(tmp_path / "data", renderer="teacher", prefetch=False, cache_disk_mb=1))
    try:
        stored = archive.store(open(get_testdata_file("CT_small.dcm"), "rb").read())
        studies = [study_uid(archive, p, 0) for p in (11, 12, 13)]
        for study in studies:
            archive.generate_study(study)
        # eviction runs in the worker after a study's last part, so wait for the cache to settle
        deadline = time.monotonic() + 30
        while True:
            on_disk = {p.name for p in archive.cache_folder.glob("*/*") if p.is_dir()}
            settled = studies[-1] in on_disk and studies[0] not in on_disk
            if settled and _bytes_on_disk(archive.cache_folder) <= 2**20 + 2 * 2**20:  # cap + one study
                break
            assert time.monotonic() < deadline, f"the disk cache did not settle: {sorted(on_disk)}"
            time.sleep(0.05)
        ref = archive.instance_ref(stored.sop_instance_uid)
        assert archive.instance_bytes(ref)  # the stored object is untouched
        again = archive.instances(studies[0])[0]
        assert dcmread(io.BytesIO(archive.instance_bytes(again))).SOPInstanceUID == again.sop_instance_uid
    finally:
        archive.close()


def test_a_client_that_hangs_up_mid_stream_stops_nothing_another_waits_for(tmp_path):
    config = make_config(tmp_path / "data", renderer="teacher", prefetch=False)
    with RunningServer(config) as server:
        archive = server.pacs.archive
        study = study_uid(archive, 14, 0)
        _, ct = _ct_series(archive, study)
        url = f"{server.base_url}/dicom-web/studies/{study}/series/{ct[0].series_instance_uid}"
        with requests.get(url, headers={"Accept": DICOM_MULTIPART}, stream=True, timeout=90) as response:
            next(response.iter_content(4096))  # the first bytes, then hang up
        whole = requests.get(url, headers={"Accept": DICOM_MULTIPART}, timeout=90)
        assert whole.status_code == 200 and whole.content.count(b"DICM") == len(ct)
        assert archive.studies_generated == 1  # the second client joined (or found) the first one's generation
