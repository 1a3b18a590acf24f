# Generated copy of bundle_runtime/stopping.py: edit the source, then run `python -m tools sync-common`.
"""Stopping a training run on a wall-clock budget, so that it still checkpoints and exports.

A run cut by ``timeout`` or a job scheduler loses the partial epoch and never reaches the
``COMPLETED`` export; a run stopped with ``engine.terminate()`` fires ``COMPLETED``, so the release
weights are written as on a normal finish and re-running the command resumes from the last checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["StopOnNonFiniteLoss", "WallClockLimit", "batch_sources", "non_finite_losses"]


class WallClockLimit:
    """Terminates training once ``seconds`` have passed since the engine started (None: never).

    Under ``torch.distributed`` every rank stops at the same iteration: the ranks agree on the
    decision with an all-reduce, since one rank stopping alone would hang the others in DDP.
    """

    def __init__(self, seconds: float | None = None) -> None:
        if seconds is not None and seconds <= 0:
            raise ValueError(f"max_train_seconds must be positive or null, got {seconds}")
        self.seconds = seconds
        self._started: float | None = None

    def attach(self, engine: Engine) -> None:
        if self.seconds is None:
            return
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._check)

    def _start(self, engine: Engine) -> None:
        self._started = time.monotonic()

    def _time_is_up(self) -> bool:
        over = self._started is not None and time.monotonic() - self._started >= self.seconds
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return over
        on_gpu = torch.distributed.get_backend() == "nccl"
        flag = torch.tensor(
            [float(over)], device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu"
        )
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return bool(flag.item())

    def _check(self, engine: Engine) -> None:
        if self._time_is_up():
            engine.logger.info(
                f"max_train_seconds={self.seconds} reached at epoch {engine.state.epoch}, "
                f"iteration {engine.state.iteration}: stopping and exporting"
            )
            engine.state.stopped_by_wall_clock = True  # the exporters accept this stop as a finish
            engine.terminate()


def non_finite_losses(output: Any) -> dict[str, float]:
    """The scalar entries (0-d tensors or numbers) of an iteration output that are NaN or Inf.

    Trainers' outputs differ: MONAI's ``SupervisedTrainer`` gives ``{"loss", "pred", ...}`` (or a
    list of such dicts when decollated), the adversarial trainers several ``*_loss`` scalars; every
    scalar is checked, large tensors (predictions, images) are not.
    """
    found: dict[str, float] = {}
    outputs = output if isinstance(output, Sequence) and not isinstance(output, str) else [output]
    for item in outputs:
        if not isinstance(item, Mapping):
            continue
        for key, value in item.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
                value = float(value.detach().cpu())
            if isinstance(value, float) and not math.isfinite(value):
                found[str(key)] = value
    return found


def batch_sources(batch: Any, keys: Sequence[str]) -> list[str]:
    """The file names (or ids) of a batch's items under ``keys``, where the batch still carries them."""
    batches = batch if isinstance(batch, Sequence) and not isinstance(batch, str) else [batch]
    sources: list[str] = []
    for item in batches:
        if not isinstance(item, Mapping):
            continue
        for key in keys:
            value = item.get(key)
            values = value if isinstance(value, (list, tuple)) else [value]
            sources += [str(v) for v in values if isinstance(v, str)]
    return sources


class StopOnNonFiniteLoss:
    """Stops training with an error at the first iteration whose loss is NaN or Inf.

    ignite's ``TerminateOnNan`` stops quietly and so fires ``COMPLETED``, which would export the
    diverged weights; raising here leaves every exported file as it was and names the epoch, the
    iteration and, where the batch carries them (``source_keys``), the items of the batch.
    """

    def __init__(self, source_keys: Sequence[str] = ("image_path", "label_path", "patient")) -> None:
        self.source_keys = list(source_keys)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        bad = non_finite_losses(engine.state.output)
        if not bad:
            return
        sources = batch_sources(engine.state.batch, self.source_keys)
        items = f"; batch items: {sources}" if sources else ""
        raise FloatingPointError(
            f"non-finite loss {bad} at epoch {engine.state.epoch}, iteration {engine.state.iteration}{items}: "
            "training stopped, no weights exported (check the data and the learning rate)"
        )
