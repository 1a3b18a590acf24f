# Generated copy of bundle_runtime/latent_diffusion.py: edit the source, then run `python -m tools sync-common`.
"""Conditioned latent diffusion pieces that MONAI core lacks: a latent PrepareBatch and a DDIM sampler.

The condition vector enters the UNet twice, as in the brain latent diffusion model: broadcast over
space as extra input channels concatenated to the noisy latent, and as a one-token cross-attention
context of shape (B, 1, C). Either route can be switched off, so other bundles (e.g. a label-map
LDM conditioned on lesion volumes) reuse the same code.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.engines.utils import PrepareBatch, default_prepare_batch
from monai.networks.schedulers import Scheduler
from monai.transforms import RandomizableTransform, Transform

from .atomic_io import write_json
from .checks import check_flag
from .seeding import seeded_generator

__all__ = [
    "ConditionalLatentSampler",
    "EncodePosteriord",
    "SamplePreviewHandler",
    "LatentDiffusionPrepareBatch",
    "compute_scale_factor",
    "condition_inputs",
    "read_scale_factor",
    "sample_posterior",
    "write_latent_stats",
]


def condition_inputs(
    latent: torch.Tensor, condition: torch.Tensor | None, concat: bool = True, cross_attention: bool = True
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """UNet input and keyword arguments for a noisy ``latent`` (B, C, *S) and a ``condition`` (B, K).

    Shared by training and sampling, so the two cannot disagree on how the condition is fed.
    """
    kwargs: dict[str, torch.Tensor] = {}
    if condition is None:
        return latent, kwargs
    condition = condition.to(device=latent.device, dtype=latent.dtype).reshape(latent.shape[0], -1)
    if concat:
        spatial_ones = (1,) * (latent.ndim - 2)
        channels = condition.reshape(*condition.shape, *spatial_ones).expand(-1, -1, *latent.shape[2:])
        latent = torch.cat([latent, channels], dim=1)
    if cross_attention:
        kwargs["context"] = condition.unsqueeze(1)
    return latent, kwargs


def sample_posterior(posterior: torch.Tensor) -> torch.Tensor:
    """A latent drawn from a (B, 2, C, *S) stack of posterior means and standard deviations.

    The same draw as ``AutoencoderKL.encode_stage_2_inputs`` (mean + std * N(0, 1)), without the encoder.
    """
    return posterior[:, 0] + posterior[:, 1] * torch.randn_like(posterior[:, 1])


class EncodePosteriord(Transform):
    """Stores each image's posterior under the frozen encoder, so a cached dataset encodes every image once.

    MONAI has no transform that runs a network. The diffusion training otherwise re-encodes each batch
    (about 40 % of an iteration for the demo brain model on CPU); this keeps the mean and standard deviation
    as a (2, C, *S) tensor under ``posterior_key`` and the PrepareBatch draws a fresh latent from them, which
    is the same distribution. It is a MONAI ``Transform`` and deterministic, so ``CacheDataset`` caches its result when it
    follows every random transform. A random flip would sit before it and defeat the cache, so ``flip_axis``
    (a spatial axis, as ``RandFlipd``'s) also stores the flipped image's posterior under
    ``posterior_key + "_flipped"``, for :class:`RandPosteriorFlipd` to pick after the cache.
    """

    def __init__(
        self,
        autoencoder: torch.nn.Module,
        image_key: str = "image",
        posterior_key: str = "posterior",
        flip_axis: int | None = None,
    ) -> None:
        self.autoencoder = autoencoder
        self.image_key = image_key
        self.posterior_key = posterior_key
        self.flip_axis = flip_axis

    def _posterior(self, image: torch.Tensor) -> torch.Tensor:
        mean, std = self.autoencoder.encode(image.unsqueeze(0))
        return torch.stack([mean[0], std[0]]).cpu()

    @torch.no_grad()
    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        item = dict(data)
        if self.image_key not in item:
            raise KeyError(f"EncodePosteriord: the item has no {self.image_key!r} (keys: {sorted(item)})")
        self.autoencoder.eval()
        device = next(self.autoencoder.parameters()).device
        image = torch.as_tensor(item[self.image_key]).to(device=device, dtype=torch.float32)
        item[self.posterior_key] = self._posterior(image)
        if self.flip_axis is not None:
            if not 0 <= self.flip_axis < image.ndim - 1:
                raise ValueError(
                    f"EncodePosteriord: flip_axis={self.flip_axis!r} is not a spatial axis of {self.image_key!r}"
                )
            item[self.posterior_key + "_flipped"] = self._posterior(image.flip(self.flip_axis + 1))
        return item


class RandPosteriorFlipd(RandomizableTransform):
    """With probability ``prob``, the item's posterior becomes that of its flipped image.

    MONAI's ``RandFlipd`` flips the image before encoding, which forces an encoder pass per iteration; picking a
    posterior stored by :class:`EncodePosteriord` (``flip_axis``) gives the same augmentation from the cache.
    The flipped copy is removed either way, so every item of a batch has the same keys.
    """

    def __init__(self, prob: float = 0.5, posterior_key: str = "posterior") -> None:
        RandomizableTransform.__init__(self, prob)
        self.posterior_key = posterior_key

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        item = dict(data)
        flipped_key = self.posterior_key + "_flipped"
        if flipped_key not in item:
            raise KeyError(
                f"RandPosteriorFlipd: the item has no {flipped_key!r}; EncodePosteriord needs flip_axis (keys: {sorted(item)})"
            )
        self.randomize(None)
        flipped = item.pop(flipped_key)
        if self._do_transform:
            item[self.posterior_key] = flipped
        return item


class LatentDiffusionPrepareBatch(PrepareBatch):
    """Turns an image batch into a (noisy latent + condition, noise) pair for ``SupervisedTrainer``.

    The frozen autoencoder encodes the images; a timestep and Gaussian noise are drawn per item and
    the scheduler noises the scaled latent. The returned keyword arguments (``timesteps`` and, with
    cross-attention, ``context``) go straight to the UNet, so a plain ``SimpleInferer`` is enough.

    Args:
        autoencoder: frozen first stage with ``encode_stage_2_inputs`` (e.g. ``AutoencoderKL``).
        scheduler: noise scheduler whose ``add_noise`` defines the forward process.
        scale_factor: latent multiplier making the latent roughly unit variance.
        condition_name: batch key holding the (B, K) condition; ``None`` trains unconditionally.
        condition_dropout_prob: probability of replacing an item's condition by ``null_condition_value``
            (classifier-free guidance training); 0 disables it.
        null_condition_value: the "no condition" value; outside [0, 1] so it cannot be a real condition.
        concat_condition: feed the condition as extra input channels.
        cross_attention_condition: feed the condition as a (B, 1, K) cross-attention context.
        image_key: batch key of the images.
        posterior_key: batch key of posteriors stored by :class:`EncodePosteriord`; a batch that holds it is
            not encoded again.
    """

    def __init__(
        self,
        autoencoder: torch.nn.Module,
        scheduler: Scheduler,
        scale_factor: float = 1.0,
        condition_name: str | None = "condition",
        condition_dropout_prob: float = 0.0,
        null_condition_value: float = -1.0,
        concat_condition: bool = True,
        cross_attention_condition: bool = True,
        image_key: str = "image",
        posterior_key: str = "posterior",
    ) -> None:
        if not 0.0 <= condition_dropout_prob <= 1.0:
            raise ValueError(f"condition_dropout_prob={condition_dropout_prob!r} must be in [0, 1]")
        if not math.isfinite(float(scale_factor)) or float(scale_factor) <= 0:
            raise ValueError(f"scale_factor={scale_factor!r} must be a positive finite number")
        self.autoencoder = autoencoder
        self.scheduler = scheduler
        self.scale_factor = float(scale_factor)
        self.condition_name = condition_name
        self.condition_dropout_prob = condition_dropout_prob
        self.null_condition_value = null_condition_value
        self.concat_condition = concat_condition
        self.cross_attention_condition = cross_attention_condition
        self.image_key = image_key
        self.posterior_key = posterior_key

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled latent of ``images``; the autoencoder stays in eval mode and gets no gradient."""
        self.autoencoder.eval()
        return self.autoencoder.encode_stage_2_inputs(images) * self.scale_factor

    def drop_condition(self, condition: torch.Tensor) -> torch.Tensor:
        """Replace whole condition vectors by the null value with ``condition_dropout_prob``."""
        if self.condition_dropout_prob <= 0:
            return condition
        dropped = torch.rand(condition.shape[0], device=condition.device) < self.condition_dropout_prob
        null = torch.full_like(condition, self.null_condition_value)
        return torch.where(dropped[:, None], null, condition)

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        if isinstance(batchdata, Mapping) and self.posterior_key in batchdata:
            posterior = torch.as_tensor(batchdata[self.posterior_key])
            latent = sample_posterior(posterior.to(device=device, non_blocking=non_blocking, **kwargs))
            latent = latent * self.scale_factor
        else:
            images = (
                batchdata[self.image_key] if isinstance(batchdata, Mapping) else default_prepare_batch(batchdata)[0]
            )
            images = torch.as_tensor(images).to(device=device, non_blocking=non_blocking, **kwargs)
            latent = self.encode(images)
        noise = torch.randn_like(latent)
        timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (latent.shape[0],), device=latent.device)
        noisy = self.scheduler.add_noise(original_samples=latent, noise=noise, timesteps=timesteps)
        condition = None
        if self.condition_name is not None:
            condition = torch.as_tensor(batchdata[self.condition_name]).to(device=latent.device, dtype=latent.dtype)
            condition = self.drop_condition(condition.reshape(latent.shape[0], -1))
        network_input, network_kwargs = condition_inputs(
            noisy, condition, self.concat_condition, self.cross_attention_condition
        )
        return network_input, noise, (), {"timesteps": timesteps, **network_kwargs}


