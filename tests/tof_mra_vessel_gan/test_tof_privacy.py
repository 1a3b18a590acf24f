"""Patch screen (privacy.json) and patch distance (evaluate.json) of the TOF GAN, through monai.bundle run."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.tof_mra_vessel_gan.tof_helpers import run_tiny, workspace_overrides


@pytest.fixture(scope="module")
def pairs(vivid_generator: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pairs")
    run_tiny("inference.json", {"generator_path": str(vivid_generator), "output_dir": str(out), "n_samples": 6})
    return out


def _run(config: str, vivid_generator: Path, datalist: Path, out: Path, check: bool = True, **extra):
    overrides = {"generator_path": str(vivid_generator), "dataset_dir": str(datalist.parent), "output_dir": str(out)}
    return run_tiny(["inference.json", config], {**overrides, **extra}, check=check)


def test_planted_training_patches_are_flagged(
    tof_datalist: Path, vivid_generator: Path, pairs: Path, tmp_path: Path
) -> None:
    synthetic = tmp_path / "synthetic"
    shutil.copytree(pairs, synthetic)
    item = json.loads(tof_datalist.read_text())["training"][1]
    patch = np.load(tof_datalist.parent / item["patches"])["image"][3]
    noisy = np.clip(patch + np.random.default_rng(0).normal(0, 0.05, patch.shape), -1, 1).astype(np.float32)
    vessels = np.load(tof_datalist.parent / item["patches"])["label"][3].astype(np.uint8)
    for name, array in (("pair_900", patch), ("pair_901", noisy)):  # planted like real pairs: image and label
        nib.save(nib.Nifti1Image(array, np.diag([0.6, 0.6, 1.0, 1.0])), str(synthetic / f"{name}_image.nii.gz"))
        nib.save(nib.Nifti1Image(vessels, np.diag([0.6, 0.6, 1.0, 1.0])), str(synthetic / f"{name}_label.nii.gz"))
    out = tmp_path / "screen"
    _run("privacy.json", vivid_generator, tof_datalist, out, synthetic_dir=str(synthetic))
    report = json.loads((out / "privacy_report.json").read_text())
    assert report["n_synthetic"] == 8 and report["n_train"] == 3 * 8 and report["n_heldout"] == 2 * 8
    assert "torch" in report["machine"] and report["bundle_version"]  # a record names where and what it measured
    flagged = {entry["file"]: entry for entry in report["flagged"]}
    for name in ("pair_900_image.nii.gz", "pair_901_image.nii.gz"):
        assert flagged[name]["nearest_training"] == f"{item['patient']} patch 3"
    assert flagged["pair_900_image.nii.gz"]["correlation"] == pytest.approx(1.0, abs=1e-6)
    assert "pair_900" not in (out / "retained_manifest.csv").read_text()
    # the retained pairs, packed as the GAN trains on them: step 4 of privacy distillation reads this datalist
    packed = np.load(out / "retained_patches.npz")
    assert packed["image"].shape == (8 - len(flagged), *patch.shape) and set(np.unique(packed["label"])) <= {0.0, 1.0}
    retrain = json.loads((out / "retained_datalist.json").read_text())
    assert retrain["training"] == [{"patient": "retained_synthetic", "patches": "retained_patches.npz"}]
    workspace = tmp_path / "distilled"
    overrides = {"datalist": str(out / "retained_datalist.json"), "max_epochs": 1, **workspace_overrides(workspace)}
    log = run_tiny(["train.json", "wgan_gp_sn.json"], overrides)
    assert (workspace / "models" / "model.pt").is_file(), log.stdout[-2000:]


def _drop_a_label(synthetic: Path) -> None:
    (synthetic / "pair_000001_label.nii.gz").unlink()


def _cut_a_label(synthetic: Path) -> None:
    label = synthetic / "pair_000002_label.nii.gz"
    label.write_bytes(label.read_bytes()[:40])  # a kill mid-copy


def _add_a_patch_of_the_wrong_size(synthetic: Path) -> None:
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.float32), np.eye(4)), str(synthetic / "pair_999_image.nii.gz"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(_drop_a_label, "pair_000001_image.nii.gz has no label file", id="retained-pair-without-label"),
        pytest.param(
            _cut_a_label,
            "pair_000002_image.nii.gz: its label file pair_000002_label.nii.gz cannot be read",
            id="cut-label",
        ),
        pytest.param(_add_a_patch_of_the_wrong_size, "pair_999_image.nii.gz has shape (1, 64, 64)", id="wrong-size"),
    ],
)
def test_a_bad_synthetic_pair_is_named_before_any_output(
    damage: Callable[[Path], None], message: str, tof_datalist: Path, vivid_generator: Path, pairs: Path, tmp_path: Path
) -> None:
    synthetic = tmp_path / "synthetic"
    shutil.copytree(pairs, synthetic)
    damage(synthetic)
    out = tmp_path / "screen"
    result = _run("privacy.json", vivid_generator, tof_datalist, out, check=False, synthetic_dir=str(synthetic))
    assert result.returncode != 0 and message in result.stderr
    assert not out.exists()


def test_evaluate_reports_the_patch_feature_distance(
    tof_datalist: Path, vivid_generator: Path, pairs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    _run("evaluate.json", vivid_generator, tof_datalist, out, synthetic_dir=str(pairs), evaluate_segmenters=False)
    report = json.loads((out / "feature_distance.json").read_text())
    assert report["name"] == "Fréchet radiomics-style feature distance" and report["n_generated"] == 6
    assert report["n_real_half_a"] == 12 and math.isfinite(report["value"]) and math.isfinite(report["real_split_half"])
    assert report["options"]["value_range"] == [-1.0, 1.0]
