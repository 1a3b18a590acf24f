"""The AutoencoderKL + patch discriminator trainer: warm-up, losses, pluggable reconstruction loss."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.networks.nets import AutoencoderKL, PatchDiscriminator

from bundle_runtime.autoencoder_training import AutoencoderKLTrainer, ReconstructionInferer, kl_divergence, loss_terms


def test_kl_of_the_prior_is_zero() -> None:
    assert float(kl_divergence(torch.zeros(2, 3, 4), torch.ones(2, 3, 4))) == 0.0
    assert float(kl_divergence(torch.ones(2, 3, 4), torch.ones(2, 3, 4))) == 0.5 * 12


def test_adversarial_term_starts_after_warm_up() -> None:
    torch.manual_seed(0)
    autoencoder = AutoencoderKL(
        spatial_dims=3, in_channels=1, out_channels=1, channels=(4, 4), latent_channels=2, num_res_blocks=1,
        norm_num_groups=4, attention_levels=(False, False), with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
    )  # fmt: skip
    discriminator = PatchDiscriminator(spatial_dims=3, channels=4, in_channels=1, num_layers_d=1, norm="INSTANCE")
    before = [p.detach().clone() for p in discriminator.parameters()]
    outputs = []
    trainer = AutoencoderKLTrainer(
        device="cpu",
        max_epochs=2,
        train_data_loader=[{"image": torch.rand(2, 1, 8, 8, 8)}],
        autoencoder=autoencoder,
        discriminator=discriminator,
        optimizer_g=torch.optim.Adam(autoencoder.parameters(), 1e-3),
        optimizer_d=torch.optim.Adam(discriminator.parameters(), 1e-3),
        reconstruction_loss=torch.nn.L1Loss(),
        adversarial_warmup_epochs=1,
        output_activation=torch.sigmoid,
    )
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda engine: outputs.append(loss_terms(engine.state.output))
    )
    trainer.run()
    assert "discriminator_loss" not in outputs[0] and "generator_adversarial_loss" not in outputs[0]
    assert {"discriminator_loss", "generator_adversarial_loss"} <= set(outputs[1])
    assert any(not torch.equal(a, b) for a, b in zip(before, discriminator.parameters()))
    with torch.no_grad():
        reconstruction = ReconstructionInferer(torch.sigmoid)(torch.rand(1, 1, 8, 8, 8), autoencoder)
    assert reconstruction.shape == (1, 1, 8, 8, 8) and float(reconstruction.min()) >= 0
