"""The three training configs run end to end, export weights and statistics, log, and resume."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from PIL import Image

from tests.brain_spade3d.spade3d_helpers import BUNDLE, run_bundle, training_overrides

pytestmark = pytest.mark.slow

EXPORTS = {
    "train_label_autoencoder.json": (
        "label_autoencoder.pt",
        {"autoencoder", "discriminator", "optimizer_g", "optimizer_d", "trainer", "random_states"},
    ),
    "train_label_diffusion.json": (
        "model.pt",
        {"diffusion", "ema_diffusion", "optimizer", "trainer", "random_states"},
    ),
    "train_image_generator.json": (
        "image_generator.pt",
        {"generator", "discriminator", "optimizer_g", "optimizer_d", "trainer", "random_states"},
    ),
}


@pytest.mark.parametrize("config", list(EXPORTS))
def test_training_resumes_and_exports(config: str, spade_trained: dict) -> None:
    first, second = spade_trained["logs"][config]
    assert "training starts fresh" in first.stdout
    run_dir = spade_trained["root"] / config.removesuffix(".json")
    checkpoint = torch.load(run_dir / "checkpoints" / "checkpoint_epoch=1.pt", weights_only=True)
    iterations = checkpoint["trainer"]["iteration"]
    assert iterations >= 1
    assert f"resumed at epoch 1, iteration {iterations}" in second.stdout
    assert "Epoch: 1/2" not in second.stdout  # epoch 1 is not trained again
    final = torch.load(run_dir / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)
    weights_name, objects = EXPORTS[config]
    assert set(final) == objects
    assert final["trainer"]["iteration"] == 2 * iterations
    state = torch.load(spade_trained["models"] / weights_name, weights_only=True)
    assert not any(key.startswith("module.") for key in state)  # bare state dict
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))


def test_label_autoencoder_is_a_10_class_autoencoder_validated_by_dice(spade_trained: dict) -> None:
    state = torch.load(spade_trained["models"] / "label_autoencoder.pt", weights_only=True)
    assert state["encoder.blocks.0.conv.weight"].shape[1] == 10
    log = spade_trained["logs"]["train_label_autoencoder.json"][1].stdout
    assert "val_mean_dice" in log
    # each lesion class is validated on its own, so a collapsed small class shows in the log
    assert all(f"val_dice_{lesion}" in log for lesion in ("wmh", "tumour", "edema", "enhancing"))
    assert "generator_adversarial_loss" in log


def test_label_diffusion_writes_label_stats_and_a_preview(spade_trained: dict, spade_cohort) -> None:
    state = torch.load(spade_trained["models"] / "model.pt", weights_only=True)
    assert state["conv_in.conv.weight"].shape[1] == 4  # the latent only: the condition goes through cross-attention
    stats = json.loads((spade_trained["models"] / "label_stats.json").read_text())
    assert math.isfinite(stats["scale_factor"]) and stats["scale_factor"] > 0
    assert stats["autoencoder"] == "label_autoencoder.pt" and len(stats["autoencoder_sha256"]) == 64
    datalist = json.loads((spade_cohort / "datalist.json").read_text())
    assert stats["lesion_fraction_max"] == datalist["lesion_fraction_max"]
    lesioned = {tuple(round(v, 6) for v in item["lesion"]) for item in datalist["training"] if any(item["lesion"])}
    assert {tuple(p) for p in stats["lesion_patterns"]} == lesioned
    for name, (low, high) in stats["lesion_ranges"].items():
        assert 0 <= low <= high <= 1, name
    with Image.open(spade_trained["root"] / "train_label_diffusion" / "previews" / "epoch_0002.png") as preview:
        assert preview.height > 4 * 16  # one row per preview condition


def test_image_generator_logs_every_loss_term(spade_trained: dict) -> None:
    log = spade_trained["logs"]["train_image_generator.json"][1].stdout
    for term in (
        "generator_adversarial_loss",
        "feature_matching_loss",
        "kl_loss",
        "reconstruction_loss",
        "discriminator_loss",
    ):
        assert term in log
    assert "val_ssim" in log and "val_mse" in log
    state = torch.load(spade_trained["models"] / "image_generator.pt", weights_only=True)
    assert any(key.startswith("encoder.") for key in state) and any(key.startswith("decoder.") for key in state)


INIT_OPTIONS = {
    "train_label_diffusion.json": ("init_diffusion_path", "model.pt"),
    "train_label_autoencoder.json": ("init_autoencoder_path", "label_autoencoder.pt"),
}


@pytest.mark.parametrize("config", list(INIT_OPTIONS))
def test_training_can_start_from_given_weights(config: str, spade_trained: dict, spade_cohort, tmp_path) -> None:
    """``init_*_path`` continues training released weights (e.g. GPU-trained ones) in a new run."""
    option, weights_name = INIT_OPTIONS[config]
    models = tmp_path / "models"
    shutil.copytree(spade_trained["models"], models)
    start = tmp_path / "start.pt"
    shutil.copy(models / weights_name, start)
    overrides = training_overrides(config, spade_cohort, tmp_path / "run", models, max_epochs=5)
    result = run_bundle(BUNDLE, config, {**overrides, option: str(start), "max_train_seconds": 1e-6})
    assert "reached at epoch 1, iteration 1" in result.stdout
    before = torch.load(start, weights_only=True)
    after = torch.load(models / weights_name, weights_only=True)
    # one Adam(W) step of lr 1e-4 moves each weight by about 1e-4; a fresh initialisation would differ by far more
    assert max((after[key].float() - before[key].float()).abs().max().item() for key in before) < 1e-3

    missing = run_bundle(BUNDLE, config, {**overrides, option: str(tmp_path / "absent.pt")}, check=False)
    assert missing.returncode != 0 and option in missing.stderr and "absent.pt" in missing.stderr


def _label_diffusion_run(spade_trained: dict, spade_cohort, folder, **options) -> dict:
    """A two-epoch label diffusion run of its own (models copied from the session's), and its online weights."""
    models = folder / "models"
    shutil.copytree(spade_trained["models"], models)
    overrides = training_overrides("train_label_diffusion.json", spade_cohort, folder / "run", models, max_epochs=2)
    run_bundle(BUNDLE, "train_label_diffusion.json", {**overrides, **options})
    return torch.load(folder / "run" / "checkpoints" / "checkpoint_epoch=2.pt", weights_only=True)["diffusion"]


def test_cached_latents_with_mirroring_train_the_weights_that_flipping_and_encoding_trains(
    spade_trained: dict, spade_cohort, tmp_path
) -> None:
    """The cache encodes each label map and its mirror once; the flip then picks one, drawing as RandFlipd did."""
    cached = _label_diffusion_run(spade_trained, spade_cohort, tmp_path / "cached", cache_latents=True)
    encoded = _label_diffusion_run(spade_trained, spade_cohort, tmp_path / "encoded", cache_latents=False)
    unflipped = _label_diffusion_run(spade_trained, spade_cohort, tmp_path / "unflipped", flip_prob=0.0)
    # one AdamW step moves a weight by about the learning rate, 1e-4: another draw or flip would show above 1e-5
    for key, value in cached.items():
        torch.testing.assert_close(value, encoded[key], rtol=0, atol=1e-5)
    assert max((value - unflipped[key]).abs().max().item() for key, value in cached.items()) > 1e-5


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"cache_latents": "false"}, "cache_latents='false' must be true or false"),
        ({"flip_prob": 1.5}, "flip_prob=1.5 must be a probability in [0, 1]"),  # MONAI would clip it to 1 silently
    ],
)
def test_a_bad_training_switch_stops_before_work(
    option: dict, message: str, spade_trained: dict, spade_cohort, tmp_path
) -> None:
    models = tmp_path / "models"
    shutil.copytree(spade_trained["models"], models)
    overrides = training_overrides("train_label_diffusion.json", spade_cohort, tmp_path / "run", models, max_epochs=1)
    result = run_bundle(BUNDLE, "train_label_diffusion.json", {**overrides, **option}, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
