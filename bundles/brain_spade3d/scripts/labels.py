"""The label set, the lesion condition and the checks on what a user asks for.

A condition is four numbers [wmh, tumour, edema, enhancing]: each lesion's volume as a fraction of
the brain volume, divided by the largest such fraction in the training cohort (0 = absent). The
training run stores what inference needs to interpret and sample these values in a "label stats"
JSON file next to the UNet weights (scale factor, cohort maxima, the ranges seen in training).
Every error names the input it is about, and all checks run before any file is written.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.checks import check_non_negative_int, check_positive_int
from scripts.common.dataset import read_table_csv

__all__ = [
    "LABEL_NAMES",
    "LESION_NAMES",
    "check_contrasts",
    "datalist_header",
    "class_channel",
    "lesion_statistics",
    "measure_lesions",
    "read_label_stats",
    "requested_lesions",
    "resolve_conditions",
    "resolve_pathologies",
]

#: Channel order of the partial-volume label maps (brainSPADE3D; docs/references.md).
LABEL_NAMES = ("background", "csf", "gm", "wm", "deep_gm", "brainstem", "wmh", "tumour", "edema", "enhancing")
#: The conditioned lesions, in context-vector order; their channels are the last four of LABEL_NAMES.
LESION_NAMES = ("wmh", "tumour", "edema", "enhancing")
#: Classes that count as brain volume, the denominator of the lesion fractions (the demo cohort's definition).
BRAIN_CLASSES = ("gm", "wm", "deep_gm", "brainstem", "wmh", "tumour", "edema", "enhancing")
SAMPLE = "sample"


def class_channel(
    output_transform: Callable[[Any], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]], channel: int
) -> Callable[[Any], tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Keep one class of one-hot (pred, label) pairs, so a metric reports that class alone.

    The mean Dice over all classes hid a lesion class the autoencoder never reconstructed; a
    per-class metric on the small lesion channels makes such a collapse visible during training.
    """

    def select(output: Any) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        predictions, labels = output_transform(output)
        return [p[channel : channel + 1] for p in predictions], [y[channel : channel + 1] for y in labels]

    return select


def check_contrasts(contrasts: Any, available: Sequence[str]) -> list[str]:
    """The requested contrasts as a list (a single name is accepted), each one known and listed once."""
    requested = [contrasts] if isinstance(contrasts, str) else contrasts
    if not isinstance(requested, (list, tuple)) or not requested:
        raise ValueError(f"contrasts={contrasts!r} must be a non-empty list of names from {list(available)}")
    unknown = [c for c in requested if c not in available]
    if unknown:
        raise ValueError(f"contrasts: {unknown} unknown; choose from {list(available)}")
    if len(set(requested)) != len(requested):
        raise ValueError(f"contrasts={list(requested)} lists a contrast twice")
    return list(requested)


def _fraction(source: str, value: Any) -> float:
    if isinstance(value, str):  # the command line may hand over numbers as text
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{source}={value!r} is neither a number in [0, 1] nor {SAMPLE!r}") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{source}={value!r} is neither a number in [0, 1] nor {SAMPLE!r}")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{source}={value!r} is outside [0, 1] (a lesion fraction divided by the training cohort's maximum)"
        )
    return value


def requested_lesions(lesion_names: Sequence[str], condition: Sequence[float]) -> list[str]:
    """The lesions a condition asks for: those with a value above 0 (0 means absent)."""
    return [name for name, value in zip(lesion_names, condition) if value > 0]


def _sample_generator(seed: int, index: int) -> np.random.Generator:
    """The draws of sample ``index``: independent of ``n_samples``, like its noise (seed + index)."""
    return np.random.default_rng([int(seed) + int(index), 7])


