"""solver_study.json (merged over inference.json): the steps x solver table, its record, picture and refusals.

The bundle runs use the tiny demo architecture with seeded random weights (no training needed: the study measures
the samplers, not the model), 2 and 3 steps and 3 samples; the measures are checked in-process on known answers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.metrics import SSIMMetric
from PIL import Image

from bundle_runtime.latent_diffusion import write_latent_stats
from bundle_runtime.weights import file_sha256
from tests.brain_ldm.ldm_helpers import BUNDLE, TINY_SAMPLING, bundle_module, run_bundle

CONFIGS = ["inference.json", "solver_study.json"]
TINY_STUDY = {
    "study_steps": [2, 3],
    "study_samples": 3,
    "study_reference": {"solver": "ddim", "steps": 3},
    "ms_ssim_kernel_size": 3,  # three scales of a 16-voxel side need a kernel under 5
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Seeded random weights of the tiny demo architecture, saved where inference.json reads them."""
    folder = tmp_path_factory.mktemp("solver_study") / "models"
    folder.mkdir()
    paths = {
        "load_autoencoder_path": str(folder / "autoencoder.pt"),
        "load_diffusion_path": str(folder / "model.pt"),
    }
    with bundle_module("common.weights"):
        parser = ConfigParser()
        parser.read_config(str(BUNDLE / "configs" / "inference.json"))
        parser.update({"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')", **TINY_SAMPLING})
        generator = torch.Generator().manual_seed(0)
        for name, key in (("autoencoder_def", "load_autoencoder_path"), ("diffusion_def", "load_diffusion_path")):
            network = parser.get_parsed_content(name)
            with torch.no_grad():  # also perturbs the UNet's zero-initialised output layer
                for parameter in network.parameters():
                    parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
            torch.save(network.state_dict(), paths[key])
    write_latent_stats(folder / "latent_stats.json", 0.7)
    return paths


@pytest.mark.slow
def test_study_record_picture_and_table(weights: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "study"
    result = run_bundle(BUNDLE, CONFIGS, {**TINY_SAMPLING, **weights, **TINY_STUDY, "output_dir": str(out)})
    record = json.loads((out / "solver_study.json").read_text())
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert record["bundle"] == metadata["name"] and record["bundle_version"] == metadata["version"]
    assert record["weights"]["diffusion_sha256"] == file_sha256(weights["load_diffusion_path"])
    assert record["weights"]["autoencoder_sha256"] == file_sha256(weights["load_autoencoder_path"])
    assert record["machine"] and record["eta"] == 0.0 and record["n_samples"] == 3
    assert record["x0_clip"] == 4.0  # the demo default, which the study samples with unless told otherwise
    assert record["reference"] == {"solver": "ddim", "steps": 3}
    expected = [("ddim", 3), ("ddim", 2), ("dpmpp_2m", 2), ("dpmpp_2m", 3)]  # the reference first, then the grid
    assert [(s["solver"], s["steps"]) for s in record["settings"]] == expected
    assert [(row["solver"], row["steps"]) for row in record["rows"]] == expected
    assert len(record["conditions"]) == 3 and record["condition_names"] == [
        "sex",
        "age",
        "ventricular_vol",
        "brain_vol",
    ]
    reference = record["rows"][0]
    assert reference["distance_to_reference"] == {"mse": 0.0, "ssim": 1.0}
    assert reference["time_ratio_to_reference"] == 1.0
    for row in record["rows"]:
        assert row["seconds_per_sample"]["total"] > 0 and row["time_ratio_to_reference"] > 0
        assert set(row["fidelity_r"]) == {"ventricular_vol", "brain_vol"} and row["diversity_pairs"] == 3
        assert len(row["latent_spread"]["per_sample"]) == 3 and 0 <= row["latent_spread"]["n_outside_tolerance"] <= 3
        assert -1.0 <= row["diversity_ms_ssim"] <= 1.0
    assert record["rows"][2]["distance_to_reference"]["mse"] > 0  # another solver at other steps: another sample
    assert "| ddim | 3 | 1.00 | 0.00e+00 | 1.000 |" in result.stdout and record["table"] in result.stdout
    assert not [text for text in _strings(record) if text.startswith("/")], "the record names machine paths"
    with Image.open(out / "solver_study.png") as picture:
        assert picture.width > 2 * 16 * 4 and picture.height > 2 * 24 * 4  # two solver rows of two 16x24 axial tiles


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"study_solvers": ["euler"]}, "study_solvers='euler' is not one of ['ddim', 'dpmpp_2m']"),
        ({"study_samples": 1}, "study_samples=1 must be at least 2"),
    ],
)
def test_a_bad_study_key_fails_before_any_output(
    weights: dict[str, str], overrides: dict, message: str, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    result = run_bundle(
        BUNDLE, CONFIGS, {**TINY_SAMPLING, **weights, **TINY_STUDY, **overrides, "output_dir": str(out)}, check=False
    )
    assert result.returncode != 0 and message in result.stdout + result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": []}, "study_steps=[] must be a non-empty list"),
        ({"solvers": "ddim"}, "study_solvers='ddim' must be a non-empty list"),
        ({"steps": [0]}, "study_steps=0 must be a positive integer"),
        ({"steps": [10, 10]}, "study_steps=[10, 10] repeats a value"),
        ({"steps": [1001]}, "study_steps=1001 is more than the 1000 training timesteps"),
        ({"reference": {"solver": "ddim"}}, "study_reference={'solver': 'ddim'} must be"),
        ({"reference": {"solver": "heun", "steps": 50}}, "study_reference#solver='heun' is not one of"),
        ({"seed": -1}, "study_seed=-1 must be a non-negative integer"),
        ({"max_pairs": 0}, "study_max_pairs=0 must be a positive integer"),
    ],
)
def test_check_study_names_the_bad_key(change: dict, message: str) -> None:
    arguments = {"solvers": ["ddim"], "steps": [10], "reference": {"solver": "ddim", "steps": 50}}
    arguments.update(n_samples=2, seed=0, max_pairs=1, num_train_timesteps=1000)
    with bundle_module("solver_study") as study, pytest.raises(ValueError) as error:
        study.check_study(**{**arguments, **change})
    assert message in str(error.value)


