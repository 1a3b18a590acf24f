"""Data preparation that MONAI has no transform for: label maps that stay partitions of unity, and
one training item per (subject, contrast) pair for the image generator."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["CompleteBackgroundd", "contrast_datalist", "contrast_one_hot"]


class CompleteBackgroundd(MapTransform):
    """Set channel 0 of partial-volume maps to ``1 - sum(other channels)``.

    Padding (``ResizeWithPadOrCrop``), zero-filled borders of an affine augmentation or a resampled
    map leave voxels where no class has any weight; the background channel takes up the rest so
    every voxel sums to 1 again, as the autoencoder and the image generator saw in training.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            maps = d[key]
            foreground = maps[1:].clamp(min=0.0)
            scale = foreground.sum(0, keepdim=True).clamp(min=1.0)  # overlapping foreground is renormalised
            foreground = foreground / scale
            d[key] = torch.cat([1.0 - foreground.sum(0, keepdim=True), foreground], dim=0)
        return d


def contrast_one_hot(contrast: str, contrasts: Sequence[str]) -> list[float]:
    """The one-hot contrast code appended to the label map, in ``contrasts`` order."""
    if contrast not in contrasts:
        raise ValueError(f"contrast {contrast!r} is not one of {list(contrasts)}")
    return [1.0 if c == contrast else 0.0 for c in contrasts]


def contrast_datalist(
    items: Sequence[Mapping[str, Any]], contrast_keys: Mapping[str, str], image_key: str = "image"
) -> list[dict[str, Any]]:
    """One item per subject and contrast: ``image_key`` holds that contrast's file, ``contrast`` its code.

    Args:
        items: datalist items with a path per contrast (e.g. ``image`` for T1w, ``t2``, ``flair``).
        contrast_keys: contrast name -> item key of its file, in one-hot order (e.g. ``{"T1w": "image"}``).
        image_key: key the chosen contrast's file is written to.
    """
    names = list(contrast_keys)
    expanded = []
    for item in items:
        for name, key in contrast_keys.items():
            if key not in item:
                raise KeyError(f"datalist item {item.get('subject', item)!r} has no {key!r} path for contrast {name}")
            entry = {k: v for k, v in item.items() if k not in contrast_keys.values()}
            entry.update({image_key: item[key], "contrast": contrast_one_hot(name, names), "contrast_name": name})
            expanded.append(entry)
    return expanded
