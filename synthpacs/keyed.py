"""Keyed hashing: every random draw and every UID starts here.

DESIGN §2.1: randomness is drawn from generators seeded by a keyed hash of
the object's path, never from global state. Two flavours are offered:

* scalar: :func:`path_rng` gives a ``numpy.random.Generator`` for one object
  path such as ``("patient", 42, "anatomy")``;
* vectorised: :func:`uniform` hashes whole arrays of indices at once (a
  SplitMix64 finaliser keyed by the seed and a stream name), so the catalog of
  a million patients is built without a Python loop, and the same values can
  be recomputed for one patient alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

_MASK64 = (1 << 64) - 1


def _digest(key: bytes, parts: Iterable[object], size: int = 16) -> bytes:
    h = hashlib.blake2b(key=key, digest_size=size)
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x1f")
    return h.digest()


def universe_key(seed: int) -> bytes:
    """The secret key of a universe, derived from its seed."""
    return hashlib.blake2b(f"synthpacs-universe:{seed}".encode(), digest_size=32).digest()


def path_seed(key: bytes, *path: object) -> int:
    """A 128-bit integer seed from a keyed hash of an object path."""
    return int.from_bytes(_digest(key, path), "big")


def path_rng(key: bytes, *path: object) -> np.random.Generator:
    """A numpy Generator that depends only on the key and the object path."""
    return np.random.Generator(np.random.PCG64(path_seed(key, *path)))


def _stream_constant(key: bytes, stream: str) -> np.uint64:
    return np.uint64(int.from_bytes(_digest(key, ("stream", stream), 8), "big"))


def hash64(key: bytes, stream: str, index: np.ndarray | int) -> np.ndarray:
    """Keyed 64-bit hash of integer indices (vectorised SplitMix64 finaliser)."""
    z = np.asarray(index, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = z ^ _stream_constant(key, stream)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def uniform(key: bytes, stream: str, index: np.ndarray | int) -> np.ndarray:
    """Keyed uniform floats in [0, 1), one per index."""
    return (hash64(key, stream, index) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def integers(key: bytes, stream: str, index: np.ndarray | int, low: int, high: int) -> np.ndarray:
    """Keyed integers in [low, high), one per index."""
    return low + np.floor(uniform(key, stream, index) * (high - low)).astype(np.int64)


def normal(key: bytes, stream: str, index: np.ndarray | int) -> np.ndarray:
    """Keyed standard normal draws (Box-Muller on two keyed uniforms)."""
    u1 = uniform(key, stream + ":u1", index)
    u2 = uniform(key, stream + ":u2", index)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)
