"""The archive API: the one query and retrieve interface of both front ends.

Front ends translate a protocol to these calls and back; no DICOM business
logic lives in them (DESIGN §1). Queries are answered from the catalog;
retrieves go through the instance cache, which generates a whole study on a
miss; stores write atomically and index at once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import dcmwrite

from ..config import Config
from ..errors import NotFound, StoreRefused
from .catalog import Catalog, Query, QueryLevel
from .cohorts import load_cohorts
from .store import InstanceCache, atomic_write
from .uids import UIDKind, is_valid_uid
from .universe import SeriesRecord, StudyRecord, Universe

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


class Archive:
    """The universe, its catalog and the store, behind one API."""

    def __init__(self, config: Config):
        self.config = config
        self.universe = Universe(config.seed, config.patients, load_cohorts(config.cohorts_dir))
        data = config.data_path
        self.catalog = Catalog(data / "catalog.sqlite", self.universe)
        self.cache = InstanceCache(data / "cache" / self.universe.fingerprint[:16], config.cache_memory_mb * 2**20)
        self.stored_root = data / "stored"
        self._targets: dict = {}
        self._targets_lock = threading.Lock()

    # -- queries ------------------------------------------------------------------------

    def find(self, level: QueryLevel | str, query: Query, *, fuzzy: bool = False,
             limit: int | None = None, offset: int = 0) -> Iterator[Dataset]:
        """C-FIND / QIDO-RS matching; see :meth:`Catalog.find`."""
        return self.catalog.find(level, query, fuzzy=fuzzy, limit=limit, offset=offset)

    # -- resolving UIDs -----------------------------------------------------------------

    def _synthetic_study(self, study_uid: str) -> StudyRecord | None:
        path = self.universe.uids.decode(study_uid)
        if path is None or path.kind != UIDKind.STUDY:
            return None
        if not self.catalog.synthetic_study_exists(path.patient, path.study):
            return None
        return self.universe.study(path.patient, path.study)

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
                    uid = self.universe.uids.sop_instance_uid(study.patient.index, study.visit, series.index, number)
                    if sop_uid is None or uid == sop_uid:
                        refs.append(InstanceRef(study_uid, series.series_instance_uid, uid, series.sop_class_uid, number))
        stored = (self.catalog.stored_instances(series_uid=series_uid) if series_uid
                  else self.catalog.stored_instances(study_uid=study_uid))
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
        return InstanceRef(row["study_instance_uid"], row["series_instance_uid"], row["sop_instance_uid"],
                           row["sop_class_uid"], int(number) if number not in (None, "") and str(number).lstrip("-").isdigit() else None,
                           stored_path=row["path"], transfer_syntax_uid=row["transfer_syntax_uid"])

    def instance_ref(self, sop_uid: str) -> InstanceRef:
        """Find an instance by its SOP Instance UID alone."""
        path = self.universe.uids.decode(sop_uid) if is_valid_uid(sop_uid) else None
        if path is not None and path.kind == UIDKind.INSTANCE:
            study_uid = self.universe.uids.study_instance_uid(path.patient, path.study)
            try:
                return self.instances(study_uid, None, sop_uid)[0]
            except NotFound:
                pass
        row = self.catalog.stored_instance(sop_uid)
        if row is None:
            raise NotFound(f"no such instance {sop_uid}")
        return self._stored_ref(row)

    # -- retrieve -----------------------------------------------------------------------

    def _target(self, name: str):
        """The generator of a cohort target, loaded once, as the configuration says."""
        from ..generation.registry import load_target

        with self._targets_lock:
            if name not in self._targets:
                target = load_target(name, self.config)
                # Cached pixels are kept per renderer: switching renderer, weights or psi never serves stale ones.
                key = hashlib.sha256(str(target.fingerprint).encode()).hexdigest()[:12]
                self._targets[name] = (target, key)
            return self._targets[name]

    def target_for(self, study: StudyRecord):
        return self._target(study.patient.cohort.target)[0]

    def _renderer_key(self, study_uid: str) -> str:
        path = self.universe.uids.decode(study_uid)
        if path is None:
            raise NotFound(f"no such synthetic study {study_uid}")
        cohort = self.universe.cohorts[int(self.universe.cohort_of(np.array([path.patient]))[0])]
        return self._target(cohort.target)[1]

    def _generate(self, study: StudyRecord) -> dict[str, tuple[str, bytes]]:
        from ..generation.study import build_study

        made = build_study(self.universe, study, self.target_for(study))
        key = self._renderer_key(study.study_instance_uid)
        out = {}
        for series_uid, datasets in made.items():
            for ds in datasets:
                sop_uid = str(ds.SOPInstanceUID)
                out[sop_uid] = (self._cache_path(key, study.study_instance_uid, series_uid, sop_uid), _encode(ds))
        log.info("generated study %s (%d instances)", study.study_instance_uid, len(out))
        return out

    @staticmethod
    def _cache_path(renderer_key: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{renderer_key}/{study_uid}/{series_uid}/{sop_uid}.dcm"

    def instance_bytes(self, ref: InstanceRef) -> bytes:
        """The Part 10 bytes of an instance (generated on first use)."""
        if ref.stored_path is not None:
            try:
                return Path(ref.stored_path).read_bytes()
            except FileNotFoundError:
                raise NotFound(f"stored instance {ref.sop_instance_uid} is missing from disk") from None
        key = self._renderer_key(ref.study_instance_uid)
        relative = self._cache_path(key, ref.study_instance_uid, ref.series_instance_uid, ref.sop_instance_uid)
        # The study record is only needed on a miss (a cache hit costs no universe lookup).
        return self.cache.get(ref.study_instance_uid, relative,
                              lambda: self._generate(self.study_record(ref.study_instance_uid)))

    def instance_dataset(self, ref: InstanceRef) -> Dataset:
        return dcmread(io.BytesIO(self.instance_bytes(ref)))

    def generate_study(self, study_uid: str) -> list[InstanceRef]:
        """Make (or fetch from cache) every instance of a study; returns its refs."""
        refs = self.instances(study_uid)
        for ref in refs:
            self.instance_bytes(ref)
        return refs

    # -- store --------------------------------------------------------------------------

    def store(self, data: bytes | Dataset) -> StoreResult:
        """Keep an object received by STOW-RS or C-STORE: written atomically, indexed, findable at once.

        UID policy: an object that reuses the SOP Instance UID of a synthetic
        instance is refused (synthetic objects are immutable and always
        regenerable); one that reuses the UID of an earlier stored object
        replaces it (the latest copy wins, as in dcm4chee's default).

        Raises
        ------
        StoreRefused
            The object is not DICOM, lacks a required UID, or collides with a synthetic UID.
        """
        if isinstance(data, Dataset):
            ds = data
        else:
            try:
                ds = dcmread(io.BytesIO(data), force=False)
            except (InvalidDicomError, EOFError, ValueError, TypeError, AttributeError, KeyError, OSError) as exc:
                raise StoreRefused(f"not a DICOM Part 10 object: {exc}") from None
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            value = str(ds.get(keyword, "") or "")
            if not value:
                raise StoreRefused(f"the object has no {keyword}")
            if not is_valid_uid(value):
                raise StoreRefused(f"{keyword} {value!r} is not a valid UID")
        sop_uid = str(ds.SOPInstanceUID)
        if self.universe.uids.decode(sop_uid) is not None:
            raise StoreRefused(f"SOP Instance UID {sop_uid} belongs to a synthetic instance and cannot be replaced")
        for keyword, kind in (("StudyInstanceUID", UIDKind.STUDY), ("SeriesInstanceUID", UIDKind.SERIES)):
            path = self.universe.uids.decode(str(ds[keyword].value))
            if path is not None and path.kind != kind:
                raise StoreRefused(f"{keyword} names a synthetic object of another kind")
        series_path = self.universe.uids.decode(str(ds.SeriesInstanceUID))
        if series_path is not None:
            raise StoreRefused("a stored object cannot join a synthetic series; give it a series of its own")
        try:
            # Bytes are kept as received, so a retrieve returns them byte for byte.
            blob = bytes(data) if isinstance(data, (bytes, bytearray)) else _encode(ds)
            # Re-read what will be written: a dataset that cannot round-trip is refused before any write.
            dcmread(io.BytesIO(blob))
        except Exception as exc:  # pydicom raises many types for broken data; none may reach the caller raw
            raise StoreRefused(f"the object cannot be encoded: {exc}") from None
        transfer_syntax = str(getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))
        path = self.stored_root / str(ds.StudyInstanceUID) / str(ds.SeriesInstanceUID) / f"{sop_uid}.dcm"
        replaced = self.catalog.stored_instance(sop_uid) is not None
        atomic_write(path, blob)
        self.catalog.index_stored(ds, str(path), len(blob), transfer_syntax)
        return StoreResult(sop_uid, str(ds.SOPClassUID), str(ds.StudyInstanceUID), replaced)


def _encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
