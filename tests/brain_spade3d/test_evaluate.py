"""evaluate.json runs the protocol's four studies at toy size and reports every number; one override runs a subset."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from tests.brain_spade3d.spade3d_helpers import BUNDLE, run_bundle

pytestmark = pytest.mark.slow

FOREGROUND = ["csf", "gm", "wm", "deep_gm", "brainstem", "wmh", "tumour", "edema", "enhancing"]


def _is_number(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value)


#: Toy sizes of every study, so the whole protocol runs in about a minute on the CPU.
TOY = {
    "segmenter_def#channels": [4, 8, 8],
    "n_synthetic": 2,
    "n_synthetic_tumour": 2,
    "segmenter_epochs": 1,
    "ssim_kernel_size": 5,
    "presence_samples": 3,
    "presence_batch_size": 2,
}


def _overrides(sampling_overrides: dict, cohort: Path, out: Path, **extra: object) -> dict:
    """evaluate.json at toy size on ``cohort``, writing into ``out``."""
    return {**sampling_overrides, "output_dir": str(out), "dataset_dir": str(cohort), **TOY, **extra}


def _evaluate(overrides: dict, check: bool = True) -> subprocess.CompletedProcess:
    return run_bundle(BUNDLE, ["inference.json", "evaluate.json"], overrides, check=check)


@pytest.fixture(scope="module")
def full_report(sampling_overrides: dict, spade_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("eval")
    _evaluate(_overrides(sampling_overrides, spade_cohort, out))
    return json.loads((out / "evaluation.json").read_text())


def test_evaluation_report(full_report: dict) -> None:
    report = full_report
    assert list(report)[:7] == [
        "data",
        "protocol",
        "lesion_presence",
        "similarity",
        "segmentation",
        "feature_distance",
        "unexpected_pathology",
    ]
    assert "demo data" in report["data"] and report["protocol"]["segmenter"] == "UNet" and report["machine"]
    protocol = report["protocol"]
    assert protocol["studies"] == ["lesion_presence", "similarity", "segmentation", "unexpected_pathology"]
    # the segmenters trained through the SupervisedTrainer and Adam partials the config declares
    assert protocol["segmenter_trainer"] == "SupervisedTrainer" and protocol["segmenter_optimizer"] == "Adam"
    assert protocol["segmenter_epochs"] == 1 and protocol["segmenter_learning_rate"] == 0.001
    distance = report["feature_distance"]  # 2 synthetic T1w images against 2 of the 4 real training ones
    assert distance["name"] == "Fréchet radiomics-style feature distance" and distance["n_generated"] == 2
    assert _is_number(distance["value"]) and _is_number(distance["real_split_half"])
    # the configured class-weighted loss is the one the segmenters trained with, and the report says so
    loss = report["protocol"]["segmenter_loss"]
    assert loss["name"] == "DiceCELoss" and loss["class_weights"][6] == 20.0 and len(loss["class_weights"]) == 10

    presence = report["lesion_presence"]
    assert set(presence) == {"healthy", "wmh", "tumour", "wmh+tumour", "all_requested_present_rate"}
    assert presence["healthy"]["all_requested_present_rate"] is None  # nothing requested
    for setting in ("wmh", "tumour", "wmh+tumour"):
        assert presence[setting]["n_samples"] == 3 and 0.0 <= presence[setting]["all_requested_present_rate"] <= 1.0
        for name in ("wmh", "tumour", "edema", "enhancing"):
            values = presence[setting]["per_lesion"][name]
            assert 0.0 <= values["present_rate"] <= 1.0 and values["mean_volume_ml"] >= 0.0
    assert presence["wmh+tumour"]["condition"] == {"wmh": 0.6, "tumour": 0.6, "edema": 0.6, "enhancing": 0.6}
    assert 0.0 <= presence["all_requested_present_rate"] <= 1.0

    for contrast in ("T1w", "T2w", "FLAIR"):
        similarity = report["similarity"][contrast]
        assert similarity["n_images"] == 1 and _is_number(similarity["ssim"]) and _is_number(similarity["mse"])
        present = [name for name, values in similarity["per_class"].items() if values["n_images"]]
        assert {"gm", "wm"} <= set(present)
        for name in present:
            assert _is_number(similarity["per_class"][name]["mse"])

    segmentation = report["segmentation"]
    assert segmentation["real"]["n_training_pairs"] == 4 and segmentation["synthetic"]["n_training_pairs"] == 2
    for arm in ("real", "synthetic"):
        dice = segmentation[arm]["dice"]
        assert list(dice) == FOREGROUND
        assert all(v is None or 0.0 <= v <= 1.0 for v in dice.values()) and _is_number(dice["wm"])

    pathology = report["unexpected_pathology"]
    assert pathology["n_tumour_cases"] == 2  # the validation and the test subject of the cohort
    assert pathology["healthy_only"]["n_training_pairs"] == 2
    assert pathology["healthy_plus_synthetic_tumours"]["n_training_pairs"] == 4
    for arm in ("healthy_only", "healthy_plus_synthetic_tumours"):
        assert _is_number(pathology[arm]["dice"]["tumour"])  # tumour voxels exist in every test case


def test_one_override_runs_only_the_lesion_presence_study(
    full_report: dict, sampling_overrides: dict, spade_cohort: Path, tmp_path: Path
) -> None:
    _evaluate(_overrides(sampling_overrides, spade_cohort, tmp_path, studies=["lesion_presence"]))
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert [key for key in report if key in full_report] == list(report)
    assert {"similarity", "segmentation", "feature_distance", "unexpected_pathology"}.isdisjoint(report)
    assert report["protocol"]["studies"] == ["lesion_presence"] and "segmenter" not in report["protocol"]
    # the same seeds draw the same label maps whichever studies run beside
    assert report["lesion_presence"] == full_report["lesion_presence"]


def test_an_unknown_study_is_refused_before_any_work(
    sampling_overrides: dict, spade_cohort: Path, tmp_path: Path
) -> None:
    studies = ["lesion_presence", "fid"]
    result = _evaluate(_overrides(sampling_overrides, spade_cohort, tmp_path / "eval", studies=studies), check=False)
    assert result.returncode != 0
    assert "studies=['lesion_presence', 'fid'] must name one or more of" in result.stdout + result.stderr
    assert not (tmp_path / "eval").exists()
