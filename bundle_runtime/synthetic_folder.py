"""Reading a folder of synthetic samples, either plain sample files or one listed by a ``manifest.csv``.

Plain folders are what ``inference.json`` writes today (``sample_XXX.nii.gz`` with a ``.json``
sidecar); a dataset generator may add ``manifest.csv`` (one row per sample: index, seed, file names,
sha256). Both are checked whole before any work: every listed file must exist and match its sha256.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .weights import file_sha256

__all__ = ["MANIFEST_NAME", "SyntheticSample", "generated_conditions", "read_synthetic_folder", "sidecar_path"]

MANIFEST_NAME = "manifest.csv"


@dataclass
class SyntheticSample:
    """One synthetic sample: its file, the manifest row that listed it (if any) and its JSON sidecar (if any)."""

    name: str
    path: Path
    row: dict[str, str] = field(default_factory=dict)
    sidecar: dict[str, Any] | None = None


def sidecar_path(path: Path) -> Path:
    """``sample_000000.nii.gz`` -> ``sample_000000.json`` (the provenance file inference.json writes beside it)."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".npz", ".npy"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        return json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"sidecar {sidecar} of synthetic sample {path.name} is not valid JSON ({error})") from error


def _manifest_samples(folder: Path, file_column: str) -> tuple[list[SyntheticSample], list[str]]:
    manifest = folder / MANIFEST_NAME
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    if file_column not in columns:
        raise ValueError(f"{manifest} has no column {file_column!r} naming the sample files (columns: {columns})")
    if not rows:
        raise ValueError(f"{manifest} lists no samples")
    samples = []
    for number, row in enumerate(rows, start=2):
        path = folder / row[file_column]
        if not path.is_file():
            raise FileNotFoundError(f"{manifest} line {number}: sample file {path} does not exist")
        expected = row.get("sha256") or row.get(f"{file_column}_sha256")
        if expected and file_sha256(path) != expected:
            raise ValueError(f"{manifest} line {number}: {path.name} does not match its sha256 {expected}")
        samples.append(SyntheticSample(row[file_column], path, dict(row), _read_sidecar(path)))
    return samples, columns


def read_synthetic_folder(
    folder: str | os.PathLike, pattern: str, file_column: str = "image"
) -> tuple[list[SyntheticSample], list[str] | None]:
    """The samples of ``folder`` and the manifest's columns (None for a plain folder).

    Args:
        folder: the synthetic folder (``synthetic_dir``).
        pattern: glob of the sample files in a plain folder, e.g. ``sample_*.nii.gz``.
        file_column: manifest column that names each sample's file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"synthetic_dir {folder} is not a folder")
    if (folder / MANIFEST_NAME).is_file():
        return _manifest_samples(folder, file_column)
    paths = sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))
    if not paths:
        raise ValueError(f"synthetic_dir {folder} holds no {MANIFEST_NAME} and no file matching {pattern!r}")
    return [SyntheticSample(p.name, p, {}, _read_sidecar(p)) for p in paths], None


def generated_conditions(sample: SyntheticSample, names: Sequence[str], found: Mapping[str, Any]) -> list[float]:
    """The values ``found`` for ``names`` in order: what a retraining datalist needs of each retained sample.

    A sample generated without one of them cannot be retrained on with its conditions, so it is named.
    """
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(
            f"synthetic sample {sample.path} has no condition {missing} in its .json sidecar or manifest row: "
            "the retraining datalist needs the conditions each sample was generated for"
        )
    return [float(found[name]) for name in names]
