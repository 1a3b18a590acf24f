"""Study: a segmenter trained on healthy subjects only, against one also trained on synthetic tumour cases.

Both are tested on the held-out tumour cases. Synthetic tumour pair ``i`` is sampled from seed ``i`` of
stream ``"unexpected_pathology/synthetic_tumour_pairs"``; both segmenters start from the weights of
stream ``"unexpected_pathology/segmenter_init"`` and shuffle and train from their own streams
``"unexpected_pathology/healthy_only"`` and ``"unexpected_pathology/healthy_plus_synthetic_tumours"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from scripts.common.checks import check_non_negative_int, check_positive_int
from scripts.evaluation.pairs import SegmentationPairs
from scripts.evaluation.seeds import seed_stream, stream_seeds
from scripts.evaluation.segmenter import SegmenterTraining

__all__ = ["UnexpectedPathologyStudy"]

ARMS = ("healthy_only", "healthy_plus_synthetic_tumours")


class UnexpectedPathologyStudy:
    """Unexpected pathology: can synthetic tumours teach a healthy-trained segmenter what it never saw?

    Args:
        pairs: real and synthetic pairs in the segmentation contrast.
        training: the segmenter recipe.
        train_split: its healthy subjects train both segmenters, its tumour patterns condition the
            synthetic cases (``segmentation_train_split``).
        test_splits: splits whose tumour cases test both segmenters (``pathology_test_splits``).
        lesion_names: condition entries; "tumour" must be one of them.
        n_synthetic_tumour: synthetic tumour pairs added to the healthy training set.
        seed: base of the seed streams.
    """

    def __init__(
        self,
        pairs: SegmentationPairs,
        training: SegmenterTraining,
        train_split: str,
        test_splits: Sequence[str],
        lesion_names: Sequence[str],
        n_synthetic_tumour: int = 16,
        seed: int = 0,
    ) -> None:
        if "tumour" not in lesion_names:
            raise ValueError(f"lesion_names {list(lesion_names)} has no 'tumour' for the unexpected-pathology study")
        self.pairs = pairs
        self.training = training
        self.train_split = pairs.splits.check("segmentation_train_split", train_split)
        test_splits = [test_splits] if isinstance(test_splits, str) else list(test_splits)
        if not test_splits:
            raise ValueError("pathology_test_splits is empty: name the splits whose tumour cases test the segmenters")
        self.test_splits = [pairs.splits.check("pathology_test_splits", split) for split in test_splits]
        self.tumour = list(lesion_names).index("tumour")
        self.n_synthetic_tumour = check_positive_int("n_synthetic_tumour", n_synthetic_tumour)
        self.seed = check_non_negative_int("seed", seed)

    def _has_tumour(self, item: Mapping[str, Any]) -> bool:
        return float(item["lesion"][self.tumour]) > 0

    def _arm(self, name: str, pairs: list, tests: list) -> dict[str, Any]:
        init = seed_stream(self.seed, "unexpected_pathology/segmenter_init")
        return self.training.train_and_test(pairs, tests, init, seed_stream(self.seed, f"unexpected_pathology/{name}"))

    def run(self) -> dict[str, Any]:
        """Tumour cases tested, and both arms' Dice per class."""
        training = self.pairs.splits[self.train_split]
        healthy = [self.pairs.real(item) for item in training if not any(float(v) > 0 for v in item["lesion"])]
        lesioned = [item for item in training if self._has_tumour(item)]
        split_items = [self.pairs.splits[split] for split in self.test_splits]
        cases = [self.pairs.real(item) for items in split_items for item in items if self._has_tumour(item)]
        if not healthy:
            raise ValueError(f"unexpected pathology: split {self.train_split!r} has no healthy subject")
        if not cases:
            raise ValueError(f"unexpected pathology: no tumour case in splits {self.test_splits}")
        if not lesioned:
            raise ValueError(f"unexpected pathology: no tumour pattern in {self.train_split!r} to condition on")
        patterns = torch.as_tensor([list(item["lesion"]) for item in lesioned], dtype=torch.float32)
        conditions = patterns[torch.arange(self.n_synthetic_tumour) % len(patterns)]
        seeds = stream_seeds(self.seed, "unexpected_pathology/synthetic_tumour_pairs", self.n_synthetic_tumour)
        synthetic = self.pairs.synthetic(conditions, seeds, "synthetic tumour pairs")
        return {
            "test_splits": self.test_splits,
            "n_tumour_cases": len(cases),
            ARMS[0]: self._arm(ARMS[0], healthy, cases),
            ARMS[1]: self._arm(ARMS[1], healthy + synthetic, cases),
        }

    def protocol(self) -> dict[str, Any]:
        return {
            **self.pairs.protocol(),
            "segmentation_train_split": self.train_split,
            "pathology_test_splits": self.test_splits,
            "n_synthetic_tumour": self.n_synthetic_tumour,
            **self.training.protocol(),
            "seed": self.seed,
        }
