"""train.json's real_label_encoding and real_label_blur_sigma: how real labels reach the critic.

The generator's label channel is a tanh; real labels of exactly 0 and 1 ask vessels to sit at its asymptote.
These switches hand the critic {-1, 1} labels, or blurred (soft) ones, instead; the defaults change nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from tests.helpers import bundle_scripts_modules
from tests.tof_mra_vessel_gan.tof_helpers import (
    BUNDLE,
    N_TRAINING_PATIENTS,
    PATCHES_PER_PATIENT,
    TINY,
    run_tiny,
    workspace_overrides,
)

TRAIN_CONFIG = BUNDLE / "configs" / "train.json"
#: A 9x9 label with a vertical vessel three pixels wide (columns 3 to 5).
BAND = slice(3, 6)


def _band_label() -> np.ndarray:
    label = np.zeros((1, 9, 9), dtype=np.float32)
    label[0, :, BAND] = 1.0
    return label


def _parser(overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(TRAIN_CONFIG))
    parser.update(overrides)
    return parser


def _preprocessed(overrides: dict, label: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The names of train.json's preprocessing transforms and the (2, H, W) pair it makes of ``label``."""
    with bundle_scripts_modules(BUNDLE, "data"):
        preprocessing = _parser(overrides).get_parsed_content("train#preprocessing")
    image = np.linspace(0.0, 3.0, label.size, dtype=np.float32).reshape(label.shape)
    pair = preprocessing({"image": image, "label": label, "patient": "p"})["pair"]
    assert type(pair) is torch.Tensor and pair.dtype == torch.float32  # plain tensors, as before
    return [type(t).__name__ for t in preprocessing.transforms], pair.numpy()


def _blurred_band_profile(sigma: float) -> np.ndarray:
    """The band blurred across its columns, computed independently: MONAI's erf kernel, cut at 4 sigma."""
    tail = int(4.0 * sigma + 0.5)

    def weight(offset: int) -> float:
        scale = sigma * math.sqrt(2.0)
        return 0.5 * (math.erf((offset + 0.5) / scale) - math.erf((offset - 0.5) / scale))

    columns = range(BAND.start, BAND.stop)
    return np.array([sum(weight(c - b) for b in columns if abs(c - b) <= tail) for c in range(9)])


def test_default_encoding_keeps_the_real_label_binary_and_the_chain_unchanged():
    names, pair = _preprocessed({}, _band_label())
    assert names == ["ScaleIntensityd", "EnsureTyped", "ConcatItemsd", "SelectItemsd"]
    assert np.array_equal(pair[1], _band_label()[0])
    assert pair[0].min() == -1.0 and pair[0].max() == 1.0


def test_symmetric_encoding_gives_real_labels_in_minus_one_and_one():
    label = _band_label()
    names, pair = _preprocessed({"real_label_encoding": "symmetric"}, label)
    assert "ScaleIntensityRanged" in names and "GaussianSmoothd" not in names
    assert set(np.unique(pair[1]).tolist()) == {-1.0, 1.0}
    assert np.array_equal(pair[1], label[0] * 2 - 1)
    assert np.array_equal(pair[0], _preprocessed({}, label)[1][0])  # the image channel is untouched


@pytest.mark.parametrize("encoding, low, high", [("binary", 0.0, 1.0), ("symmetric", -1.0, 1.0)])
def test_blur_gives_soft_labels_strictly_between_the_extremes_at_vessel_edges(encoding, low, high):
    sigma = 1.0
    names, pair = _preprocessed({"real_label_encoding": encoding, "real_label_blur_sigma": sigma}, _band_label())
    assert "GaussianSmoothd" in names
    profile = pair[1][4]  # the middle row: the 4-sigma kernel fits inside the 9 rows, so only columns are blurred
    expected = low + (high - low) * _blurred_band_profile(sigma)
    np.testing.assert_allclose(profile, expected, atol=1e-4)  # e.g. binary: 0.308 just outside, 0.685 at the edge
    for column in (BAND.start - 1, BAND.start, BAND.stop - 1, BAND.stop):  # either side of both edges
        assert low < profile[column] < high
    assert low <= pair[1].min() and pair[1].max() <= high


