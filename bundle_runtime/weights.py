"""Reading, exporting and resuming network weights, with errors that name the file at fault.

``torch.load`` on a missing or truncated file fails deep inside the zip reader; bundles call these
helpers in their ``initialize`` step so a user learns which input is wrong before any work starts.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from monai.handlers import CheckpointLoader

from .atomic_io import atomic_path

__all__ = [
    "PromoteBestWeights",
    "ResumeFromLatestCheckpoint",
    "check_exportable",
    "check_finite",
    "checkpoints_newest_first",
    "cpu_state_dict",
    "file_sha256",
    "first_non_finite",
    "StateDictExporter",
    "latest_checkpoint",
    "load_failure",
    "load_state_dict",
    "read_state_dict",
    "run_finished",
    "save_state_dict",
    "unwrap",
]


def first_non_finite(state: Any, prefix: str = "") -> str | None:
    """The dotted key of the first floating tensor holding NaN or Inf in a (nested) state, else None.

    Checkpoints nest networks and optimiser states in dicts and lists, so the walk follows both.
    """
    if isinstance(state, torch.Tensor):
        finite = not state.is_floating_point() and not state.is_complex() or bool(torch.isfinite(state).all())
        return None if finite else prefix or "tensor"
    if isinstance(state, Mapping):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def check_finite(state: Any, what: str) -> None:
    """An error naming ``what`` and the tensor when ``state`` holds NaN or Inf (diverged training)."""
    found = first_non_finite(state)
    if found is not None:
        raise ValueError(f"{what} holds non-finite values (NaN or Inf) in {found!r}: training diverged")


def file_sha256(path: str | os.PathLike) -> str | None:
    """Hex sha256 of a file (None when absent), recorded so an output names the exact weights behind it."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside DistributedDataParallel / DataParallel wrappers."""
    return network.module if hasattr(network, "module") and isinstance(network.module, torch.nn.Module) else network


_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error: (.*?)(?:\. Please use|\n|$)")


