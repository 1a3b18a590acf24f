"""Reading back what a bundle's ``configs/mlflow*.json`` overlay wrote, through MLflow's own client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoggedRun:
    """The one finished run of an experiment: its params, each metric's logged steps, its artifact paths."""

    params: dict[str, str]
    metric_steps: dict[str, list[int]]
    artifacts: list[str]
    status: str


def sqlite_store(folder: Path) -> str:
    """A local SQLite tracking URI in ``folder`` (MONAI's MLFlowHandler refuses ``file://`` stores)."""
    return f"sqlite:///{folder / 'mlruns.db'}"


def read_single_run(tracking_uri: str, experiment_name: str) -> LoggedRun:
    """The experiment's only run, read back from the store; fails if it has none or several."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, f"no experiment {experiment_name!r} in {tracking_uri}"
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, f"{len(runs)} runs in {experiment_name!r}"
    run = runs[0]
    metric_steps = {
        key: sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) for key in run.data.metrics
    }
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    return LoggedRun(dict(run.data.params), metric_steps, artifacts, run.info.status)
