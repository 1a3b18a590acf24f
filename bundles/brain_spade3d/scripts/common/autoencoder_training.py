# Generated copy of bundle_runtime/autoencoder_training.py: edit the source, then run `python -m tools sync-common`.
"""An ignite trainer for a KL-regularised autoencoder with a patch discriminator.

MONAI's ``AdversarialTrainer`` has no place for the KL term of ``AutoencoderKL`` (it expects a
generator returning one tensor), so this thin ``Trainer`` subclass runs the two-optimiser
iteration itself: generator step on reconstruction + KL (+ perceptual) + adversarial loss, then a
discriminator step. Everything else (handlers, validation, checkpoints) is stock MONAI/ignite.

The reconstruction loss and the output activation are pluggable, so the same trainer serves a
one-channel T1w autoencoder (L1, identity) and a multi-channel label-map autoencoder (e.g. a
cross-entropy/Dice loss on logits, softmax activation for the discriminator).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from monai.engines.utils import PrepareBatch
from monai.inferers import Inferer
from monai.losses import PatchAdversarialLoss
from monai.utils import CommonKeys as Keys
from torch.utils.data import DataLoader

from .engines import CustomIterationTrainer
from .weights import unwrap

__all__ = [
    "AutoencoderKLTrainer",
    "ReconstructionInferer",
    "ReconstructionPrepareBatch",
    "kl_divergence",
    "loss_terms",
]

#: Keys of the per-iteration loss terms the trainer puts into ``engine.state.output``.
LOSS_TERMS = (
    "loss",
    "reconstruction_loss",
    "kl_loss",
    "perceptual_loss",
    "generator_adversarial_loss",
    "discriminator_loss",
)


def kl_divergence(z_mu: torch.Tensor, z_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma) || N(0, 1)) summed over latent elements, averaged over the batch."""
    per_element = z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-12) - 1.0
    return 0.5 * per_element.flatten(1).sum(1).mean()


def loss_terms(output: Mapping[str, Any]) -> dict[str, float]:
    """The scalar loss terms of one iteration's output, for StatsHandler / TensorBoardStatsHandler."""
    return {key: float(output[key]) for key in LOSS_TERMS if key in output}


