"""Train a fresh segmenter on some pairs with the SupervisedTrainer the config declares, then score its Dice.

evaluate.json declares the training as MONAI's ``SupervisedTrainer`` with ``"_mode_": "callable"`` (device,
epochs, loss, ...) and the optimizer as a ``torch.optim`` partial; this module only builds what changes per
training set (the network, the loader) and calls the two partials: the pattern of tof_mra_vessel_gan's
train_segmentation.json, where the whole run is such a trainer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from scripts.common.checks import check_positive_int
from scripts.evaluation.metrics import describe_loss, dice_per_class, finite_mean

__all__ = ["SegmenterTraining"]

#: What the training passes to the trainer partial itself, so the config must leave them unbound.
_PER_TRAINING = ("train_data_loader", "network", "optimizer")


def _check_partial(setting: str, partial: Any, unbound: Sequence[str]) -> functools.partial:
    if not isinstance(partial, functools.partial):
        raise ValueError(f'{setting} must be a component with "_mode_": "callable" (got {type(partial).__name__})')
    bound = [name for name in unbound if name in partial.keywords]
    if bound:
        raise ValueError(f"{setting} binds {bound}: each training sets those itself, remove them from the config")
    return partial


class SegmenterTraining:
    """One segmenter recipe, trained afresh per training set and scored on held-out pairs.

    Args:
        network: zero-argument factory of a fresh segmenter (1 input channel, one output channel per class).
        trainer: ``SupervisedTrainer`` partial (``segmenter_trainer``): everything but the loader, network
            and optimizer; its ``max_epochs`` and ``loss_function`` are required.
        optimizer: ``torch.optim`` partial taking the parameters (``segmenter_optimizer``).
        batch_size: batch size of the training loader.
        label_names: the label classes; Dice is reported for every class but the first (background).
        device: where training and scoring run.
    """

    def __init__(
        self,
        network: Callable[[], torch.nn.Module],
        trainer: functools.partial,
        optimizer: functools.partial,
        batch_size: int,
        label_names: Sequence[str],
        device: str | torch.device = "cpu",
    ) -> None:
        self.trainer = _check_partial("segmenter_trainer", trainer, _PER_TRAINING)
        self.optimizer = _check_partial("segmenter_optimizer", optimizer, ("params",))
        for required in ("max_epochs", "loss_function"):
            if required not in trainer.keywords:
                raise ValueError(f"segmenter_trainer must set {required}")
        check_positive_int("segmenter_trainer#max_epochs", trainer.keywords["max_epochs"])
        self.batch_size = check_positive_int("segmenter_batch_size", batch_size)
        self.network = network
        with torch.random.fork_rng(devices=[]):  # builds one to name it, leaving the global generator alone
            self.network_name = type(network()).__name__
        self.label_names = list(label_names)
        self.device = torch.device(device)

    def _devices(self) -> list[int]:
        return [self.device.index or 0] if self.device.type == "cuda" else []

    def fit(
        self, pairs: Sequence[Mapping[str, torch.Tensor]], init: np.random.SeedSequence, run: np.random.SeedSequence
    ) -> torch.nn.Module:
        """A fresh network trained on ``pairs``: weights drawn from ``init``, shuffling and training from ``run``."""
        if not pairs:
            raise ValueError("segmenter training: no training pairs")
        (init_seed,) = (int(v) for v in init.generate_state(1))
        shuffle_seed, step_seed = (int(v) for v in run.generate_state(2))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            network = self.network().to(self.device)
        shuffle = torch.Generator().manual_seed(shuffle_seed)
        loader = torch.utils.data.DataLoader(list(pairs), batch_size=self.batch_size, shuffle=True, generator=shuffle)
        with torch.random.fork_rng(devices=self._devices()):
            torch.manual_seed(step_seed)
            optimizer = self.optimizer(network.parameters())
            self.trainer(train_data_loader=loader, network=network, optimizer=optimizer).run()
        return network.eval()

    def train_and_test(
        self,
        pairs: Sequence[Mapping[str, torch.Tensor]],
        tests: Sequence[Mapping[str, torch.Tensor]],
        init: np.random.SeedSequence,
        run: np.random.SeedSequence,
    ) -> dict[str, Any]:
        """Dice per class on ``tests`` of a segmenter trained on ``pairs``, and their mean."""
        dice = dice_per_class(self.fit(pairs, init, run), tests, self.label_names, self.device)
        return {"n_training_pairs": len(pairs), "dice": dice, "mean_dice": finite_mean(list(dice.values()))}

    def protocol(self) -> dict[str, Any]:
        """The recipe, read back from the partials that run it."""
        return {
            "segmenter": self.network_name,
            "segmenter_trainer": getattr(self.trainer.func, "__name__", str(self.trainer.func)),
            "segmenter_epochs": int(self.trainer.keywords["max_epochs"]),
            "segmenter_batch_size": self.batch_size,
            "segmenter_optimizer": getattr(self.optimizer.func, "__name__", str(self.optimizer.func)),
            "segmenter_learning_rate": self.optimizer.keywords.get("lr"),
            "segmenter_loss": describe_loss(self.trainer.keywords["loss_function"]),
        }
