"""The paper's generator and critic, the gradient penalty and the spectral-norm folding, in-process."""

from __future__ import annotations

import pytest
import torch


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_size_networks_have_the_published_shapes(bundle_scripts):
    networks = bundle_scripts.networks
    generator, critic = networks.PairGenerator(ngf=96), networks.PairCritic(ndf=96)
    # Kossen et al. 2021 (docs/references.md): G 44 M and D 39 M parameters at ngf = ndf = 96
    assert round(_parameters(generator) / 1e6) == 44 and round(_parameters(critic) / 1e6) == 39
    sizes = []
    hooks = [b.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:]))) for b in generator.blocks]
    with torch.no_grad():
        pairs = generator.eval()(torch.randn(2, 128))
    for hook in hooks:
        hook.remove()
    assert sizes == [(1536, 3, 3), (768, 6, 6), (384, 12, 12), (192, 24, 24), (96, 48, 48), (2, 96, 96)]
    assert pairs.abs().max() <= 1.0
    assert critic.eval()(pairs).shape == (2, 1)


def test_spectral_norm_wraps_every_critic_conv_but_the_last(bundle_scripts):
    networks = bundle_scripts.networks
    critic = networks.PairCritic(ndf=4, norm=None, spectral_norm=True)
    assert all(torch.nn.utils.parametrize.is_parametrized(block.conv) for block in critic.features)
    assert not torch.nn.utils.parametrize.is_parametrized(critic.score)
    assert not any(isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)) for m in critic.modules())
    plain = networks.PairGenerator(ngf=4)
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in plain.modules())


def test_folded_generator_loads_into_a_plain_generator_with_the_same_output(bundle_scripts):
    networks = bundle_scripts.networks
    torch.manual_seed(0)
    normalised = networks.PairGenerator(ngf=4, spectral_norm=True)
    normalised(torch.randn(8, 128))  # a training-mode step: power iteration and batch-norm statistics
    plain = networks.PairGenerator(ngf=4)
    plain.load_state_dict(networks.folded_state_dict(normalised))
    noise = torch.randn(3, 128)
    with torch.no_grad():
        torch.testing.assert_close(plain.eval()(noise), normalised.eval()(noise))


def test_minibatch_discrimination_compares_samples_within_the_batch(bundle_scripts):
    layer = bundle_scripts.networks.MinibatchDiscrimination(in_features=6, out_features=3, kernel_dims=2)
    identical = layer(torch.ones(4, 6))
    assert torch.allclose(identical, torch.full((4, 3), 3.0))  # exp(0) summed over the 3 other samples
    assert torch.allclose(layer(torch.ones(1, 6)), torch.zeros(1, 3))


@pytest.mark.parametrize("size", [64, [96, 64], 128])
def test_unsupported_patch_sizes_are_rejected(bundle_scripts, size):
    with pytest.raises(ValueError, match="is not supported"):
        bundle_scripts.networks.PairGenerator(ngf=4, patch_size=size)


def test_gradient_penalty_per_sample_and_batch_forms(bundle_scripts):
    gradient_penalty = bundle_scripts.gan_training.gradient_penalty
    weight = torch.full((1, 2, 4, 4), 0.1)  # a linear critic: its input gradient is `weight` everywhere

    def critic(x: torch.Tensor) -> torch.Tensor:
        return (x * weight).flatten(1).sum(1)

    real, fake = torch.randn(5, 2, 4, 4), torch.randn(5, 2, 4, 4)
    norm = weight.norm().item()  # 0.1 * sqrt(32)
    assert gradient_penalty(critic, real, fake, "per_sample").item() == pytest.approx((norm - 1) ** 2, rel=1e-5)
    # the authors' form takes the norm of the whole batch's gradient: sqrt(5) times larger here
    assert gradient_penalty(critic, real, fake, "batch").item() == pytest.approx((5**0.5 * norm - 1) ** 2, rel=1e-5)
    with pytest.raises(ValueError, match="gp_mode"):
        gradient_penalty(critic, real, fake, "global")


def test_noise_of_a_seed_does_not_depend_on_how_many_pairs_are_drawn(bundle_scripts):
    sample_latents = bundle_scripts.generation.sample_latents
    assert torch.equal(sample_latents(3, 128, seed=5), sample_latents(10, 128, seed=5)[:3])
    assert not torch.equal(sample_latents(3, 128, seed=5), sample_latents(3, 128, seed=6))
