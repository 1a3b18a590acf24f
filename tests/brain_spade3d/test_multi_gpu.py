"""The multi-GPU overlays run under torchrun with two gloo processes on CPU, each over its training config."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.brain_spade3d.spade3d_helpers import BUNDLE, run_bundle, training_overrides

pytestmark = pytest.mark.slow

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
OVERLAYS = {
    "train_label_autoencoder.json": ("multi_gpu_train_label_autoencoder.json", "label_autoencoder.pt"),
    "train_label_diffusion.json": ("multi_gpu_train_label_diffusion.json", "model.pt"),
    "train_image_generator.json": ("multi_gpu_train_image_generator.json", "image_generator.pt"),
}


@pytest.mark.parametrize("config", list(OVERLAYS))
def test_multi_gpu_overlay_trains_with_two_processes(
    config: str, spade_cohort: Path, spade_trained: dict, tmp_path: Path
) -> None:
    overlay, weights = OVERLAYS[config]
    models = tmp_path / "models"
    if config == "train_label_diffusion.json":  # the diffusion stage starts from a trained autoencoder
        models.mkdir()
        shutil.copy(spade_trained["models"] / "label_autoencoder.pt", models / "label_autoencoder.pt")
    overrides = training_overrides(config, spade_cohort, tmp_path / "run", models, max_epochs=1)
    result = run_bundle(BUNDLE, [config, overlay], overrides, runner=TORCHRUN)
    state = torch.load(models / weights, weights_only=True)
    assert state and not any(key.startswith("module.") for key in state)  # rank 0 exported the bare network
    checkpoints = list((tmp_path / "run" / "checkpoints").glob("checkpoint_epoch=*.pt"))
    assert [p.name for p in checkpoints] == ["checkpoint_epoch=1.pt"]
    log = result.stdout + result.stderr
    assert log.count("exported weights to") == 1  # only rank 0 exports
