"""The evaluation's similarity and Dice on inputs whose answer is known."""

from __future__ import annotations

import pytest
import torch

from tests.brain_spade3d.spade3d_helpers import bundle_module


def test_similarity_of_an_image_with_itself_and_with_a_shifted_copy() -> None:
    with bundle_module("evaluation.metrics") as metrics:
        image = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
        classes = torch.zeros(16, 16, 16, dtype=torch.long)
        classes[4:12, 4:12, 4:12] = 1
        same = metrics.similarity_metrics(image, image, classes, ["background", "tissue", "lesion"], kernel_size=3)
        shifted = metrics.similarity_metrics(image + 0.1, image, classes, ["background", "tissue", "lesion"], 3)
    assert same["ssim"] == pytest.approx(1.0) and same["mse"] == 0.0
    assert same["per_class"]["tissue"]["voxels"] == 512 and same["per_class"]["lesion"]["ssim"] is None
    assert shifted["mse"] == pytest.approx(0.01) and shifted["per_class"]["tissue"]["mse"] == pytest.approx(0.01)
    assert shifted["ssim"] < 1.0


def test_dice_per_class_of_a_network_that_predicts_half_the_lesion() -> None:
    label = torch.zeros(1, 8, 8, 8)
    label[0, :4] = 1  # class 1 fills the first half of the volume
    predicted = torch.zeros(1, 8, 8, 8, dtype=torch.long)
    predicted[0, :2] = 1  # the network finds half of it: Dice 2 * 128 / (128 + 256) = 2/3

    class Fixed(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(predicted, 3).permute(0, 4, 1, 2, 3).float()

    with bundle_module("evaluation.metrics") as metrics:
        dice = metrics.dice_per_class(
            Fixed(), [{"image": torch.zeros(1, 8, 8, 8), "label": label}], ["bg", "a", "b"], "cpu"
        )
    assert dice["a"] == pytest.approx(2 / 3, rel=1e-6) and dice["b"] is None  # class b is absent from the reference
