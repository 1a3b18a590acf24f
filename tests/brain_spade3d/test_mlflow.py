"""configs/mlflow.json: a tiny label-diffusion training tracked in a local MLflow store, read back with MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.brain_spade3d.spade3d_helpers import BUNDLE, run_bundle, training_overrides
from tests.mlflow_helpers import read_single_run, sqlite_store

pytestmark = pytest.mark.slow


def test_label_diffusion_training_logs_params_losses_validation_and_previews(
    spade_cohort: Path, spade_trained: dict, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "label_autoencoder.pt").write_bytes((spade_trained["models"] / "label_autoencoder.pt").read_bytes())
    store = sqlite_store(tmp_path)
    config = "train_label_diffusion.json"
    overrides = {
        **training_overrides(config, spade_cohort, tmp_path / "label_diffusion", models, max_epochs=2),
        "tracking_uri": store,
        "experiment_name": "tiny_label_diffusion",
    }
    run_bundle(BUNDLE, [config, "mlflow.json"], overrides)

    run = read_single_run(store, "tiny_label_diffusion")
    assert run.status == "FINISHED"
    assert run.params["learning_rate"] == "0.0001" and run.params["batch_size"] == "2"
    assert len(run.metric_steps["loss"]) >= 2
    assert run.metric_steps["val_noise_mse"] == [1, 2]
    assert run.artifacts and all(name.endswith(".png") for name in run.artifacts)
