# Generated copy of tools/common/stopping.py: edit the source, then run `python -m tools sync-common`.
"""Stopping a training run on a wall-clock budget, so that it still checkpoints and exports.

A run cut by ``timeout`` or a job scheduler loses the partial epoch and never reaches the
``COMPLETED`` export; a run stopped with ``engine.terminate()`` fires ``COMPLETED``, so the release
weights are written as on a normal finish and re-running the command resumes from the last checkpoint.
"""

from __future__ import annotations

import time

import torch
from ignite.engine import Engine, Events

__all__ = ["WallClockLimit"]


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
            engine.terminate()
