"""Conditioning input of the brain LDM: four numbers in [0, 1] per sample, checked before any work.

The vector order is fixed by the published model: [sex, age, ventricular volume, brain volume].
Values come from per-name config ids (``--sex 1 --age 0.3``; a scalar applies to every sample, a
list gives one value per sample), from ``--condition`` (one 4-vector, or one per sample), or from a
CSV with one row per sample and a column per name. Every error names the input it is about.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from scripts.common.checks import check_choice, check_positive_int
from scripts.common.dataset import read_table_csv

__all__ = [
    "check_choice",
    "check_positive_int",
    "read_conditions_csv",
    "resolve_conditions",
    "sample_training_conditions",
]


def _unit_value(source: str, value: Any) -> float:
    if isinstance(value, str):  # the command line hands over "nan" or "0.5" as text
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{source}={value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{source}={value!r} is not a number")
    value = float(value)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{source}={value!r} is outside [0, 1] (conditions are min-max normalised)")
    return value


def _per_sample(name: str, value: Any, n_samples: int) -> list[float]:
    """One value for every sample, from a scalar or a list of exactly ``n_samples`` values."""
    if isinstance(value, (list, tuple)):
        if len(value) != n_samples:
            raise ValueError(
                f"{name}: got {len(value)} values for n_samples={n_samples}; give one value or {n_samples}"
            )
        return [_unit_value(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return [_unit_value(name, value)] * n_samples


def _condition_vectors(condition: Any, names: Sequence[str], n_samples: int) -> list[list[float]]:
    """Rows from ``--condition``: one vector of ``len(names)`` values, or ``n_samples`` such vectors."""
    if not isinstance(condition, (list, tuple)) or not condition:
        raise ValueError(f"condition={condition!r} must be a list of {len(names)} values {list(names)}")
    rows = [condition] if not isinstance(condition[0], (list, tuple)) else list(condition)
    if len(rows) == 1 and n_samples > 1:
        rows = rows * n_samples
    if len(rows) != n_samples:
        raise ValueError(f"condition: got {len(rows)} vectors for n_samples={n_samples}")
    for i, row in enumerate(rows):
        if not isinstance(row, (list, tuple)) or len(row) != len(names):
            count = len(row) if isinstance(row, (list, tuple)) else 1
            raise ValueError(f"condition[{i}]: expected {len(names)} values {list(names)}, got {count}")
    return [[_unit_value(f"condition[{i}][{name}]", v) for name, v in zip(names, row)] for i, row in enumerate(rows)]


def read_conditions_csv(path: str | Path, names: Sequence[str]) -> list[list[float]]:
    """Rows of a CSV with a header holding every name in ``names`` (extra columns are ignored)."""
    return read_table_csv(path, names, _unit_value)


def sample_training_conditions(
    datalist_path: str | Path, names: Sequence[str], n_samples: int, seed: int, jitter: float = 0.02
) -> torch.Tensor:
    """``n_samples`` conditions drawn from the training datalist's distribution (the ``condition_sampler``).

    Method: each sample takes the condition vector of a training subject drawn uniformly with
    replacement, adds Gaussian jitter of standard deviation ``jitter`` to every continuous entry
    (sex stays 0 or 1) and clips to [0, 1]. The joint distribution of the real conditions, e.g. the
    link between age and ventricular volume, is kept, and no vector is an exact copy of a subject's.
    The draws depend on ``seed`` and ``n_samples`` only.
    """
    import json

    import numpy as np

    n_samples = check_positive_int("n_samples", n_samples)
    path = Path(datalist_path)
    if not path.is_file():
        raise FileNotFoundError(f"condition_sampler: training datalist {path} does not exist (set dataset_dir)")
    try:
        training = json.loads(path.read_text())["training"]
        rows = np.asarray([[float(v) for v in item["condition"]] for item in training], dtype=np.float64)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"condition_sampler: {path} has no 'training' items with a 'condition': {error}") from error
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] != len(names):
        raise ValueError(f"condition_sampler: {path} needs training conditions of {len(names)} values {list(names)}")
    if not float(jitter) >= 0:
        raise ValueError(f"condition_jitter={jitter!r} must be >= 0")
    rng = np.random.default_rng([int(seed), 20_241_201])
    drawn = rows[rng.integers(len(rows), size=n_samples)]
    noise = rng.normal(0.0, float(jitter), size=drawn.shape)
    continuous = np.array([name != "sex" for name in names])
    drawn[:, continuous] += noise[:, continuous]
    return torch.tensor(np.clip(drawn, 0.0, 1.0), dtype=torch.float64)


def resolve_conditions(
    names: Sequence[str],
    n_samples: int,
    values: Mapping[str, Any],
    condition: Any = None,
    conditions_csv: str | None = None,
) -> torch.Tensor:
    """The (n_samples, len(names)) condition matrix, validated.

    Precedence: ``conditions_csv``, then ``condition``, then the per-name ``values``.
    """
    n_samples = check_positive_int("n_samples", n_samples)
    if conditions_csv not in (None, ""):
        if condition is not None:
            raise ValueError("give either conditions_csv or condition, not both")
        rows = read_conditions_csv(conditions_csv, names)
        if len(rows) != n_samples:
            raise ValueError(
                f"conditions_csv {conditions_csv} has {len(rows)} rows but n_samples={n_samples}; "
                f"pass --n_samples {len(rows)}"
            )
    elif condition is not None:
        rows = _condition_vectors(condition, names, n_samples)
    else:
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"no value for condition(s) {missing}")
        columns = [_per_sample(name, values[name], n_samples) for name in names]
        rows = [list(row) for row in zip(*columns)]
    # float64 keeps the user's numbers exact for the sidecars; sampling casts to the network's dtype
    return torch.tensor(rows, dtype=torch.float64)
