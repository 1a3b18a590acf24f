"""(image, class-index label) pairs for the segmentation studies: real ones from a split, synthetic ones sampled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from scripts.conformity import LabelRedraw
from scripts.evaluation.data import EvaluationSplits
from scripts.synthesis import ImageGenerator, LabelGenerator

__all__ = ["SegmentationPairs"]


class SegmentationPairs:
    """Pairs in the one contrast the segmenters read, real or synthetic, for any study that trains segmenters.

    Args:
        splits: the loaded splits.
        contrast_keys: contrast name -> item key of its image.
        contrast: the contrast the segmenters read (``segmentation_contrast``).
        label_generator: stage 1 (lesion condition -> label map).
        image_generator: stage 2 (label map + contrast + style -> image).
        device: where sampling runs.
        progress: show a progress bar while sampling.
        label_redraw: redraws label maps whose lesions contradict their condition, so that synthetic pairs are
            the maps the bundle delivers (``max_label_draws``); ``None`` keeps the model's first draws.
    """

    def __init__(
        self,
        splits: EvaluationSplits,
        contrast_keys: Mapping[str, str],
        contrast: str,
        label_generator: LabelGenerator,
        image_generator: ImageGenerator,
        device: str | torch.device = "cpu",
        progress: bool = True,
        label_redraw: LabelRedraw | None = None,
    ) -> None:
        if contrast not in contrast_keys:
            raise ValueError(f"segmentation_contrast={contrast!r} is not one of {list(contrast_keys)}")
        self.splits = splits
        self.contrast = contrast
        self.image_key = contrast_keys[contrast]
        self.label_generator = label_generator
        self.image_generator = image_generator
        self.device = torch.device(device)
        self.progress = progress
        self.label_redraw = label_redraw

    def real(self, item: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """(image of the segmentation contrast, argmax label) of a real item."""
        image = torch.as_tensor(item[self.image_key]).float()
        label = torch.as_tensor(item["label"]).float().argmax(0, keepdim=True)
        return {"image": image, "label": label}

    def synthetic(
        self, conditions: torch.Tensor, seeds: Sequence[int], description: str
    ) -> list[dict[str, torch.Tensor]]:
        """One synthetic pair per condition row; row ``i`` draws its label noise and style code from ``seeds[i]``."""
        from tqdm.auto import tqdm

        if len(seeds) != len(conditions):
            raise ValueError(f"{len(conditions)} conditions but {len(seeds)} seeds")
        pairs = []
        for index in tqdm(range(len(conditions)), desc=description, disable=not self.progress):
            seed = int(seeds[index])
            condition = conditions[index : index + 1]
            probabilities = self.label_generator(condition, [seed], self.device)
            if self.label_redraw is not None:
                probabilities, _ = self.label_redraw(
                    self.label_generator, condition, [seed], self.device, probabilities
                )
            style = self.image_generator.random_style([seed], self.device)
            image = self.image_generator(probabilities, self.contrast, style)
            pairs.append({"image": image[0].cpu(), "label": probabilities[0].argmax(0, keepdim=True).cpu().float()})
        return pairs

    def protocol(self) -> dict[str, Any]:
        """The settings of the pairs (and of the sampling behind the synthetic ones)."""
        return {
            "segmentation_contrast": self.contrast,
            "num_inference_steps": self.label_generator.sampler.num_inference_steps,
            "guidance_scale": self.label_generator.sampler.guidance_scale,
            "synthetic_max_label_draws": 1 if self.label_redraw is None else self.label_redraw.max_draws,
        }
