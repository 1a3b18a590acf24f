# Generated copy of bundle_runtime/checks.py: edit the source, then run `python -m tools sync-common`.
"""Config-value checks shared by the bundles, with errors that name the config key at fault."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_choice",
    "check_non_negative_int",
    "check_non_negative_number",
    "check_optional_positive_number",
    "check_positive_int",
    "check_seed_span",
]

#: torch's CPU generator keeps only the low 32 bits of a seed, so seeds from here on repeat smaller ones
SEED_LIMIT = 2**32


def _check_int(name: str, value: Any, minimum: int, wording: str) -> int:
    # bool is an Integral too, but ``--n_samples true`` is a typo, not a count
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} must be a {wording} integer")
    return int(value)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int >= 1 (booleans and fractions are refused)."""
    return _check_int(name, value, 1, "positive")


def check_non_negative_int(name: str, value: Any) -> int:
    """``value`` as an int >= 0, e.g. a seed (booleans and fractions are refused)."""
    return _check_int(name, value, 0, "non-negative")


def check_seed_span(name: str, seed: Any, count: Any = 1) -> int:
    """``seed`` if ``seed .. seed + count - 1`` all lie below 2**32, the seeds torch keeps whole."""
    seed = check_non_negative_int(name, seed)
    count = check_positive_int("n_samples", count)
    if seed + count > SEED_LIMIT:
        raise ValueError(
            f"{name}={seed} with {count} sample(s) reaches seed {seed + count - 1}; seeds must stay below 2**32 "
            f"({SEED_LIMIT}): torch keeps only a seed's low 32 bits, so larger ones would repeat smaller ones"
        )
    return seed


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``, else an error naming the config id ``name``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")
    return value


def check_flag(name: str, value: Any) -> bool:
    """``value`` if it is a bool: ``bool("false")`` is True, so a CLI string must not be coerced into a switch."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be true or false")
    return value


def _check_number(name: str, value: Any, minimum: float, inclusive: bool, wording: str) -> float:
    # bool is a Real too, and a string or NaN that slipped through a CLI override is never a width or a bound
    # ``or`` short-circuits, so the comparison only ever sees a finite real
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or (value < minimum if inclusive else value <= minimum)
    ):
        raise ValueError(f"{name}={value!r} must be a {wording}")
    return float(value)


def check_optional_positive_number(name: str, value: Any) -> float | None:
    """``value`` as a positive finite float, or None when unset (booleans and strings are refused)."""
    return None if value is None else _check_number(name, value, 0.0, False, "positive number or null")


def check_probability(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1]: MONAI's random transforms clip a probability silently, so 1.5 would read as 1."""
    probability = _check_number(name, value, 0.0, True, "probability in [0, 1]")
    if probability > 1.0:
        raise ValueError(f"{name}={value!r} must be a probability in [0, 1]")
    return probability


def check_non_negative_number(name: str, value: Any) -> float:
    """``value`` as a finite float >= 0, e.g. a width where 0 means "off" (booleans and strings are refused)."""
    return _check_number(name, value, 0.0, True, "non-negative number")
