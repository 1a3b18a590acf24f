"""An ignite trainer for DCGAN and WGAN-GP on image/label patch pairs, and its handlers.

MONAI's ``GanTrainer`` has no gradient penalty and reuses one real batch for all critic steps of a
generator update. Here one engine iteration is one critic step on a fresh real batch (so the
dataloader, the ``DistributedSampler`` and the checkpoints work as for any MONAI trainer), and the
generator is updated after every ``n_critic``-th critic step. An epoch is one pass over the real
patches, i.e. ``len(dataloader) / n_critic`` generator updates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.engines.utils import PrepareBatch
from torch.utils.data import DataLoader

from scripts.common.atomic_io import atomic_path, write_png
from scripts.common.checks import check_positive_int
from scripts.common.engines import CustomIterationTrainer
from scripts.common.previews import captioned
from scripts.common.weights import check_exportable, unwrap
from scripts.generation import DEFAULT_LABEL_THRESHOLD, label_statistics, pairs_preview, sample_latents
from scripts.networks import folded_state_dict

__all__ = [
    "ADVERSARIAL_LOSSES",
    "GP_MODES",
    "ExportGenerator",
    "PairGanTrainer",
    "PairPrepareBatch",
    "PreviewSaver",
    "VARIANTS",
    "check_variant",
    "gradient_penalty",
    "loss_terms",
]

ADVERSARIAL_LOSSES = ("wasserstein", "bce")
GP_MODES = ("per_sample", "batch")
#: The variants with an overlay in configs/; ``variant`` names the run folder and the exported weights.
VARIANTS = ("dcgan", "wgan_gp", "wgan_gp_sn")
#: Scalars of ``engine.state.output`` logged by the stats handlers.
LOSS_TERMS = ("critic_loss", "generator_loss", "wasserstein_distance", "gradient_penalty", "critic_real", "critic_fake")


def check_variant(variant: str) -> str:
    """``variant`` when it has an overlay, else a ValueError: an unknown name would train the default settings
    under that name, so weights and run folder would claim a variant that never trained."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r} is not one of {list(VARIANTS)} (each is set by configs/<variant>.json)")
    return variant


def loss_terms(output: Mapping[str, Any]) -> dict[str, float]:
    """The scalar losses of one iteration (the generator loss only on generator steps)."""
    return {key: float(output[key]) for key in LOSS_TERMS if key in output}


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, mode: str = "per_sample"
) -> torch.Tensor:
    """Gulrajani et al. 2017: ``(||grad critic(x_hat)|| - 1)^2`` on points between real and fake samples.

    ``per_sample`` draws one interpolation weight per sample and penalises each sample's gradient
    norm (the standard form). ``batch`` reproduces Kossen et al.'s code: one weight for the whole
    batch and the norm of the whole batch's gradient.
    """
    if mode not in GP_MODES:
        raise ValueError(f"gp_mode={mode!r} is not one of {GP_MODES}")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1) if mode == "per_sample" else (1,) * real.ndim
    alpha = torch.rand(shape, device=real.device, dtype=real.dtype)
    interpolated = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
    scores = critic(interpolated)
    (gradients,) = torch.autograd.grad(scores.sum(), interpolated, create_graph=True)
    if mode == "per_sample":
        return (gradients.flatten(1).norm(2, dim=1) - 1.0).pow(2).mean()
    return (gradients.norm(2) - 1.0).pow(2)


class PairPrepareBatch(PrepareBatch):
    """The real (image, label) pair tensor of a dict batch (no target: the generator is unconditional)."""

    def __init__(self, pair_key: str = "pair") -> None:
        self.pair_key = pair_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> torch.Tensor:
        return torch.as_tensor(batchdata[self.pair_key]).to(device=device, non_blocking=non_blocking, **kwargs)


