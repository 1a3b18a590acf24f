"""An ignite trainer for the SPADE VAE-GAN, which MONAI's engines do not cover.

``GanTrainer`` feeds the generator noise and has no encoder, KL term or feature matching; here one
iteration is: encode the real image to a style code, decode it on the label map + contrast code,
update the generator on hinge adversarial + feature matching + KLD (+ optional perceptual and
reconstruction terms), then update the conditional multi-scale discriminator on hinge losses.
Validation uses the stock ``SupervisedEvaluator`` with the prepare-batch and inferer below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from monai.engines.utils import PrepareBatch
from monai.inferers import Inferer
from monai.losses import PatchAdversarialLoss
from monai.utils import CommonKeys as Keys
from torch.utils.data import DataLoader

from scripts.common.autoencoder_training import kl_divergence
from scripts.common.engines import CustomIterationTrainer
from scripts.common.weights import unwrap
from scripts.networks import spade_input

__all__ = [
    "FeatureMatchingLoss",
    "SPADEPrepareBatch",
    "SPADETrainer",
    "StyleReconstructionInferer",
    "spade_loss_terms",
]

#: Per-iteration loss terms the trainer puts into ``engine.state.output``.
SPADE_LOSS_TERMS = (
    "loss",
    "generator_adversarial_loss",
    "feature_matching_loss",
    "kl_loss",
    "perceptual_loss",
    "reconstruction_loss",
    "discriminator_loss",
)


def spade_loss_terms(output: Mapping[str, Any]) -> dict[str, float]:
    """The scalar loss terms of one iteration, for StatsHandler / TensorBoardStatsHandler."""
    return {key: float(output[key]) for key in SPADE_LOSS_TERMS if key in output}


class FeatureMatchingLoss(torch.nn.Module):
    """Mean L1 distance between discriminator features of fake and real inputs, over layers and scales.

    It gives the generator a dense, stable signal (Wang et al. 2018, pix2pixHD); the real features are
    targets, so no gradient flows into them.
    """

    def forward(self, fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
        terms = [
            torch.nn.functional.l1_loss(f, r.detach())
            for fake_scale, real_scale in zip(fake, real, strict=True)
            for f, r in zip(fake_scale, real_scale, strict=True)
        ]
        if not terms:
            raise ValueError("the discriminator returned no intermediate features to match")
        return torch.stack(terms).mean()


class SPADEPrepareBatch(PrepareBatch):
    """(conditioning map, image) from a dict batch; the image also goes to the inferer as the style image.

    Args:
        label_key: key of the (B, C, *S) partial-volume label maps.
        image_key: key of the (B, 1, *S) image of the item's contrast.
        contrast_key: key of the (B, K) one-hot contrast codes.
    """

    def __init__(self, label_key: str = "label", image_key: str = "image", contrast_key: str = "contrast") -> None:
        self.label_key = label_key
        self.image_key = image_key
        self.contrast_key = contrast_key

    def __call__(
        self,
        batchdata: dict[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple, dict]:
        labels = torch.as_tensor(batchdata[self.label_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        images = torch.as_tensor(batchdata[self.image_key]).to(device=device, non_blocking=non_blocking, **kwargs)
        contrast = torch.as_tensor(batchdata[self.contrast_key]).to(device=device, non_blocking=non_blocking)
        return spade_input(labels, contrast), images, (images,), {}


class StyleReconstructionInferer(Inferer):
    """Decode the conditioning map with the posterior-mean style code of the given style image (no sampling)."""

    def __call__(
        self, inputs: torch.Tensor, network: torch.nn.Module, style: torch.Tensor, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        generator = unwrap(network)
        return generator.decode(inputs, generator.encode_mean(style))


class SPADETrainer(CustomIterationTrainer):
    """Training of a SPADE VAE-GAN: style encoder + SPADE decoder against a conditional multi-scale critic.

    Args:
        device: training device.
        max_epochs: total epochs (a resumed run continues up to this).
        train_data_loader: yields dict batches for ``prepare_batch``.
        generator: ``SPADEGenerator`` (forward(seg, x) -> (image, z_mu, z_logvar)).
        discriminator: ``MultiScalePatchDiscriminator`` reading the conditioning map and an image.
        optimizer_g: optimiser of the generator (encoder + decoder).
        optimizer_d: optimiser of the discriminator.
        adversarial_loss: patch criterion, hinge by default.
        adversarial_weight: weight of the generator's adversarial term.
        feature_matching_weight: weight of the feature matching term.
        kld_weight: weight of the KL divergence of the style code.
        perceptual_loss: optional ``loss(fake, real)``; ``None`` disables it.
        perceptual_weight: weight of the perceptual term.
        reconstruction_loss: optional ``loss(fake, real)`` (e.g. L1); ``None`` disables it.
        reconstruction_weight: weight of the reconstruction term.
        prepare_batch: returns (conditioning map, image, ...).
        engine_options: MONAI trainer arguments (``epoch_length``, ``train_handlers``, ``key_train_metric``,
            ...), see ``CustomIterationTrainer``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        generator: torch.nn.Module,
        discriminator: torch.nn.Module,
        optimizer_g: torch.optim.Optimizer,
        optimizer_d: torch.optim.Optimizer,
        adversarial_loss: Callable | None = None,
        adversarial_weight: float = 1.0,
        feature_matching_weight: float = 10.0,
        kld_weight: float = 0.05,
        perceptual_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        perceptual_weight: float = 10.0,
        reconstruction_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        reconstruction_weight: float = 0.0,
        prepare_batch: Callable | None = None,
        **engine_options: Any,
    ) -> None:
        for name, weight in (
            ("adversarial_weight", adversarial_weight),
            ("feature_matching_weight", feature_matching_weight),
            ("kld_weight", kld_weight),
            ("perceptual_weight", perceptual_weight),
            ("reconstruction_weight", reconstruction_weight),
        ):
            if not float(weight) >= 0:
                raise ValueError(f"{name}={weight!r} must be >= 0")
        super().__init__(device, max_epochs, train_data_loader, prepare_batch or SPADEPrepareBatch(), **engine_options)
        self.generator = generator
        self.discriminator = discriminator
        self.optimizer_g = optimizer_g
        self.optimizer_d = optimizer_d
        self.adversarial_loss = adversarial_loss or PatchAdversarialLoss(criterion="hinge")
        self.adversarial_weight = float(adversarial_weight)
        self.feature_matching = FeatureMatchingLoss()
        self.feature_matching_weight = float(feature_matching_weight)
        self.kld_weight = float(kld_weight)
        self.perceptual_loss = perceptual_loss
        self.perceptual_weight = float(perceptual_weight)
        self.reconstruction_loss = reconstruction_loss
        self.reconstruction_weight = float(reconstruction_weight)

    def _iteration(self, engine: SPADETrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        seg, images = engine.prepare_iteration_batch(batchdata)[:2]
        engine.generator.train()
        engine.discriminator.train()

        engine.optimizer_g.zero_grad(set_to_none=True)
        fake, z_mu, z_logvar = engine.generator(seg, images)
        logits_fake, features_fake = engine.discriminator(torch.cat([seg, fake], dim=1))
        with torch.no_grad():
            _, features_real = engine.discriminator(torch.cat([seg, images], dim=1))
        adversarial = engine.adversarial_loss(logits_fake, target_is_real=True, for_discriminator=False)
        feature_matching = engine.feature_matching(features_fake, features_real)
        kl_loss = kl_divergence(z_mu, torch.exp(0.5 * z_logvar))
        loss = (
            engine.adversarial_weight * adversarial
            + engine.feature_matching_weight * feature_matching
            + engine.kld_weight * kl_loss
        )
        output: dict[str, Any] = {Keys.IMAGE: seg, Keys.LABEL: images, Keys.PRED: fake.detach()}
        if engine.perceptual_loss is not None and engine.perceptual_weight > 0:
            perceptual = engine.perceptual_loss(fake.float(), images.float())
            loss = loss + engine.perceptual_weight * perceptual
            output["perceptual_loss"] = perceptual.detach()
        if engine.reconstruction_loss is not None and engine.reconstruction_weight > 0:
            reconstruction = engine.reconstruction_loss(fake, images)
            loss = loss + engine.reconstruction_weight * reconstruction
            output["reconstruction_loss"] = reconstruction.detach()
        loss.backward()
        engine.optimizer_g.step()

        engine.optimizer_d.zero_grad(set_to_none=True)
        logits_fake, _ = engine.discriminator(torch.cat([seg, fake.detach()], dim=1))
        logits_real, _ = engine.discriminator(torch.cat([seg, images], dim=1))
        discriminator_loss = 0.5 * (
            engine.adversarial_loss(logits_fake, target_is_real=False, for_discriminator=True)
            + engine.adversarial_loss(logits_real, target_is_real=True, for_discriminator=True)
        )
        discriminator_loss.backward()
        engine.optimizer_d.step()

        output.update(
            {
                Keys.LOSS: loss.detach(),
                "generator_adversarial_loss": adversarial.detach(),
                "feature_matching_loss": feature_matching.detach(),
                "kl_loss": kl_loss.detach(),
                "discriminator_loss": discriminator_loss.detach(),
            }
        )
        engine.state.output = output
        return output