def test_check_study_puts_the_reference_first_and_runs_it_once() -> None:
    with bundle_module("solver_study") as study:
        settings = study.check_study(["ddim", "dpmpp_2m"], [10, 50], {"solver": "ddim", "steps": 50}, 2, 0, 1, 1000)
        assert settings == [("ddim", 50), ("ddim", 10), ("dpmpp_2m", 10), ("dpmpp_2m", 50)]
        outside = study.check_study(["dpmpp_2m"], [10], {"steps": 50, "solver": "ddim"}, 2, 0, 1, 1000)
        assert outside == [("ddim", 50), ("dpmpp_2m", 10)]  # a reference off the grid is run as well


def test_study_conditions_spread_both_volumes_independently() -> None:
    names = ["sex", "age", "ventricular_vol", "brain_vol"]
    with bundle_module("solver_study") as study:
        conditions = study.study_conditions(30, names)
        assert torch.equal(conditions, study.study_conditions(30, names))  # identical for every setting and run
    ventricles, brain = conditions[:, 2].numpy(), conditions[:, 3].numpy()
    assert conditions[:, 0].tolist() == [float(i % 2) for i in range(30)] and set(conditions[:, 1].tolist()) == {0.5}
    for values in (ventricles, brain):
        assert values.min() >= 0.1 - 1e-6 and values.max() <= 0.9 + 1e-6 and values.std() > 0.2
    assert abs(np.corrcoef(ventricles, brain)[0, 1]) < 0.3  # each fidelity r measures its own condition


def test_time_ratio_is_the_median_of_per_sample_ratios() -> None:
    seconds = [(1.0, 0.5), (2.0, 0.5), (100.0, 0.5)]  # the third sample met a burst of load on the machine
    reference = [(2.5, 0.5), (4.5, 0.5), (2.5, 0.5)]
    with bundle_module("solver_study") as study:
        summary = study.time_summary(seconds, reference)
        itself = study.time_summary(reference, reference)
    assert summary["time_ratio_to_reference"] == 0.5  # ratios 0.5, 0.5, 33.5; totals would give 104.5 / 11
    assert summary["seconds_per_sample"] == {
        "sampling": 2.0,
        "decode": 0.5,
        "total": 2.5,
        "per_sample_total": [1.5, 2.5, 100.5],
    }
    assert itself["time_ratio_to_reference"] == 1.0


def test_row_known_answers(tmp_path: Path) -> None:
    """Distance, fidelity r, diversity and latent spread of a setting whose images are known."""
    reference = torch.rand(3, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.4  # all below 0.5
    images = reference.clone()
    for index in range(3):
        images[index, 0].view(-1)[: 10 * (index + 1)] = 0.9  # 10, 20, 30 bright voxels: brain volume
    conditions = torch.tensor([[0.0, 0.5, 0.5, 0.1], [1.0, 0.5, 0.5, 0.5], [0.0, 0.5, 0.5, 0.9]])
    ssim = SSIMMetric(spatial_dims=3, data_range=1.0, win_size=7)
    with bundle_module("solver_study") as module:
        study = module.SolverStudy(
            make_sampler=lambda solver, steps: None,
            diffusion=lambda *args: None,
            decode=lambda latent: latent,
            conditions=conditions,
            condition_names=["sex", "age", "ventricular_vol", "brain_vol"],
            ventricle_roi=np.zeros((8, 8, 8)),
            settings=[("ddim", 3)],
            ssim=lambda x, y: ssim(y_pred=x, y=y),
            ms_ssim=lambda x, y: torch.full((x.shape[0],), 0.25),
            output_dir=tmp_path,
            voxel_mm=10.0,  # 1 ml per voxel
        )
        itself = study.row(("ddim", 3), reference, reference, [1.0, 1.0, 1.0])
        row = study.row(("dpmpp_2m", 2), images, reference, [1.0, 1.3, 0.85])
        table = module.format_table([{**itself, "time_ratio_to_reference": 1.0}])
    assert itself["distance_to_reference"] == {"mse": 0.0, "ssim": 1.0}
    expected_mse = float(((images.double() - reference.double()) ** 2).flatten(1).mean(1).mean())
    assert math.isclose(row["distance_to_reference"]["mse"], expected_mse, rel_tol=1e-12)
    assert row["distance_to_reference"]["ssim"] < 1.0
    assert row["measured_ml"]["brain_vol"] == [10.0, 20.0, 30.0] and row["measured_ml"]["ventricular_vol"] == [0.0] * 3
    assert math.isclose(row["fidelity_r"]["brain_vol"], 1.0) and row["fidelity_r"]["ventricular_vol"] is None
    assert row["diversity_ms_ssim"] == 0.25 and row["diversity_pairs"] == 3
    spread = row["latent_spread"]
    assert spread["n_outside_tolerance"] == 1 and math.isclose(spread["mean"], (1.0 + 1.3 + 0.85) / 3)
    assert "| ddim | 3 | 1.00 | 0.00e+00 | 1.000 | undefined | undefined | 0.250 | 1.00 (0) |" in table


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in _strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in _strings(value)]
    return [node] if isinstance(node, str) else []
