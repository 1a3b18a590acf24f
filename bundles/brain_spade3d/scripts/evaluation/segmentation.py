"""Study: the same segmenter trained on real pairs and on synthetic pairs, Dice on held-out real pairs.

The synthetic images are also compared with the real training images by a feature distance (the
report's ``feature_distance`` section). Synthetic pair ``i`` is sampled from seed ``i`` of stream
``"segmentation/synthetic_pairs"``; both segmenters start from the weights of stream
``"segmentation/segmenter_init"`` (so the arms differ by their data, not their start) and shuffle and
train from their own streams ``"segmentation/real"`` and ``"segmentation/synthetic"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from scripts.common.checks import check_non_negative_int, check_positive_int
from scripts.evaluation.pairs import SegmentationPairs
from scripts.evaluation.seeds import seed_stream, stream_seeds
from scripts.evaluation.segmenter import SegmenterTraining

__all__ = ["SegmentationStudy"]

FeatureDistance = Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], dict[str, Any]]


class SegmentationStudy:
    """Downstream segmentation: real-trained against synthetic-trained, and the synthetic images' distance.

    Args:
        pairs: real and synthetic pairs in the segmentation contrast.
        training: the segmenter recipe.
        train_split: real training pairs; their lesion vectors condition the synthetic ones
            (``segmentation_train_split``).
        test_split: held-out pairs the Dice is measured on (``segmentation_test_split``).
        n_synthetic: synthetic pairs; their conditions cycle through the training split's lesion vectors,
            so the synthetic set mirrors the real one.
        feature_distance: ``(generated, real) -> report`` of a distribution distance (``FrechetFeatureDistance``)
            of the synthetic images against the real training images; None skips it.
        seed: base of the seed streams.
    """

    #: Entries of ``run()`` the report keeps as sections of their own, beside this study's section.
    top_level = ("feature_distance",)

    def __init__(
        self,
        pairs: SegmentationPairs,
        training: SegmenterTraining,
        train_split: str,
        test_split: str,
        n_synthetic: int = 32,
        feature_distance: FeatureDistance | None = None,
        seed: int = 0,
    ) -> None:
        self.pairs = pairs
        self.training = training
        self.train_split = pairs.splits.check("segmentation_train_split", train_split)
        self.test_split = pairs.splits.check("segmentation_test_split", test_split)
        self.n_synthetic = check_positive_int("n_synthetic", n_synthetic)
        self.feature_distance = feature_distance
        self.seed = check_non_negative_int("seed", seed)

    def _arm(self, name: str, pairs: list, tests: list) -> dict[str, Any]:
        init, run = (
            seed_stream(self.seed, "segmentation/segmenter_init"),
            seed_stream(self.seed, f"segmentation/{name}"),
        )
        return self.training.train_and_test(pairs, tests, init, run)

    def run(self) -> dict[str, Any]:
        """Both arms' Dice per class; ``feature_distance`` goes to its own section of the report."""
        training = self.pairs.splits[self.train_split]
        tests = [self.pairs.real(item) for item in self.pairs.splits[self.test_split]]
        if not training or not tests:
            raise ValueError("segmentation: the training and test splits must both hold subjects")
        real = [self.pairs.real(item) for item in training]
        lesion_vectors = torch.as_tensor([list(item["lesion"]) for item in training], dtype=torch.float32)
        conditions = lesion_vectors[torch.arange(self.n_synthetic) % len(lesion_vectors)]
        seeds = stream_seeds(self.seed, "segmentation/synthetic_pairs", self.n_synthetic)
        synthetic = self.pairs.synthetic(conditions, seeds, "synthetic pairs")
        distance = None
        if self.feature_distance is not None:
            distance = self.feature_distance([pair["image"] for pair in synthetic], [pair["image"] for pair in real])
        return {
            "feature_distance": distance,
            "test_split": self.test_split,
            "n_test_pairs": len(tests),
            "real": self._arm("real", real, tests),
            "synthetic": self._arm("synthetic", synthetic, tests),
        }

    def protocol(self) -> dict[str, Any]:
        return {
            **self.pairs.protocol(),
            "segmentation_train_split": self.train_split,
            "segmentation_test_split": self.test_split,
            "n_synthetic": self.n_synthetic,
            "feature_distance": getattr(self.feature_distance, "name", None),
            **self.training.protocol(),
            "seed": self.seed,
        }
