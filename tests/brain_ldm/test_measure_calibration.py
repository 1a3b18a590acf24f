"""calibrate_measure.json: the ventricle measurement chosen on real training images, reported on the other splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.brain_ldm.ldm_helpers import BUNDLE, TINY_SAMPLING, run_bundle

CONFIGS = ["inference.json", "evaluate.json", "calibrate_measure.json"]


def _overrides(cohort: Path, out: Path, **extra) -> dict:
    return {
        **TINY_SAMPLING,
        "dataset_dir": str(cohort),
        "ventricle_roi_path": str(cohort / "atlas" / "mni_ventricle_roi.nii.gz"),
        "output_dir": str(out),
        "calibration_thresholds": [0.5, 0.75, 0.9],
        "calibration_percentiles": [None, 75],
        **extra,
    }


def test_the_calibration_picks_the_best_measure_on_the_fit_split(tiny_brain_cohort: Path, tmp_path: Path) -> None:
    cohort, out = tiny_brain_cohort.parent, tmp_path / "calibration"
    run_bundle(BUNDLE, CONFIGS, _overrides(cohort, out))
    record = json.loads((out / "ventricle_measure.json").read_text())
    assert record["fit_split"] == "training" and record["n_images"] == {"training": 3, "validation": 1, "test": 1}
    assert record["uses_weights"] is False and record["bundle_version"] and record["machine"]
    sweep = record["sweep_on_fit_split"]
    assert [(row["threshold"], row["percentile"]) for row in sweep] == [
        (t, p) for p in (None, 75.0) for t in (0.5, 0.75, 0.9)
    ]
    best = record["best_on_fit_split"]
    scored = [row["pearson_r"] for row in sweep if row["pearson_r"] is not None]
    assert best["pearson_r"]["training"] == pytest.approx(max(scored))
    assert (best["threshold"], best["percentile"]) in [(r["threshold"], r["percentile"]) for r in sweep]
    configured = record["configured"]  # evaluate.json's own setting, reported beside the best
    assert (configured["threshold"], configured["percentile"]) == (0.75, 75.0)
    assert "75th intensity percentile" in configured["description"]
    (baseline,) = record["baselines"]  # the former fixed threshold, reported on every split
    assert (baseline["threshold"], baseline["percentile"]) == (0.5, None)
    assert set(baseline["pearson_r"]) == {"training", "validation", "test"}
    assert baseline["pearson_r"]["training"] == pytest.approx(sweep[0]["pearson_r"])  # (0.5, None) leads the sweep
    assert (out / "ventricle_measure.png").stat().st_size > 0


def test_a_bad_percentile_is_named_before_any_output(tiny_brain_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibration"
    result = run_bundle(
        BUNDLE, CONFIGS, _overrides(tiny_brain_cohort.parent, out, calibration_percentiles=[150]), check=False
    )
    assert result.returncode != 0 and "calibration_percentiles=150" in result.stderr + result.stdout
    assert not out.exists()
