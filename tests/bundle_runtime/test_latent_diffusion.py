"""Latent PrepareBatch, DDIM conditional sampler, scale factor and latent statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.networks.nets import AutoencoderKL
from monai.networks.schedulers import DDIMScheduler

from bundle_runtime.latent_diffusion import (
    ConditionalLatentSampler,
    EncodePosteriord,
    LatentDiffusionPrepareBatch,
    RandPosteriorFlipd,
    compute_scale_factor,
    condition_inputs,
    read_scale_factor,
    write_latent_stats,
)


@pytest.fixture(scope="module")
def autoencoder() -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        spatial_dims=3, in_channels=1, out_channels=1, channels=(4, 4), latent_channels=3, num_res_blocks=1,
        norm_num_groups=4, attention_levels=(False, False), with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
    ).eval()  # fmt: skip


def test_condition_enters_as_channels_and_context() -> None:
    latent, condition = torch.zeros(2, 3, 4, 5, 6), torch.tensor([[0.1, 0.2, 0.3, 0.4], [1.0, 0.0, 0.5, 0.5]])
    x, kwargs = condition_inputs(latent, condition)
    assert x.shape == (2, 7, 4, 5, 6)
    torch.testing.assert_close(x[1, 3:, 2, 3, 4], condition[1])
    assert kwargs["context"].shape == (2, 1, 4)
    x_only, kwargs_only = condition_inputs(latent, condition, concat=False)
    assert x_only.shape == latent.shape and "context" in kwargs_only
    assert condition_inputs(latent, None) == (latent, {})


def test_stored_posteriors_give_the_same_training_batch_as_encoding(autoencoder: AutoencoderKL) -> None:
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    images = torch.rand(2, 1, 8, 8, 8)
    encode = EncodePosteriord(autoencoder, image_key="image")
    items = [encode({"image": image}) for image in images]
    assert items[0]["posterior"].shape == (2, 3, 4, 4, 4)
    posterior = torch.stack([item["posterior"] for item in items])
    condition = torch.rand(2, 4)
    prepare = LatentDiffusionPrepareBatch(autoencoder, scheduler, scale_factor=0.5)
    torch.manual_seed(5)
    encoded = prepare({"image": images, "condition": condition})
    torch.manual_seed(5)
    stored = prepare({"image": images * 0, "posterior": posterior, "condition": condition})  # images unused
    torch.testing.assert_close(stored[0], encoded[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(stored[1], encoded[1], rtol=0, atol=0)
    assert torch.equal(stored[3]["timesteps"], encoded[3]["timesteps"])
    torch.manual_seed(5)
    factor_stored = compute_scale_factor(autoencoder, [{"posterior": posterior}])
    torch.manual_seed(5)
    assert compute_scale_factor(autoencoder, [{"image": images}]) == pytest.approx(factor_stored, rel=1e-5)


def test_cache_dataset_encodes_each_image_once(autoencoder: AutoencoderKL) -> None:
    from monai.data import CacheDataset, DataLoader
    from monai.transforms import Compose

    calls = []
    hook = autoencoder.encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        data = [{"image": torch.rand(1, 8, 8, 8)} for _ in range(3)]
        dataset = CacheDataset(data, Compose([EncodePosteriord(autoencoder)]), progress=False)
        for _epoch in range(2):
            for batch in DataLoader(dataset, batch_size=2):
                assert batch["posterior"].shape[1:] == (2, 3, 4, 4, 4)
    finally:
        hook.remove()
    assert calls == [1, 1, 1]


def test_encode_posterior_names_a_missing_image(autoencoder: AutoencoderKL) -> None:
    with pytest.raises(KeyError, match="'image'"):
        EncodePosteriord(autoencoder)({"label": torch.rand(1, 8, 8, 8)})


def test_flip_axis_stores_the_mirror_images_posterior(autoencoder: AutoencoderKL) -> None:
    image = torch.rand(1, 8, 8, 8)
    item = EncodePosteriord(autoencoder, flip_axis=0)({"image": image})
    mirrored = EncodePosteriord(autoencoder)({"image": image.flip(1)})["posterior"]
    torch.testing.assert_close(item["posterior_flipped"], mirrored, rtol=0, atol=0)
    assert not torch.allclose(item["posterior"], mirrored, atol=1e-3)  # a random image is not symmetric
    with pytest.raises(ValueError, match="flip_axis=3"):
        EncodePosteriord(autoencoder, flip_axis=3)({"image": image})


def test_rand_posterior_flip_picks_the_mirror_with_its_probability(autoencoder: AutoencoderKL) -> None:
    item = EncodePosteriord(autoencoder, flip_axis=0)({"image": torch.rand(1, 8, 8, 8)})
    flipped = RandPosteriorFlipd(prob=1.0)(item)
    kept = RandPosteriorFlipd(prob=0.0)(item)
    assert "posterior_flipped" not in flipped and "posterior_flipped" not in kept  # batches collate one key
    assert torch.equal(flipped["posterior"], item["posterior_flipped"])
    assert torch.equal(kept["posterior"], item["posterior"])
    assert "posterior_flipped" in item  # the cached item is not changed
    half = RandPosteriorFlipd(prob=0.5)
    half.set_random_state(seed=0)
    picks = [torch.equal(half(item)["posterior"], item["posterior_flipped"]) for _ in range(200)]
    assert 70 < sum(picks) < 130
    with pytest.raises(KeyError, match="posterior_flipped"):
        RandPosteriorFlipd()({"posterior": item["posterior"]})


def test_prepare_batch_noises_the_scaled_latent(autoencoder: AutoencoderKL) -> None:
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    batch = {"image": torch.rand(2, 1, 8, 8, 8), "condition": torch.rand(2, 4)}
    torch.manual_seed(3)  # the KL encoder samples its latent: the same seed gives the same draw below
    x, target, args, kwargs = LatentDiffusionPrepareBatch(autoencoder, scheduler, scale_factor=0.5)(batch)
    assert x.shape == (2, 7, 4, 4, 4) and target.shape == (2, 3, 4, 4, 4) and args == ()
    assert kwargs["timesteps"].shape == (2,) and kwargs["context"].shape == (2, 1, 4)
    torch.testing.assert_close(kwargs["context"][:, 0], batch["condition"])
    # the noisy latent is the forward process applied to the encoded latent times the scale factor
    torch.manual_seed(3)
    with torch.no_grad():
        latent = autoencoder.eval().encode_stage_2_inputs(batch["image"])
    alpha_bar = scheduler.alphas_cumprod[kwargs["timesteps"]].reshape(2, 1, 1, 1, 1)
    expected = alpha_bar.sqrt() * (0.5 * latent) + (1 - alpha_bar).sqrt() * target
    torch.testing.assert_close(x[:, :3], expected)
    # the condition fills the extra channels, and the frozen autoencoder builds no graph
    torch.testing.assert_close(x[:, 3:], batch["condition"][:, :, None, None, None].expand(-1, -1, 4, 4, 4))
    assert not x.requires_grad


def test_condition_dropout_uses_the_null_value(autoencoder: AutoencoderKL) -> None:
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    batch = {"image": torch.rand(3, 1, 8, 8, 8), "condition": torch.rand(3, 4)}
    prepare = LatentDiffusionPrepareBatch(autoencoder, scheduler, condition_dropout_prob=1.0, null_condition_value=-1)
    _, _, _, kwargs = prepare(batch)
    assert bool((kwargs["context"] == -1).all())
    with pytest.raises(ValueError, match="condition_dropout_prob"):
        LatentDiffusionPrepareBatch(autoencoder, scheduler, condition_dropout_prob=1.5)


def test_sampler_is_deterministic_and_guides() -> None:
    calls = []

    def diffusion(x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        calls.append(float(context.flatten()[0]))
        return 0.1 * x[:, :3] + context.mean()

    scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", clip_sample=False)
    sampler = ConditionalLatentSampler(scheduler, 4, (3, 2, 2, 2), scale_factor=2.0, progress=False)
    condition = torch.tensor([[0.2, 0.4, 0.6, 0.8]])
    first, second = (
        sampler(diffusion, lambda z: z, condition, sampler.initial_noise(1, torch.Generator().manual_seed(3), "cpu"))
        for _ in range(2)
    )
    torch.testing.assert_close(first, second)
    assert len(calls) == 8
    guided = ConditionalLatentSampler(scheduler, 4, (3, 2, 2, 2), guidance_scale=3.0, progress=False)
    calls.clear()
    guided(diffusion, lambda z: z, condition, torch.zeros(1, 3, 2, 2, 2))
    assert calls.count(-1.0) == 4 and len(calls) == 8  # one unconditional call per step


def test_stochastic_ddim_is_reproducible_per_seed() -> None:
    def diffusion(x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return 0.1 * x[:, :3]

    scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", clip_sample=False)
    condition = torch.tensor([[0.2, 0.4, 0.6, 0.8]])
    stochastic = ConditionalLatentSampler(scheduler, 4, (3, 2, 2, 2), progress=False, eta=1.0)
    deterministic = ConditionalLatentSampler(scheduler, 4, (3, 2, 2, 2), progress=False)

    def noise(seed: int) -> torch.Tensor:
        return stochastic.initial_noise(1, torch.Generator().manual_seed(seed), "cpu")

    run = [stochastic.sample_latent(diffusion, condition, noise(s)) for s in (3, 3, 4)]
    torch.testing.assert_close(run[0], run[1])
    assert not torch.allclose(run[0], run[2])
    assert not torch.allclose(run[0], deterministic.sample_latent(diffusion, condition, noise(3)))


@pytest.mark.parametrize("eta", [-0.1, 1.5])
def test_eta_outside_unit_interval_is_refused(eta: float) -> None:
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    with pytest.raises(ValueError, match=f"eta={eta}"):
        ConditionalLatentSampler(scheduler, 4, (3, 2, 2, 2), eta=eta)


def test_eta_needs_a_ddim_scheduler() -> None:
    from monai.networks.schedulers import DDPMScheduler

    with pytest.raises(ValueError, match="needs a DDIM scheduler"):
        ConditionalLatentSampler(DDPMScheduler(num_train_timesteps=1000), 4, (3, 2, 2, 2), eta=0.5)


def test_scale_factor_is_one_over_latent_std(autoencoder: AutoencoderKL) -> None:
    batches = [{"image": torch.rand(2, 1, 8, 8, 8)} for _ in range(3)]
    torch.manual_seed(1)  # encode_stage_2_inputs samples the posterior
    with torch.no_grad():
        latents = torch.cat([autoencoder.encode_stage_2_inputs(b["image"]) for b in batches[:2]])
    torch.manual_seed(1)
    factor = compute_scale_factor(autoencoder, batches, max_batches=2)
    assert factor == pytest.approx(1 / latents.double().std(unbiased=False).item(), rel=1e-5)


def test_latent_stats_round_trip_and_errors(tmp_path: Path) -> None:
    path = write_latent_stats(tmp_path / "models" / "latent_stats.json", 0.8, autoencoder="autoencoder.pt")
    assert read_scale_factor(path) == 0.8 and json.loads(path.read_text())["autoencoder"] == "autoencoder.pt"
    with pytest.raises(FileNotFoundError, match="latent stats file .* not found"):
        read_scale_factor(tmp_path / "missing.json")
    path.write_text('{"scale_factor": -1}')
    with pytest.raises(ValueError, match="must be a positive finite number"):
        read_scale_factor(path)


def test_batched_guidance_is_one_call_per_step_with_the_same_latent() -> None:
    calls = []

    def diffusion(x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        per_item = context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1, 1)
        return 0.1 * x[:, :3] * per_item + per_item + 0.001 * timesteps.reshape(-1, 1, 1, 1, 1)

    scheduler = DDIMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", clip_sample=False)
    condition = torch.tensor([[0.2, 0.4, 0.6, 0.8], [0.9, 0.1, 0.5, 0.3]])
    noise = torch.randn(2, 3, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    latents = {}
    for batched in (False, True):
        sampler = ConditionalLatentSampler(
            scheduler, 4, (3, 2, 2, 2), guidance_scale=3.0, progress=False, batch_guidance=batched
        )
        calls.clear()
        latents[batched] = sampler.sample_latent(diffusion, condition, noise)
        assert calls == ([4] * 4 if batched else [2] * 8)
    torch.testing.assert_close(latents[True], latents[False], rtol=0, atol=1e-6)
    assert latents[True].abs().max() > 0
    with pytest.raises(ValueError, match=r"batch_guidance='false' must be true or false"):
        ConditionalLatentSampler(scheduler, 4, (3, 2, 2, 2), batch_guidance="false")  # a CLI string, refused
