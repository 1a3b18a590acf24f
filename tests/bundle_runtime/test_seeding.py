"""Seeds: sample seeds torch would truncate are refused by name, and side streams are new noise, reproducibly."""

from __future__ import annotations

import pytest
import torch

from bundle_runtime.checks import SEED_LIMIT, check_seed_span
from bundle_runtime.seeding import seeded_generator, stream_normal


def test_torch_keeps_only_32_seed_bits_which_is_why_seeds_are_bounded():
    same = [torch.randn(4, generator=torch.Generator().manual_seed(s)) for s in (3, 3 + 2**32)]
    assert torch.equal(*same)  # the fact the bound guards against; if torch changes, the bound can go
    with pytest.raises(ValueError, match=r"^seed=4294967299 with 1 sample\(s\) reaches seed 4294967299; seeds must"):
        seeded_generator(3 + 2**32)


def test_a_seed_generator_draws_the_seeds_torch_stream():
    expected = torch.randn(5, generator=torch.Generator().manual_seed(11))
    assert torch.equal(torch.randn(5, generator=seeded_generator(11)), expected)
    last = torch.randn(3, generator=torch.Generator().manual_seed(SEED_LIMIT - 1))
    assert torch.equal(torch.randn(3, generator=seeded_generator(SEED_LIMIT - 1)), last)


@pytest.mark.parametrize(
    ("seed", "count", "message"),
    [
        (SEED_LIMIT - 1, 2, "seed=4294967295 with 2 sample(s) reaches seed 4294967296"),
        (-1, 1, "seed=-1 must be a non-negative integer"),
        (True, 1, "seed=True must be a non-negative integer"),
        (0, 0, "n_samples=0 must be a positive integer"),
    ],
)
def test_seed_spans_past_32_bits_or_malformed_are_refused_by_name(seed, count, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_seed_span("seed", seed, count)


def test_the_last_whole_seed_is_accepted():
    assert check_seed_span("seed", SEED_LIMIT - 3, 3) == SEED_LIMIT - 3


def test_side_streams_are_reproducible_and_distinct():
    first = stream_normal((2, 3), 7, "style")
    assert first.dtype == torch.float32 and first.shape == (2, 3)
    assert torch.equal(first, stream_normal((2, 3), 7, "style"))
    others = [
        stream_normal((2, 3), 8, "style"),
        stream_normal((2, 3), 7, "label_redraw"),
        stream_normal((2, 3), 7, "style", 1),
        torch.randn((2, 3), generator=seeded_generator(7)),  # the sample's own torch stream
    ]
    assert all(not torch.allclose(first, other) for other in others)


def test_side_streams_take_seeds_past_32_bits_without_repeating():
    assert not torch.equal(stream_normal((4,), 3, "style"), stream_normal((4,), 3 + 2**32, "style"))
