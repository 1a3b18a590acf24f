"""calibrate.json (merged over inference.json): label-threshold sweep against the real patches' vessel fraction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import bundle_scripts_modules
from tests.tof_mra_vessel_gan.tof_helpers import BUNDLE, run_tiny


def test_sweep_and_matching_threshold_known_answers() -> None:
    with bundle_scripts_modules(BUNDLE, "calibration") as (calibration,):
        pairs = -np.ones((1, 2, 10, 10), dtype=np.float32)
        pairs[0, 1, 0, :] = np.linspace(0.05, 0.95, 10)  # ten label values, one per threshold band
        sweep = calibration.threshold_sweep(pairs, [0.0, 0.5, 0.9])
        assert [row["label_vessel_fraction"] for row in sweep] == [0.10, 0.05, 0.01]
        assert calibration.matching_threshold(sweep, 0.05) == 0.5
        assert calibration.matching_threshold(sweep, 0.012) == 0.9
        assert calibration.matching_threshold([{"threshold": 0.8, "label_vessel_fraction": 0.0}], 0.05) is None


def test_calibration_report_and_pictures(tof_datalist: Path, vivid_generator: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibration"
    overrides = {
        "generator_path": str(vivid_generator),
        "dataset_dir": str(tof_datalist.parent),
        "output_dir": str(out),
        "calibration_pairs": 32,
        "calibration_thresholds": [0.1, 0.5, 0.8],
    }
    run_tiny(["inference.json", "calibrate.json"], overrides)
    report = json.loads((out / "label_threshold_calibration.json").read_text())
    labels = np.concatenate(
        [
            np.load(tof_datalist.parent / item["patches"])["label"]
            for item in json.loads(tof_datalist.read_text())["training"]
        ]
    )
    assert report["real_vessel_fraction"] == pytest.approx(float(labels.mean()))
    assert report["n_generated_pairs"] == 32 and [row["threshold"] for row in report["sweep"]] == [0.1, 0.5, 0.8]
    fractions = [row["label_vessel_fraction"] for row in report["sweep"]]
    assert fractions == sorted(fractions, reverse=True)  # a higher threshold never labels more
    assert report["calibrated_threshold"] in (0.1, 0.5, 0.8, None)
    assert report["configured"]["threshold"] == 0.3 and len(report["weights_sha256"]) == 64 and report["machine"]
    for png in ("label_threshold_sweep.png", "label_threshold_pairs.png"):
        with Image.open(out / png) as image:
            assert image.width > 0


def test_an_empty_threshold_list_is_refused(tof_datalist: Path, vivid_generator: Path, tmp_path: Path) -> None:
    out = tmp_path / "calibration"
    overrides = {
        "generator_path": str(vivid_generator),
        "dataset_dir": str(tof_datalist.parent),
        "output_dir": str(out),
        "calibration_thresholds": [],
    }
    result = run_tiny(["inference.json", "calibrate.json"], overrides, check=False)
    assert result.returncode != 0 and "calibration_thresholds is empty" in result.stderr
    assert not (out / "label_threshold_calibration.json").exists()
