"""Checkpoints that a kill cannot spoil, that keep ``n_saved`` across resumes, and that hold the random states.

MONAI's ``CheckpointSaver`` writes in place (a kill mid-write leaves a truncated file that blocks
every later resume), forgets the files of earlier runs (so ``n_saved`` is exceeded after a resume)
and saves no random state (so a resumed run draws other noise and another data order than an
uninterrupted one). ``AtomicCheckpointSaver`` and ``RandomStates`` close these three gaps.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointSaver
from monai.transforms import Randomizable

from .atomic_io import atomic_path
from .weights import check_finite

__all__ = ["AtomicCheckpointSaver", "RandomStates"]


def _rank() -> int:
    dist = torch.distributed
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _AtomicDiskSaver(DiskSaver):
    """``DiskSaver`` writing through a temporary file and a rename, refusing non-finite states.

    ``filename`` fixes the written name, as MONAI's private saver does for its final / key-metric files.
    """

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=False)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Any) -> None:
        check_finite(checkpoint, f"checkpoint {path} (not written)")
        atomic_path(path, lambda temporary: func(checkpoint, temporary, **self.kwargs))

    def remove(self, filename: str) -> None:
        super().remove(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` with atomic, finite-only writes that adopts the folder's earlier checkpoints.

    Same arguments as ``CheckpointSaver``. When the engine starts (after the resume loader), interval
    checkpoints already in ``save_dir`` up to the resumed epoch count towards ``n_saved`` (the oldest
    beyond it are deleted), and temporary files left by a killed write are removed.
    """

    def __init__(self, save_dir: str, save_dict: dict, **kwargs: Any) -> None:
        super().__init__(save_dir=save_dir, save_dict=save_dict, **kwargs)
        self.file_prefix = kwargs.get("file_prefix", "")
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, checkpoint.save_handler.filename)

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.STARTED, self.adopt_existing)

    def adopt_existing(self, engine: Engine) -> None:
        """Track the earlier runs' interval checkpoints so ``n_saved`` holds; drop stale temporary files."""
        if _rank() > 0:  # only rank 0 writes, so only rank 0 tidies the folder
            return
        folder = Path(self.save_dir)
        for stale in folder.glob(".tmp-*"):
            stale.unlink(missing_ok=True)
            self.logger.info(f"removed {stale}, left by an interrupted checkpoint write")
        tracker = self._interval_checkpoint
        if tracker is None or not folder.is_dir():
            return
        score_name = "epoch" if self.epoch_level else "iteration"
        current = engine.state.epoch if self.epoch_level else engine.state.iteration
        name = next(iter(self.save_dict)) if len(self.save_dict) == 1 else "checkpoint"  # as ignite names files
        prefix = f"{self.file_prefix}_" if self.file_prefix else ""
        pattern = re.compile(rf"{re.escape(prefix + name)}_{score_name}=(\d+)\.pt")
        known = {item.filename for item in tracker._saved}
        found = sorted(
            (int(match.group(1)), file.name)
            for file in folder.iterdir()
            if (match := pattern.fullmatch(file.name)) and int(match.group(1)) <= current and file.name not in known
        )
        tracker._saved = sorted([*tracker._saved, *(Checkpoint.Item(p, f) for p, f in found)], key=lambda it: it[0])
        while tracker.n_saved is not None and len(tracker._saved) > tracker.n_saved:
            oldest = tracker._saved.pop(0)
            tracker.save_handler.remove(oldest.filename)
            self.logger.info(f"removed {oldest.filename}: n_saved={tracker.n_saved} checkpoints are kept")


def _randomizables(roots: Iterable[Any]) -> list[Randomizable]:
    """Every MONAI ``Randomizable`` reachable from ``roots`` (through lists, dicts and attributes), in a fixed order."""
    found: list[Randomizable] = []
    seen: set[int] = set()
    stack = list(roots)[::-1]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray)) or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found.append(obj)
        if isinstance(obj, Mapping):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple)):
            children = list(obj)
        else:
            children = (
                [value for key, value in sorted(vars(obj).items()) if key != "R"] if hasattr(obj, "__dict__") else []
            )
        stack.extend(children[::-1])
    return found


def _numpy_state(generator: np.random.RandomState) -> dict[str, Any]:
    """A ``RandomState`` as tensors and numbers, which ``torch.load(weights_only=True)`` accepts."""
    _, keys, position, has_gauss, cached = generator.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": position, "gauss": (has_gauss, cached)}


def _set_numpy_state(generator: np.random.RandomState, state: Mapping[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    generator.set_state(("MT19937", keys, int(state["pos"]), int(state["gauss"][0]), float(state["gauss"][1])))


class RandomStates:
    """The torch, CUDA, numpy and Python random states plus those of the data transforms, as a checkpoint entry.

    The data order of a shuffling ``DataLoader`` (without its own generator) is drawn from torch's
    global state at each epoch start, and MONAI's random transforms draw from their own
    ``RandomState`` (``R``): with all of them saved at the end of an epoch and restored on resume, the
    next epoch shuffles, augments and samples noise exactly as an uninterrupted run does. Under
    ``torch.distributed`` only rank 0 writes checkpoints, so only rank 0 restores; the other ranks keep
    their own seeds (a multi-GPU resume is not bit-exact).

    Args:
        transforms: objects holding the training's random transforms (e.g. the ``Compose``).
    """

    #: The resume loader accepts checkpoints written before this entry existed.
    optional_in_checkpoint = True

    def __init__(self, transforms: Iterable[Any] | Any = ()) -> None:
        roots = transforms if isinstance(transforms, (list, tuple)) else [transforms]
        self.transforms = _randomizables(roots)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(np.random.mtrand._rand),
            "python": random.getstate(),
            "transforms": [_numpy_state(t.R) for t in self.transforms],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if _rank() > 0:  # the file holds rank 0's states; the other ranks keep their own (seed + rank)
            return
        if len(state["transforms"]) != len(self.transforms):
            raise ValueError(
                f"checkpoint random states cover {len(state['transforms'])} random transforms, "
                f"the configured training has {len(self.transforms)}: resume with the same transforms"
            )
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        _set_numpy_state(np.random.mtrand._rand, state["numpy"])
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        for transform, saved in zip(self.transforms, state["transforms"]):
            _set_numpy_state(transform.R, saved)
