# Generated copy of bundle_runtime/split_decoding.py: edit the source, then run `python -m tools sync-common`.
"""Memory-bounded decoding of a MONAI ``AutoencoderKL`` latent with the same result as the whole decode.

A 1 mm brain (160x224x160) decoded in one piece holds several full-resolution 128-channel activations
at once (about 13 GB in fp32 on CPU). MONAI core has no exact split decode for ``AutoencoderKL``:
``monai.apps.generation.maisi``'s ``AutoencoderKlMaisi`` splits its own decoder, but it is another
function (trilinear upsampling, other parameter names), and ``sliding_window_inference`` changes the
result because GroupNorm needs statistics over the whole volume.

:class:`SplitDecoder` runs the decoder's own modules (the same weights) along one spatial axis in
slabs: every 3x3 convolution reads its slab plus a one-row halo and keeps the inner rows, which is
exact because the convolutions have stride 1 and "same" padding; every GroupNorm first accumulates
per-group sums over all slabs (in float64) and then normalises slab by slab. At most one full-size
tensor per residual block is stored (its input, overwritten by its output; the hidden activation is
recomputed instead), and a nearest-upsampling followed by a block that reduces the channel count is
never stored at all (it is recomputed per pass), since at full resolution it would be the largest
tensor of the decode. Memory is traded for compute: the split decode is slower than the whole one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.blocks.upsample import UpSample
from monai.networks.nets.autoencoderkl import AEKLResBlock

__all__ = ["DECODE_MODES", "ChannelsLastDecode", "SplitDecoder", "select_decoder"]

DECODE_MODES = ("whole", "split")
Transform = Callable[[torch.Tensor], torch.Tensor]
Bounds = list[tuple[int, int]]


class _Stored:
    """An activation held whole in memory."""

    def __init__(self, tensor: torch.Tensor, dim: int) -> None:
        self.tensor, self.dim, self.shape = tensor, dim, tuple(tensor.shape)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        return self.tensor.narrow(self.dim, start, stop - start)


class _Lazy:
    """An activation computed on demand, slab by slab, from a stored one."""

    def __init__(self, shape: tuple[int, ...], dim: int, rows: Callable[[int, int], torch.Tensor]) -> None:
        self.shape, self.dim, self.rows = shape, dim, rows


Source = _Stored | _Lazy


def _check_conv(conv: Any, where: str) -> None:
    """Slab-wise evaluation is exact only for stride-1, undilated, 'same'-padded convolutions."""
    inner = conv.conv if isinstance(conv, Convolution) else conv
    if not isinstance(inner, torch.nn.modules.conv._ConvNd) or isinstance(
        inner, torch.nn.modules.conv._ConvTransposeNd
    ):
        raise ValueError(f"split decoding: {where} is {type(inner).__name__}, not a convolution")
    if any(s != 1 for s in inner.stride) or any(d != 1 for d in inner.dilation):
        raise ValueError(f"split decoding: {where} has stride {inner.stride} / dilation {inner.dilation}; needs 1")
    if tuple(inner.padding) != tuple(k // 2 for k in inner.kernel_size) or any(k % 2 == 0 for k in inner.kernel_size):
        raise ValueError(f"split decoding: {where} is not an odd 'same'-padded convolution")
    if inner.padding_mode != "zeros":
        raise ValueError(f"split decoding: {where} pads with {inner.padding_mode!r}; needs zeros")


def _halo(conv: Any) -> int:
    inner = conv.conv if isinstance(conv, Convolution) else conv
    return int(inner.kernel_size[0]) // 2


def _check_decoder(autoencoder: torch.nn.Module) -> list[torch.nn.Module]:
    """The decoder blocks, after checking each is one the slab evaluation reproduces exactly."""
    decoder = getattr(autoencoder, "decoder", None)
    if not hasattr(autoencoder, "post_quant_conv") or not hasattr(decoder, "blocks"):
        raise ValueError(f"split decoding needs a MONAI AutoencoderKL; got {type(autoencoder).__name__}")
    blocks = list(decoder.blocks)
    for index, block in enumerate(blocks):
        where = f"decoder block {index} ({type(block).__name__})"
        if isinstance(block, AEKLResBlock):
            for name in ("conv1", "conv2"):
                _check_conv(getattr(block, name), f"{where}.{name}")
            if not isinstance(block.nin_shortcut, torch.nn.Identity):
                _check_conv(block.nin_shortcut, f"{where}.nin_shortcut")
        elif isinstance(block, UpSample):
            upsample = getattr(block, "upsample_non_trainable", None)
            factors = getattr(upsample, "scale_factor", None)
            if upsample is None or upsample.mode != "nearest" or any(float(f) != 2.0 for f in factors):
                raise ValueError(f"split decoding supports only nearest x2 upsampling; {where} is not")
            _check_conv(block.postconv, f"{where}.postconv")
        elif isinstance(block, Convolution):
            _check_conv(block, where)
        elif not isinstance(block, torch.nn.GroupNorm):
            raise ValueError(f"split decoding does not support {where}: use decode_mode 'whole'")
    return blocks


class SplitDecoder(torch.nn.Module):
    """``autoencoder.decode_stage_2_outputs`` computed in slabs along one spatial axis (exact, less memory).

    Args:
        autoencoder: a MONAI ``AutoencoderKL`` without decoder attention and with nearest upsampling
            (the brain LDM's demo and published architectures); other blocks raise ``ValueError``.
        num_splits: slabs at full resolution; lower resolutions use slabs of about the same voxel count.
        axis: spatial axis (0-based) to split; ``None`` picks the longest axis of the latent.
    """

    def __init__(self, autoencoder: torch.nn.Module, num_splits: int = 16, axis: int | None = None) -> None:
        super().__init__()
        if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1:
            raise ValueError(f"decode_splits={num_splits!r} must be a positive integer")
        self.blocks = _check_decoder(autoencoder)
        self.autoencoder = autoencoder
        self.num_splits = num_splits
        self.axis = axis
        self.upsamplings = sum(isinstance(block, UpSample) for block in self.blocks)

    def _bounds(self, shape: tuple[int, ...], dim: int, output_voxels: int) -> Iterator[tuple[int, int]]:
        """Slabs along ``dim`` holding about ``output_voxels / num_splits`` voxels each."""
        length = shape[dim]
        row_voxels = math.prod(shape[2:]) // length
        rows = min(length, max(1, math.ceil(output_voxels / self.num_splits / row_voxels)))
        for start in range(0, length, rows):
            yield start, min(start + rows, length)

    @staticmethod
    def _conv_rows(conv: Any, source: Source, start: int, stop: int, transform: Transform | None = None):
        """Rows [start, stop) of ``conv(transform(source))``, from the slab plus its halo."""
        halo, length = _halo(conv), source.shape[source.dim]
        low, high = max(start - halo, 0), min(stop + halo, length)
        inputs = source.rows(low, high)
        if transform is not None:
            inputs = transform(inputs)
        return conv(inputs).narrow(source.dim, start - low, stop - start)

    def _group_norm(self, norm: torch.nn.GroupNorm, source: Source, bounds: Bounds, silu: bool) -> Transform:
        """GroupNorm (then SiLU) of ``source`` as a per-slab transform, with statistics over all slabs."""
        batch, channels = source.shape[:2]
        groups = norm.num_groups
        total = torch.zeros(batch, groups, dtype=torch.float64)
        total_sq = torch.zeros(batch, groups, dtype=torch.float64)
        count = 0
        for start, stop in bounds:
            rows = source.rows(start, stop).reshape(batch, groups, -1)
            total += rows.sum(dim=2, dtype=torch.float64).cpu()
            total_sq += (rows * rows).sum(dim=2, dtype=torch.float64).cpu()
            count += rows.shape[2]
        mean = total / count
        variance = (total_sq / count - mean**2).clamp_min(0.0)
        inverse_std = (variance + norm.eps).rsqrt().repeat_interleave(channels // groups, dim=1)
        mean = mean.repeat_interleave(channels // groups, dim=1)
        weight = norm.weight.double().cpu() if norm.affine else torch.ones(channels, dtype=torch.float64)
        bias = norm.bias.double().cpu() if norm.affine else torch.zeros(channels, dtype=torch.float64)
        view = (batch, channels) + (1,) * (len(source.shape) - 2)
        like = norm.weight if norm.affine else None
        scale = (inverse_std * weight).reshape(view)
        shift = (bias - mean * inverse_std * weight).reshape(view)
        device = like.device if like is not None else torch.device("cpu")
        dtype = like.dtype if like is not None else torch.float32
        scale, shift = scale.to(device=device, dtype=dtype), shift.to(device=device, dtype=dtype)

        def transform(x: torch.Tensor) -> torch.Tensor:
            y = torch.addcmul(shift, x, scale)
            return F.silu(y, inplace=True) if silu else y

        return transform

    def _empty(self, source: Source, channels: int) -> torch.Tensor:
        like = self.autoencoder.post_quant_conv.conv.weight
        return torch.empty((source.shape[0], channels, *source.shape[2:]), device=like.device, dtype=like.dtype)

    def _materialize(self, source: Source, bounds: Bounds) -> _Stored:
        if isinstance(source, _Stored):
            return source
        out = self._empty(source, source.shape[1])
        for start, stop in bounds:
            out.narrow(source.dim, start, stop - start).copy_(source.rows(start, stop))
        return _Stored(out, source.dim)

    def _convolution(self, conv: Any, source: Source, bounds: Bounds, transform: Transform | None = None) -> _Stored:
        out = self._empty(source, conv.conv.out_channels)
        for start, stop in bounds:
            out.narrow(source.dim, start, stop - start).copy_(self._conv_rows(conv, source, start, stop, transform))
        return _Stored(out, source.dim)

    def _res_block(self, block: AEKLResBlock, source: Source, bounds: Bounds) -> _Stored:
        """``shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))`` holding one full-size tensor.

        With a stored input, the hidden activation is recomputed per pass (never stored) and the output
        overwrites the input; with an upsampled (lazy) input, the hidden activation is stored and the
        output overwrites it. Slab outputs are written once no later slab reads the rows they replace.
        """
        dim = source.dim
        if isinstance(block.nin_shortcut, torch.nn.Identity):
            source = self._materialize(source, bounds)
        first = self._group_norm(block.norm1, source, bounds, silu=True)
        hidden_shape = (source.shape[0], block.conv1.conv.out_channels, *source.shape[2:])
        hidden: Source = _Lazy(
            hidden_shape, dim, lambda start, stop: self._conv_rows(block.conv1, source, start, stop, first)
        )
        if isinstance(source, _Lazy):
            hidden = self._materialize(hidden, bounds)
        second = self._group_norm(block.norm2, hidden, bounds, silu=True)
        if isinstance(hidden, _Stored):
            target, reach = hidden.tensor, _halo(block.conv2)
        elif isinstance(block.nin_shortcut, torch.nn.Identity):
            target, reach = source.tensor, _halo(block.conv2) + _halo(block.conv1)
        else:
            target, reach = self._empty(source, block.conv2.conv.out_channels), 0
        pending: list[tuple[int, int, torch.Tensor]] = []
        for start, stop in bounds + [(-1, -1)]:  # the sentinel flushes what is left
            read_from = max(start - reach, 0) if start >= 0 else math.inf
            while pending and pending[0][1] <= read_from:  # no later slab reads these rows any more
                done_start, done_stop, value = pending.pop(0)
                target.narrow(dim, done_start, done_stop - done_start).copy_(value)
            if start >= 0:
                value = self._conv_rows(block.conv2, hidden, start, stop, second)
                pending.append((start, stop, value.add_(block.nin_shortcut(source.rows(start, stop)))))
        return _Stored(target, dim)

    def _upsample(self, block: UpSample, source: _Stored) -> _Lazy:
        """Nearest x2 then the post-convolution, as rows computed on demand from the stored input."""
        dim, length = source.dim, source.shape[source.dim]
        shape = (source.shape[0], block.postconv.conv.out_channels, *(2 * s for s in source.shape[2:]))
        halo = _halo(block.postconv)

        def rows(start: int, stop: int) -> torch.Tensor:
            low, high = max(start - halo, 0), min(stop + halo, 2 * length)
            first_input, last_input = low // 2, (high + 1) // 2
            upsampled = block.upsample_non_trainable(source.rows(first_input, last_input))
            upsampled = upsampled.narrow(dim, low - 2 * first_input, high - low)
            return block.postconv(upsampled).narrow(dim, start - low, stop - start)

        return _Lazy(shape, dim, rows)

    @torch.no_grad()
    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """The decoded image (B, C, *S) for a latent (B, C_latent, *S_latent), as ``decode_stage_2_outputs``."""
        spatial = latent.shape[2:]
        axis = self.axis if self.axis is not None else max(range(len(spatial)), key=lambda a: spatial[a])
        if not 0 <= axis < len(spatial):
            raise ValueError(f"split decoding axis={axis} is not a spatial axis of a {len(spatial)}-D latent")
        dim = 2 + axis
        output_voxels = math.prod(spatial) * 2 ** (self.upsamplings * len(spatial))
        source: Source = _Stored(self.autoencoder.post_quant_conv(latent), dim)
        pending_norm: Transform | None = None
        for block in self.blocks:
            bounds = list(self._bounds(source.shape, dim, output_voxels))
            if isinstance(block, torch.nn.GroupNorm):
                pending_norm = self._group_norm(block, source, bounds, silu=False)
                continue
            if pending_norm is not None and not isinstance(block, Convolution):
                raise ValueError(f"split decoding: a GroupNorm must be followed by a convolution, not {block}")
            if isinstance(block, AEKLResBlock):
                source = self._res_block(block, source, bounds)
            elif isinstance(block, UpSample):
                source = self._upsample(block, self._materialize(source, bounds))
            else:
                source = self._convolution(block, source, bounds, pending_norm)
                pending_norm = None
        if pending_norm is not None:
            raise ValueError("split decoding: the decoder ends in a GroupNorm without a convolution after it")
        return self._materialize(source, list(self._bounds(source.shape, dim, output_voxels))).tensor


class ChannelsLastDecode:
    """A decode run in the channels-last memory format (oneDNN's faster 3-D convolutions on CPU).

    The autoencoder's weights are converted in place; the result is returned contiguous.
    """

    def __init__(self, autoencoder: torch.nn.Module, decode: Callable[[torch.Tensor], torch.Tensor]) -> None:
        autoencoder.to(memory_format=torch.channels_last_3d)
        self.decode = decode

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decode(latent.contiguous(memory_format=torch.channels_last_3d)).contiguous()


def select_decoder(
    autoencoder: torch.nn.Module,
    decode_mode: str = "whole",
    decode_splits: int = 16,
    channels_last: bool = False,
    compile_whole: bool = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The latent -> image callable for the ``inference.json`` keys ``decode_mode`` and ``decode_channels_last``.

    ``"whole"`` is ``autoencoder.decode_stage_2_outputs``; ``"split"`` the exact slab-wise
    :class:`SplitDecoder` with ``decode_splits`` slabs at full resolution. ``channels_last`` runs a
    3-D whole decode in the channels-last memory format. ``compile_whole`` (``compile_networks``) wraps a
    whole decode in ``torch.compile``; the split decode's slab loop stays eager, since tracing it would
    unroll every slab into one graph.
    """
    if decode_mode not in DECODE_MODES:
        raise ValueError(f"decode_mode={decode_mode!r} must be one of {DECODE_MODES}")
    if decode_mode == "split":
        if channels_last:
            raise ValueError("decode_channels_last applies to decode_mode 'whole' only")
        return SplitDecoder(autoencoder, decode_splits)
    decode = autoencoder.decode_stage_2_outputs
    if channels_last:
        decode = ChannelsLastDecode(autoencoder, decode)
    return torch.compile(decode) if compile_whole else decode
