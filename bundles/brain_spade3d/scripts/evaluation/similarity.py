"""Study: each held-out label map through the image generator, SSIM and MSE against the real image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from scripts.common.checks import check_choice, check_non_negative_int, check_positive_int
from scripts.evaluation.data import EvaluationSplits
from scripts.evaluation.metrics import finite_mean, similarity_metrics
from scripts.evaluation.seeds import stream_seeds
from scripts.synthesis import ImageGenerator

__all__ = ["SimilarityStudy"]

STYLES = ("image", "random")


class SimilarityStudy:
    """Label -> image similarity per contrast, on the whole volume and inside each tissue class.

    With ``style`` "random", subject ``i`` of the split gets the style code of seed ``i`` of stream
    ``"similarity/random_style"``, the same in every contrast.

    Args:
        image_generator: stage 2 (label map + contrast + style -> image).
        splits: the loaded splits.
        split: the held-out split compared (``similarity_split``).
        contrast_keys: contrast name -> item key of its real image.
        label_names: the tissue classes, in label-channel order.
        style: "image" (the style code of the real image itself) or "random" (``similarity_style``).
        kernel_size: Gaussian window of SSIM (``ssim_kernel_size``).
        seed: base of the seed streams.
        device: where generation runs.
    """

    def __init__(
        self,
        image_generator: ImageGenerator,
        splits: EvaluationSplits,
        split: str,
        contrast_keys: Mapping[str, str],
        label_names: Sequence[str],
        style: str = "image",
        kernel_size: int = 7,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.style = check_choice("similarity_style", style, STYLES)
        self.kernel_size = check_positive_int("ssim_kernel_size", kernel_size)
        self.split = splits.check("similarity_split", split)
        self.image_generator = image_generator
        self.splits = splits
        self.contrast_keys = dict(contrast_keys)
        self.label_names = list(label_names)
        self.seed = check_non_negative_int("seed", seed)
        self.device = torch.device(device)

    def _styles(self, items: Sequence[Mapping[str, Any]], key: str) -> list[torch.Tensor]:
        if self.style == "image":
            return [self.image_generator.style_of(torch.as_tensor(i[key]).float()[None].to(self.device)) for i in items]
        seeds = stream_seeds(self.seed, "similarity/random_style", len(items))
        return [self.image_generator.random_style([s], self.device) for s in seeds]

    def _contrast(self, contrast: str, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        key, results = self.contrast_keys[contrast], []
        for item, style in zip(items, self._styles(items, key)):
            labels = torch.as_tensor(item["label"]).float()[None].to(self.device)
            real = torch.as_tensor(item[key]).float()[None]
            fake = self.image_generator(labels, contrast, style).cpu()
            classes = labels[0].argmax(0).cpu()
            results.append(similarity_metrics(fake, real, classes, self.label_names, self.kernel_size))
        return {
            "n_images": len(results),
            "ssim": finite_mean([r["ssim"] for r in results]),
            "mse": finite_mean([r["mse"] for r in results]),
            "per_class": {
                name: {
                    "ssim": finite_mean([r["per_class"][name]["ssim"] for r in results]),
                    "mse": finite_mean([r["per_class"][name]["mse"] for r in results]),
                    "n_images": sum(r["per_class"][name]["voxels"] > 0 for r in results),
                }
                for name in self.label_names
            },
        }

    def run(self) -> dict[str, Any]:
        """Contrast name -> mean SSIM / MSE over the split, overall and per class."""
        items = self.splits[self.split]
        if not items:
            raise ValueError(f"similarity_split {self.split!r} is empty")
        return {contrast: self._contrast(contrast, items) for contrast in self.contrast_keys}

    def protocol(self) -> dict[str, Any]:
        return {
            "similarity_split": self.split,
            "similarity_style": self.style,
            "ssim_kernel_size": self.kernel_size,
            "seed": self.seed,
        }
