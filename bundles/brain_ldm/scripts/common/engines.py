# Generated copy of bundle_runtime/engines.py: edit the source, then run `python -m tools sync-common`.
"""A MONAI ``Trainer`` base for the engines whose iteration MONAI does not provide.

The bundles' adversarial trainers (KL autoencoder, SPADE VAE-GAN, patch-pair GAN) each run their own
two-optimiser ``_iteration``. This base takes MONAI's engine arguments once, under the names MONAI's
own trainers use in configs (``train_data_loader``, ``key_train_metric``, ``train_handlers``), so a
subclass lists only its networks and loss settings and forwards the rest as ``**engine_options``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from ignite.engine import Engine
from monai.engines import Trainer
from torch.utils.data import DataLoader

__all__ = ["CustomIterationTrainer"]


class CustomIterationTrainer(Trainer):
    """``monai.engines.Trainer`` with a subclass-defined ``_iteration`` and a fixed ``prepare_batch``.

    AMP is off: the subclasses step two optimisers per iteration themselves, without a grad scaler.

    Args:
        device: training device.
        max_epochs: total epochs (a resumed run continues up to this).
        train_data_loader: the training batches.
        prepare_batch: turns a batch into the tensors the subclass's ``_iteration`` expects.
        epoch_length, non_blocking, iteration_update, postprocessing, key_train_metric, additional_metrics,
        metric_cmp_fn, train_handlers, event_names, event_to_attr, decollate, to_kwargs: as for MONAI trainers.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        prepare_batch: Callable,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        iteration_update: Callable[[Engine, Any], Any] | None = None,
        postprocessing: Callable | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable | None = None,
        train_handlers: Sequence | None = None,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = False,
        to_kwargs: dict | None = None,
    ) -> None:
        extra: dict[str, Any] = {} if metric_cmp_fn is None else {"metric_cmp_fn": metric_cmp_fn}
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            postprocessing=postprocessing,
            key_metric=key_train_metric,
            additional_metrics=additional_metrics,
            handlers=train_handlers,
            amp=False,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            to_kwargs=to_kwargs,
            **extra,
        )

    def prepare_iteration_batch(self, batchdata: Any) -> Any:
        """``prepare_batch`` of one iteration's batch on the engine's device, as MONAI's own trainers call it.

        Every subclass's ``_iteration`` starts here, so the missing-batch error and the device/``to_kwargs``
        handling are the same for all of them.
        """
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        return self.prepare_batch(batchdata, self.state.device, self.non_blocking, **self.to_kwargs)
