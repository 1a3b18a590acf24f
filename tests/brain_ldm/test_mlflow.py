"""configs/mlflow.json: a tiny diffusion training tracked in a local MLflow store, read back with MLflow's client."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.brain_ldm.ldm_helpers import BUNDLE, run_bundle, tiny_diffusion_training
from tests.mlflow_helpers import read_single_run, sqlite_store

pytestmark = pytest.mark.slow


def test_diffusion_training_logs_params_losses_validation_and_previews(
    brain_cohort: Path, trained: dict[str, Path], tmp_path: Path
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "autoencoder.pt").write_bytes((trained["models"] / "autoencoder.pt").read_bytes())
    store = sqlite_store(tmp_path)
    overrides = {**tiny_diffusion_training(brain_cohort, tmp_path / "run", models), "tracking_uri": store}
    run_bundle(BUNDLE, ["train_diffusion.json", "mlflow.json"], overrides)

    run = read_single_run(store, "brain_ldm_run")  # named after the run folder
    assert run.status == "FINISHED"
    assert run.params["learning_rate"] == "0.0001" and run.params["batch_size"] == "2"
    assert run.metric_steps["loss"] == [1, 2]  # one iteration per epoch, two epochs
    assert run.metric_steps["val_noise_mse"] == [1, 2]  # the evaluator's metric, stepped by training epoch
    assert run.artifacts == ["epoch_0002.png"]
