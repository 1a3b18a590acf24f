# Generated copy of bundle_runtime/seeding.py: edit the source, then run `python -m tools sync-common`.
"""Seeds that mean what they say: one reproducible noise stream per sample, and named side streams per sample.

Why: torch's CPU generator keeps only the low 32 bits of a seed (``manual_seed(3)`` and ``manual_seed(3 + 2**32)``
draw the same numbers), so a seed past 2**32 silently repeats another one, and an offset such as ``seed + 2**32``
does not open a new stream. Sample seeds are therefore refused past that range, and a sample's side streams (its
random style code, its label redraws) come from NumPy's PCG64 keyed by (seed, stream name, index) through
``SeedSequence``: no truncation, and never the torch stream of any sample seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch

from .checks import check_non_negative_int, check_seed_span

__all__ = ["seeded_generator", "stream_normal"]


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for one sample seed, refusing seeds torch would truncate into another sample's."""
    return torch.Generator().manual_seed(check_seed_span("seed", seed))


def stream_normal(shape: Sequence[int], seed: int, stream: str, index: int = 0) -> torch.Tensor:
    """Standard normal float32 values of side stream ``stream`` (draw ``index``) of sample ``seed``, on the CPU."""
    key = [check_non_negative_int("seed", seed), zlib.crc32(stream.encode()), check_non_negative_int("index", index)]
    values = np.random.default_rng(np.random.SeedSequence(key)).standard_normal(tuple(shape), dtype=np.float32)
    return torch.from_numpy(values)
