"""The shared config-value checks: integers accepted as ints, everything else refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from bundle_runtime.checks import (
    check_flag,
    check_non_negative_int,
    check_non_negative_number,
    check_optional_positive_number,
    check_positive_int,
    check_probability,
)


def test_integers_pass_through_as_int():
    assert check_positive_int("n_samples", 3) == 3
    assert check_positive_int("n_samples", np.int64(2)) == 2 and type(check_positive_int("k", np.int64(2))) is int
    assert check_non_negative_int("seed", 0) == 0


@pytest.mark.parametrize("value", [0, -1, 2.0, "3", True, None])
def test_positive_int_refuses_by_name(value):
    with pytest.raises(ValueError, match=r"^n_samples=.* must be a positive integer$"):
        check_positive_int("n_samples", value)


@pytest.mark.parametrize("value", [-1, 0.5, False])
def test_non_negative_int_refuses_by_name(value):
    with pytest.raises(ValueError, match=r"^seed=.* must be a non-negative integer$"):
        check_non_negative_int("seed", value)


def test_optional_positive_number_passes_none_and_numbers_as_float():
    assert check_optional_positive_number("x0_clip", None) is None
    assert check_optional_positive_number("x0_clip", 4) == 4.0 and type(check_optional_positive_number("k", 4)) is float


@pytest.mark.parametrize("value", [0, -1.5, float("inf"), float("nan"), "4", True])
def test_optional_positive_number_refuses_by_name(value):
    with pytest.raises(ValueError, match=r"^x0_clip=.* must be a positive number or null$"):
        check_optional_positive_number("x0_clip", value)


def test_non_negative_number_passes_zero_and_numbers_as_float():
    assert check_non_negative_number("real_label_blur_sigma", 0) == 0.0
    assert type(check_non_negative_number("k", 1)) is float and check_non_negative_number("k", np.float32(0.5)) == 0.5


@pytest.mark.parametrize("value", [-0.5, float("inf"), float("nan"), "1", True, None])
def test_non_negative_number_refuses_by_name(value):
    with pytest.raises(ValueError, match=r"^real_label_blur_sigma=.* must be a non-negative number$"):
        check_non_negative_number("real_label_blur_sigma", value)


def test_a_flag_passes_a_bool_and_refuses_what_bool_would_coerce():
    assert check_flag("batch_guidance", True) is True and check_flag("batch_guidance", False) is False
    for value in ("false", 0, 1, None):  # bool("false") is True: a CLI string must not switch it on
        with pytest.raises(ValueError, match=r"^batch_guidance=.* must be true or false$"):
            check_flag("batch_guidance", value)


def test_a_probability_passes_zero_to_one_and_refuses_the_rest_by_name():
    assert check_probability("flip_prob", 0) == 0.0 and check_probability("flip_prob", 1) == 1.0
    for value in (-0.1, 1.5, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError, match=r"^flip_prob=.* must be a probability in \[0, 1\]$"):
            check_probability("flip_prob", value)
