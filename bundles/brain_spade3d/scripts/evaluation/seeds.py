"""Named seed streams: every random thing in the evaluation draws from a stream named after what it is.

A stream is ``numpy.random.SeedSequence(seed, spawn_key=<words of sha256(name)>)``: it depends on the
base seed and its own name only, so adding a presence setting or a study never shifts the seeds of
another (offsets such as ``seed + 10_000 * index`` did). ``generate_state(n)`` gives the first ``n``
integer seeds of a stream, and its first ``k`` are the same for every ``n >= k``: sample ``i`` keeps its
seed whatever the sample count or the batch size.
"""

from __future__ import annotations

import hashlib

import numpy as np

from scripts.common.checks import check_non_negative_int

__all__ = ["seed_stream", "stream_seeds"]

#: uint32 words of the name's SHA-256 in the spawn key: 128 bits, so two names never share a stream in practice.
_KEY_WORDS = 4


def seed_stream(seed: int, name: str) -> np.random.SeedSequence:
    """The independent, reproducible stream ``name`` of base ``seed``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"seed stream name {name!r} must be a non-empty string")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    key = tuple(int.from_bytes(digest[4 * i : 4 * i + 4], "little") for i in range(_KEY_WORDS))
    return np.random.SeedSequence(check_non_negative_int("seed", seed), spawn_key=key)


def stream_seeds(seed: int, name: str, count: int) -> list[int]:
    """The first ``count`` integer seeds (uint32) of stream ``name``; [] for ``count`` 0."""
    if count == 0:
        return []
    return [int(value) for value in seed_stream(seed, name).generate_state(int(count), dtype=np.uint32)]
