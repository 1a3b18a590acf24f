"""generate.json: a planned, sharded, resumable dataset of brains (shipped 4 mm demo weights, 2 steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import dataset_cases as cases
from tests.brain_ldm.ldm_helpers import BUNDLE
from tests.helpers import bundle_version, run_bundle

pytestmark = pytest.mark.slow

QUICK = {"num_inference_steps": 2, "progress": False}


def test_torchrun_shards_kill_and_resume_give_one_identical_dataset(tmp_path: Path) -> None:
    cases.check_torchrun_shards_kill_and_resume(
        BUNDLE, {**QUICK, "age": [0.1, 0.4, 0.6, 0.9]}, tmp_path, 4, {"sex": 1}, "sex is 0.0 there, 1.0 now"
    )
    rows = cases.manifest_rows(tmp_path / "sharded")
    assert [float(r["age"]) for r in rows] == [0.1, 0.4, 0.6, 0.9]  # requested conditions recorded
    assert all(float(r["measured_brain_ml"]) > 0 and float(r["measured_ventricle_ml"]) >= 0 for r in rows)
    assert {len(r["diffusion_sha256"]) for r in rows} == {64} and {r["bundle_version"] for r in rows} == {
        bundle_version(BUNDLE)
    }


def test_a_non_numeric_conditions_csv_is_refused(tmp_path: Path) -> None:
    text = "sex,age,ventricular_vol,brain_vol\n0,0.5,0.5,0.5\n1,old,0.5,0.5\n"
    cases.check_conditions_csv_is_refused(BUNDLE, QUICK, tmp_path, text, "age='old' is not a number")


def test_the_condition_sampler_draws_training_conditions(brain_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "sampled"
    overrides = {**QUICK, "n_samples": 3, "condition_sampler": "training", "dataset_dir": str(brain_cohort)}
    run_bundle(BUNDLE, cases.GENERATE, {**overrides, "output_dir": str(out)})
    training = [item["condition"] for item in json.loads((brain_cohort / "datalist.json").read_text())["training"]]
    for row in cases.manifest_rows(out):
        requested = [float(row[n]) for n in ("sex", "age", "ventricular_vol", "brain_vol")]
        nearest = min(training, key=lambda real: max(abs(a - b) for a, b in zip(real, requested)))
        assert requested[0] == nearest[0] and max(abs(a - b) for a, b in zip(nearest, requested)) < 0.15


def test_the_readme_python_example_samples_a_batch_equal_to_samples_alone() -> None:
    checks = """
import numpy as np
assert len(volumes) == 4 and all(v.shape == (40, 56, 40) for v in volumes)
alone = synthesis.generate_batch([2])[0]
assert np.abs(volumes[2] - alone).max() <= 1e-4, np.abs(volumes[2] - alone).max()
assert np.abs(volumes[1] - volumes[2]).max() > 0.1  # other seeds and ages give other brains
"""
    cases.check_readme_python_example(BUNDLE, {"num_inference_steps=50": "num_inference_steps=2"}, checks)


def test_inference_refuses_an_unusable_output_dir_before_any_work(tmp_path: Path) -> None:
    cases.check_inference_refuses_an_unusable_output_dir(BUNDLE, QUICK, tmp_path, "load_diffusion_path")