def resolve_pathologies(
    pathologies: Any,
    lesion_names: Sequence[str],
    n_samples: int,
    seed: int,
    label_stats_path: str | os.PathLike | None = None,
) -> torch.Tensor:
    """The (n_samples, len(lesion_names)) condition matrix for a user's ``pathologies``.

    Args:
        pathologies: ``None`` or ``{}`` for healthy brains; ``"sample"`` for a lesion pattern drawn from
            those seen in training; or ``{lesion: value}`` where a value is a fraction in [0, 1],
            ``"sample"`` (uniform within the training range of that lesion) or a list with one such
            value per sample. Lesions not named are absent (0).
        lesion_names: names in context-vector order.
        n_samples: number of samples.
        seed: base seed; sample ``i`` draws its "sample" values with ``seed + i``.
        label_stats_path: the label stats file, read only when something is to be sampled.
    """
    check_positive_int("n_samples", n_samples)
    check_non_negative_int("seed", seed)
    names = list(lesion_names)
    if pathologies is None or (isinstance(pathologies, Mapping) and not pathologies):
        return torch.zeros((n_samples, len(names)), dtype=torch.float32)
    if isinstance(pathologies, str):
        if pathologies != SAMPLE:
            raise ValueError(f"pathologies={pathologies!r}: give {SAMPLE!r} or a mapping {{lesion: value}} of {names}")
        patterns = np.asarray(read_label_stats(label_stats_path)["lesion_patterns"], dtype=np.float64)
        if patterns.ndim != 2 or patterns.shape[0] == 0 or patterns.shape[1] != len(names):
            raise ValueError(f"label stats {label_stats_path}: no lesion patterns to sample from")
        rows = [patterns[_sample_generator(seed, i).integers(len(patterns))] for i in range(n_samples)]
        return torch.as_tensor(np.stack(rows), dtype=torch.float32)
    if not isinstance(pathologies, Mapping):
        raise ValueError(f"pathologies={pathologies!r} must be {SAMPLE!r} or a mapping {{lesion: value}} of {names}")
    unknown = [key for key in pathologies if key not in names]
    if unknown:
        raise ValueError(f"pathologies: unknown lesion(s) {unknown}; the model knows {names}")
    columns: dict[str, list[float | str]] = {}
    for name, value in pathologies.items():
        per_sample = isinstance(value, (list, tuple))
        values = list(value) if per_sample else [value] * n_samples
        if len(values) != n_samples:
            raise ValueError(
                f"pathologies[{name!r}]: {len(values)} values for n_samples={n_samples}; give 1 or {n_samples}"
            )
        source = f"pathologies[{name!r}]"
        columns[name] = [
            SAMPLE if v == SAMPLE else _fraction(f"{source}[{i}]" if per_sample else source, v)
            for i, v in enumerate(values)
        ]
    ranges = None
    sampled = [name for name, column in columns.items() if SAMPLE in column]
    if sampled:
        ranges = read_label_stats(label_stats_path)["lesion_ranges"]
        unseen = [name for name in sampled if not ranges[name][1] > 0]
        if unseen:
            raise ValueError(
                f"pathologies: cannot sample {unseen}: no training subject had it; give a fraction instead"
            )
    matrix = np.zeros((n_samples, len(names)), dtype=np.float64)
    for i in range(n_samples):
        generator = _sample_generator(seed, i)
        for name in names:  # fixed order, so a sample's draws do not depend on how the mapping was written
            value = columns.get(name, [0.0] * n_samples)[i]
            if value == SAMPLE:
                low, high = ranges[name]
                value = generator.uniform(low, high)
            matrix[i, names.index(name)] = value
    return torch.as_tensor(matrix, dtype=torch.float32)


def resolve_conditions(
    pathologies: Any,
    lesion_names: Sequence[str],
    n_samples: int,
    seed: int,
    label_stats_path: str | os.PathLike | None = None,
    conditions_csv: str | None = None,
) -> torch.Tensor:
    """The condition matrix from ``conditions_csv`` (a row per sample, a column per lesion), else
    from ``pathologies`` (see :func:`resolve_pathologies`)."""
    if conditions_csv in (None, ""):
        return resolve_pathologies(pathologies, lesion_names, n_samples, seed, label_stats_path)
    if pathologies not in (None, {}):
        raise ValueError("give either conditions_csv or pathologies, not both")
    check_positive_int("n_samples", n_samples)
    rows = read_table_csv(conditions_csv, list(lesion_names), _fraction)
    if len(rows) != n_samples:
        raise ValueError(
            f"conditions_csv {conditions_csv} has {len(rows)} rows but n_samples={n_samples}; pass --n_samples {len(rows)}"
        )
    return torch.tensor(rows, dtype=torch.float32)


