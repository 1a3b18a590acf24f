"""configs/mlflow.json (+ mlflow_segmentation.json): tiny trainings tracked in a local MLflow store, read back."""

from __future__ import annotations

from pathlib import Path

from tests.mlflow_helpers import read_single_run, sqlite_store
from tests.tof_mra_vessel_gan.tof_helpers import run_tiny, workspace_overrides


def test_gan_training_logs_params_loss_terms_and_previews(tof_datalist: Path, tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    overrides = {"dataset_dir": str(tof_datalist.parent), **workspace_overrides(tmp_path), "tracking_uri": store}
    run_tiny(["train.json", "wgan_gp_sn.json", "mlflow.json"], overrides)

    run = read_single_run(store, "tof_mra_vessel_gan_logs")  # named after the run folder
    assert run.status == "FINISHED"
    assert run.params["learning_rate"] == "0.0001" and run.params["batch_size"] == "4"
    assert len(run.metric_steps["critic_loss"]) >= 1 and len(run.metric_steps["generator_loss"]) >= 1
    previews = [name for name in run.artifacts if name.endswith(".png")]
    assert previews == sorted(p.name for p in (tmp_path / "logs").glob("preview_iteration_*.png")) != []


def test_segmentation_training_logs_loss_and_validation_dice(tof_datalist: Path, tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    overrides = {
        "dataset_dir": str(tof_datalist.parent),
        "output_dir": str(tmp_path / "logs"),
        "segmenter_path": str(tmp_path / "models" / "segmenter.pt"),
        "train_source": "real",
        "real_patients": 2,
        "max_epochs": 1,
        "tracking_uri": store,
        "experiment_name": "segmentation",
    }
    run_tiny(["train_segmentation.json", "mlflow.json", "mlflow_segmentation.json"], overrides)

    run = read_single_run(store, "segmentation")
    assert run.params["learning_rate"] == "0.0001"
    assert len(run.metric_steps["train_loss"]) >= 1
    assert run.metric_steps["val_mean_dice"] == [1] and run.metric_steps["val_pooled_dice"] == [1]
