"""generate.json: a planned, sharded, resumable dataset of lesioned brains (shipped demo weights, 2 steps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import dataset_cases as cases
from tests.brain_spade3d.spade3d_helpers import BUNDLE

pytestmark = pytest.mark.slow

QUICK = {"num_inference_steps": 2, "progress": False, "contrasts": ["T1w"], "max_label_draws": 2}


def test_torchrun_shards_kill_and_resume_give_one_identical_dataset(tmp_path: Path) -> None:
    cases.check_torchrun_shards_kill_and_resume(
        BUNDLE, {**QUICK, "condition_sampler": "training"}, tmp_path, 4, {"seed": 5}, "seed is 0 there, 5 now"
    )
    rows = cases.manifest_rows(tmp_path / "sharded")
    assert all(any(float(r[n]) > 0 for n in ("wmh", "tumour", "edema", "enhancing")) for r in rows)  # training lesions
    assert all(float(r["measured_wmh_ml"]) >= 0 and r["file_T1w"].endswith("_T1w.nii.gz") for r in rows)
    assert {float(r["measured_label_draws"]) for r in rows} <= {1.0, 2.0}  # each row says how many draws it took
    assert {float(r["measured_label_conforms"]) for r in rows} <= {0.0, 1.0}


def test_out_of_range_conditions_csv_is_refused(tmp_path: Path) -> None:
    text = "wmh,tumour,edema,enhancing\n0.2,0,0,0\n0,1.5,0,0\n"
    cases.check_conditions_csv_is_refused(BUNDLE, QUICK, tmp_path, text, "tumour=1.5 is outside [0, 1]")


def test_the_readme_python_example_samples_a_batch_equal_to_samples_alone() -> None:
    checks = """
import numpy as np
assert len(samples) == 4 and sorted(samples[0][1]) == ["FLAIR", "T1w"]
label_map, images, draws = synthesis.generate_batch([2])[0]
assert draws["max_draws"] == 8 and draws["kept_draw"] < draws["draws"] <= 8  # redraws are on by default
assert samples[2].label_draws == draws  # the same draws, whatever the batch
assert np.abs(samples[2][0] - label_map).max() <= 1e-3
assert all(np.abs(samples[2][1][c] - images[c]).max() <= 1e-3 for c in images)
assert np.abs(samples[1][1]["T1w"] - samples[2][1]["T1w"]).max() > 0.1  # other seeds give other brains
assert all("wmh" in found and "wmh_ml" in found for found in lesions)
"""
    cases.check_readme_python_example(BUNDLE, {"num_inference_steps=50": "num_inference_steps=2"}, checks)


def test_inference_refuses_an_unusable_output_dir_before_any_work(tmp_path: Path) -> None:
    cases.check_inference_refuses_an_unusable_output_dir(BUNDLE, QUICK, tmp_path, "models_dir")
