"""The held-out data of the studies: splits loaded once, on first use, and shared by every study."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["EvaluationSplits", "split_loaders"]


def split_loaders(
    datalist_path: str | os.PathLike, base_dir: str | os.PathLike, transform: Callable, splits: Sequence[str]
) -> dict[str, Callable[[], list[Mapping[str, Any]]]]:
    """Per split, a function loading its transformed items; a split is read only if a study needs it."""
    from monai.data import load_decathlon_datalist

    def loader(split: str) -> Callable[[], list[Mapping[str, Any]]]:
        return lambda: [transform(item) for item in load_decathlon_datalist(datalist_path, True, split, base_dir)]

    return {split: loader(split) for split in splits}


class EvaluationSplits:
    """Split name -> loaded items {"label": (C, *S) partial volumes, contrast key: (1, *S), "lesion": 4 values}.

    Args:
        loaders: split name -> zero-argument loader (``split_loaders``); each runs at most once.
    """

    def __init__(self, loaders: Mapping[str, Callable[[], Sequence[Mapping[str, Any]]]]) -> None:
        self._loaders = dict(loaders)
        self._loaded: dict[str, list[Mapping[str, Any]]] = {}

    @property
    def names(self) -> list[str]:
        return list(self._loaders)

    def check(self, setting: str, split: str) -> str:
        """``split`` if it is a known split; the error names the config key ``setting`` (before any work)."""
        if split not in self._loaders:
            raise ValueError(f"{setting}={split!r} is not one of the splits {self.names}")
        return split

    def __getitem__(self, split: str) -> list[Mapping[str, Any]]:
        """The loaded items of ``split`` (loaded on first use)."""
        self.check("split", split)
        if split not in self._loaded:
            self._loaded[split] = list(self._loaders[split]())
        return self._loaded[split]
