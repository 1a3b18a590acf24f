"""The radiomics-style features and their Fréchet distance: each feature group reacts to what it names."""

from __future__ import annotations

import numpy as np
import pytest

from bundle_runtime.radiomics_features import FEATURE_NAMES, FrechetFeatureDistance, radiomics_features


def _phantoms(count: int, seed: int, brightness: float = 1.0, noise: float = 0.02) -> list[np.ndarray]:
    """Smooth blobs of random size: a toy cohort whose images differ like subjects do."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 16)] * 3, indexing="ij"))
    images = []
    for _ in range(count):
        radius = rng.uniform(0.5, 0.9)
        blob = np.clip(1.2 - np.linalg.norm(grid, axis=0) / radius, 0, 1) * brightness
        images.append(np.clip(blob + rng.normal(0, noise, blob.shape), 0, 1))
    return images


def test_feature_groups_react_to_intensity_texture_and_volume() -> None:
    names = {name: index for index, name in enumerate(FEATURE_NAMES)}
    smooth = _phantoms(1, 0)[0]
    assert len(radiomics_features(smooth)) == len(FEATURE_NAMES) == 20
    darker = radiomics_features(smooth * 0.5)
    assert darker[names["mean"]] < radiomics_features(smooth)[names["mean"]]
    assert darker[names["band_bright"]] < radiomics_features(smooth)[names["band_bright"]]
    noisy = np.clip(smooth + np.random.default_rng(1).normal(0, 0.2, smooth.shape), 0, 1)
    assert radiomics_features(noisy)[names["glcm_contrast"]] > radiomics_features(smooth)[names["glcm_contrast"]]
    assert radiomics_features(smooth)[names["glcm_homogeneity"]] > radiomics_features(noisy)[names["glcm_homogeneity"]]
    patch = radiomics_features(np.linspace(-1, 1, 96 * 96).reshape(96, 96), value_range=(-1, 1))
    assert patch[names["foreground"]] == pytest.approx(0.95, abs=0.01)  # 2D patches in [-1, 1] work too


def test_distance_separates_a_shifted_set_from_the_split_half_scale() -> None:
    distance = FrechetFeatureDistance()
    real = _phantoms(20, 0)
    like_real = distance(_phantoms(10, 1), real)
    darker = distance(_phantoms(10, 1, brightness=0.6), real)
    assert like_real["n_generated"] == like_real["n_real_half_b"] == 10 and like_real["n_real_half_a"] == 10
    assert darker["value"] > 5 * like_real["real_split_half"]
    assert darker["value"] > 5 * like_real["value"]
    assert darker["real_split_half"] == like_real["real_split_half"]  # the scale depends on the real set only
    assert darker["mean_shift_in_real_sd"]["mean"] < -3 < like_real["mean_shift_in_real_sd"]["mean"]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"value_range": (1, 0)}, "value_range"), ({"tissue_band_edges": (0.5, 0.1, 0.7, 1)}, "tissue_band_edges")],
)
def test_bad_options_are_named(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FrechetFeatureDistance(**options)


def test_too_few_images_are_refused() -> None:
    with pytest.raises(ValueError, match="real set has 3"):
        FrechetFeatureDistance()(_phantoms(4, 0), _phantoms(3, 1))
