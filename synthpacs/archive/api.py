"""The archive API: the one query and retrieve interface of both front ends.

Front ends translate a protocol to these calls and back; no DICOM business
logic lives in them (DESIGN §1). Queries are answered from the catalog;
retrieves read the instance cache, and on a miss wait for the one part of the
study that holds the instance (:mod:`.generations` makes a cold study part by
part, asked parts first); metadata of a series not yet made comes from its
headers, which need no pixels; stores write atomically and index at once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite
from pydicom.sr.coding import Code

from .. import keyed
from ..config import Config
from ..errors import NotFound, StoreRefusalValues, StoreRefused
from ..generation import registry
from ..generation.contract import Generator, PlanDraws, PlannedSeries, StudyRequest, StudyWork, ZooTarget, open_study
from ..heap import return_freed_memory
from ..imaging.headers import SeriesHeaders
from ..imaging.spec import BuiltSeries, SeriesContext, StudyContext, TrialContext
from .catalog import Attributes, Catalog, Query, QueryLevel
from .cohorts import Cohort, load_cohorts
from .generations import Generations
from .intake import Received, receive
from .records import MAX_VISITS
from .store import InstanceCache, atomic_write
from .uids import UIDFactory, UIDKind, is_valid_uid
from .universe import SeriesRecord, StudyRecord, Universe, resolve_today
from .worklist import Worklist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstanceRef:
    """Where one instance comes from, without its bytes."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    instance_number: int | None
    stored_path: str | None = None  # set for objects received by STOW-RS / C-STORE
    transfer_syntax_uid: str = "1.2.840.10008.1.2.1"

    @property
    def synthetic(self) -> bool:
        return self.stored_path is None


@dataclass(frozen=True)
class StoreResult:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    replaced: bool


@dataclass(frozen=True)
class _PatientDraws:
    """The keyed randomness of one study, as a generator sees it (contract.PatientDraws)."""

    key: bytes
    uids: UIDFactory
    patient: int
    visit: int
    draws: PlanDraws

    def rng(self, *path: object):
        return keyed.path_rng(self.key, "patient", self.patient, *path)

    def study_rng(self, *path: object):
        return keyed.path_rng(self.key, "study", self.patient, self.visit, *path)

    def plan_draws(self) -> PlanDraws:
        return self.draws

    def tracking_uid(self, finding: int) -> str:
        return self.uids.tracking_uid(self.patient, finding)


