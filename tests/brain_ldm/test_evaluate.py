"""evaluate.json (merged over inference.json): diversity, MMD, FID switch, conditioning fidelity, report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.brain_ldm.ldm_helpers import BUNDLE, bundle_module, run_bundle

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
        "same_condition_samples": 2,
        **extra,
    }
    run_bundle(BUNDLE, ["inference.json", "evaluate.json"], overrides)
    return json.loads((out / "metrics.json").read_text())


def test_evaluation_report(brain_cohort: Path, sampling_overrides: dict, tmp_path: Path) -> None:
    report = _evaluate(brain_cohort, sampling_overrides, tmp_path / "eval", guidance_scale=1.5)
    assert report["n_reference"] == 2 and report["n_generated"] == 2 and report["machine"]
    assert report["guidance_scale"] == 1.5  # a report says how its samples were guided
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
    subjects = json.loads((brain_cohort / "datalist.json").read_text())["training"]  # the reference split here
    at_subjects = report["conditioning_fidelity_at_reference_conditions"]
    for column, name in ((2, "ventricular_vol"), (3, "brain_vol")):  # asked: each subject's own condition vector
        assert at_subjects[name]["requested"] == pytest.approx([item["condition"][column] for item in subjects])
        assert len(at_subjects[name]["measured_ml"]) == 2 and all(v >= 0 for v in at_subjects[name]["measured_ml"])
    reconstructed = report["measurement_check_on_reconstructions"]  # the autoencoder's own ceiling
    for name in ("ventricular_vol", "brain_vol"):
        real_check = report["measurement_check_on_real_images"][name]
        assert reconstructed[name]["normalised_truth"] == real_check["normalised_truth"]
        assert len(reconstructed[name]["measured_ml"]) == 2
    same = report["same_condition_diversity"]
    assert same["n_samples"] == 2 and same["pairs"] == 1 and same["real_pairs"] == 1 and same["n_region_voxels"] > 0
    assert -1.0 <= same["mean_pairwise_r_generated"] <= 1.0 and -1.0 <= same["mean_pairwise_r_real"] <= 1.0
    spread = report["latent_spread"]
    assert spread["n_samples"] == 2 + 2 * 3 + 2  # reference-conditioned, two sweeps of three, same condition
    assert 0 < spread["min"] <= spread["mean"] <= spread["max"] and 0 <= spread["n_outside_tolerance"] <= 10
    measurement = report["measurement"]  # ventricles relative to the region's white matter, as calibrated
    assert (measurement["ventricle_threshold"], measurement["ventricle_reference_percentile"]) == (0.75, 75.0)
    for png in ("conditioning_fidelity.png", "samples.png", "same_condition.png", "ventricle_sweep.png"):
        with Image.open(tmp_path / "eval" / png) as image:
            assert image.width > 0 and image.height > 0


def test_fid_uses_a_local_feature_extractor(brain_cohort: Path, sampling_overrides: dict, tmp_path: Path) -> None:
    extractor = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3, stride=2), torch.nn.ReLU()).eval()
    path = tmp_path / "extractor.pt"
    torch.jit.trace(extractor, torch.rand(1, 1, 16, 24, 16)).save(str(path))
    report = _evaluate(
        brain_cohort,
        sampling_overrides,
        tmp_path / "eval",
        fid_feature_extractor_path=str(path),
        fidelity_values=[0.5],
        **{"evaluation#reconstruct": "$lambda image: image * 0"},  # a decoder that loses everything
    )
    assert math.isfinite(report["fid"]["value"]) and report["fid"]["feature_extractor"] == "extractor.pt"
    # the reconstruction check measures what the reconstruction returns, not the real image
    assert report["measurement_check_on_reconstructions"]["brain_vol"]["measured_ml"] == [0.0, 0.0]
    assert all(v > 0 for v in report["measurement_check_on_real_images"]["brain_vol"]["measured_ml"])


def test_masked_pearson_known_answers() -> None:
    with bundle_module("evaluation") as evaluation:
        mask = torch.zeros(4, 4, 4, dtype=torch.bool)
        mask[1:3] = True
        similarity = evaluation.masked_pearson(mask)
        image = torch.rand(1, 1, 4, 4, 4)
        other = image.clone()
        other[0, 0, 0] = 5.0  # outside the mask: must not matter
        torch.testing.assert_close(similarity(image, other), torch.ones(1, dtype=torch.float64))
        torch.testing.assert_close(similarity(image, 1.0 - image), -torch.ones(1, dtype=torch.float64))


class _FixedLatentSampler:
    """Decodes a latent of known spread, so the recorded spread has a known answer."""

    scale_factor = 2.0

    def initial_noise(self, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return torch.zeros(count, 1, 2, 2, 2)

    def __call__(self, diffusion, decode, condition, noise, description):  # noqa: ANN001, ANN204 - a test double
        latent = torch.tensor([-0.25, 0.25]).repeat(4).reshape(1, 1, 2, 2, 2)  # std 0.267 (unbiased)
        return decode(latent)


def test_latent_spread_is_std_times_scale_factor(tmp_path: Path) -> None:
    with bundle_module("evaluation") as evaluation:
        study = evaluation.GenerativeEvaluation(
            sampler=_FixedLatentSampler(),
            diffusion=lambda *args: None,
            decode=lambda latent: torch.zeros(1, 1, 4, 4, 4),
            reference_images=lambda: [],
            ventricle_roi=torch.zeros(4, 4, 4).numpy(),
            condition_names=["sex", "age", "ventricular_vol", "brain_vol"],
            output_dir=tmp_path,
            progress=False,
        )
        study.generate(torch.zeros(3, 4), "probe")
        spread = study.latent_spread()
    expected = float(torch.tensor([-0.25, 0.25]).repeat(4).std()) * 2.0
    assert spread["n_samples"] == 3 and math.isclose(spread["mean"], expected, rel_tol=1e-6)
    assert spread["n_outside_tolerance"] == 3  # 0.53 is far below the training spread of 1.0
