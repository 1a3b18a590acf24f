"""The shared trainer base wires MONAI's engine arguments, so subclasses only add their iteration."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from ignite.engine import Events
from ignite.metrics import Average

from bundle_runtime.engines import CustomIterationTrainer


class _HalvingTrainer(CustomIterationTrainer):
    """A toy subclass: each iteration reports half of its batch sum, through the given prepare_batch."""

    def __init__(self, data: list[torch.Tensor], **engine_options: Any) -> None:
        super().__init__("cpu", 2, data, lambda batch, device, non_blocking, **kwargs: batch * 2, **engine_options)

    def _iteration(self, engine: CustomIterationTrainer, batchdata: torch.Tensor) -> dict:
        prepared = engine.prepare_iteration_batch(batchdata)
        return {"loss": float(prepared.sum()) / 2}


def test_engine_options_reach_the_monai_trainer() -> None:
    seen: list[float] = []

    class _Recorder:
        def attach(self, engine: CustomIterationTrainer) -> None:
            engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.output["loss"]))

    data = [torch.tensor([1.0, 2.0]), torch.tensor([5.0]), torch.tensor([7.0])]
    trainer = _HalvingTrainer(
        data,
        epoch_length=1,
        train_handlers=[_Recorder()],
        key_train_metric={"mean_loss": Average(output_transform=lambda output: output["loss"])},
    )
    trainer.run()
    assert trainer.amp is False and trainer.state.epoch == 2
    assert seen == [3.0, 5.0]  # epoch_length 1: one batch per epoch, doubled by prepare_batch, then halved
    assert trainer.state.metrics["mean_loss"] == 5.0  # the key metric of the last epoch


def test_an_iteration_without_a_batch_is_refused() -> None:
    with pytest.raises(ValueError, match="Must provide batch data"):
        _HalvingTrainer([torch.tensor([1.0])]).prepare_iteration_batch(None)
