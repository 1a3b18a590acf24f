"""The wall-clock training limit: stops at an iteration boundary and still fires COMPLETED (the export)."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine, Events

from bundle_runtime.stopping import WallClockLimit
from tests.helpers import BUNDLES_DIR


def _counting_engine() -> tuple[Engine, list[str]]:
    events: list[str] = []
    engine = Engine(lambda engine, batch: batch)
    engine.add_event_handler(Events.COMPLETED, lambda engine: events.append("completed"))
    return engine, events


def test_time_up_terminates_after_the_first_iteration_and_completes():
    engine, events = _counting_engine()
    WallClockLimit(seconds=1e-9).attach(engine)
    engine.run(range(10), max_epochs=5)
    assert engine.state.iteration == 1
    assert events == ["completed"]


def test_no_limit_runs_every_epoch():
    engine, events = _counting_engine()
    WallClockLimit(seconds=None).attach(engine)
    engine.run(range(10), max_epochs=3)
    assert engine.state.iteration == 30 and engine.state.epoch == 3
    assert events == ["completed"]


def test_a_generous_limit_does_not_stop_early():
    engine, _ = _counting_engine()
    WallClockLimit(seconds=3600).attach(engine)
    engine.run(range(4), max_epochs=2)
    assert engine.state.iteration == 8


@pytest.mark.parametrize("seconds", [0, -5])
def test_non_positive_limit_is_rejected_by_name(seconds):
    with pytest.raises(ValueError, match="max_train_seconds"):
        WallClockLimit(seconds=seconds)


TRAINING_CONFIGS = sorted(BUNDLES_DIR.glob("*/configs/train*.json"))


def test_every_bundle_training_config_is_wired_for_max_train_seconds():
    assert len(TRAINING_CONFIGS) >= 7
    for path in TRAINING_CONFIGS:
        config = json.loads(path.read_text())
        assert config.get("max_train_seconds", "absent") is None, path
        limits = [h for h in config["train"]["handlers"] if h["_target_"].endswith("stopping.WallClockLimit")]
        assert [h["seconds"] for h in limits] == ["@max_train_seconds"], path


def test_a_non_finite_loss_stops_at_once_naming_epoch_iteration_and_items():
    from bundle_runtime.stopping import StopOnNonFiniteLoss

    losses = iter([0.5, 0.4, float("nan"), 0.3])
    engine = Engine(lambda engine, batch: {"loss": torch.tensor(next(losses)), "pred": torch.zeros(4)})
    StopOnNonFiniteLoss().attach(engine)
    completed = []
    engine.add_event_handler(Events.COMPLETED, lambda engine: completed.append(True))
    batches = [{"image_path": ["a.nii.gz", "b.nii.gz"]}, {"image_path": ["c.nii.gz", "d.nii.gz"]}]
    with pytest.raises(
        FloatingPointError,
        match=r"non-finite loss \{'loss': nan\} at epoch 2, iteration 3; batch items: \['a.nii.gz', 'b.nii.gz'\]",
    ):
        engine.run(batches, max_epochs=3)
    assert completed == []  # COMPLETED (the export) never fires


def test_non_finite_scalars_are_found_in_every_trainer_output():
    from bundle_runtime.stopping import non_finite_losses

    gan = {
        "critic_loss": torch.tensor(1.0),
        "generator_loss": torch.tensor(float("inf")),
        "pred": torch.full((2, 2), float("nan")),
    }
    assert non_finite_losses(gan) == {"generator_loss": float("inf")}
    decollated = [{"loss": float("nan"), "pred": torch.zeros(3)}, {"loss": float("nan")}]
    assert set(non_finite_losses(decollated)) == {"loss"}
    assert non_finite_losses({"loss": torch.tensor(0.2)}) == {}


def test_wall_clock_stop_is_marked_as_on_purpose():
    engine, _ = _counting_engine()
    WallClockLimit(seconds=1e-9).attach(engine)
    engine.run(range(10), max_epochs=5)
    assert engine.state.stopped_by_wall_clock
