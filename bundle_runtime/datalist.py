"""A training datalist checked item by item before the first iteration, with errors naming file, item and key.

Without it a wrong-shape image is silently padded by ``ResizeWithPadOrCropd``, a wrong spacing is
accepted, a condition that inference refuses (an age of 7.0, a NaN) trains a model to NaN, and a
truncated ``.nii.gz`` stops the caching with a bare ``EOFError`` naming no file. Headers are read
with nibabel (no volume is built); compressed files are streamed once to prove they are complete.
"""

from __future__ import annotations

import gzip
import json
import math
import numbers
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["DatalistCheck", "read_datalist_json"]


def read_datalist_json(path: str | os.PathLike) -> dict:
    """The datalist JSON object at ``path``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist {path} does not exist")
    try:
        datalist = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"datalist {path} is not valid JSON ({error})") from error
    if not isinstance(datalist, dict):
        raise ValueError(f"datalist {path} must hold a JSON object with the splits, not {type(datalist).__name__}")
    return datalist


def _stream_to_end(path: Path) -> int:
    """Decompressed byte count of a gzip file, read in blocks (the CRC check catches corrupt data)."""
    total = 0
    with gzip.open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            total += len(block)
    return total


def _image_header(path: Path, where: str) -> Any:
    """The NIfTI header of ``path`` after proving the file holds all its voxels."""
    if not path.is_file():
        raise FileNotFoundError(f"{where}: file {path} does not exist")
    try:
        image = nib.load(str(path))
        header = image.header
        needed = (
            int(header.get_data_offset()) + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
        )
        size = _stream_to_end(path) if path.name.endswith(".gz") else path.stat().st_size
    except (EOFError, OSError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise ValueError(f"{where}: file {path} is truncated or not a readable image ({error})") from error
    if size < needed:
        raise ValueError(f"{where}: file {path} is truncated ({size} of {needed} bytes)")
    return header


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


class DatalistCheck:
    """Checks every item of the configured splits of a decathlon-style datalist; call it in ``initialize``.

    Args:
        datalist_path: the datalist JSON file.
        base_dir: folder relative paths start from (default: the datalist's folder).
        splits: splits the training reads; each must be a non-empty list.
        image_keys: item keys holding image files; each must exist and be complete.
        image_shape: expected spatial shape (first three dims) of every image; None skips the check.
            Set it to None only when a transform of the config resamples or crops on purpose.
        spacing_mm: expected voxel spacing (one number or three); None skips the check.
        channels: expected channel count (4th dim) per image key, e.g. ``{"label": 10}``.
        condition_key: item key of the condition vector (None: no condition).
        condition_length: expected number of values in the condition vector.
        condition_range: the closed range inference accepts for every condition value.
    """

    def __init__(
        self,
        datalist_path: str | os.PathLike,
        base_dir: str | os.PathLike | None = None,
        splits: Sequence[str] = ("training", "validation"),
        image_keys: Sequence[str] = ("image",),
        image_shape: Sequence[int] | None = None,
        spacing_mm: float | Sequence[float] | None = None,
        channels: Mapping[str, int] | None = None,
        condition_key: str | None = None,
        condition_length: int | None = None,
        condition_range: Sequence[float] = (0.0, 1.0),
        spacing_tolerance_mm: float = 1e-3,
    ) -> None:
        self.path = Path(datalist_path)
        self.base_dir = Path(base_dir) if base_dir is not None else self.path.parent
        self.splits = [splits] if isinstance(splits, str) else list(splits)
        self.image_keys = [image_keys] if isinstance(image_keys, str) else list(image_keys)
        self.image_shape = None if image_shape is None else tuple(int(s) for s in image_shape)
        spacing = [spacing_mm] * 3 if isinstance(spacing_mm, numbers.Real) else spacing_mm
        self.spacing_mm = None if spacing is None else tuple(float(s) for s in spacing)
        self.channels = dict(channels or {})
        self.condition_key = condition_key
        self.condition_length = condition_length
        self.condition_range = (float(condition_range[0]), float(condition_range[1]))
        self.spacing_tolerance_mm = float(spacing_tolerance_mm)

    def __call__(self) -> dict[str, int]:
        """The item count per split; the first problem found raises an error naming file, item and key."""
        datalist = read_datalist_json(self.path)
        counts = {}
        for split in self.splits:
            items = datalist.get(split)
            if not isinstance(items, list):
                raise ValueError(f"datalist {self.path} has no list {split!r} (it has {sorted(datalist)})")
            if not items:
                raise ValueError(f"datalist {self.path}: the {split!r} split is empty")
            for index, item in enumerate(items):
                self.check_item(item, f"datalist {self.path}, item {split}[{index}]")
            counts[split] = len(items)
        return counts

    def check_item(self, item: Any, where: str) -> None:
        if not isinstance(item, Mapping):
            raise ValueError(f"{where} is {type(item).__name__}, not an object of keys {self.image_keys}")
        where = f"{where} ({item.get('subject', item.get(self.image_keys[0], '?'))})"
        for key in self.image_keys:
            if not isinstance(item.get(key), str):
                raise ValueError(f"{where}: key {key!r} is missing or not a file path")
            path = Path(item[key]) if os.path.isabs(item[key]) else self.base_dir / item[key]
            self._check_header(_image_header(path, f"{where}, key {key!r}"), path, f"{where}, key {key!r}", key)
        if self.condition_key is not None:
            self._check_condition(item.get(self.condition_key), f"{where}, key {self.condition_key!r}")

    def _check_header(self, header: Any, path: Path, where: str, key: str) -> None:
        shape = tuple(int(s) for s in header.get_data_shape())
        if len(shape) < 3:
            raise ValueError(f"{where}: file {path} has shape {shape}, not a 3D volume")
        if self.image_shape is not None and shape[:3] != self.image_shape:
            raise ValueError(
                f"{where}: file {path} has spatial shape {shape[:3]}, expected {self.image_shape} "
                "(the config would pad or crop it silently; set data_shape to null only if that is intended)"
            )
        if key in self.channels and (shape[3] if len(shape) > 3 else 1) != int(self.channels[key]):
            raise ValueError(f"{where}: file {path} has shape {shape}, expected {self.channels[key]} channels")
        spacing = tuple(float(z) for z in header.get_zooms()[:3])
        if self.spacing_mm is not None and any(
            abs(a - b) > self.spacing_tolerance_mm for a, b in zip(spacing, self.spacing_mm)
        ):
            raise ValueError(f"{where}: file {path} has spacing {spacing} mm, expected {self.spacing_mm} mm")

    def _check_condition(self, values: Any, where: str) -> None:
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"{where}: expected a list of {self.condition_length} numbers, got {values!r}")
        if self.condition_length is not None and len(values) != self.condition_length:
            raise ValueError(f"{where}: expected {self.condition_length} values, got {len(values)}")
        low, high = self.condition_range
        for position, value in enumerate(values):
            number = _number(value)
            if number is None or not math.isfinite(number) or not low <= number <= high:
                raise ValueError(
                    f"{where}[{position}]={value!r} is not a finite number in [{low}, {high}] (the range inference accepts)"
                )
