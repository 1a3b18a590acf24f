"""Weight files: clear errors, atomic export, resuming from the newest checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine

from bundle_runtime.weights import (
    ResumeFromLatestCheckpoint,
    StateDictExporter,
    cpu_state_dict,
    file_sha256,
    latest_checkpoint,
    load_state_dict,
    read_state_dict,
    save_state_dict,
)


def test_read_errors_name_the_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="load_x: weights file .* does not exist"):
        read_state_dict(tmp_path / "missing.pt", "load_x")
    truncated = tmp_path / "truncated.pt"
    torch.save(torch.nn.Linear(4, 4).state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ValueError, match="load_x: weights file .* is truncated or not a PyTorch checkpoint"):
        read_state_dict(truncated, "load_x")
    not_a_dict = tmp_path / "list.pt"
    torch.save([1, 2], not_a_dict)
    with pytest.raises(ValueError, match="does not hold a state dict"):
        read_state_dict(not_a_dict, "load_x")


class PickledObject:
    """A non-tensor object: torch's weights-only loader refuses it."""


def test_a_file_with_code_objects_is_refused_without_advice_to_disable_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"weight": torch.zeros(2), "extra": PickledObject()}, path)
    with pytest.raises(ValueError) as refused:
        read_state_dict(path, "load_x")
    message = str(refused.value)
    assert message.startswith(f"load_x: weights file {path} holds more than tensors")
    assert "PickledObject" in message
    assert "weights_only" not in message and "add_safe_globals" not in message
    # torch's own error, which carries that advice, is not chained into what the user sees
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_checkpoint_with_code_objects_is_skipped_naming_it_without_that_advice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:

    network = torch.nn.Linear(2, 2)
    checkpoint = tmp_path / "checkpoint_epoch=1.pt"
    torch.save({"network": network.state_dict(), "extra": PickledObject()}, checkpoint)
    with caplog.at_level("WARNING"):
        assert ResumeFromLatestCheckpoint(tmp_path, {"network": network}).newest_loadable() is None
    skipped = [r.getMessage() for r in caplog.records if str(checkpoint) in r.getMessage()]
    assert skipped and "holds more than tensors" in skipped[0]
    assert "weights_only" not in caplog.text


def test_save_unwraps_and_load_reports_mismatch(tmp_path: Path) -> None:
    network = torch.nn.Linear(4, 2)
    path = save_state_dict(torch.nn.DataParallel(network), tmp_path / "out" / "net.pt")
    assert set(torch.load(path, weights_only=True)) == {"weight", "bias"}
    assert not list(path.parent.glob(".tmp-*"))
    assert len(file_sha256(path)) == 64 and file_sha256(tmp_path / "none.pt") is None
    loaded = load_state_dict(torch.nn.Linear(4, 2), path, "load_net")
    torch.testing.assert_close(loaded.weight, network.weight)
    with pytest.raises(ValueError, match="load_net: weights file .* does not match the configured network"):
        load_state_dict(torch.nn.Linear(4, 3), path, "load_net")


def test_latest_checkpoint_is_the_highest_epoch(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "absent") is None
    for epoch in (2, 10, 9):
        (tmp_path / f"checkpoint_epoch={epoch}.pt").write_bytes(b"")
    (tmp_path / "other_epoch=99.pt").write_bytes(b"")
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=10.pt"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to train on")
def test_weights_trained_on_a_gpu_are_saved_with_cpu_tensors(tmp_path):
    network = torch.nn.Linear(3, 2).cuda()
    path = save_state_dict(network, tmp_path / "w.pt")
    state = torch.load(path, weights_only=True)  # no map_location: a CPU-only user's plain load
    assert {tensor.device.type for tensor in state.values()} == {"cpu"}
    assert all(value.device.type == "cpu" for value in cpu_state_dict(network).values())


def test_weights_holding_nan_are_refused_with_the_file_named(tmp_path: Path) -> None:
    state = torch.nn.Linear(2, 2).state_dict()
    state["bias"][1] = float("inf")
    torch.save(state, tmp_path / "inf.pt")
    with pytest.raises(ValueError, match=r"load_x: weights file .*inf\.pt holds non-finite values .* in 'bias'"):
        load_state_dict(torch.nn.Linear(2, 2), tmp_path / "inf.pt", "load_x")


def _finished_engine(max_epochs: int, epochs_run: int) -> Engine:
    engine = Engine(lambda engine, batch: None)
    engine.state.max_epochs, engine.state.epoch = max_epochs, epochs_run
    return engine


def test_export_replaces_weights_only_after_a_finished_finite_run(tmp_path: Path) -> None:
    shipped = tmp_path / "model.pt"
    shipped.write_bytes(b"shipped weights")
    network = torch.nn.Linear(2, 2)
    exporter = StateDictExporter(network, shipped)
    with pytest.raises(RuntimeError, match=r"stopped at epoch 2 of 5 without finishing: .*model\.pt is left as it was"):
        exporter(_finished_engine(5, 2))
    stopped = _finished_engine(5, 2)
    stopped.state.stopped_by_wall_clock = True  # max_train_seconds: a stop on purpose
    with torch.no_grad():
        network.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"trained weights for .*model\.pt \(left as it was\) holds non-finite"):
        exporter(stopped)
    assert shipped.read_bytes() == b"shipped weights"
    with torch.no_grad():
        network.weight[0, 0] = 0.0
    exporter(stopped)
    torch.testing.assert_close(torch.load(shipped, weights_only=True)["weight"], network.weight)


def test_best_weights_reach_the_release_path_only_when_the_run_finishes(tmp_path: Path) -> None:
    from bundle_runtime.weights import PromoteBestWeights

    best, release = tmp_path / "run" / "best.pt", tmp_path / "models" / "segmenter.pt"
    release.parent.mkdir()
    release.write_bytes(b"shipped weights")
    promote = PromoteBestWeights(best, release)
    best.parent.mkdir()
    torch.save({"old": torch.zeros(1)}, best)
    promote.forget_earlier_run(_finished_engine(5, 0))
    assert not best.exists()  # an earlier run's best is never promoted
    network = torch.nn.Linear(2, 2)
    save_state_dict(network, best)
    with pytest.raises(RuntimeError, match="stopped at epoch 3 of 5 without finishing"):
        promote(_finished_engine(5, 3))
    assert release.read_bytes() == b"shipped weights"
    promote(_finished_engine(5, 5))
    torch.testing.assert_close(torch.load(release, weights_only=True)["weight"], network.weight)
