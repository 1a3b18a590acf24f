"""SplitDecoder equals AutoencoderKL's whole decode on random weights, and really decodes in slabs."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import AutoencoderKL

from bundle_runtime.split_decoding import SplitDecoder, select_decoder

# The brain LDM demo autoencoder and the published (ukb) one, at reduced width: the same block types.
ARCHITECTURES = {
    "demo": {"channels": [8, 16, 16], "num_res_blocks": 1, "norm_num_groups": 4},
    "ukb": {"channels": [8, 16, 16, 16], "num_res_blocks": 2, "norm_num_groups": 4},
}


def autoencoder(name: str, seed: int = 0, **extra) -> AutoencoderKL:
    torch.manual_seed(seed)
    levels = len(ARCHITECTURES[name]["channels"])
    network = AutoencoderKL(
        spatial_dims=3,
        in_channels=1,
        out_channels=1,
        **{
            "latent_channels": 3,
            "attention_levels": [False] * levels,
            "with_encoder_nonlocal_attn": False,
            "with_decoder_nonlocal_attn": False,
            "norm_eps": 1e-6,
            **ARCHITECTURES[name],
            **extra,
        },
    )
    with torch.no_grad():  # GroupNorm starts at weight 1, bias 0: perturb it so the affine part is tested too
        for parameter in network.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return network.eval()


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize(("num_splits", "axis"), [(1, None), (3, None), (8, 0), (64, 2)])
def test_split_decode_equals_the_whole_decode(name: str, num_splits: int, axis):
    network = autoencoder(name)
    latent = torch.randn(2, 3, 3, 5, 4, generator=torch.Generator().manual_seed(1)) + 0.5
    with torch.no_grad():
        whole = network.decode_stage_2_outputs(latent)
    split = SplitDecoder(network, num_splits, axis=axis)(latent)
    assert split.shape == whole.shape
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-4)


def test_the_decode_really_runs_in_slabs():
    """The last convolution sees many thin slabs, not the whole volume (the memory saving)."""
    network = autoencoder("ukb")
    seen: list[tuple[int, ...]] = []
    network.decoder.blocks[-1].register_forward_hook(lambda module, args, out: seen.append(tuple(out.shape)))
    SplitDecoder(network, 8)(torch.randn(1, 3, 3, 5, 4))
    assert len(seen) >= 8 and max(shape[3] for shape in seen) < 40 // 4


def test_whole_mode_is_the_autoencoders_own_decode():
    network = autoencoder("demo")
    assert select_decoder(network, "whole") == network.decode_stage_2_outputs
    assert isinstance(select_decoder(network, "split", 4), SplitDecoder)


def test_compile_wraps_the_whole_decode_and_leaves_the_slab_loop_eager():
    network = autoencoder("demo")
    compiled = select_decoder(network, "whole", compile_whole=True)
    assert compiled != network.decode_stage_2_outputs
    assert getattr(compiled, "_torchdynamo_orig_callable", None) is not None  # what torch.compile returns
    assert isinstance(select_decoder(network, "split", 4, compile_whole=True), SplitDecoder)


def test_unsupported_decoders_and_bad_arguments_are_named():
    with pytest.raises(ValueError, match="decoder block .*SpatialAttentionBlock.*decode_mode 'whole'"):
        SplitDecoder(autoencoder("demo", with_decoder_nonlocal_attn=True))
    with pytest.raises(ValueError, match="nearest x2"):
        SplitDecoder(autoencoder("demo", use_convtranspose=True))
    with pytest.raises(ValueError, match="decode_splits=0"):
        SplitDecoder(autoencoder("demo"), 0)
    with pytest.raises(ValueError, match="decode_mode='tiles'"):
        select_decoder(autoencoder("demo"), "tiles")
    with pytest.raises(ValueError, match="needs a MONAI AutoencoderKL"):
        SplitDecoder(torch.nn.Linear(2, 2))


def test_channels_last_decode_equals_the_whole_decode_within_the_lever_tolerance():
    network = autoencoder("ukb")
    latent = torch.randn(1, 3, 3, 5, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = network.decode_stage_2_outputs(latent)
        channels_last = select_decoder(network, "whole", channels_last=True)(latent)
    assert network.decoder.blocks[0].conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(channels_last, whole, rtol=0, atol=1e-3)
    with pytest.raises(ValueError, match="decode_channels_last applies to decode_mode 'whole'"):
        select_decoder(network, "split", channels_last=True)
