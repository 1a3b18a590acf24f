"""The SPADE image generator, with MONAI 1.6.1's rough edges filed off, and its conditioning input.

``SPADENet`` reverses and appends to the ``channels`` list it is given (so a config value changes
under the reader's feet and a second network built from it differs), and ``decode(seg)`` without a
style code calls ``seg.get_device()``, which is -1 on CPU. ``SPADEGenerator`` copies the list,
always decodes from an explicit z, and decodes in a way the ONNX exporter can follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import SPADENet

__all__ = ["SPADEGenerator", "spade_input"]


def spade_input(labels: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """Label maps (B, C, *S) with the (B, K) one-hot contrast code broadcast as K more channels."""
    contrast = contrast.to(device=labels.device, dtype=labels.dtype).reshape(labels.shape[0], -1)
    channels = contrast.reshape(*contrast.shape, *([1] * (labels.ndim - 2))).expand(-1, -1, *labels.shape[2:])
    return torch.cat([labels, channels], dim=1)


class SPADEGenerator(SPADENet):
    """``SPADENet`` in VAE mode that leaves its arguments untouched and needs z to decode.

    Args:
        spatial_dims: number of spatial dimensions.
        in_channels: channels of the style image the encoder reads.
        out_channels: channels of the generated image.
        label_nc: channels of the conditioning map (label classes + contrast code).
        input_shape: spatial shape; every side divisible by ``2 ** len(channels)``.
        channels: encoder widths, from the input down (the decoder uses them reversed).
        z_dim: length of the style code.
        kwargs: other ``SPADENet`` arguments (``spade_intermediate_channels``, ``last_act``...).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        label_nc: int,
        input_shape: Sequence[int],
        channels: Sequence[int],
        z_dim: int,
        **kwargs: Any,
    ) -> None:
        if "is_vae" in kwargs and not kwargs.pop("is_vae"):
            raise ValueError("SPADEGenerator is the VAE-GAN variant: is_vae must be True")
        if int(z_dim) < 1:
            raise ValueError(f"z_dim={z_dim!r} must be a positive integer")
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            label_nc=label_nc,
            input_shape=list(input_shape),
            channels=list(channels),
            z_dim=int(z_dim),
            is_vae=True,
            **kwargs,
        )
        self.z_dim = int(z_dim)
        self.input_shape = list(input_shape)

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean of the style code: the deterministic z of a style image."""
        return self.encoder(x)[0]

    def decode(self, seg: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """The image for conditioning map ``seg`` (B, label_nc, *S) and style code ``z`` (B, z_dim)."""
        if z is None:
            raise ValueError("SPADEGenerator.decode needs a style code z of shape (B, z_dim)")
        decoder = self.decoder
        # SPADEDecoder.forward reshapes with view(-1, ...), after which the legacy ONNX exporter no longer
        # knows the channel count that instance_norm needs; unflatten keeps it, with the same result.
        x = decoder.fc(z).unflatten(1, (decoder.num_channels[0], *decoder.latent_spatial_shape))
        for block in decoder.blocks:
            x = decoder.upsampling(block(x, seg))
        return decoder.last_conv(x)
