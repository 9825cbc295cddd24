"""UIDs: valid, unique, deterministic, keyed and reversible."""

import itertools

import pytest

from synthpacs.archive.uids import UIDFactory, UIDKind, UIDPath, is_valid_uid
from synthpacs.keyed import universe_key


@pytest.fixture
def factory():
    return UIDFactory(universe_key(42))


def test_uids_are_valid_and_unique(factory):
    seen = set()
    for patient, study, series, instance in itertools.product((0, 1, 999_999, 2**24 - 1), (0, 1, 63), (0, 2), (0, 1, 500)):
        for kind in UIDKind:
            uid = factory.uid(UIDPath(kind, patient, study, series, instance))
            assert is_valid_uid(uid), uid
            assert len(uid) <= 64
            assert all(part == "0" or not part.startswith("0") for part in uid.split("."))
            seen.add(uid)
    assert len(seen) == 4 * 3 * 2 * 3 * len(UIDKind)


def test_deterministic_keyed_and_reversible(factory):
    path = UIDPath(UIDKind.INSTANCE, 123, 4, 1, 77)
    uid = factory.uid(path)
    assert UIDFactory(universe_key(42)).uid(path) == uid
    assert UIDFactory(universe_key(43)).uid(path) != uid
    assert factory.decode(uid) == path
    assert UIDFactory(universe_key(43)).decode(uid) is None


@pytest.mark.parametrize("uid", ["1.2.3", "2.25.12345", "2.25.", "2.25.0123", "x", "2.25." + "9" * 40])
def test_foreign_uids_do_not_decode(factory, uid):
    assert factory.decode(uid) is None


@pytest.mark.parametrize(
    "uid, valid",
    [
        ("1.2.840.10008.1.2.1", True),
        ("1.2.0.3", True),
        ("1.02.3", False),
        ("1..2", False),
        ("", False),
        ("1.2.3.", False),
        ("1." + "1" * 63, False),
        ("1.2.a", False),
    ],
)
def test_uid_syntax(uid, valid):
    assert is_valid_uid(uid) is valid


def test_path_components_are_range_checked(factory):
    with pytest.raises(ValueError, match="does not fit"):
        factory.uid(UIDPath(UIDKind.STUDY, 2**24))
