"""evaluate.json (merged over inference.json): diversity, MMD, FID switch, conditioning fidelity, report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.brain_ldm.ldm_helpers import BUNDLE, run_bundle

pytestmark = pytest.mark.slow


def _evaluate(brain_cohort: Path, sampling_overrides: dict, out: Path, **extra) -> dict:
    overrides = {
        **sampling_overrides,
        "output_dir": str(out),
        "dataset_dir": str(brain_cohort),
        "reference_split": "training",  # the tiny cohort's only split with two subjects
        "ventricle_roi_path": str(brain_cohort / "atlas" / "mni_ventricle_roi.nii.gz"),
        "ms_ssim_kernel_size": 3,
        "fidelity_values": [0.1, 0.5, 0.9],
        "fidelity_samples_per_value": 1,
        "distance_real_splits": ["training", "validation", "test"],  # the split-half scale needs 4 real images
        **extra,
    }
    run_bundle(BUNDLE, ["inference.json", "evaluate.json"], overrides)
    return json.loads((out / "metrics.json").read_text())


def test_evaluation_report(brain_cohort: Path, sampling_overrides: dict, tmp_path: Path) -> None:
    report = _evaluate(brain_cohort, sampling_overrides, tmp_path / "eval")
    assert report["n_reference"] == 2 and report["n_generated"] == 2
    for key in ("diversity_generated", "diversity_real"):
        assert report[key]["pairs"] == 1
        assert -1.0 <= report[key]["ms_ssim"] <= 1.0 and -1.0 <= report[key]["four_g_r_ssim"] <= 1.0
    assert math.isfinite(report["mmd"])
    assert report["fid"]["value"] is None and "not computed" in report["fid"]["note"]
    distance = report["feature_distance"]
    assert distance["name"] == "Fréchet radiomics-style feature distance"
    assert math.isfinite(distance["value"]) and math.isfinite(distance["real_split_half"])
    assert distance["n_generated"] == distance["n_real_half_b"] == 2 and distance["n_real_half_a"] == 2
    for name in ("ventricular_vol", "brain_vol"):
        sweep = report["conditioning_fidelity"][name]
        assert sweep["requested"] == [0.1, 0.5, 0.9] and len(sweep["measured_ml"]) == 3
        assert "pearson_r" in sweep
        check = report["measurement_check_on_real_images"][name]
        assert len(check["measured_ml"]) == 2 and all(v > 0 for v in check["measured_ml"])
    for png in ("conditioning_fidelity.png", "samples.png"):
        with Image.open(tmp_path / "eval" / png) as image:
            assert image.width > 0 and image.height > 0


def test_fid_uses_a_local_feature_extractor(brain_cohort: Path, sampling_overrides: dict, tmp_path: Path) -> None:
    extractor = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, stride=2), torch.nn.ReLU()).eval()
    path = tmp_path / "extractor.pt"
    torch.jit.trace(extractor, torch.rand(1, 1, 16, 24, 16)).save(str(path))
    report = _evaluate(
        brain_cohort, sampling_overrides, tmp_path / "eval", fid_feature_extractor_path=str(path), fidelity_values=[0.5]
    )
    assert math.isfinite(report["fid"]["value"]) and report["fid"]["feature_extractor"] == "extractor.pt"