class ReconstructionPrepareBatch(PrepareBatch):
    """(image, target) from a dict batch, where the target defaults to the image itself."""

    def __init__(self, image_key: str = "image", target_key: str | None = None) -> None:
        self.image_key = image_key
        self.target_key = target_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.as_tensor(batchdata[self.image_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        if self.target_key is None:
            return images, images
        targets = torch.as_tensor(batchdata[self.target_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        return images, targets


class ReconstructionInferer(Inferer):
    """Deterministic reconstruction (decode the posterior mean) for validation, then the activation."""

    def __init__(self, output_activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.output_activation = output_activation

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        reconstruction = unwrap(network).reconstruct(inputs)
        return reconstruction if self.output_activation is None else self.output_activation(reconstruction)


class AutoencoderKLTrainer(CustomIterationTrainer):
    """Adversarial training of a VAE-style autoencoder (``encode``/``decode``, forward returns (x, mu, sigma)).

    Args:
        device: training device.
        max_epochs: total epochs (a resumed run continues up to this).
        train_data_loader: yields dict batches with ``image_key`` (and ``target_key`` if given).
        autoencoder: the network; its forward returns ``(reconstruction, z_mu, z_sigma)``.
        discriminator: a patch discriminator whose last output is the logit map.
        optimizer_g: optimiser of the autoencoder.
        optimizer_d: optimiser of the discriminator.
        reconstruction_loss: ``loss(raw_output, target)``; e.g. ``L1Loss`` or a Dice-CE loss on logits.
        kl_weight: weight of the KL term.
        adversarial_weight: weight of the generator's adversarial term (and of the discriminator loss).
        adversarial_warmup_epochs: epochs trained on reconstruction + KL only before the adversarial terms start.
        adversarial_loss: patch adversarial criterion.
        perceptual_loss: optional ``loss(activated_output, target)``; ``None`` disables it.
        perceptual_weight: weight of the perceptual term.
        output_activation: maps raw output to image space for the discriminator and perceptual loss
            (``None`` = identity; ``torch.nn.Softmax(dim=1)`` for label maps).
        image_key: batch key of the input.
        target_key: batch key of the target; ``None`` reconstructs the input.
        engine_options: MONAI trainer arguments (``epoch_length``, ``train_handlers``, ``key_train_metric``,
            ...), see ``CustomIterationTrainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        autoencoder: torch.nn.Module,
        discriminator: torch.nn.Module,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        reconstruction_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        kl_weight: float = 1e-6,
        adversarial_weight: float = 0.01,
        adversarial_warmup_epochs: int = 0,
        adversarial_loss: Callable | None = None,
        perceptual_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        perceptual_weight: float = 0.0,
        output_activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        image_key: str = "image",
        target_key: str | None = None,
        **engine_options: Any,
    ) -> None:
        if adversarial_warmup_epochs < 0:
            raise ValueError(f"adversarial_warmup_epochs={adversarial_warmup_epochs!r} must be >= 0")
        super().__init__(
            device, max_epochs, train_data_loader, ReconstructionPrepareBatch(image_key, target_key), **engine_options
        )
        self.autoencoder = autoencoder
        self.discriminator = discriminator
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.reconstruction_loss = reconstruction_loss
        self.kl_weight = float(kl_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.adversarial_warmup_epochs = int(adversarial_warmup_epochs)
        self.adversarial_loss = adversarial_loss or PatchAdversarialLoss(criterion="least_squares")
        self.perceptual_loss = perceptual_loss
        self.perceptual_weight = float(perceptual_weight)
        self.output_activation = output_activation

    def adversarial_active(self) -> bool:
        """Whether the current epoch is past the warm-up (epochs count from 1)."""
        return self.adversarial_weight > 0 and self.state.epoch > self.adversarial_warmup_epochs

    def _activate(self, output: torch.Tensor) -> torch.Tensor:
        return output if self.output_activation is None else self.output_activation(output)

    def _iteration(self, engine: AutoencoderKLTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        images, targets = engine.prepare_iteration_batch(batchdata)
        adversarial = engine.adversarial_active()
        engine.autoencoder.train()
        engine.discriminator.train()

        engine.optimizer_g.zero_grad(set_to_none=True)
        reconstruction, z_mu, z_sigma = engine.autoencoder(images)
        activated = engine._activate(reconstruction)
        reconstruction_loss = engine.reconstruction_loss(reconstruction, targets)
        kl_loss = kl_divergence(z_mu, z_sigma)
        loss = reconstruction_loss + engine.kl_weight * kl_loss
        output: dict[str, Any] = {Keys.IMAGE: images, Keys.LABEL: targets, Keys.PRED: activated.detach()}
        if engine.perceptual_loss is not None and engine.perceptual_weight > 0:
            perceptual = engine.perceptual_loss(activated.float(), targets.float())
            loss = loss + engine.perceptual_weight * perceptual
            output["perceptual_loss"] = perceptual.detach()
        if adversarial:
            logits_fake = engine.discriminator(activated.contiguous().float())[-1]
            generator_adversarial = engine.adversarial_loss(logits_fake, target_is_real=True, for_discriminator=False)
            loss = loss + engine.adversarial_weight * generator_adversarial
            output["generator_adversarial_loss"] = generator_adversarial.detach()
        loss.backward()
        engine.optimizer_g.step()

        if adversarial:
            engine.optimizer_d.zero_grad(set_to_none=True)
            logits_fake = engine.discriminator(activated.detach().contiguous().float())[-1]
            loss_fake = engine.adversarial_loss(logits_fake, target_is_real=False, for_discriminator=True)
            logits_real = engine.discriminator(targets.contiguous().float())[-1]
            loss_real = engine.adversarial_loss(logits_real, target_is_real=True, for_discriminator=True)
            discriminator_loss = engine.adversarial_weight * 0.5 * (loss_fake + loss_real)
            discriminator_loss.backward()
            engine.optimizer_d.step()
            output["discriminator_loss"] = discriminator_loss.detach()

        output.update(
            {Keys.LOSS: loss.detach(), "reconstruction_loss": reconstruction_loss.detach(), "kl_loss": kl_loss.detach()}
        )
        engine.state.output = output
        return output
