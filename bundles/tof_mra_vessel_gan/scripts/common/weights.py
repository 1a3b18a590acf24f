"""Reading, exporting and resuming network weights, with errors that name the file at fault.

``torch.load`` on a missing or truncated file fails deep inside the zip reader; bundles call these
helpers in their ``initialize`` step so a user learns which input is wrong before any work starts.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

__all__ = [
    "ResumeFromLatestCheckpoint",
    "cpu_state_dict",
    "file_sha256",
    "StateDictExporter",
    "latest_checkpoint",
    "load_failure",
    "load_state_dict",
    "read_state_dict",
    "save_state_dict",
    "unwrap",
]


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(cpu_state_dict(network), temporary)
    os.replace(temporary, path)
    return path


_EPOCH_PATTERN = re.compile(r"epoch=(\d+)")


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The highest-epoch ``CheckpointSaver`` file in ``ckpt_dir`` (None when there is none)."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    candidates = []
    for file in folder.glob(f"{prefix}*.pt"):
        match = _EPOCH_PATTERN.search(file.name)
        if match:
            candidates.append((int(match.group(1)), file))
    return max(candidates)[1] if candidates else None


class ResumeFromLatestCheckpoint(CheckpointLoader):
    """``CheckpointLoader`` that resumes from the newest checkpoint in a folder, or starts fresh.

    Re-running a stopped training command then continues where it stopped (networks, optimisers
    and the engine's epoch/iteration), without the user naming the checkpoint file.

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

    def __call__(self, engine: Engine) -> None:
        found = latest_checkpoint(self.ckpt_dir, self.prefix) if self.enabled else None
        if found is None:
            self.logger.info(f"no checkpoint in {self.ckpt_dir}: training starts fresh")
            return
        self.load_path = str(found)
        try:
            super().__call__(engine)
        except pickle.UnpicklingError as error:  # torch's text advises weights_only=False: name the file instead
            raise ValueError(f"checkpoint {found} {load_failure(error)}") from None
        self.logger.info(f"resumed at epoch {engine.state.epoch}, iteration {engine.state.iteration}")


class StateDictExporter:
    """Writes a network's bare state dict when training completes (not when it fails).

    This is the release export (e.g. ``models/autoencoder.pt``), separate from the resumable
    checkpoints. Only rank 0 writes under ``torch.distributed``.

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
        save_state_dict(self.network, self.path)
        engine.logger.info(f"exported weights to {self.path}")
        if callable(self.on_export):
            self.on_export()