def load_failure(error: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, without torch's advice to retry with ``weights_only=False``.

    That advice tells a user to run whatever code a file carries; a weights file needs nothing but tensors.
    """
    text = str(error)
    match = _UNPICKLER_REASON.search(text)
    if match or "weights_only" in text:
        reason = match.group(1).strip() if match else "objects other than tensors"
        return f"holds more than tensors ({reason}); refused, since loading it could run code it carries"
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"is truncated or not a PyTorch checkpoint ({first_line})"


def read_state_dict(path: str | os.PathLike, name: str = "weights", map_location: Any = "cpu") -> dict:
    """A state dict read from ``path``; ``name`` is the config id reported when the file is unusable.

    A checkpoint holding several objects (as written by ``CheckpointSaver``) is accepted when the
    network's entry is the only module-like one; otherwise the caller must pick the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: weights file {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError... for damaged files
        raise ValueError(f"{name}: weights file {path} {load_failure(error)}") from None
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{name}: weights file {path} does not hold a state dict")
    check_finite(state, f"{name}: weights file {path}")
    return dict(state)


def load_state_dict(
    network: torch.nn.Module, path: str | os.PathLike, name: str = "weights", strict: bool = True
) -> torch.nn.Module:
    """Load ``path`` into ``network`` (unwrapped), reporting mismatches against the config id ``name``."""
    state = read_state_dict(path, name)
    try:
        unwrap(network).load_state_dict(state, strict=strict)
    except RuntimeError as error:
        raise ValueError(f"{name}: weights file {path} does not match the configured network: {error}") from error
    return network


def cpu_state_dict(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unwrapped state dict with every tensor on the CPU, so GPU-trained weights load anywhere."""
    return {key: value.detach().cpu() for key, value in unwrap(network).state_dict().items()}


def save_state_dict(network: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write the unwrapped ``network`` state dict (CPU tensors) atomically (temp file + rename)."""
    state = cpu_state_dict(network)
    return atomic_path(path, lambda temporary: torch.save(state, temporary))


_EPOCH_PATTERN = re.compile(r"epoch=(\d+)")


def checkpoints_newest_first(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> list[Path]:
    """The ``CheckpointSaver`` files in ``ckpt_dir``, highest epoch first (empty when there is none)."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return []
    candidates = []
    for file in folder.glob(f"{prefix}*.pt"):
        match = _EPOCH_PATTERN.search(file.name)
        if match:
            candidates.append((int(match.group(1)), file))
    return [file for _, file in sorted(candidates, reverse=True)]


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The highest-epoch ``CheckpointSaver`` file in ``ckpt_dir`` (None when there is none)."""
    found = checkpoints_newest_first(ckpt_dir, prefix)
    return found[0] if found else None


class ResumeFromLatestCheckpoint(CheckpointLoader):
    """``CheckpointLoader`` that resumes from the newest checkpoint in a folder that loads, or starts fresh.

    Re-running a stopped training command then continues where it stopped (networks, optimisers,
    the engine's epoch/iteration and the random states), without the user naming the checkpoint
    file. MONAI's loader takes one fixed path and fails with a bare ``EOFError`` on a file cut by a
    kill; this one skips unreadable, incomplete or non-finite checkpoints, logging each with the reason.
    Objects with ``optional_in_checkpoint = True`` (the random states) may be absent from older files.

    Args:
        ckpt_dir: folder written by the training's ``CheckpointSaver``.
        load_dict: objects to restore, the same dict the saver writes.
        prefix: the saver's ``file_prefix``.
        enabled: set False to always start fresh.
        kwargs: passed to ``CheckpointLoader`` (e.g. ``map_location``).
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        load_dict: dict,
        prefix: str = "checkpoint",
        enabled: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(load_path=str(ckpt_dir), load_dict=load_dict, **kwargs)
        self.ckpt_dir = Path(ckpt_dir)
        self.prefix = prefix
        self.enabled = enabled

    def _problem(self, checkpoint: Any) -> str | None:
        """Why ``checkpoint`` cannot be resumed from (None when it can)."""
        if not isinstance(checkpoint, Mapping):
            return "it does not hold a dict of saved objects"
        missing = [
            key
            for key, obj in self.load_dict.items()
            if key not in checkpoint and not getattr(obj, "optional_in_checkpoint", False)
        ]
        if missing:
            return f"it lacks {missing}"
        found = first_non_finite(checkpoint)
        return None if found is None else f"it holds non-finite values in {found!r}"

    def newest_loadable(self) -> tuple[Path, dict] | None:
        """The newest checkpoint that loads and is complete, with its content; skipped files are logged."""
        for path in checkpoints_newest_first(self.ckpt_dir, self.prefix):
            try:
                checkpoint = torch.load(path, map_location=self.map_location, weights_only=True)
            except Exception as error:  # a file cut by a kill raises EOFError, RuntimeError, UnpicklingError...
                problem = f"it {load_failure(error)}"
            else:
                problem = self._problem(checkpoint)
            if problem is None:
                return path, checkpoint
            self.logger.warning(f"skipped checkpoint {path}: {problem}")
        return None

    def __call__(self, engine: Engine) -> None:
        found = self.newest_loadable() if self.enabled else None
        if found is None:
            self.logger.info(f"no usable checkpoint in {self.ckpt_dir}: training starts fresh")
            return
        self.load_path, checkpoint = str(found[0]), found[1]
        to_load = {key: obj for key, obj in self.load_dict.items() if key in checkpoint}
        prior_max_epochs = engine.state.max_epochs  # as MONAI's loader: the configured max_epochs wins
        Checkpoint.load_objects(to_load=to_load, checkpoint=checkpoint, strict=self.strict)
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise ValueError(
                f"checkpoint {self.load_path} is at epoch {engine.state.epoch}, beyond max_epochs={prior_max_epochs}: "
                "raise max_epochs to train further"
            )
        engine.state.max_epochs = prior_max_epochs
        self.logger.info(
            f"resumed at epoch {engine.state.epoch}, iteration {engine.state.iteration} from {self.load_path}"
        )


def run_finished(engine: Engine) -> bool:
    """True when ``engine`` ran all its epochs or was stopped on purpose by ``WallClockLimit``.

    ``COMPLETED`` also fires after ``engine.terminate()`` from any handler, so the exporters ask this
    before replacing release weights with those of a run cut short for another reason.
    """
    state = engine.state
    ran_all = state.max_epochs is not None and state.epoch >= state.max_epochs
    return ran_all or bool(getattr(state, "stopped_by_wall_clock", False))


def check_exportable(engine: Engine, state: Mapping, path: str | os.PathLike) -> None:
    """An error (nothing written) unless the run finished and ``state`` is finite."""
    if not run_finished(engine):
        raise RuntimeError(
            f"training stopped at epoch {engine.state.epoch} of {engine.state.max_epochs} without finishing: "
            f"{path} is left as it was"
        )
    check_finite(state, f"the trained weights for {path} (left as it was)")


class StateDictExporter:
    """Writes a network's bare state dict when training finishes (not when it fails or diverges).

    This is the release export (e.g. ``models/autoencoder.pt``), separate from the resumable
    checkpoints. Only rank 0 writes under ``torch.distributed``. Existing weights are never
    replaced by non-finite ones, nor by those of a run that neither ran all its epochs nor was
    stopped by ``max_train_seconds``.

    Args:
        network: the network to export (DDP wrappers are unwrapped).
        path: destination file, written atomically.
        on_export: optional callable run after the weights are written (e.g. writing latent statistics).
    """

    def __init__(self, network: torch.nn.Module, path: str | os.PathLike, on_export: Any = None) -> None:
        self.network = network
        self.path = path
        self.on_export = on_export

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return
        check_exportable(engine, cpu_state_dict(self.network), self.path)
        save_state_dict(self.network, self.path)
        engine.logger.info(f"exported weights to {self.path}")
        if callable(self.on_export):
            self.on_export()


class PromoteBestWeights:
    """When training finishes, copies the best validated weights (a key-metric checkpoint) to the release path.

    MONAI's key-metric ``CheckpointSaver`` writes the best weights as soon as an epoch beats the others,
    so saving straight to ``models/`` would replace shipped weights mid-run (a killed or diverged run
    would leave its partial best there). The saver writes to a run folder; this copies on a finish only.

    Args:
        source: the key-metric checkpoint file (a bare state dict).
        path: the release file, written atomically.
    """

    def __init__(self, source: str | os.PathLike, path: str | os.PathLike) -> None:
        self.source = Path(source)
        self.path = Path(path)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.forget_earlier_run)
        engine.add_event_handler(Events.COMPLETED, self)

    def forget_earlier_run(self, engine: Engine) -> None:
        """Remove an earlier run's best file, so only weights validated in this run can be exported."""
        self.source.unlink(missing_ok=True)

    def __call__(self, engine: Engine) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return
        if not self.source.is_file():
            engine.logger.warning(f"no validated weights in {self.source}: {self.path} is left as it was")
            return
        state = read_state_dict(self.source, "best validated weights")
        check_exportable(engine, state, self.path)
        atomic_path(self.path, lambda temporary: torch.save(state, temporary))
        engine.logger.info(f"exported the best validated weights {self.source} to {self.path}")
