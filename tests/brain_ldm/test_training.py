"""Training configs run end to end, export weights, write TensorBoard logs and previews, and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tests.brain_ldm.ldm_helpers import BUNDLE, run_bundle, tiny_autoencoder_training, tiny_diffusion_training

pytestmark = pytest.mark.slow


def test_autoencoder_training_exports_weights_and_logs(trained: dict[str, Path]) -> None:
    state = torch.load(trained["models"] / "autoencoder.pt", weights_only=True)
    assert "encoder.blocks.0.conv.weight" in state  # a bare AutoencoderKL state dict, no "module." prefix
    run = trained["autoencoder_run"]
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt")) == [
        "checkpoint_epoch=1.pt",
        "checkpoint_epoch=2.pt",
    ]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    checkpoint = torch.load(run / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)
    assert set(checkpoint) == {"autoencoder", "discriminator", "optimizer_g", "optimizer_d", "trainer", "random_states"}


def test_diffusion_training_exports_weights_scale_factor_and_preview(trained: dict[str, Path]) -> None:
    state = torch.load(trained["models"] / "model.pt", weights_only=True)
    assert state["conv_in.conv.weight"].shape[1] == 3 + 4  # latent channels + broadcast condition
    stats = json.loads((trained["models"] / "latent_stats.json").read_text())
    assert math.isfinite(stats["scale_factor"]) and stats["scale_factor"] > 0
    assert stats["autoencoder"] == "autoencoder.pt" and len(stats["autoencoder_sha256"]) == 64
    # the export is the moving average (checkpointed beside the online weights), not the last step's weights
    checkpoint = torch.load(trained["diffusion_run"] / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)
    assert {"diffusion", "ema_diffusion"} <= set(checkpoint)
    for key, value in state.items():
        torch.testing.assert_close(value, checkpoint["ema_diffusion"][key], rtol=0, atol=0)
    assert any(not torch.equal(value, checkpoint["diffusion"][key]) for key, value in state.items())
    preview = trained["diffusion_run"] / "previews" / "epoch_0002.png"
    assert preview.stat().st_size > 0
    assert list((trained["diffusion_run"] / "tensorboard").glob("events.out.tfevents.*"))


def _models_with_the_trained_autoencoder(trained: dict[str, Path], tmp_path: Path) -> Path:
    """A fresh models folder holding the session's tiny autoencoder, for a diffusion training of its own."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "autoencoder.pt").write_bytes((trained["models"] / "autoencoder.pt").read_bytes())
    return models


def _trainer_state(ckpt_dir: Path, epoch: int) -> dict:
    return torch.load(ckpt_dir / f"checkpoint_epoch={epoch}.pt", weights_only=True)["trainer"]


@pytest.mark.parametrize("config", ["train_autoencoder.json", "train_diffusion.json"])
def test_stopped_training_resumes_from_its_checkpoint(config: str, brain_cohort: Path, trained, tmp_path: Path) -> None:
    overrides = tiny_autoencoder_training if config == "train_autoencoder.json" else tiny_diffusion_training
    run_dir, models = tmp_path / "run", tmp_path / "models"
    if config == "train_diffusion.json":  # reuse the session's autoencoder
        models.mkdir()
        (models / "autoencoder.pt").write_bytes((trained["models"] / "autoencoder.pt").read_bytes())
    first = run_bundle(BUNDLE, config, overrides(brain_cohort, run_dir, models, max_epochs=1))
    assert "training starts fresh" in first.stdout
    iterations_per_epoch = _trainer_state(run_dir / "checkpoints", 1)["iteration"]
    assert iterations_per_epoch >= 1

    second = run_bundle(BUNDLE, config, overrides(brain_cohort, run_dir, models, max_epochs=2))
    assert f"resumed at epoch 1, iteration {iterations_per_epoch}" in second.stdout
    assert "Epoch: 1/2" not in second.stdout  # epoch 1 is not trained again
    state = _trainer_state(run_dir / "checkpoints", 2)
    assert state["max_epochs"] == 2
    assert state["iteration"] == 2 * iterations_per_epoch == 2 * state["epoch_length"]


def test_cached_latents_train_the_weights_that_encoding_every_batch_trains(
    brain_cohort: Path, trained: dict[str, Path], tmp_path: Path
) -> None:
    models = _models_with_the_trained_autoencoder(trained, tmp_path)
    overrides = tiny_diffusion_training(brain_cohort, tmp_path / "run", models)
    run_bundle(BUNDLE, "train_diffusion.json", {**overrides, "cache_latents": False})
    # the online weights, not the EMA export (which barely leaves its start in two epochs); one iteration's
    # update is about the learning rate, 1e-4, so a different draw of any latent would show far above 1e-5
    checkpoint = "checkpoints/checkpoint_epoch=2.pt"
    encoded_every_batch = torch.load(tmp_path / "run" / checkpoint, weights_only=True)["diffusion"]
    cached = torch.load(trained["diffusion_run"] / checkpoint, weights_only=True)["diffusion"]  # cache_latents true
    assert encoded_every_batch.keys() == cached.keys()
    for key, value in cached.items():
        torch.testing.assert_close(value, encoded_every_batch[key], rtol=0, atol=1e-5)
    assert json.loads((models / "latent_stats.json").read_text())["scale_factor"] == pytest.approx(
        json.loads((trained["models"] / "latent_stats.json").read_text())["scale_factor"], rel=1e-5
    )


def test_init_diffusion_path_starts_training_from_the_given_weights(
    brain_cohort: Path, trained: dict[str, Path], tmp_path: Path
) -> None:
    models = _models_with_the_trained_autoencoder(trained, tmp_path)
    start = trained["models"] / "model.pt"
    overrides = {
        **tiny_diffusion_training(brain_cohort, tmp_path / "run", models, max_epochs=1),
        "init_diffusion_path": str(start),
        "learning_rate": 0.0,  # no update: the exported moving average must be the starting weights
    }
    run_bundle(BUNDLE, "train_diffusion.json", overrides)
    exported = torch.load(models / "model.pt", weights_only=True)
    for key, value in torch.load(start, weights_only=True).items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=1e-6)


def test_a_missing_init_diffusion_path_stops_training_before_work(
    brain_cohort: Path, trained: dict[str, Path], tmp_path: Path
) -> None:
    models = _models_with_the_trained_autoencoder(trained, tmp_path)
    missing = tmp_path / "no_such_model.pt"
    overrides = {**tiny_diffusion_training(brain_cohort, tmp_path / "run", models), "init_diffusion_path": str(missing)}
    result = run_bundle(BUNDLE, "train_diffusion.json", overrides, check=False)
    assert result.returncode != 0
    assert f"init_diffusion_path: weights file {missing} does not exist" in result.stderr
    assert not (models / "model.pt").exists() and not (tmp_path / "run" / "checkpoints").exists()