def datalist_header(datalist_path: str | os.PathLike) -> dict:
    """The datalist's dataset-level entries (lesion names and normalisation), without its splits.

    A datalist written from another one (the privacy screen's retained samples) carries them over, so the
    lesion conditions keep the meaning ``lesion_statistics`` reads from them.
    """
    datalist = json.loads(Path(datalist_path).read_text())
    return {key: value for key, value in datalist.items() if key not in ("training", "validation", "test")}


def lesion_statistics(datalist_path: str | os.PathLike, lesion_names: Sequence[str], split: str = "training") -> dict:
    """What inference needs to know about the training conditions, read from the demo datalist.

    Returns ``lesion_fraction_max`` (the cohort maxima the conditions were divided by), per lesion the
    ``[min, max]`` of its non-zero training values (``lesion_ranges``, for "sample"), and the
    distinct lesion vectors of the lesioned training subjects (``lesion_patterns``).
    """
    path = Path(datalist_path)
    datalist = json.loads(path.read_text())
    names = list(lesion_names)
    if list(datalist.get("lesion_names", [])) != names:
        raise ValueError(f"{path}: lesion_names {datalist.get('lesion_names')} differ from the configured {names}")
    vectors = np.asarray([item["lesion"] for item in datalist[split]], dtype=np.float64).reshape(-1, len(names))
    ranges = {}
    for column, name in enumerate(names):
        present = vectors[:, column][vectors[:, column] > 0]
        ranges[name] = [float(present.min()), float(present.max())] if present.size else [0.0, 0.0]
    patterns = sorted({tuple(round(float(v), 6) for v in row) for row in vectors if row.any()})
    return {
        "lesion_names": names,
        "lesion_fraction_max": [float(v) for v in datalist["lesion_fraction_max"]],
        "lesion_ranges": ranges,
        "lesion_patterns": [list(p) for p in patterns],
    }


def read_label_stats(path: str | os.PathLike | None) -> dict:
    """The label stats JSON written by the label diffusion training, with an error naming the file."""
    if path is None:
        raise ValueError("label_stats_path is not set: it is written by train_label_diffusion.json")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"label stats file {path} not found: it is written by train_label_diffusion.json next to the UNet weights"
        )
    try:
        stats = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"label stats file {path} is not valid JSON: {error}") from error
    missing = [
        key for key in ("scale_factor", "lesion_fraction_max", "lesion_ranges", "lesion_patterns") if key not in stats
    ]
    if missing:
        raise ValueError(f"label stats file {path} lacks {missing}")
    return stats


def measure_lesions(
    probabilities: np.ndarray,
    voxel_ml: float,
    lesion_fraction_max: Sequence[float],
    min_volume_ml: float,
    label_names: Sequence[str] = LABEL_NAMES,
    lesion_names: Sequence[str] = LESION_NAMES,
) -> dict[str, dict[str, Any]]:
    """Volumes of every lesion class in a generated (C, *S) probability map, and whether it is present.

    A lesion is present when its argmax volume reaches ``min_volume_ml``. ``measured_condition`` is the
    partial volume as a fraction of the brain volume divided by the training maximum: the same
    quantity as the condition, so requested and obtained values can be compared.
    """
    labels = probabilities.argmax(0)
    brain_ml = float(sum(probabilities[label_names.index(n)].sum() for n in BRAIN_CLASSES)) * voxel_ml
    result = {}
    for name, fraction_max in zip(lesion_names, lesion_fraction_max):
        channel = label_names.index(name)
        argmax_ml = float((labels == channel).sum()) * voxel_ml
        partial_ml = float(probabilities[channel].sum()) * voxel_ml
        result[name] = {
            "present": argmax_ml >= min_volume_ml,
            "volume_ml": round(argmax_ml, 4),
            "partial_volume_ml": round(partial_ml, 4),
            "measured_condition": round(partial_ml / max(brain_ml, 1e-9) / max(fraction_max, 1e-12), 4),
        }
    return result