def test_symmetric_encoding_of_the_training_patches(tof_datalist):
    """Through train.json's own dataset: every real phantom patch reaches the critic as {-1, 1}, vessels at 1."""
    overrides = {"dataset_dir": str(tof_datalist.parent), "real_label_encoding": "symmetric"}
    with bundle_scripts_modules(BUNDLE, "data") as (data,):
        parser = _parser(overrides)
        raw = data.load_patch_pairs(parser.get_parsed_content("datalist"), "training")
        dataset = parser.get_parsed_content("train#dataset")
        encoded = np.stack([dataset[i]["pair"][1].numpy() for i in range(len(dataset))])
    real = np.stack([item["label"][0] for item in raw])
    assert len(encoded) == N_TRAINING_PATIENTS * PATCHES_PER_PATIENT
    assert set(np.unique(encoded).tolist()) == {-1.0, 1.0}
    assert np.array_equal(encoded == 1.0, real == 1.0)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"real_label_encoding": "soft"}, "real_label_encoding='soft' is not one of ['binary', 'symmetric']"),
        ({"real_label_blur_sigma": -1.0}, "real_label_blur_sigma=-1.0 must be a non-negative number"),
    ],
)
def test_bad_label_encoding_settings_are_named_before_any_work(tmp_path, override, message):
    """The dataset folder does not exist: the setting's error must come first, so no work was started."""
    workspace = tmp_path / "workspace"
    overrides = {"dataset_dir": str(tmp_path / "no_data"), **workspace_overrides(workspace), **override}
    result = run_tiny(["train.json", "wgan_gp_sn.json"], overrides, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "no_data" not in result.stderr
    assert not workspace.exists()


def test_symmetric_blurred_training_completes_and_exports_weights(tof_datalist, tmp_path):
    overrides = {
        "dataset_dir": str(tof_datalist.parent),
        "max_epochs": 1,
        "real_label_encoding": "symmetric",
        "real_label_blur_sigma": 1.0,
        "label_threshold": 0.0,
        **workspace_overrides(tmp_path),
    }
    result = run_tiny(["train.json", "wgan_gp_sn.json"], overrides)
    log = result.stdout + result.stderr
    assert "exported generator weights" in log and "label vessel fraction" in log
    state = torch.load(tmp_path / "checkpoints" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    assert state["trainer"]["iteration"] == N_TRAINING_PATIENTS * PATCHES_PER_PATIENT // TINY["batch_size"]
    with bundle_scripts_modules(BUNDLE, "networks") as (networks,):
        generator = networks.PairGenerator(ngf=TINY["ngf"])
        generator.load_state_dict(torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        pairs = generator.eval()(torch.randn(2, 128))
    assert pairs.shape == (2, 2, 96, 96) and torch.isfinite(pairs).all()


def test_calibration_sweeps_the_negative_thresholds_of_a_symmetric_generator(tmp_path: Path):
    """A {-1, 1}-trained generator's natural threshold is 0: calibration must accept and plot a grid around it."""

    def generator(noise: torch.Tensor) -> torch.Tensor:
        pairs = -torch.ones(len(noise), 2, 10, 10)
        pairs[:, 1, 0, :] = torch.linspace(-0.95, 0.95, 10)  # 7, 5 and 3 of 100 pixels above -0.5, 0 and 0.5
        return pairs

    real = np.zeros((2, 10, 10), dtype=np.float32)
    real[:, 0, :5] = 1.0  # 5 % vessel
    with bundle_scripts_modules(BUNDLE, "calibration") as (calibration,):
        study = calibration.ThresholdCalibration(
            generator=generator,
            real_labels=lambda: real,
            thresholds=[-0.5, 0.0, 0.5],
            n_pairs=4,
            latent_size=8,
            seed=0,
            batch_size=2,
            device="cpu",
            output_dir=tmp_path,
            configured_threshold=0.0,
        )
        report = study.run()
    assert [row["label_vessel_fraction"] for row in report["sweep"]] == pytest.approx([0.07, 0.05, 0.03])
    assert report["calibrated_threshold"] == 0.0
    written = json.loads((tmp_path / "label_threshold_calibration.json").read_text())
    assert written["calibrated_threshold"] == 0.0
    assert (tmp_path / "label_threshold_sweep.png").is_file() and (tmp_path / "label_threshold_pairs.png").is_file()
