"""Each bad input stops inference before any work, with an error naming the input and no output left.

Every kind of bad input in the issue is run through ``monai.bundle run`` once; the remaining
variants of the same checks run in-process against ``scripts/conditions.py`` to keep the suite fast.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.brain_ldm.ldm_helpers import BUNDLE, bundle_module
from tests.helpers import assert_inference_refused

NAMES = ["sex", "age", "ventricular_vol", "brain_vol"]
DEFAULTS = {"sex": 0.0, "age": 0.5, "ventricular_vol": 0.5, "brain_vol": 0.5}

BAD_VALUES = [
    pytest.param({"age": 1.5}, "age=1.5 is outside [0, 1]", id="outside-range"),
    pytest.param({"brain_vol": "nan"}, "brain_vol=nan is outside [0, 1]", id="nan"),
    pytest.param({"condition": [0.1, 0.2, 0.3]}, "condition[0]: expected 4 values", id="three-condition-values"),
    pytest.param({"profile": "adni"}, "profile='adni' is not one of ['demo', 'ukb']", id="unknown-profile"),
    pytest.param({"solver": "heun"}, "solver='heun' is not one of ['ddim', 'dpmpp_2m']", id="unknown-solver"),
    pytest.param({"decode_mode": "tiles"}, "decode_mode='tiles' is not one of ['whole', 'split']", id="decode-mode"),
    pytest.param({"decode_splits": 0}, "decode_splits=0 must be a positive integer", id="decode-splits"),
    pytest.param({"x0_clip": 0}, "x0_clip=0 must be a positive number or null", id="x0-clip"),
    pytest.param({"compile_networks": "yes"}, "compile_networks='yes' must be true or false", id="compile-flag"),
    pytest.param(
        {"seed": 2**32 - 1, "n_samples": 2}, "seed=4294967295 with 2 sample(s) reaches seed 4294967296", id="seed-span"
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "message"), BAD_VALUES)
def test_bad_conditioning_and_profile(overrides: dict, message: str, sampling_overrides: dict, tmp_path: Path) -> None:
    assert_inference_refused(BUNDLE, {**sampling_overrides, **overrides}, message, tmp_path / "out")


CSV_CASES = [
    pytest.param(
        "sex,age,ventricular_vol,brain_vol\n0,0.5,big,0.5\n", "ventricular_vol='big' is not a number", id="text"
    ),
    pytest.param("sex,age,ventricular_vol,brain_vol\n0,0.5,0.5\n", "line 2: expected 4 fields", id="short-row"),
    pytest.param("sex,age,ventricular_vol,brain_vol\n0,0.5,nan,0.5\n", "ventricular_vol=nan is outside", id="nan"),
    pytest.param("sex,age,ventricular_vol,brain_vol\n", "has a header but no rows", id="no-rows"),
    pytest.param(
        "sex,age,ventricular_vol,brain_vol\n0,0.5,0.5,0.5\n1,0.5,0.5,0.5\n", "has 2 rows but n_samples=1", id="rows"
    ),
]


@pytest.mark.slow
def test_malformed_conditions_csv(sampling_overrides: dict, tmp_path: Path) -> None:
    table = tmp_path / "conditions.csv"
    table.write_text("sex,age,brain_vol\n0,0.5,0.5\n")
    message = f"conditions_csv {table}: header ['sex', 'age', 'brain_vol'] lacks column(s)"
    assert_inference_refused(BUNDLE, {**sampling_overrides, "conditions_csv": str(table)}, message, tmp_path / "out")


@pytest.mark.parametrize(("content", "message"), CSV_CASES)
def test_malformed_conditions_csv_variants(content: str, message: str, tmp_path: Path) -> None:
    table = tmp_path / "conditions.csv"
    table.write_text(content)
    with bundle_module("conditions") as conditions, pytest.raises(ValueError) as error:
        conditions.resolve_conditions(NAMES, 1, DEFAULTS, conditions_csv=str(table))
    assert message in str(error.value) and f"conditions_csv {table}" in str(error.value)


@pytest.mark.parametrize(
    ("values", "condition", "n_samples", "message"),
    [
        ({"ventricular_vol": -0.1}, None, 1, "ventricular_vol=-0.1 is outside [0, 1]"),
        ({"sex": "male"}, None, 1, "sex='male' is not a number"),
        ({"sex": True}, None, 1, "sex=True is not a number"),
        ({"sex": [0, 1]}, None, 1, "sex: got 2 values for n_samples=1"),
        ({"age": [0.1, float("nan")]}, None, 2, "age[1]=nan is outside [0, 1]"),
        ({}, [0.1, 0.2, 0.3, 0.4, 0.5], 1, "condition[0]: expected 4 values"),
        ({}, [[0.1, 0.2, 0.3, 0.4]] * 3, 2, "condition: got 3 vectors for n_samples=2"),
        ({}, [0.1, 0.2, 2.0, 0.4], 1, "condition[0][ventricular_vol]=2.0 is outside [0, 1]"),
        ({}, None, 0, "n_samples=0 must be a positive integer"),
        ({}, None, 1.5, "n_samples=1.5 must be a positive integer"),
    ],
)
def test_bad_condition_variants(values: dict, condition, n_samples, message: str) -> None:
    with bundle_module("conditions") as conditions, pytest.raises(ValueError) as error:
        conditions.resolve_conditions(NAMES, n_samples, {**DEFAULTS, **values}, condition=condition)
    assert message in str(error.value)


def test_good_conditions_resolve_per_sample() -> None:
    with bundle_module("conditions") as conditions:
        matrix = conditions.resolve_conditions(NAMES, 2, {**DEFAULTS, "age": [0.25, "0.75"]})
        from_vector = conditions.resolve_conditions(NAMES, 2, DEFAULTS, condition=[1, 0.1, 0.2, 0.3])
    assert matrix.dtype == torch.float64
    assert matrix.tolist() == [[0.0, 0.25, 0.5, 0.5], [0.0, 0.75, 0.5, 0.5]]
    assert from_vector.tolist() == [[1.0, 0.1, 0.2, 0.3]] * 2


@pytest.mark.slow
def test_missing_weights(sampling_overrides: dict, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.pt"
    overrides = {**sampling_overrides, "load_diffusion_path": str(missing)}
    message = f"load_diffusion_path: weights file {missing} does not exist"
    assert_inference_refused(BUNDLE, overrides, message, tmp_path / "out")


@pytest.mark.slow
def test_truncated_weights(sampling_overrides: dict, trained: dict, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained["models"], models)
    weights = models / "autoencoder.pt"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    overrides = {**sampling_overrides, "load_autoencoder_path": str(weights)}
    message = f"load_autoencoder_path: weights file {weights} is truncated or not a PyTorch checkpoint"
    assert_inference_refused(BUNDLE, overrides, message, tmp_path / "out")
