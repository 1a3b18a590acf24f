"""generate.json: a planned, sharded, resumable dataset of TOF-MRA pairs (shipped generator)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import dataset_cases as cases
from tests.tof_mra_vessel_gan.tof_helpers import BUNDLE, run_bundle

pytestmark = pytest.mark.slow

QUICK = {"progress": False}


def test_torchrun_shards_kill_and_resume_give_one_identical_dataset(tmp_path: Path) -> None:
    cases.check_torchrun_shards_kill_and_resume(
        BUNDLE, QUICK, tmp_path, 200, {"n_samples": 3}, "200 samples there, n_samples=3 now"
    )
    rows = cases.manifest_rows(tmp_path / "sharded")
    assert {r["seed"] for r in rows} == {"0"}  # pair i is draw i of the seed's stream
    assert all(0 <= float(r["measured_vessel_fraction"]) < 1 for r in rows)


def test_a_shard_index_outside_the_shards_is_refused(tmp_path: Path) -> None:
    bad = {"n_samples": 4, "shard_index": 2, "num_shards": 2}
    cases.check_refused_before_any_sample(BUNDLE, QUICK, tmp_path, bad, "shard_index=2 is outside [0, num_shards=2)")


def test_the_readme_python_example_generates_a_batch_equal_to_pairs_alone() -> None:
    checks = """
import numpy as np
assert len(pairs) == 64 and pairs[0].shape == (2, 96, 96)
alone = synthesis.generate_batch([37])[0]
assert np.abs(pairs[37] - alone).max() <= 1e-5, np.abs(pairs[37] - alone).max()
assert np.abs(pairs[36] - pairs[37]).max() > 0.1
"""
    cases.check_readme_python_example(BUNDLE, {}, checks)


def test_inference_refuses_an_unusable_output_dir_before_any_work(tmp_path: Path) -> None:
    cases.check_inference_refuses_an_unusable_output_dir(BUNDLE, QUICK, tmp_path, "generator_path")


def test_inference_removes_a_killed_runs_staging_folder(tmp_path: Path) -> None:
    staging = tmp_path / "pairs" / ".partial-killed"
    staging.mkdir(parents=True)
    (staging / "pair_000000_image.nii.gz").write_bytes(b"half written")
    run_bundle(BUNDLE, "inference.json", {**QUICK, "output_dir": str(tmp_path / "pairs"), "n_samples": 2})
    assert not staging.exists()
    assert (tmp_path / "pairs" / "generation.json").is_file()