class ConditionalLatentSampler:
    """DDIM (or any MONAI scheduler) sampling of a conditioned latent, then decoding to image space.

    The UNet and the decoder are passed per call as plain callables, so an exported (TorchScript or
    ONNX Runtime) UNet or decoder drops in without changing the sampler.

    Args:
        scheduler: the inference scheduler (its ``step`` returns ``(previous sample, predicted x0)``).
        num_inference_steps: number of denoising steps.
        latent_shape: (C, *S) of one latent.
        scale_factor: the factor the UNet was trained with; latents are divided by it before decoding.
        guidance_scale: classifier-free guidance weight; 1 uses the conditional prediction only.
        null_condition_value: value of the "no condition" vector used by guidance.
        eta: DDIM stochasticity, 0 (deterministic DDIM) to 1 (DDPM-like). A briefly trained UNet can
            drift off the data manifold on the deterministic path; some step noise pulls it back.
            The step noise is seeded from the starting noise, so a seed still reproduces its sample
            (on the same device type).
        concat_condition: the UNet takes the condition as extra channels.
        cross_attention_condition: the UNet takes the condition as cross-attention context.
        progress: show a tqdm bar over the denoising steps.
        batch_guidance: with guidance, run the conditional and unconditional predictions as one UNet call
            on a doubled batch instead of two calls (same result up to float rounding).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        num_inference_steps: int,
        latent_shape: Sequence[int],
        scale_factor: float = 1.0,
        guidance_scale: float = 1.0,
        null_condition_value: float = -1.0,
        concat_condition: bool = True,
        cross_attention_condition: bool = True,
        progress: bool = True,
        eta: float = 0.0,
        batch_guidance: bool = False,
    ) -> None:
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta={eta!r} must be in [0, 1]")
        if float(eta) > 0 and "eta" not in inspect.signature(scheduler.step).parameters:
            raise ValueError(f"eta={eta!r} needs a DDIM scheduler; {type(scheduler).__name__}.step takes no eta")
        if int(num_inference_steps) < 1:
            raise ValueError(f"num_inference_steps={num_inference_steps!r} must be >= 1")
        if not math.isfinite(float(scale_factor)) or float(scale_factor) <= 0:
            raise ValueError(f"scale_factor={scale_factor!r} must be a positive finite number")
        self.scheduler = scheduler
        self.num_inference_steps = int(num_inference_steps)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.scale_factor = float(scale_factor)
        self.guidance_scale = float(guidance_scale)
        self.null_condition_value = null_condition_value
        self.concat_condition = concat_condition
        self.cross_attention_condition = cross_attention_condition
        self.progress = progress
        self.eta = float(eta)
        self.batch_guidance = check_flag("batch_guidance", batch_guidance)

    @staticmethod
    def step_generator(noise: torch.Tensor) -> torch.Generator:
        """Generator of the per-step noise, seeded from the starting noise so that seeds stay reproducible."""
        seed = int(torch.round(noise.double().abs().sum() * 1e6).item()) % (2**63 - 1)
        return torch.Generator(device=noise.device).manual_seed(seed)

    def initial_noise(self, batch_size: int, generator: torch.Generator, device: str | torch.device) -> torch.Tensor:
        """Starting latent noise, drawn on CPU so a seed gives the same brain on every device."""
        noise = torch.randn((batch_size, *self.latent_shape), generator=generator, dtype=torch.float32)
        return noise.to(device)

    def predict_noise(
        self, diffusion: Callable[..., torch.Tensor], latent: torch.Tensor, t: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """UNet prediction at one step, with classifier-free guidance when ``guidance_scale != 1``."""
        timesteps = t.reshape(1).expand(latent.shape[0]).to(latent.device)
        x, kwargs = condition_inputs(latent, condition, self.concat_condition, self.cross_attention_condition)
        if self.guidance_scale == 1.0:
            return diffusion(x, timesteps=timesteps, **kwargs)
        null = torch.full_like(condition, self.null_condition_value)
        x_null, kwargs_null = condition_inputs(latent, null, self.concat_condition, self.cross_attention_condition)
        if self.batch_guidance:
            doubled = {key: torch.cat([kwargs[key], kwargs_null[key]]) for key in kwargs}
            both = diffusion(torch.cat([x, x_null]), timesteps=timesteps.repeat(2), **doubled)
            prediction, unconditional = both.chunk(2)
        else:
            prediction = diffusion(x, timesteps=timesteps, **kwargs)
            unconditional = diffusion(x_null, timesteps=timesteps, **kwargs_null)
        return unconditional + self.guidance_scale * (prediction - unconditional)

    @torch.no_grad()
    def sample_latent(
        self,
        diffusion: Callable[..., torch.Tensor],
        condition: torch.Tensor,
        noise: torch.Tensor,
        description: str = "denoising",
        max_steps: int | None = None,
    ) -> torch.Tensor:
        """Run the reverse process from ``noise`` (B, *latent_shape) for a (B, K) ``condition``.

        ``max_steps`` stops after that many steps of the full schedule (a benchmark times the first few).
        """
        from tqdm.auto import tqdm

        self.scheduler.set_timesteps(self.num_inference_steps, device=noise.device)
        latent = noise
        condition = condition.to(device=noise.device, dtype=noise.dtype)
        steps = tqdm(self.scheduler.timesteps, desc=description, leave=False, disable=not self.progress)
        # one step-noise generator per item, seeded from that item's noise: item b of a batch follows the
        # same path as when it is sampled alone
        generators = [self.step_generator(noise[b : b + 1]) for b in range(noise.shape[0])] if self.eta > 0 else []
        for index, t in enumerate(steps):
            if max_steps is not None and index >= max_steps:
                break
            model_output = self.predict_noise(diffusion, latent, t, condition)
            if not generators:
                latent, _ = self.scheduler.step(model_output, int(t), latent)
                continue
            latent = torch.cat(
                [
                    self.scheduler.step(model_output[b : b + 1], int(t), latent[b : b + 1], eta=self.eta, generator=g)[
                        0
                    ]
                    for b, g in enumerate(generators)
                ]
            )
        return latent

    @torch.no_grad()
    def __call__(
        self,
        diffusion: Callable[..., torch.Tensor],
        decode: Callable[[torch.Tensor], torch.Tensor],
        condition: torch.Tensor,
        noise: torch.Tensor,
        description: str = "denoising",
    ) -> torch.Tensor:
        """Images (B, C_img, *S_img) generated for ``condition`` from the starting ``noise``."""
        latent = self.sample_latent(diffusion, condition, noise, description)
        return decode(latent / self.scale_factor)


class SamplePreviewHandler:
    """Every ``interval`` epochs, samples fixed seeds and conditions and writes one PNG (one row each).

    Watching the same noise denoised by successive epochs shows whether training converges and
    whether the condition changes the image. Runs on rank 0 only, on the unwrapped UNet, so no
    collective operation is issued from one rank.

    Args:
        sampler: the conditioned latent sampler.
        diffusion: the UNet being trained (DDP wrappers are unwrapped).
        decode: latent -> image callable of the frozen autoencoder.
        conditions: (N, K) conditions, one preview row each.
        output_dir: folder of ``epoch_XXXX.png``.
        interval: epochs between previews; 0 disables previews.
        seed: noise seed of row ``i`` is ``seed + i``.
        value_range: intensities shown black to white.
    """

    def __init__(
        self,
        sampler: ConditionalLatentSampler,
        diffusion: torch.nn.Module,
        decode: Callable[[torch.Tensor], torch.Tensor],
        conditions: Sequence[Sequence[float]],
        output_dir: str | os.PathLike,
        interval: int = 10,
        seed: int = 0,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.sampler = sampler
        self.diffusion = diffusion
        self.decode = decode
        self.conditions = torch.as_tensor(conditions, dtype=torch.float32).reshape(len(conditions), -1)
        self.output_dir = Path(output_dir)
        self.interval = int(interval)
        self.seed = int(seed)
        self.value_range = value_range

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        if self.interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def render(self, device: str | torch.device) -> Any:
        """The preview image: a captioned tri-planar row per condition."""
        from .previews import captioned, grid, triplanar
        from .weights import unwrap

        network = unwrap(self.diffusion)
        was_training = network.training
        network.eval()
        rows = []
        try:
            for index, condition in enumerate(self.conditions):
                noise = self.sampler.initial_noise(1, seeded_generator(self.seed + index), device)
                image = self.sampler(network, self.decode, condition[None].to(device), noise, description="preview")
                volume = image[0, 0].float().cpu().numpy()
                text = "condition " + ", ".join(f"{v:.2f}" for v in condition.tolist())
                rows.append(captioned(triplanar(volume, self.value_range), text))
        finally:
            network.train(was_training)
        return grid(rows)

    def __call__(self, engine: Any) -> None:
        from .atomic_io import write_png

        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return
        path = write_png(self.render(engine.state.device), self.output_dir / f"epoch_{engine.state.epoch:04d}.png")
        engine.logger.info(f"sample preview written to {path}")


@torch.no_grad()
def compute_scale_factor(
    autoencoder: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    device: str | torch.device = "cpu",
    max_batches: int = 8,
    image_key: str = "image",
    posterior_key: str = "posterior",
) -> float:
    """``1 / std`` of the autoencoder's latents over up to ``max_batches`` training batches.

    Rombach et al. scale latents to unit variance so the noise schedule fits them; the factor is a
    property of the trained autoencoder and the data, so it is measured, not configured. Batches that
    carry stored posteriors (:class:`EncodePosteriord`) are sampled from them instead of encoded.
    """
    autoencoder.eval()
    total, total_sq, count = 0.0, 0.0, 0
    for index, batch in enumerate(batches):
        if index >= max_batches:
            break
        if posterior_key in batch:
            latent = sample_posterior(torch.as_tensor(batch[posterior_key]).to(device)).double()
        else:
            latent = autoencoder.encode_stage_2_inputs(torch.as_tensor(batch[image_key]).to(device)).double()
        total += float(latent.sum())
        total_sq += float((latent**2).sum())
        count += latent.numel()
    if count < 2:
        raise ValueError("compute_scale_factor: no training batch to measure the latent spread on")
    variance = total_sq / count - (total / count) ** 2
    if not variance > 0:
        raise ValueError(f"compute_scale_factor: latent variance is {variance}; is the autoencoder trained?")
    return 1.0 / math.sqrt(variance)


def write_latent_stats(path: str | os.PathLike, scale_factor: float, **extra: Any) -> Path:
    """Write the scale factor (and any provenance) as JSON, atomically, next to the UNet weights."""
    return write_json({"scale_factor": float(scale_factor), **extra}, path)


def read_scale_factor(path: str | os.PathLike) -> float:
    """The ``scale_factor`` written by :func:`write_latent_stats`, with an error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"latent stats file {path} not found: it is written by the diffusion training next to the UNet weights"
        )
    try:
        value = float(json.loads(path.read_text())["scale_factor"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"latent stats file {path} has no valid 'scale_factor': {error}") from error
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"latent stats file {path}: scale_factor={value} must be a positive finite number")
    return value
