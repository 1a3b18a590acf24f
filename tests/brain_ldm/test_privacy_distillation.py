"""Privacy distillation end to end at toy size: train, generate, screen and filter, retrain on the retained set only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.brain_ldm.ldm_helpers import (
    BUNDLE,
    plant_sample,
    run_bundle,
    tiny_diffusion_training,
    training_image_on_sample_grid,
)

pytestmark = pytest.mark.slow


def test_the_chain_retrains_on_the_retained_samples_only(
    brain_cohort: Path, trained: dict[str, Path], sampling_overrides: dict, tmp_path: Path
) -> None:
    # 1. train: the session fixture trained the autoencoder and the diffusion model on the cohort
    # 2. generate
    synthetic = tmp_path / "synthetic"
    run_bundle(BUNDLE, "inference.json", {**sampling_overrides, "output_dir": str(synthetic), "n_samples": 4})
    volume, item = training_image_on_sample_grid(brain_cohort, 0)
    plant_sample(synthetic, "sample_900", volume, item["condition"], synthetic / "sample_000000.json")
    # 3. screen and filter
    screen = tmp_path / "screen"
    run_bundle(
        BUNDLE,
        ["inference.json", "privacy.json"],
        {
            **sampling_overrides,
            "dataset_dir": str(brain_cohort),
            "synthetic_dir": str(synthetic),
            "output_dir": str(screen),
        },
    )
    report = json.loads((screen / "privacy_report.json").read_text())
    assert "sample_900.nii.gz" in {entry["file"] for entry in report["flagged"]}
    datalist = json.loads((screen / "retained_datalist.json").read_text())
    retained = {Path(item["image"]).name for item in datalist["training"]}
    assert retained and "sample_900.nii.gz" not in retained and len(retained) == report["n_retained"]
    assert all(Path(item["image"]).parent == synthetic for item in datalist["training"])
    # 4. retrain the diffusion model on the retained synthetic samples only (real validation split for monitoring)
    models = tmp_path / "distilled"
    models.mkdir()
    shutil.copy(trained["models"] / "autoencoder.pt", models / "autoencoder.pt")
    overrides = tiny_diffusion_training(brain_cohort, tmp_path / "run", models, max_epochs=1)
    # synthetic samples are on the network's grid, the real validation subjects on the cohort's larger one, which
    # the config crops on purpose (ResizeWithPadOrCropd): the shape check is off for this mixed datalist only
    overrides.update(datalist_path=str(screen / "retained_datalist.json"), data_shape="$None")
    run_bundle(BUNDLE, "train_diffusion.json", overrides)
    assert (models / "model.pt").is_file() and (models / "latent_stats.json").is_file()
