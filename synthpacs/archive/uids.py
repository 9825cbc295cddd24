"""Deterministic, reversible DICOM UIDs for the synthetic universe.

A synthetic object's identity is a small path of integers: its kind, patient,
study (visit), series and instance. That path is packed into 64 bits, a 64-bit
keyed MAC of it is appended, and the 128-bit result goes through a keyed
Feistel permutation whose round function is a keyed BLAKE2b hash. The UID is
``2.25.<decimal>`` (PS3.5 B.2: a UUID-derived UID, at most 44 characters, no
leading zeros).

Because the permutation has an inverse, the catalog maps any synthetic UID
back to its path without storing a billion instance rows, and the MAC means a
UID made elsewhere (a STOW-RS upload) is never mistaken for a synthetic one.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass

UID_ROOT = "2.25."
MAX_UID_LENGTH = 64
_UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_M64 = (1 << 64) - 1
_ROUNDS = 6

# Bit widths of the packed path (64 bits in all).
_KIND_BITS, _PATIENT_BITS, _STUDY_BITS, _SERIES_BITS, _INSTANCE_BITS = 4, 24, 8, 8, 20


class UIDKind(enum.IntEnum):
    """What a synthetic UID names."""

    STUDY = 1
    SERIES = 2
    INSTANCE = 3
    FRAME_OF_REFERENCE = 4
    LESION_TRACKING = 5  # TID 1500 Tracking UID, stable across a subject's visits
    DIMENSION_ORGANIZATION = 6


@dataclass(frozen=True)
class UIDPath:
    """The identity of a synthetic object. Unused components are 0."""

    kind: UIDKind
    patient: int
    study: int = 0
    series: int = 0
    instance: int = 0

    def pack(self) -> int:
        value = 0
        for v, bits in (
            (int(self.kind), _KIND_BITS),
            (self.patient, _PATIENT_BITS),
            (self.study, _STUDY_BITS),
            (self.series, _SERIES_BITS),
            (self.instance, _INSTANCE_BITS),
        ):
            if not 0 <= v < (1 << bits):
                raise ValueError(f"UID path component {v} does not fit in {bits} bits: {self}")
            value = (value << bits) | v
        return value

    @classmethod
    def unpack(cls, value: int) -> UIDPath:
        parts = []
        for bits in (_INSTANCE_BITS, _SERIES_BITS, _STUDY_BITS, _PATIENT_BITS, _KIND_BITS):
            parts.append(value & ((1 << bits) - 1))
            value >>= bits
        instance, series, study, patient, kind = parts
        return cls(UIDKind(kind), patient, study, series, instance)


def is_valid_uid(uid: str) -> bool:
    """PS3.5 9.1: digits and dots, components without leading zeros, at most 64 chars."""
    return 0 < len(uid) <= MAX_UID_LENGTH and bool(_UID_PATTERN.match(uid))


class UIDFactory:
    """Mints and decodes the UIDs of one universe (one key)."""

    def __init__(self, key: bytes):
        self._key = hashlib.blake2b(key, person=b"synthpacs-uids", digest_size=32).digest()

    def _round(self, i: int, half: int) -> int:
        h = hashlib.blake2b(half.to_bytes(8, "big"), key=self._key, digest_size=8, salt=i.to_bytes(16, "big"))
        return int.from_bytes(h.digest(), "big")

    def _mac(self, packed: int) -> int:
        h = hashlib.blake2b(packed.to_bytes(8, "big"), key=self._key, digest_size=8, person=b"mac")
        return int.from_bytes(h.digest(), "big")

    def uid(self, path: UIDPath) -> str:
        """The UID of a synthetic object path."""
        packed = path.pack()
        left, right = packed, self._mac(packed)
        for i in range(_ROUNDS):
            left, right = right, left ^ self._round(i, right)
        return UID_ROOT + str((left << 64) | right)

    def decode(self, uid: str) -> UIDPath | None:
        """The path of a synthetic UID, or None if this universe did not mint it."""
        if not uid.startswith(UID_ROOT):
            return None
        digits = uid[len(UID_ROOT) :]
        if not digits.isdigit() or len(digits) > 39 or (len(digits) > 1 and digits[0] == "0"):
            return None
        value = int(digits)
        if value >> 128:
            return None
        left, right = value >> 64, value & _M64
        for i in reversed(range(_ROUNDS)):
            left, right = right ^ self._round(i, left), left
        if self._mac(left) != right:
            return None
        try:
            return UIDPath.unpack(left)
        except ValueError:
            return None

    # Convenience constructors, named after the DICOM attributes they fill.
    def study_instance_uid(self, patient: int, study: int) -> str:
        return self.uid(UIDPath(UIDKind.STUDY, patient, study))

    def series_instance_uid(self, patient: int, study: int, series: int) -> str:
        return self.uid(UIDPath(UIDKind.SERIES, patient, study, series))

    def sop_instance_uid(self, patient: int, study: int, series: int, instance: int) -> str:
        return self.uid(UIDPath(UIDKind.INSTANCE, patient, study, series, instance))

    def frame_of_reference_uid(self, patient: int, study: int) -> str:
        return self.uid(UIDPath(UIDKind.FRAME_OF_REFERENCE, patient, study))

    def tracking_uid(self, patient: int, lesion: int) -> str:
        return self.uid(UIDPath(UIDKind.LESION_TRACKING, patient, 0, 0, lesion))

    def dimension_organization_uid(self, patient: int, study: int, series: int) -> str:
        return self.uid(UIDPath(UIDKind.DIMENSION_ORGANIZATION, patient, study, series))
