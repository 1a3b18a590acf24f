"""4-G-R-SSIM and the pairwise diversity helper."""

from __future__ import annotations

import pytest
import torch

from bundle_runtime.image_similarity import four_gradient_region_ssim, gradient_magnitude, pairwise_mean


def _phantom(seed: int, shape=(2, 1, 20, 20, 20)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(shape[0], 1, 5, 5, 5, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=shape[2:], mode="trilinear", align_corners=False)


def test_identical_images_score_one() -> None:
    x = _phantom(0)
    torch.testing.assert_close(four_gradient_region_ssim(x, x), torch.ones(2))


def test_score_falls_with_distortion() -> None:
    x = _phantom(0)
    generator = torch.Generator().manual_seed(1)
    mild = x + 0.02 * torch.randn(x.shape, generator=generator)
    strong = x + 0.2 * torch.randn(x.shape, generator=generator)
    other = _phantom(5)
    s_mild, s_strong, s_other = (four_gradient_region_ssim(x, y) for y in (mild, strong, other))
    assert bool((s_mild > s_strong).all()) and bool((s_mild > s_other).all())
    assert bool((s_strong < 0.9).all())


def test_gradient_magnitude_of_a_ramp() -> None:
    ramp = torch.arange(10.0).reshape(1, 1, 10, 1, 1).expand(1, 1, 10, 4, 4) * 0.5
    torch.testing.assert_close(gradient_magnitude(ramp), torch.full_like(ramp, 0.5))


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        four_gradient_region_ssim(torch.rand(1, 1, 20, 20, 20), torch.rand(1, 1, 20, 20, 21))
    with pytest.raises(ValueError, match="must exceed kernel_size=11"):
        four_gradient_region_ssim(torch.rand(1, 1, 10, 20, 20), torch.rand(1, 1, 10, 20, 20))


def test_pairwise_mean_over_distinct_pairs() -> None:
    images = torch.stack([torch.full((1, 4, 4), float(v)) for v in (0, 1, 3)])
    mean, pairs = pairwise_mean(images, lambda a, b: (a - b).abs().flatten(1).mean(1))
    assert pairs == 3 and mean == pytest.approx((1 + 3 + 2) / 3)
    assert pairwise_mean(images, lambda a, b: (a - b).abs().flatten(1).mean(1), max_pairs=1) == (1.0, 1)
    with pytest.raises(ValueError, match="at least two images"):
        pairwise_mean(images[:1], lambda a, b: a)
