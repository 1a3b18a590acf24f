"""The numbers the studies report: SSIM / MSE per tissue class, Dice per class, and their means."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["describe_loss", "dice_per_class", "finite_mean", "similarity_metrics"]


def finite_mean(values: Sequence[float | None]) -> float | None:
    """Mean of the finite values; None when there is none (a class absent from every image)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def describe_loss(loss: torch.nn.Module) -> dict[str, Any]:
    """Name and class weights of a segmenter loss, for the report's protocol.

    MONAI keeps the weights as ``class_weight`` (DiceLoss, FocalLoss, the Dice half of DiceCELoss) and
    torch as ``weight`` (CrossEntropyLoss), so both are looked for in the loss and its parts.
    """
    for part in loss.modules():
        for attribute in ("class_weight", "weight"):
            weight = getattr(part, attribute, None)
            if isinstance(weight, torch.Tensor):
                return {"name": type(loss).__name__, "class_weights": weight.detach().cpu().flatten().tolist()}
    return {"name": type(loss).__name__, "class_weights": None}


def similarity_metrics(
    fake: torch.Tensor,
    real: torch.Tensor,
    classes: torch.Tensor,
    class_names: Sequence[str],
    kernel_size: int = 7,
    kernel_sigma: float = 1.5,
) -> dict[str, Any]:
    """SSIM and MSE of one (1, 1, *S) image pair, on the whole volume and per class of the (*S) class map.

    SSIM uses a Gaussian window without padding, so its map is smaller than the volume by
    ``kernel_size - 1``; the class masks are cropped to match. A class absent from the map gets None.
    """
    from monai.metrics.regression import compute_ssim_and_cs

    if any(side <= kernel_size for side in real.shape[2:]):
        raise ValueError(f"ssim kernel_size={kernel_size} must be smaller than every side of {tuple(real.shape[2:])}")
    spatial_dims = real.ndim - 2
    ssim_map, _ = compute_ssim_and_cs(
        fake.float(), real.float(), spatial_dims, [kernel_size] * spatial_dims, [kernel_sigma] * spatial_dims, 1.0
    )
    ssim_map = ssim_map[0, 0]
    error = (fake.float() - real.float())[0, 0] ** 2
    border = (kernel_size - 1) // 2
    inner = tuple(slice(border, border + size) for size in ssim_map.shape)
    per_class = {}
    for index, name in enumerate(class_names):
        mask = classes == index
        if not bool(mask.any()):
            per_class[name] = {"ssim": None, "mse": None, "voxels": 0}
            continue
        inner_mask = mask[inner]
        ssim = float(ssim_map[inner_mask].mean()) if bool(inner_mask.any()) else None
        per_class[name] = {"ssim": ssim, "mse": float(error[mask].mean()), "voxels": int(mask.sum())}
    return {"ssim": float(ssim_map.mean()), "mse": float(error.mean()), "per_class": per_class}


@torch.no_grad()
def dice_per_class(
    network: torch.nn.Module,
    pairs: Sequence[Mapping[str, torch.Tensor]],
    class_names: Sequence[str],
    device: str | torch.device,
) -> dict[str, float | None]:
    """Dice of each foreground class over ``pairs``; None for a class absent from every reference label."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    # not_nans counts the items where a class is in the reference: 0 means its Dice is undefined
    # (MONAI's aggregate would report 0.0 for such a class, as if it had been missed)
    metric = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True, get_not_nans=True)
    network = network.to(device).eval()
    for pair in pairs:
        logits = network(pair["image"][None].to(device))
        prediction = one_hot(logits.argmax(1, keepdim=True), len(class_names))
        reference = one_hot(pair["label"][None].long().to(device), len(class_names))
        metric(y_pred=prediction, y=reference)
    values, counts = (t.cpu().tolist() for t in metric.aggregate())
    return {name: (float(v) if n > 0 else None) for name, v, n in zip(class_names[1:], values, counts)}
