"""Conditioning input of the brain LDM: four numbers in [0, 1] per sample, checked before any work.

The vector order is fixed by the published model: [sex, age, ventricular volume, brain volume].
Values come from per-name config ids (``--sex 1 --age 0.3``; a scalar applies to every sample, a
list gives one value per sample), from ``--condition`` (one 4-vector, or one per sample), or from a
CSV with one row per sample and a column per name. Every error names the input it is about.
"""

from __future__ import annotations

import csv
import math
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from scripts.common.checks import check_positive_int

__all__ = ["check_choice", "check_positive_int", "read_conditions_csv", "resolve_conditions"]


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else an error naming the config id ``name``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")
    return value


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
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"conditions_csv: file {path} does not exist")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle, restkey="__extra__", restval=None)
            header = reader.fieldnames or []
            missing = [n for n in names if n not in header]
            if missing:
                raise ValueError(f"conditions_csv {path}: header {header} lacks column(s) {missing}")
            rows = []
            for line_number, record in enumerate(reader, start=2):
                if "__extra__" in record or any(record.get(h) is None for h in header):
                    raise ValueError(f"conditions_csv {path}, line {line_number}: expected {len(header)} fields")
                row = []
                for name in names:
                    row.append(_unit_value(f"conditions_csv {path}, line {line_number}: {name}", record[name].strip()))
                rows.append(row)
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"conditions_csv {path} is not a readable CSV: {error}") from error
    if not rows:
        raise ValueError(f"conditions_csv {path} has a header but no rows")
    return rows


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