class Archive:
    """The universe, its catalog, the instance cache and the store, behind one API.

    Front ends call these methods only; the universe, catalog and cache are private.
    """

    def __init__(self, config: Config):
        self.config = config
        targets = registry.discover(config.generator_paths)
        registry.check_renderer_setting(config, targets)
        cohorts = load_cohorts(config.cohorts_dir, targets)
        today = resolve_today(config.today, config.worklist_today)
        self._universe = Universe(config.seed, config.patients, cohorts, targets, today)
        data = config.data_path
        self._catalog = Catalog(data / "catalog.sqlite", self._universe)
        self._universe_folder = self._universe.fingerprint[:16]
        self._cache = InstanceCache(
            data / "cache", config.cache_memory_mb * 2**20, config.cache_disk_mb * 2**20, keep=self._universe_folder
        )
        self._generations = Generations(
            self._open_study_parts,
            self._is_cached,
            workers=config.generation_workers,
            nice=config.generation_nice,
            max_studies=config.generating_studies,
            prefetch_queue=config.prefetch_queue,
            on_finished=self._study_finished,
        )
        # Series headers (every attribute but the pixels) of series not generated yet, for metadata.
        self._headers: OrderedDict[str, tuple[SeriesHeaders, dict[str, int]]] = OrderedDict()
        self._headers_lock = threading.Lock()
        self._study_targets: OrderedDict[str, str] = OrderedDict()  # study UID -> target name, recent ones
        self._worklist = Worklist(self._catalog)  # today is the universe's (the today setting)
        self.stored_root = data / "stored"
        self._generators: dict[str, Generator] = {}
        self._cache_keys: dict[str, str] = {}
        self._generators_lock = threading.Lock()
        self._store_lock = threading.Lock()  # a replacement is looked up, written and indexed as one step

    # -- the universe in numbers ---------------------------------------------------------

    @property
    def cohorts(self) -> tuple[Cohort, ...]:
        return self._universe.cohorts

    @property
    def targets(self) -> dict[str, ZooTarget]:
        """The generator targets the cohorts use, by name."""
        return dict(self._universe.targets)

    def figures(self) -> dict[str, int]:
        """Patients, studies, series and instances, synthetic and stored."""
        return self._catalog.figures()

    @property
    def catalog_build_seconds(self) -> float:
        return self._catalog.build_seconds

    def is_synthetic_uid(self, uid: str) -> bool:
        """Whether a UID was minted by this universe."""
        return self._universe.uids.decode(uid) is not None

    @property
    def cache_folder(self) -> Path:
        """The folder of this universe's generated instances."""
        return self._cache.root / self._universe_folder

    def release_thread(self) -> None:
        """Close the calling thread's catalog connection (a front end's worker thread that ends)."""
        self._catalog.close()

    def close(self) -> None:
        """Stop the generations in flight (their waiters hear that the archive is shutting down)."""
        self._generations.close()
        self._catalog.close()

    # -- queries ------------------------------------------------------------------------

    def find(
        self, level: QueryLevel | str, query: Query, *, fuzzy: bool = False, limit: int | None = None, offset: int = 0
    ) -> Iterator[Dataset]:
        """C-FIND / QIDO-RS matching; see :meth:`Catalog.find`."""
        return self._catalog.find(level, query, fuzzy=fuzzy, limit=limit, offset=offset)

    def find_attributes(
        self, level: QueryLevel | str, query: Query, *, fuzzy: bool = False, limit: int | None = None, offset: int = 0
    ) -> Iterator[Attributes]:
        """The same matches as plain attributes (no pydicom elements: QIDO-RS encodes them as JSON)."""
        return self._catalog.find_attributes(level, query, fuzzy=fuzzy, limit=limit, offset=offset)

    def find_worklist(self, query: Query, *, fuzzy: bool = False) -> Iterator[Dataset]:
        """Modality Worklist C-FIND (PS3.4 K.6): today's and later scheduled procedure steps."""
        return self._worklist.find(query, fuzzy=fuzzy)

    @property
    def worklist(self) -> Worklist:
        return self._worklist

    def studies_of_target(self, target_name: str, offset: int = 0, limit: int = 10) -> list[str]:
        """Study Instance UIDs of a target's performed studies (by name or alias), in catalog order."""
        target = registry.zoo_entry(target_name, self._universe.targets)
        return self._catalog.studies_of_target(target.name, offset, limit)

    # -- resolving UIDs -----------------------------------------------------------------

    def _synthetic_study(self, study_uid: str) -> StudyRecord | None:
        path = self._universe.uids.decode(study_uid)
        if path is None or path.kind != UIDKind.STUDY:
            return None
        if not self._catalog.synthetic_study_exists(path.patient, path.study):
            return None
        return self._universe.study(path.patient, path.study)

    def study_record(self, study_uid: str) -> StudyRecord:
        study = self._synthetic_study(study_uid)
        if study is None:
            raise NotFound(f"no such synthetic study {study_uid}")
        return study

    def _series_records(self, study: StudyRecord, series_uid: str | None) -> list[SeriesRecord]:
        return [s for s in study.series if series_uid is None or s.series_instance_uid == series_uid]

    def instances(self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None) -> list[InstanceRef]:
        """Every instance under a study, a series or one SOP instance.

        Raises
        ------
        NotFound
            When nothing matches; the message names the UID that is unknown.
        """
        for name, uid in (("study", study_uid), ("series", series_uid), ("instance", sop_uid)):
            if uid is not None and not is_valid_uid(uid):
                raise NotFound(f"{uid!r} is not a valid {name} UID")
        refs: list[InstanceRef] = []
        study = self._synthetic_study(study_uid)
        if study is not None:
            for series in self._series_records(study, series_uid):
                for number in range(1, series.n_instances + 1):
                    uid = self._universe.uids.sop_instance_uid(study.patient.index, study.number, series.index, number)
                    if sop_uid is None or uid == sop_uid:
                        refs.append(InstanceRef(study_uid, series.series_instance_uid, uid, series.sop_class_uid, number))
        stored = (
            self._catalog.stored_instances(series_uid=series_uid)
            if series_uid
            else self._catalog.stored_instances(study_uid=study_uid)
        )
        for row in stored:
            if row["study_instance_uid"] != study_uid or (sop_uid and row["sop_instance_uid"] != sop_uid):
                continue
            refs.append(self._stored_ref(row))
        if not refs:
            if sop_uid:
                raise NotFound(f"no such instance {sop_uid} in series {series_uid} of study {study_uid}")
            if series_uid:
                raise NotFound(f"no such series {series_uid} in study {study_uid}")
            raise NotFound(f"no such study {study_uid}")
        return refs

    @staticmethod
    def _stored_ref(row: dict) -> InstanceRef:
        number = row["instance_number"]
        return InstanceRef(
            row["study_instance_uid"],
            row["series_instance_uid"],
            row["sop_instance_uid"],
            row["sop_class_uid"],
            int(number) if number not in (None, "") and str(number).lstrip("-").isdigit() else None,
            stored_path=row["path"],
            transfer_syntax_uid=row["transfer_syntax_uid"],
        )

    def instance_ref(self, sop_uid: str) -> InstanceRef:
        """Find an instance by its SOP Instance UID alone."""
        path = self._universe.uids.decode(sop_uid) if is_valid_uid(sop_uid) else None
        if path is not None and path.kind == UIDKind.INSTANCE:
            study_uid = self._universe.uids.study_instance_uid(path.patient, path.study)
            try:
                return self.instances(study_uid, None, sop_uid)[0]
            except NotFound:
                pass
        row = self._catalog.stored_instance(sop_uid)
        if row is None:
            raise NotFound(f"no such instance {sop_uid}")
        return self._stored_ref(row)

    # -- what a generator is asked --------------------------------------------------------

    def study_request(self, study_uid: str) -> StudyRequest:
        """The generator's view of one synthetic study: contexts, plan and keyed draws, no pixels.

        Raises
        ------
        NotFound
            No such synthetic study.
        """
        study = self.study_record(study_uid)
        u, p, visit, number = self._universe, study.patient, study.visit, study.number
        cohort, exam = p.cohort, study.exam
        trial = TrialContext(
            sponsor_name=cohort.sponsor,
            protocol_id=cohort.protocol_id,
            protocol_name=cohort.protocol_name,
            site_id=p.site_id,
            site_name=p.site_name,
            subject_id=p.subject_id,
            time_point_id=study.time_point_id,
            time_point_description=study.time_point_description,
            coordinating_center_name=cohort.coordinating_center,
        )
        context = StudyContext(
            patient_name=p.patient_name,
            patient_id=p.patient_id,
            patient_birth_date=p.birth_date,
            patient_sex=p.sex,
            patient_age=study.patient_age,
            study_instance_uid=study.study_instance_uid,
            study_date=study.study_date,
            study_time=study.study_time,
            accession_number=study.accession_number,
            study_id=study.study_id,
            study_description=study.study_description,
            procedure_code=Code(*exam.procedure_code),
            body_part_examined=exam.body_part,
            frame_of_reference_uid=u.uids.frame_of_reference_uid(p.index, number),
            target=exam.target,
            visit=visit,
            trial=trial,
        )
        planned = []
        for s in study.series:
            sop_uids = tuple(u.uids.sop_instance_uid(p.index, number, s.index, n) for n in range(1, s.n_instances + 1))
            series = SeriesContext(
                series_instance_uid=s.series_instance_uid,
                series_number=s.series_number,
                modality=s.modality,
                series_description=s.series_description,
                series_date=s.series_date,
                series_time=s.series_time,
                sop_class_uid=s.sop_class_uid,
                sop_instance_uids=sop_uids,
                dimension_organization_uid=u.uids.dimension_organization_uid(p.index, number, s.index),
            )
            planned.append(
                PlannedSeries(index=s.index, slot=s.slot, context=series, rows=s.rows, columns=s.columns, frames=s.frames)
            )
        draws = PlanDraws(
            key=u.key,
            patient=np.array([p.index]),
            visit=np.array([visit]),
            female=np.array([p.sex == "F"]),
            acquisition=exam.acquisition,
        )
        return StudyRequest(
            study=context,
            series=tuple(planned),
            patient_index=p.index,
            visit=visit,
            patient_sex=p.sex,
            acquisition=exam.acquisition,
            lesion_diameters_mm=study.lesion_diameters_mm,
            draws=_PatientDraws(u.key, u.uids, p.index, visit, draws),
        )

    # -- retrieve -----------------------------------------------------------------------

    def generator(self, target_name: str) -> Generator:
        """The loaded generator of a target, built once as the configuration says (may import torch)."""
        target = registry.zoo_entry(target_name, self._universe.targets)
        with self._generators_lock:
            if target.name not in self._generators:
                self._generators[target.name] = target.load(registry.generator_options(self.config, target))
            return self._generators[target.name]

    def load_generators(self) -> None:
        """Load every target's generator now (torch, weights), so the first retrieve after start
        does not pay for it; a target that cannot load is logged and reports again on retrieve."""
        for name in self._universe.targets:
            try:
                self.generator(name)
            except Exception as exc:  # a retrieve reports it again, with its status
                log.warning("the %s generator did not load: %s", name, exc)

    def _cache_key(self, target_name: str) -> str:
        """What cached files of a target depend on beyond the universe: its cheap fingerprint and builder versions.

        Reading it loads no model and imports no torch, so a warm retrieve stays light.
        """
        with self._generators_lock:
            key = self._cache_keys.get(target_name)
            if key is None:
                from ..imaging.registry import builders_version

                target = self._universe.targets[target_name]
                text = f"{target.fingerprint(registry.generator_options(self.config, target))}|{builders_version(target.sop_classes)}"
                key = self._cache_keys[target_name] = hashlib.sha256(text.encode()).hexdigest()[:12]
            return key

    def _target_name_of(self, study_uid: str) -> str:
        # Asked once per instance (a series' metadata: ~120 times); a UID's decoding is checked by its MAC.
        known = self._study_targets.get(study_uid)
        if known is not None:
            return known
        path = self._universe.uids.decode(study_uid)
        if path is None:
            raise NotFound(f"no such synthetic study {study_uid}")
        exams = self._universe.cohort_of_patient(path.patient).exams
        exam = path.study // MAX_VISITS
        if exam >= len(exams):
            raise NotFound(f"no such synthetic study {study_uid}")
        target = exams[exam].target
        with self._headers_lock:
            self._study_targets[study_uid] = target
            while len(self._study_targets) > _STUDY_TARGETS:
                self._study_targets.popitem(last=False)
        return target

    def _cache_path(self, cache_key: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{self._universe_folder}/{cache_key}/{study_uid}/{series_uid}/{sop_uid}.dcm"

    def _relative(self, ref: InstanceRef) -> str:
        key = self._cache_key(self._target_name_of(ref.study_instance_uid))
        return self._cache_path(key, ref.study_instance_uid, ref.series_instance_uid, ref.sop_instance_uid)

    def _open_study_parts(self, study_uid: str) -> _StudyParts:
        request = self.study_request(study_uid)
        target = request.study.target
        work = open_study(self.generator(target), request)
        return _StudyParts(
            request, work, self._cache, lambda series, sop: self._cache_path(self._cache_key(target), study_uid, series, sop)
        )

    def _is_cached(self, study_uid: str, sop_uid: str) -> bool:
        ref = self.instances(study_uid, None, sop_uid)[0]
        return self._cache.exists(self._relative(ref))

    def _study_finished(self, study_uid: str) -> None:
        with self._headers_lock:
            for series in self.study_record(study_uid).series:
                self._headers.pop(series.series_instance_uid, None)
        self._cache.evict(self._generations.in_flight)
        return_freed_memory()

    def instance_bytes(self, ref: InstanceRef, timeout: float | None = None) -> bytes:
        """The Part 10 bytes of an instance; a cold one waits for the part of its study that holds it.

        Raises
        ------
        NotFound
            A stored instance is missing from disk.
        GenerationFailed
            The study could not be generated (the message says why).
        """
        if ref.stored_path is not None:
            try:
                return Path(ref.stored_path).read_bytes()
            except FileNotFoundError:
                raise NotFound(f"stored instance {ref.sop_instance_uid} is missing from disk") from None
        # A hit reads the cache only: no study record, no generator (no torch).
        relative = self._relative(ref)
        data = self._cache.read(relative)
        while data is None:  # (an eviction can remove it again between the wait and the read)
            self._generations.wait_for(ref.study_instance_uid, ref.sop_instance_uid, timeout)
            data = self._cache.read(relative)
        return data

    def instance_dataset(self, ref: InstanceRef) -> Dataset:
        return dcmread(io.BytesIO(self.instance_bytes(ref)))

    def metadata_dataset(self, ref: InstanceRef, *, prefetch: bool = True) -> Dataset:
        """The instance's attributes, at once even when it is not generated yet.

        Equal to :meth:`instance_dataset` in every attribute but Pixel Data,
        whose value may be a placeholder of the same length: an image series
        not generated yet is answered from its headers (no pixels are made)
        and its study is prefetched (unless ``prefetch`` is False); other
        objects are generated.
        """
        if ref.synthetic:
            data = self._cache.read(self._relative(ref))
            if data is not None:
                return dcmread(io.BytesIO(data))
            from ..imaging.registry import renders

            if renders(ref.sop_class_uid):  # not generated yet (just read): from its headers
                headers, index = self._headers_of(ref, prefetch)
                return headers.dataset(index)
        return self.instance_dataset(ref)

    def header_instance(self, ref: InstanceRef, *, prefetch: bool = True) -> tuple[SeriesHeaders, int] | None:
        """The headers of an image series not generated yet and the instance's index among them
        (its study is prefetched unless ``prefetch`` is False); None for an instance that is
        generated, stored, or not an image (its metadata comes from the object itself)."""
        from ..imaging.registry import renders

        if not ref.synthetic or not renders(ref.sop_class_uid) or self._cache.exists(self._relative(ref)):
            return None
        return self._headers_of(ref, prefetch)

    def _headers_of(self, ref: InstanceRef, prefetch: bool) -> tuple[SeriesHeaders, int]:
        headers, index = self._series_headers(ref)
        if prefetch:  # after the headers: the generation would hold the GIL while they are built
            self.prefetch(ref.study_instance_uid)
        return headers, index[ref.sop_instance_uid]

    def _series_headers(self, ref: InstanceRef) -> tuple[SeriesHeaders, dict[str, int]]:
        with self._headers_lock:
            known = self._headers.get(ref.series_instance_uid)
            if known is not None:
                self._headers.move_to_end(ref.series_instance_uid)
                return known
        request = self.study_request(ref.study_instance_uid)
        work = open_study(self.generator(request.study.target), request)
        try:
            index = next(s.index for s in request.series if s.context.series_instance_uid == ref.series_instance_uid)
            headers = _series_headers(work, index, ref.series_instance_uid)
        finally:
            work.close()
        entry = headers, {uid: i for i, uid in enumerate(headers.sop_instance_uids)}
        with self._headers_lock:
            self._headers[ref.series_instance_uid] = entry
            while len(self._headers) > _HEADER_SERIES:
                self._headers.popitem(last=False)
        return entry

    def prefetch(self, study_uid: str) -> bool:
        """Start generating a synthetic study in the background (when the ``prefetch`` setting is on).

        Returns whether it is queued or under way (False: prefetch is off, the
        study is not synthetic, or the queue is full).
        """
        if not self.config.prefetch:
            return False
        if self._generations.has(study_uid):  # metadata asks once per instance: no catalog query then
            return True
        if self._synthetic_study(study_uid) is None:
            return False
        return self._generations.prefetch(study_uid)

    def client_request(self, study_uid: str | None = None):
        """Context manager around a request a client waits on, about ``study_uid`` or no one study:
        background generation of other studies pauses meanwhile."""
        return self._generations.foreground(study_uid)

    def generate_study(self, study_uid: str) -> list[InstanceRef]:
        """Make (or fetch from cache) every instance of a study; returns its refs."""
        refs = self.instances(study_uid)
        for ref in refs:
            self.instance_bytes(ref)
        return refs

    def activity(self) -> dict[str, int]:
        """What the server is doing beside answering: studies generating or queued, the memory cache's fill."""
        return {
            "studies_generating": len(self._generations.in_flight()),
            "memory_cache_bytes": self._cache.memory.size,
            "memory_cache_max_bytes": self._cache.memory.max_bytes,
        }

    @property
    def studies_generated(self) -> int:
        """Studies this process opened for generation (a cache miss each); for tests and benchmarks."""
        return self._generations.studies_opened

    @property
    def parts_generated(self) -> int:
        """Study parts (CT slabs, SEG, SR...) this process made; for tests and benchmarks."""
        return self._generations.parts_made

    # -- store --------------------------------------------------------------------------

    def store(
        self, data: bytes | Dataset | Received, *, expected: Mapping[str, str] | None = None, source: str = "the request"
    ) -> StoreResult:
        """Keep an object received by STOW-RS or C-STORE: validated whole, written atomically, indexed, findable at once.

        ``data`` is the Part 10 bytes as received (kept byte for byte), a
        :class:`Received` that :func:`intake.receive` has already checked, or a
        data set (encoded here). Acceptance means the object parses completely
        (see :mod:`.intake`); ``expected`` and ``source`` are passed on to it.

        UID policy: an object that reuses the SOP Instance UID of a synthetic
        instance is refused (synthetic objects are immutable and always
        regenerable); one that reuses the UID of an earlier stored object
        replaces it (the latest copy wins, as in dcm4chee's default). A
        replacement is checked whole before anything is written, and written
        with ``os.replace``: a refused one leaves the earlier copy as it was.

        Raises
        ------
        StoreRefused
            With its ``reason`` (:class:`StoreRefusalValues`): not DICOM, incomplete, a required
            UID missing, invalid or not the expected one, a synthetic UID, or a data set that cannot be encoded.
        OSError
            The object could not be written.
        """
        if isinstance(data, Received):
            received = data
        else:
            if isinstance(data, Dataset):
                dataset = data
                try:
                    data = _encode(dataset)
                except Exception as exc:  # pydicom raises many types for data sets it cannot write
                    raise StoreRefused(
                        StoreRefusalValues.CANNOT_ENCODE,
                        f"the object cannot be encoded: {exc}",
                        sop_class_uid=str(dataset.get("SOPClassUID", "") or ""),
                        sop_instance_uid=str(dataset.get("SOPInstanceUID", "") or ""),
                    ) from None
            received = receive(data, expected=expected, source=source)
        ds = received.dataset
        sop_uid, names = (
            received.sop_instance_uid,
            {"sop_class_uid": received.sop_class_uid, "sop_instance_uid": received.sop_instance_uid},
        )
        uids = self._universe.uids
        if uids.decode(sop_uid) is not None:
            raise StoreRefused(
                StoreRefusalValues.SYNTHETIC_UID,
                f"SOP Instance UID {sop_uid} belongs to a synthetic instance and cannot be replaced",
                keyword="SOPInstanceUID",
                **names,
            )
        for keyword, kind in (("StudyInstanceUID", UIDKind.STUDY), ("SeriesInstanceUID", UIDKind.SERIES)):
            decoded = uids.decode(str(ds[keyword].value))
            if decoded is not None and decoded.kind != kind:
                raise StoreRefused(
                    StoreRefusalValues.KIND_MISMATCH,
                    f"{keyword} names a synthetic object of another kind",
                    keyword=keyword,
                    **names,
                )
        if uids.decode(received.series_instance_uid) is not None:
            raise StoreRefused(
                StoreRefusalValues.SYNTHETIC_SERIES,
                "a stored object cannot join a synthetic series; give it a series of its own",
                keyword="SeriesInstanceUID",
                **names,
            )
        path = self.stored_root / received.study_instance_uid / received.series_instance_uid / f"{sop_uid}.dcm"
        # One store at a time from the look-up of an earlier copy to the index: two stores of one
        # UID cannot interleave (the index would describe one copy and the disk hold the other).
        with self._store_lock:
            earlier = self._catalog.stored_instance(sop_uid)
            atomic_write(path, received.data, durable=True)
            self._catalog.index_stored(ds, str(path), len(received.data), received.transfer_syntax_uid)
            if earlier is not None and earlier["path"] != str(path):  # the replacement moved to another series
                Path(earlier["path"]).unlink(missing_ok=True)
        return StoreResult(sop_uid, received.sop_class_uid, received.study_instance_uid, earlier is not None)


#: Series whose headers are kept for metadata while their pixels are not made.
_HEADER_SERIES = 8
#: Studies whose target name is remembered (the cache path of every instance needs it).
_STUDY_TARGETS = 4096


class _StudyParts:
    """One study's parts as :class:`Generations` makes them: build, encode and cache each part."""

    def __init__(self, request: StudyRequest, work: StudyWork, cache: InstanceCache, path_of):
        self._request, self._work, self._cache, self._path_of = request, work, cache, path_of
        self._series = {s.index: s.context for s in request.series}
        self.parts = tuple(tuple(self._series[p.series_index].sop_instance_uids[p.start : p.stop]) for p in work.parts)
        self._sources: dict[str, list[Dataset]] = {}

    def _paths(self, index: int) -> list[str]:
        series = self._series[self._work.parts[index].series_index]
        return [self._path_of(series.series_instance_uid, sop) for sop in self.parts[index]]

    def cached(self, index: int) -> bool:
        return all(self._cache.exists(path) for path in self._paths(index))

    def make(self, index: int) -> None:
        from ..imaging.registry import build

        specs = self._work.make(self._work.parts[index])
        built = BuiltSeries()
        for spec in specs:
            source_uid = getattr(spec, "source_series_uid", None)
            if source_uid and source_uid not in built.datasets:
                built.datasets[source_uid] = self._source(source_uid)
        made = build(specs, built)
        for series_uid, datasets in made.items():
            for ds in datasets:
                self._cache.put(self._path_of(series_uid, str(ds.SOPInstanceUID)), _encode(ds))

    def _source(self, series_uid: str) -> list[Dataset]:
        """The series a SEG or SR references, from its headers (references need no pixels)."""
        if series_uid not in self._sources:
            index = next(i for i, s in self._series.items() if s.series_instance_uid == series_uid)
            self._sources[series_uid] = _series_headers(self._work, index, series_uid).datasets()
        return self._sources[series_uid]

    def close(self) -> None:
        self._sources.clear()
        self._work.close()


def _series_headers(work: StudyWork, series_index: int, series_uid: str) -> SeriesHeaders:
    """A series' instances without pixels, from the headers the study's work gives."""
    from ..imaging.registry import build_headers

    return build_headers(work.headers(series_index))[series_uid]


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
