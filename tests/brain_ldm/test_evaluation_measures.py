"""The evaluation's measurements on inputs whose answer is known, so a wrong formula cannot pass as a report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.brain_ldm.ldm_helpers import bundle_module


def test_volumes_count_the_dark_ventricle_and_bright_tissue_voxels() -> None:
    with bundle_module("evaluation") as evaluation:
        volume = np.full((6, 6, 6), 0.8)
        volume[1:3, 1:3, 1:3] = 0.05  # 8 dark voxels, all inside the ventricle region
        volume[5, 5, 5] = 0.05  # dark, but outside the region
        roi = np.zeros((6, 6, 6))
        roi[0:4, 0:4, 0:4] = 1
        assert evaluation.ventricle_volume_ml(volume, roi, csf_threshold=0.2, voxel_ml=0.064) == pytest.approx(
            8 * 0.064
        )
        assert evaluation.brain_volume_ml(volume, csf_threshold=0.2, voxel_ml=0.064) == pytest.approx((216 - 9) * 0.064)


def test_a_relative_ventricle_threshold_ignores_the_image_brightness() -> None:
    with bundle_module("evaluation") as evaluation:
        volume = np.full((6, 6, 6), 0.8)  # white matter
        volume[1:3, 1:3, 1:3] = 0.3  # 8 CSF voxels inside the region
        roi = np.zeros((6, 6, 6))
        roi[0:4, 0:4, 0:4] = 1
        darker = 0.5 * volume  # the same brain, half as bright (a global scale or a bias field)
        relative = {
            name: evaluation.ventricle_volume_ml(image, roi, 0.6, voxel_ml=1.0, reference_percentile=90)
            for name, image in (("bright", volume), ("dark", darker))
        }
        absolute = {
            name: evaluation.ventricle_volume_ml(image, roi, 0.5, voxel_ml=1.0)
            for name, image in (("bright", volume), ("dark", darker))
        }
        with pytest.raises(ValueError, match="ventricle_roi is empty"):
            evaluation.ventricle_volume_ml(volume, np.zeros_like(roi), 0.6, 1.0, reference_percentile=90)
        for bad in (0, 101, "90", True):
            with pytest.raises(ValueError, match="ventricle_reference_percentile"):
                evaluation.check_percentile(bad)
    assert relative == {"bright": 8.0, "dark": 8.0}  # 0.3 < 0.6 x 0.8 and 0.15 < 0.6 x 0.4
    assert absolute == {"bright": 8.0, "dark": 64.0}  # a fixed 0.5 counts the darkened white matter as CSF


def test_pearson_r_of_known_relations() -> None:
    with bundle_module("evaluation") as evaluation:
        assert evaluation.pearson_r([0.1, 0.5, 0.9], [10.0, 30.0, 50.0]) == pytest.approx(1.0)
        assert evaluation.pearson_r([0.1, 0.5, 0.9], [5.0, 3.0, 1.0]) == pytest.approx(-1.0)
        assert evaluation.pearson_r([0.1, 0.5, 0.9], [2.0, 2.0, 2.0]) is None  # undefined, not 0


def test_diversity_of_identical_samples_is_one_and_of_different_samples_lower() -> None:
    with bundle_module("common.image_similarity") as similarity:
        generator = torch.Generator().manual_seed(0)
        brain = torch.rand(1, 1, 24, 24, 24, generator=generator)
        same, _ = similarity.pairwise_mean(brain.repeat(3, 1, 1, 1, 1), similarity.four_gradient_region_ssim)
        other = torch.rand(1, 1, 24, 24, 24, generator=generator)
        different, pairs = similarity.pairwise_mean(torch.cat([brain, other]), similarity.four_gradient_region_ssim)
    assert same == pytest.approx(1.0, abs=1e-5) and pairs == 1 and different < 0.5
