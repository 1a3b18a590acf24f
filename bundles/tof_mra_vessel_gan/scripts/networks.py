"""Generator and critic of Kossen et al. 2021 for 2x96x96 TOF-MRA image/label patch pairs.

MONAI has no DCGAN-style generator with the paper's kernel-5 transposed convolutions (1 -> 3 -> 6 ->
... -> 96), so both networks are thin stacks of MONAI ``Convolution`` blocks. Widths, normalisation,
spectral normalisation and minibatch discrimination are constructor arguments, which is how the
three variants (DCGAN, WGAN-GP, WGAN-GP with spectral norm) differ.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.utils import normal_init
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as add_spectral_norm

__all__ = [
    "PATCH_SIZE",
    "MinibatchDiscrimination",
    "PairCritic",
    "PairGenerator",
    "check_patch_size",
    "folded_state_dict",
]

#: The only patch side the networks produce and accept: six transposed convolutions grow 1 -> 96.
PATCH_SIZE = 96
#: Side of the critic's last feature map: 96 halved five times.
_CRITIC_FINAL_SIZE = 3


def check_patch_size(patch_size: int | Sequence[int], name: str = "patch_size") -> int:
    """The patch side, or a ValueError naming ``name`` when it is not 96x96 (the networks' only size)."""
    shown = patch_size if isinstance(patch_size, (int, float)) else list(patch_size)
    sizes = [shown] * 2 if isinstance(shown, (int, float)) else shown
    if len(sizes) != 2 or any(s != PATCH_SIZE for s in sizes):
        raise ValueError(
            f"{name}={shown!r} is not supported: the generator's transposed convolutions produce "
            f"{PATCH_SIZE}x{PATCH_SIZE} patches and the critic reduces exactly that size to one score"
        )
    return PATCH_SIZE


def _with_spectral_norm(block: Convolution) -> Convolution:
    """Wrap the block's convolution (not its norm) in spectral normalisation."""
    add_spectral_norm(block.conv)
    return block


def _transposed(c_in: int, c_out: int, first: bool, last: bool, norm: str | tuple | None) -> Convolution:
    """Kernel-5 transposed convolution without bias: 1 -> 3 pixels (stride 1) first, then doubling (stride 2)."""
    geometry = {"strides": 1, "padding": 1} if first else {"strides": 2, "padding": 2, "output_padding": 1}
    if last:
        return Convolution(2, c_in, c_out, kernel_size=5, is_transposed=True, bias=False, conv_only=True, **geometry)
    return Convolution(
        2,
        c_in,
        c_out,
        kernel_size=5,
        is_transposed=True,
        bias=False,
        norm=norm,
        act="relu",
        adn_ordering="NA",
        **geometry,
    )


def _strided(c_in: int, c_out: int, norm: str | tuple | None) -> Convolution:
    """Kernel-5, stride-2 convolution halving the size, then ``norm`` and LeakyReLU 0.2 (bias only without norm)."""
    act = ("leakyrelu", {"negative_slope": 0.2})
    return Convolution(
        2, c_in, c_out, strides=2, kernel_size=5, padding=2, bias=norm is None, norm=norm, act=act, adn_ordering="NA"
    )


class PairGenerator(nn.Module):
    """Latent vector -> (image, label) patch pair in [-1, 1] (tanh).

    Six ``ConvTranspose2d`` of kernel 5 without bias grow the 1x1 input to 3, 6, 12, 24, 48 and 96
    pixels, with ``16, 8, 4, 2, 1`` times ``ngf`` channels and then ``out_channels``; every block but
    the last is followed by ``norm`` and ReLU.

    Args:
        latent_size: length of the Gaussian input vector (128 in the paper).
        ngf: width multiplier (96 in the paper).
        out_channels: 2: the image channel and the label channel.
        patch_size: must be 96; anything else is rejected with a clear error.
        norm: MONAI norm spec after each hidden transposed convolution (``"batch"``; ``None`` removes it).
        spectral_norm: wrap every transposed convolution in spectral normalisation.
        init_std: standard deviation of the DCGAN-style normal initialisation.

    ``forward`` takes ``z`` of shape (B, latent_size) or (B, latent_size, 1, 1).
    """

    def __init__(
        self,
        latent_size: int = 128,
        ngf: int = 96,
        out_channels: int = 2,
        patch_size: int | Sequence[int] = PATCH_SIZE,
        norm: str | tuple | None = "batch",
        spectral_norm: bool = False,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        check_patch_size(patch_size)
        if latent_size < 1 or ngf < 1 or out_channels < 1:
            raise ValueError(f"latent_size={latent_size}, ngf={ngf}, out_channels={out_channels} must be positive")
        self.latent_size = int(latent_size)
        widths = [latent_size] + [ngf * m for m in (16, 8, 4, 2, 1)] + [out_channels]
        last = len(widths) - 2
        blocks = [
            _transposed(c_in, c_out, i == 0, i == last, norm) for i, (c_in, c_out) in enumerate(zip(widths, widths[1:]))
        ]
        self.blocks = nn.Sequential(*blocks)
        self.output_activation = nn.Tanh()
        self.apply(lambda module: normal_init(module, std=init_std))
        if spectral_norm:  # after the initialisation, which must reach the raw weights
            for block in self.blocks:
                _with_spectral_norm(block)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            z = z[:, :, None, None]
        return self.output_activation(self.blocks(z))


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016: per sample, how close its projected features are to the rest of the batch.

    Lets a DCGAN critic see batch-level diversity, which discourages mode collapse. The sample itself
    is excluded from the sum, so a batch of one yields zeros.

    Args:
        in_features: length of the flattened input features.
        out_features: number of closeness statistics appended per sample.
        kernel_dims: dimension of each projected kernel.
    """

    def __init__(self, in_features: int, out_features: int, kernel_dims: int = 5) -> None:
        super().__init__()
        self.out_features = int(out_features)
        self.kernel_dims = int(kernel_dims)
        self.projection = nn.Parameter(torch.randn(in_features, out_features * kernel_dims) * 0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = (features.flatten(1) @ self.projection).view(-1, self.out_features, self.kernel_dims)
        l1 = (projected.unsqueeze(0) - projected.unsqueeze(1)).abs().sum(3)  # (B, B, out_features)
        return torch.exp(-l1).sum(0) - 1.0


class PairCritic(nn.Module):
    """(image, label) patch pair -> one realness score per sample, shape (B, 1) (a logit for DCGAN).

    Five ``Conv2d`` of kernel 5 and stride 2 (96 -> 3 pixels, ``1, 2, 4, 8, 16`` times ``ndf``
    channels) with LeakyReLU 0.2, then a 3x3 convolution to a 1x1 score. The first block has no norm,
    as in DCGAN. The DCGAN variant's sigmoid is left to the loss (``BCEWithLogitsLoss``), which is the
    same function computed stably.

    Args:
        in_channels: 2: image and label.
        ndf: width multiplier (96 in the paper).
        patch_size: must be 96.
        norm: MONAI norm spec of blocks 2-5: ``"instance"`` (WGAN-GP), ``"batch"`` (DCGAN) or ``None`` (SN).
        spectral_norm: wrap every convolution but the last in spectral normalisation.
        minibatch_features: if > 0, append that many minibatch-discrimination statistics to the last
            feature map before the final convolution (used by the DCGAN variant).
        minibatch_kernel_dims: kernel dimension of the minibatch discrimination.
        init_std: standard deviation of the normal initialisation.
    """

    def __init__(
        self,
        in_channels: int = 2,
        ndf: int = 96,
        patch_size: int | Sequence[int] = PATCH_SIZE,
        norm: str | tuple | None = "instance",
        spectral_norm: bool = False,
        minibatch_features: int = 0,
        minibatch_kernel_dims: int = 5,
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        check_patch_size(patch_size)
        if in_channels < 1 or ndf < 1 or minibatch_features < 0:
            raise ValueError(f"in_channels={in_channels}, ndf={ndf} must be positive, minibatch_features >= 0")
        widths = [in_channels] + [ndf * m for m in (1, 2, 4, 8, 16)]
        blocks = [
            _strided(c_in, c_out, None if i == 0 else norm) for i, (c_in, c_out) in enumerate(zip(widths, widths[1:]))
        ]
        self.features = nn.Sequential(*blocks)
        final_size = _CRITIC_FINAL_SIZE
        self.minibatch = (
            MinibatchDiscrimination(widths[-1] * final_size**2, minibatch_features, minibatch_kernel_dims)
            if minibatch_features
            else None
        )
        self.score = nn.Conv2d(widths[-1] + minibatch_features, 1, kernel_size=final_size, bias=True)
        self.apply(lambda module: normal_init(module, std=init_std))
        if spectral_norm:  # after the initialisation, which must reach the raw weights
            for block in self.features:
                _with_spectral_norm(block)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        features = self.features(pair)
        if self.minibatch is not None:
            statistics = self.minibatch(features)
            features = torch.cat([features, statistics[:, :, None, None].expand(-1, -1, *features.shape[2:])], 1)
        return self.score(features).flatten(1)


def folded_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of ``network`` with every parametrised weight (spectral norm) replaced by its value.

    The value is taken in evaluation mode (no power iteration), so the exported generator loads into
    an un-normalised ``PairGenerator`` whatever variant trained it, and gives the same outputs.
    Tensors are returned on the CPU.
    """
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            state = {key: value for key, value in network.state_dict().items() if ".parametrizations." not in key}
            for module_name, module in network.named_modules():
                if parametrize.is_parametrized(module):
                    for tensor_name in module.parametrizations:
                        key = f"{module_name}.{tensor_name}" if module_name else tensor_name
                        state[key] = getattr(module, tensor_name).detach().clone()
    finally:
        network.train(was_training)
    return {key: value.detach().cpu() for key, value in state.items()}  # GPU-trained weights load anywhere
