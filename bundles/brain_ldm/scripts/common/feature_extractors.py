# Generated copy of bundle_runtime/feature_extractors.py: edit the source, then run `python -m tools sync-common`.
"""Pluggable 3D feature extractors read from a local file, for perceptual losses and FID.

No pretrained 3D network is reachable offline here (MedicalNet and RadImageNet come through
torch.hub, and torchvision does not load beside this torch build), so features are optional and
come from a TorchScript file the user provides, e.g. a Med3D ResNet traced with ``torch.jit.trace``.
The file maps a (B, C, X, Y, Z) image to a feature map (B, F, ...) or a list/tuple of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["FeaturePerceptualLoss", "load_feature_extractor", "pooled_features"]


def load_feature_extractor(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """A frozen TorchScript extractor in eval mode; the error names the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature extractor {path} does not exist (a TorchScript .pt file is expected)")
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as error:  # torch raises RuntimeError / ValueError for files that are not TorchScript
        raise ValueError(f"feature extractor {path} is not a readable TorchScript file ({error})") from error
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


def _feature_list(features: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [features] if isinstance(features, torch.Tensor) else list(features)


def pooled_features(extractor: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, F) features: every output map global-average-pooled over space and concatenated."""
    with torch.no_grad():
        maps = _feature_list(extractor(images))
    return torch.cat([m.flatten(2).mean(2) if m.ndim > 2 else m for m in maps], dim=1)


class FeaturePerceptualLoss(torch.nn.Module):
    """LPIPS-style distance without learned weights: channel-normalised feature maps, squared difference.

    Args:
        extractor_path: TorchScript feature extractor (see module docstring).
        input_channels: the extractor's expected channels; single-channel images are repeated to match.
    """

    def __init__(self, extractor_path: str | os.PathLike, input_channels: int = 1) -> None:
        super().__init__()
        self.extractor = load_feature_extractor(extractor_path)
        self.input_channels = input_channels

    def _fit_channels(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == self.input_channels:
            return images
        if images.shape[1] == 1:
            return images.repeat(1, self.input_channels, *([1] * (images.ndim - 2)))
        raise ValueError(f"images have {images.shape[1]} channels, the extractor takes {self.input_channels}")

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        predicted = _feature_list(self.extractor(self._fit_channels(prediction)))
        with torch.no_grad():
            reference = _feature_list(self.extractor(self._fit_channels(target)))
        total = prediction.new_zeros(())
        for p, r in zip(predicted, reference):
            p = p / (p.norm(dim=1, keepdim=True) + 1e-10)
            r = r / (r.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (p - r).pow(2).sum(1).mean()
        return total
