"""``python -m tools dataset-bench`` writes a record that the shipped-records rules accept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import BUNDLES_DIR, REPO_ROOT
from tools.dataset_bench import _shown, dataset_bench


def test_record_names_version_weights_and_how_it_sampled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = BUNDLES_DIR / "brain_ldm"
    out = tmp_path / "dataset_throughput.json"
    monkeypatch.setattr("tools.dataset_bench.measure_manifest", lambda: {"n_samples": 10, "parts": 2})
    dataset_bench("brain_ldm", str(out), throughput=False)
    record = json.loads(out.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["dataset_throughput.json"]  # written atomically, no leftovers
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    sums = dict(reversed(line.split()) for line in (bundle / "models" / "SHA256SUMS").read_text().splitlines())
    assert record["bundle_version"] == metadata["version"]
    assert record["weights"]["model_sha256"] == sums["model.pt"]
    assert record["weights"]["autoencoder_sha256"] == sums["autoencoder.pt"]
    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert record["sampling"] == {
        "solver": inference["solver"],
        "num_inference_steps": 10,  # the bench's override, not the config's 50
        "ddim_eta": inference["ddim_eta"],
        "x0_clip": inference["x0_clip"],
        "guidance_scale": inference["guidance_scale"],
        "batch_size": inference["batch_size"],
    }
    assert record["throughput"] == "not measured" and record["manifest"] == {"n_samples": 10, "parts": 2}


def test_the_command_names_an_output_inside_the_repository_relative_to_it(tmp_path: Path) -> None:
    inside = REPO_ROOT / "bundles" / "brain_ldm" / "docs" / "measured" / "dataset_throughput.json"
    assert _shown(str(inside)) == "bundles/brain_ldm/docs/measured/dataset_throughput.json"
    assert _shown(str(tmp_path / "x.json")) == str(tmp_path / "x.json")


def test_the_record_names_the_label_draw_budget_of_the_spade_bundle(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "dataset_throughput.json"
    monkeypatch.setattr("tools.dataset_bench.measure_manifest", lambda: {"n_samples": 10, "parts": 2})
    dataset_bench("brain_spade3d", str(out), throughput=False)
    inference = json.loads((BUNDLES_DIR / "brain_spade3d" / "configs" / "inference.json").read_text())
    assert json.loads(out.read_text())["sampling"]["max_label_draws"] == inference["max_label_draws"] == 8
