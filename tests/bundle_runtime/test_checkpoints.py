"""Checkpoints: atomic and finite-only writes, n_saved across resumes, resume from the newest loadable file, RNG states."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events
from monai.transforms import Compose, RandGaussianNoised

from bundle_runtime.checkpoints import AtomicCheckpointSaver, RandomStates
from bundle_runtime.weights import ResumeFromLatestCheckpoint


def _engine(network: torch.nn.Module) -> Engine:
    def step(engine: Engine, batch: int) -> None:
        with torch.no_grad():
            network.weight.add_(0.1)

    return Engine(step)


def _train(folder: Path, network: torch.nn.Module, epochs: int, **saver: object) -> Engine:
    engine = _engine(network)
    objects = {"net": network, "trainer": engine}
    ResumeFromLatestCheckpoint(folder, objects).attach(engine)
    AtomicCheckpointSaver(str(folder), objects, save_interval=1, epoch_level=True, **saver).attach(engine)
    engine.run(range(2), max_epochs=epochs)
    return engine


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_write_leaves_no_partial_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    network = torch.nn.Linear(2, 2)
    _train(tmp_path, network, 1)
    real_save = torch.save

    def save_half_then_die(obj: object, destination: object, **kwargs: object) -> None:
        real_save(obj, destination, **kwargs)
        Path(destination).write_bytes(Path(destination).read_bytes()[:50])
        raise KeyboardInterrupt("killed during the write")

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, network, 2)
    assert _names(tmp_path) == ["checkpoint_epoch=1.pt"]  # in place, a 50-byte checkpoint_epoch=2.pt would remain


def test_non_finite_states_are_not_written(tmp_path: Path) -> None:
    network = torch.nn.Linear(2, 2)
    with torch.no_grad():
        network.bias[0] = math.nan
    with pytest.raises(
        ValueError, match=r"checkpoint .*checkpoint_epoch=1\.pt \(not written\) holds non-finite values"
    ):
        _train(tmp_path, network, 1)
    assert not list(tmp_path.glob("*.pt"))


def test_n_saved_counts_the_checkpoints_of_earlier_runs(tmp_path: Path) -> None:
    network = torch.nn.Linear(2, 2)
    _train(tmp_path, network, 3)  # keeps every checkpoint
    assert _names(tmp_path) == [f"checkpoint_epoch={e}.pt" for e in (1, 2, 3)]
    (tmp_path / ".tmp-1-checkpoint_epoch=4.pt").write_bytes(b"left by a kill")
    engine = _train(tmp_path, network, 5, n_saved=2)
    assert engine.state.epoch == 5
    assert _names(tmp_path) == ["checkpoint_epoch=4.pt", "checkpoint_epoch=5.pt"]


def test_resume_takes_the_newest_checkpoint_that_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    network = torch.nn.Linear(2, 2)
    _train(tmp_path, network, 2)
    good = torch.load(tmp_path / "checkpoint_epoch=2.pt", weights_only=True)
    (tmp_path / "checkpoint_epoch=3.pt").write_bytes(b"")  # a kill at the start of the write
    diverged = {**good, "net": {k: torch.full_like(v, math.nan) for k, v in good["net"].items()}}
    torch.save(diverged, tmp_path / "checkpoint_epoch=4.pt")
    torch.save({"net": good["net"]}, tmp_path / "checkpoint_epoch=5.pt")  # lacks the trainer
    engine = _engine(network)
    loader = ResumeFromLatestCheckpoint(tmp_path, {"net": network, "trainer": engine})
    with caplog.at_level(logging.INFO):
        loader.attach(engine)
        engine.add_event_handler(Events.STARTED, lambda e: e.terminate())
        engine.run(range(2), max_epochs=6)
    text = caplog.text
    assert f"skipped checkpoint {tmp_path / 'checkpoint_epoch=5.pt'}: it lacks ['trainer']" in text
    assert "checkpoint_epoch=4.pt: it holds non-finite values in 'net.weight'" in text
    assert "checkpoint_epoch=3.pt: it is truncated or not a PyTorch checkpoint (" in text
    assert "resumed at epoch 2, iteration 4 from" in text
    torch.testing.assert_close(network.weight, good["net"]["weight"])


def test_random_states_restore_every_generator_and_survive_a_safe_load(tmp_path: Path) -> None:
    import random

    import numpy as np

    transforms = Compose([RandGaussianNoised(keys="x", prob=1.0)])
    transforms.set_random_state(seed=3)
    states = RandomStates(transforms)
    assert len(states.transforms) == 3  # the Compose, the dict transform and the array transform inside it
    torch.save({"random_states": states.state_dict()}, tmp_path / "c.pt")

    def draw() -> list:
        noise = transforms({"x": torch.zeros(1, 4)})["x"]
        return [torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random(), noise.tolist()]

    first = draw()
    states.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True)["random_states"])
    assert draw() == first
    with pytest.raises(ValueError, match="cover 3 random transforms, the configured training has 0"):
        RandomStates([]).load_state_dict(states.state_dict())
