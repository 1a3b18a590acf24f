"""``python -m tools bench`` at tiny size: the JSON it writes and the parity it reports (never a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.brain_ldm.ldm_helpers import TINY_SAMPLING as TINY_LDM
from tests.brain_spade3d.spade3d_helpers import TINY_SAMPLING as TINY_SPADE
from tests.helpers import REPO_ROOT
from tools.bench import bench

TINY_TOF = {"ngf": 4, "batch_size": 3}


def run_bench(tmp_path: Path, bundle: str, both: dict, **options) -> dict:
    out = tmp_path / "bench.json"
    bench(bundle, steps=2, out=str(out), both=both, weights="random", threads=1, **options)
    return json.loads(out.read_text())


def assert_record_fields(record: dict, bundle: str) -> None:
    assert record["bundle"] == bundle and record["bundle_version"] and record["machine"]["cpu"]
    assert set(record["ratios"]) == {"time", "peak_rss"} and all(v > 0 for v in record["ratios"].values())
    for side in ("reference", "ours"):
        assert record[side]["peak_rss_mb"] > 0


@pytest.mark.parametrize(("bundle", "tiny"), [("brain_ldm", TINY_LDM), ("brain_spade3d", TINY_SPADE)])
def test_brain_bench_reports_times_memory_and_parity(tmp_path: Path, bundle: str, tiny: dict):
    record = run_bench(tmp_path, bundle, tiny, ours={"decode_mode": "split", "decode_splits": 4})
    assert_record_fields(record, bundle)
    for side in ("reference", "ours"):
        numbers = record[side]
        assert numbers["timed_steps"] == 2 and numbers["full_steps"] == 3
        assert numbers["seconds_per_sample"] == pytest.approx(
            3 * numbers["seconds_per_step"] + numbers["decode_seconds"]
        )
    assert "extrapolated" in record["note"]
    assert all(record[side]["condition_seconds_per_step"] > 0 for side in ("reference", "ours"))
    assert 0 < record["condition_share_of_step"] < 1  # building condition inputs is part of a step, not all of it
    assert set(record["max_abs_diff"]) == {"latent", "image"}
    assert record["max_abs_diff"]["latent"] <= 1e-5 and record["max_abs_diff"]["image"] <= 1e-4


def test_the_bench_sees_a_different_solver_as_a_different_latent(tmp_path: Path):
    record = run_bench(tmp_path, "brain_ldm", TINY_LDM, ours={"solver": "dpmpp_2m"})
    assert record["max_abs_diff"]["latent"] > 1e-3 and record["ours_overrides"]["solver"] == "dpmpp_2m"


def test_a_warmed_up_compiled_unet_and_decoder_match_the_eager_reference(tmp_path: Path):
    record = run_bench(tmp_path, "brain_ldm", TINY_LDM, ours={"compile_networks": True}, warmup=True)
    assert record["warmup"] is True and record["ours_overrides"]["compile_networks"] is True
    assert all(record[side]["warmup_seconds"] > 0 for side in ("reference", "ours"))
    assert record["max_abs_diff"]["latent"] <= 1e-4 and record["max_abs_diff"]["image"] <= 1e-4


@pytest.mark.parametrize(("bundle", "tiny"), [("brain_ldm", TINY_LDM), ("brain_spade3d", TINY_SPADE)])
def test_a_batched_first_sample_matches_the_reference_sampled_alone(tmp_path: Path, bundle: str, tiny: dict):
    record = run_bench(tmp_path, bundle, tiny, batch_size=3, ours_threads=2)
    assert record["ours_batch_size"] == 3 and record["ours"]["batch_size"] == 3
    assert record["reference"]["batch_size"] == 1
    assert record["ours_threads"] == 2 and record["machine"]["torch_threads"] == 1
    numbers = record["ours"]  # per sample: the batch's times divided by 3
    assert numbers["seconds_per_sample"] == pytest.approx(3 * numbers["seconds_per_step"] + numbers["decode_seconds"])
    assert record["max_abs_diff"]["latent"] <= 1e-5 and record["max_abs_diff"]["image"] <= 1e-4


def test_tof_bench_reports_patches_per_second_and_parity(tmp_path: Path):
    record = run_bench(tmp_path, "tof_mra_vessel_gan", TINY_TOF)
    assert_record_fields(record, "tof_mra_vessel_gan")
    assert record["reference"]["patches"] == record["ours"]["patches"] == 6
    assert record["ours"]["patches_per_second"] > 0 and record["max_abs_diff"]["image"] <= 1e-4


def test_the_command_line_refuses_bad_arguments_before_any_work(tmp_path: Path):
    for arguments, message in [
        (["bench", "brain_x"], "bundle='brain_x'"),
        (["bench", "tof_mra_vessel_gan", "--profile", "ukb"], "profile='ukb'"),
        (["bench", "brain_ldm", "--steps", "0"], "steps=0"),
        (["bench", "brain_ldm", "--part", "unet"], "part='unet'"),
        (["bench", "brain_ldm", "--batch_size", "0"], "batch_size=0"),
        (["bench", "brain_ldm", "--ours_threads", "0"], "ours_threads=0"),
        (["bench", "tof_mra_vessel_gan", "--batch_size", "2"], "batch_size is for the brain bundles"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "tools", *arguments, "--out", str(tmp_path / "x.json")],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0 and message in done.stderr, done.stderr[-2000:]
        assert not (tmp_path / "x.json").exists()