class PairGanTrainer(CustomIterationTrainer):
    """Adversarial training of a patch-pair generator against a critic.

    Args:
        device: training device.
        max_epochs: passes over the real patches (a resumed run continues up to this).
        train_data_loader: yields dict batches holding ``pair_key`` (B, 2, 96, 96): a fresh one per critic step.
        generator: maps (B, latent_size) noise to pairs.
        critic: maps pairs to one score per sample.
        generator_optimizer: optimiser of the generator.
        critic_optimizer: optimiser of the critic.
        latent_size: length of the noise vectors.
        n_critic: critic steps per generator step (5 for WGAN-GP, 1 for DCGAN).
        adversarial_loss: ``"wasserstein"`` (critic maximises E[D(real)] - E[D(fake)]) or ``"bce"``
            (DCGAN: ``BCEWithLogits`` on the critic's logits, i.e. the paper's sigmoid + BCE).
        gp_weight: gradient-penalty weight (10 for WGAN-GP; 0 disables it).
        gp_mode: ``"per_sample"`` (default) or ``"batch"`` (the authors' form), see :func:`gradient_penalty`.
        real_label: target of real samples in the BCE loss; 0.9 is one-sided label smoothing.
        pair_key: batch key of the real pairs.
        engine_options: MONAI trainer arguments (``epoch_length``, ``train_handlers``, ``key_train_metric``,
            ...), see ``CustomIterationTrainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        generator: torch.nn.Module,
        critic: torch.nn.Module,
        generator_optimizer: torch.optim.Optimizer,
        critic_optimizer: torch.optim.Optimizer,
        latent_size: int = 128,
        n_critic: int = 5,
        adversarial_loss: str = "wasserstein",
        gp_weight: float = 10.0,
        gp_mode: str = "per_sample",
        real_label: float = 1.0,
        pair_key: str = "pair",
        **engine_options: Any,
    ) -> None:
        if adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(f"adversarial_loss={adversarial_loss!r} is not one of {ADVERSARIAL_LOSSES}")
        if gp_mode not in GP_MODES:
            raise ValueError(f"gp_mode={gp_mode!r} is not one of {GP_MODES}")
        check_positive_int("n_critic", n_critic)
        if gp_weight < 0:
            raise ValueError(f"gp_weight={gp_weight!r} must be >= 0")
        if not 0.0 < real_label <= 1.0:
            raise ValueError(f"real_label={real_label!r} must be in (0, 1]")
        super().__init__(device, max_epochs, train_data_loader, PairPrepareBatch(pair_key), **engine_options)
        self.generator = generator
        self.critic = critic
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        self.latent_size = int(latent_size)
        self.n_critic = int(n_critic)
        self.adversarial_loss = adversarial_loss
        self.gp_weight = float(gp_weight)
        self.gp_mode = gp_mode
        self.real_label = float(real_label)

    def _noise(self, batch_size: int) -> torch.Tensor:
        return torch.randn(batch_size, self.latent_size, device=self.state.device)

    def _bce(self, logits: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def _critic_step(self, real: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self.generator(self._noise(real.shape[0]))
        self.critic_optimizer.zero_grad(set_to_none=True)
        scores_real, scores_fake = self.critic(real), self.critic(fake)
        output = {"critic_real": scores_real.detach().mean(), "critic_fake": scores_fake.detach().mean()}
        if self.adversarial_loss == "wasserstein":
            distance = scores_real.mean() - scores_fake.mean()
            loss = -distance
            output["wasserstein_distance"] = distance.detach()
        else:
            loss = self._bce(scores_real, self.real_label) + self._bce(scores_fake, 0.0)
        if self.gp_weight > 0:
            penalty = gradient_penalty(self.critic, real, fake, self.gp_mode)
            loss = loss + self.gp_weight * penalty
            output["gradient_penalty"] = penalty.detach()
        loss.backward()
        self.critic_optimizer.step()
        output["critic_loss"] = loss.detach()
        return output

    def _generator_step(self, batch_size: int) -> torch.Tensor:
        self.generator_optimizer.zero_grad(set_to_none=True)
        scores = self.critic(self.generator(self._noise(batch_size)))
        loss = -scores.mean() if self.adversarial_loss == "wasserstein" else self._bce(scores, 1.0)
        loss.backward()
        self.generator_optimizer.step()
        return loss.detach()

    def _iteration(self, engine: PairGanTrainer, batchdata: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real = engine.prepare_iteration_batch(batchdata)
        engine.generator.train()
        engine.critic.train()
        output = engine._critic_step(real)
        if engine.state.iteration % engine.n_critic == 0:
            output["generator_loss"] = engine._generator_step(real.shape[0])
        engine.state.output = output
        return output


def _is_rank_zero() -> bool:
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class PreviewSaver:
    """Every ``interval`` iterations, a PNG grid of pairs generated from fixed noise (rank 0 only).

    The same noise at every save shows how the generator's output evolves. Files are
    ``<output_dir>/preview_iteration_<N>.png``, written atomically.

    Args:
        generator: the trained generator (DDP-wrapped or not).
        output_dir: destination folder.
        interval: iterations (critic steps) between previews; also one at completion.
        n_pairs: pairs in the grid.
        latent_size: noise length.
        threshold: label-channel threshold used to binarise the shown label.
        seed: seed of the fixed noise.
        statistics_pairs: pairs generated from a second fixed noise at each preview for the label
            statistics (vessel fraction of the labels, image contrast under them; see
            ``scripts.generation.label_statistics``), logged to TensorBoard in ``output_dir/label_statistics`` and
            written into the preview's caption; 0 turns them off.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        output_dir: str,
        interval: int = 500,
        n_pairs: int = 16,
        latent_size: int = 128,
        threshold: float = DEFAULT_LABEL_THRESHOLD,
        seed: int = 0,
        statistics_pairs: int = 256,
    ) -> None:
        check_positive_int("preview_interval", interval)
        check_positive_int("preview_pairs", n_pairs)
        self.generator = generator
        self.output_dir = Path(output_dir)
        self.interval = int(interval)
        self.threshold = float(threshold)
        self.noise = sample_latents(int(n_pairs), int(latent_size), seed)
        # a stream of its own, so the shown pairs stay those of the same seed without statistics
        self.statistics_noise = sample_latents(int(statistics_pairs), int(latent_size), seed + 1)
        self._writer: Any = None
        self._last_saved = -1

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not _is_rank_zero() or engine.state.iteration == self._last_saved:
            return
        self._last_saved = engine.state.iteration
        network = unwrap(self.generator)
        was_training = network.training
        network.eval()
        try:
            with torch.no_grad():
                pairs = network(self.noise.to(engine.state.device)).cpu().numpy()
                sampled = [network(chunk.to(engine.state.device)).cpu() for chunk in self.statistics_noise.split(64)]
        finally:
            network.train(was_training)
        preview = pairs_preview(pairs, self.threshold)
        if sampled:
            statistics = label_statistics(torch.cat(sampled), self.threshold)
            self._log_statistics(statistics, engine.state.iteration)
            contrast = statistics["vessel_contrast"]
            caption = f"iteration {engine.state.iteration}: label vessel fraction {100 * statistics['label_vessel_fraction']:.3f} %"
            caption += (
                f", image contrast under labels {contrast:+.3f}" if contrast is not None else ", no labelled pixel"
            )
            preview = captioned(preview, caption)
            engine.logger.info(caption)
        path = self.output_dir / f"preview_iteration_{engine.state.iteration:07d}.png"
        write_png(preview, path)
        engine.logger.info(f"wrote {path}")

    def _log_statistics(self, statistics: Mapping[str, float | None], iteration: int) -> None:
        """TensorBoard scalars ``label/<name>`` beside the loss curves (None values are skipped)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # a run folder of its own, so the loss handler's event file stays the only one in output_dir
            self._writer = SummaryWriter(log_dir=str(self.output_dir / "label_statistics"))
        for name, value in statistics.items():
            if value is not None:
                self._writer.add_scalar(f"label/{name}", value, iteration)
        self._writer.flush()


class ExportGenerator:
    """When training finishes, the generator's weights with spectral norm folded in, as a plain state dict (rank 0).

    This is the release file (``models/model.pt``), loadable by an un-normalised
    ``PairGenerator`` whatever variant trained it; the resumable checkpoints stay separate.
    """

    def __init__(self, generator: torch.nn.Module, path: str) -> None:
        self.generator = generator
        self.path = path

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not _is_rank_zero():
            return
        state = folded_state_dict(unwrap(self.generator))
        check_exportable(engine, state, self.path)  # a diverged or cut-short run leaves the shipped file alone
        atomic_path(self.path, lambda temporary: torch.save(state, temporary))
        engine.logger.info(f"exported generator weights to {self.path}")
