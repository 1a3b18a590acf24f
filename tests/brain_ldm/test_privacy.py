"""privacy.json (merged over inference.json): memorisation screen, planted copies, filter mode, bad inputs."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bundle_runtime.atomic_io import write_nifti
from tests.brain_ldm.ldm_helpers import (
    BUNDLE,
    SPATIAL_SHAPE,
    plant_sample,
    run_bundle,
    training_image_on_sample_grid,
)
from tests.helpers import written_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def samples(sampling_overrides: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return written_samples(BUNDLE, sampling_overrides, tmp_path_factory.mktemp("samples"), 3)


def _copy(samples: Path, tmp_path: Path) -> Path:
    """A private copy of the samples that a test may add to or damage."""
    return Path(shutil.copytree(samples, tmp_path / "synthetic"))


def _screen(sampling_overrides: dict, cohort: Path, synthetic: Path, out: Path, check: bool = True, **extra):
    overrides = {
        **sampling_overrides,
        "dataset_dir": str(cohort),
        "synthetic_dir": str(synthetic),
        "output_dir": str(out),
        **extra,
    }
    return run_bundle(BUNDLE, ["inference.json", "privacy.json"], overrides, check=check)


def test_planted_copies_are_flagged_and_filtered(
    brain_cohort: Path, sampling_overrides: dict, samples: Path, tmp_path: Path
) -> None:
    synthetic = _copy(samples, tmp_path)
    volume, item = training_image_on_sample_grid(brain_cohort, 0)
    noisy = np.clip(volume + np.random.default_rng(0).normal(0, 0.02, volume.shape), 0, 1)
    plant_sample(synthetic, "sample_900", volume, item["condition"], samples / "sample_000000.json")
    plant_sample(synthetic, "sample_901", noisy, item["condition"], samples / "sample_000000.json")
    out = tmp_path / "screen"
    _screen(sampling_overrides, brain_cohort, synthetic, out)

    report = json.loads((out / "privacy_report.json").read_text())
    assert report["n_synthetic"] == 5 and report["n_train"] == 2 and report["n_heldout"] == 2
    assert "torch" in report["machine"] and report["bundle_version"]  # a record names where and what it measured
    assert report["threshold"] == pytest.approx(np.percentile(report["heldout_nearest_correlations"], 95))
    flagged = {entry["file"]: entry for entry in report["flagged"]}
    assert {"sample_900.nii.gz", "sample_901.nii.gz"} <= set(flagged)
    for name in ("sample_900.nii.gz", "sample_901.nii.gz"):
        assert flagged[name]["nearest_training"] == item["subject"]
        assert flagged[name]["correlation"] >= report["threshold"]
    assert flagged["sample_900.nii.gz"]["correlation"] == pytest.approx(1.0, abs=1e-6)
    assert report["flagged_fraction"] == pytest.approx(len(flagged) / 5)
    with Image.open(out / "privacy_pairs.png") as picture:
        assert picture.width > 0 and picture.height > 0

    with open(out / "retained_manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["file"] for r in rows} == {f"sample_00000{i}.nii.gz" for i in range(3)} - set(flagged)
    for row in rows:
        assert row["sha256"] == hashlib.sha256((synthetic / row["file"]).read_bytes()).hexdigest()
    datalist = json.loads((out / "retained_datalist.json").read_text())
    assert sorted(Path(i["image"]).name for i in datalist["training"]) == sorted(r["file"] for r in rows)
    assert len(datalist["validation"]) == 1 and all(len(i["condition"]) == 4 for i in datalist["training"])


def test_a_manifest_folder_keeps_its_columns(
    brain_cohort: Path, sampling_overrides: dict, samples: Path, tmp_path: Path
) -> None:
    synthetic = _copy(samples, tmp_path)
    volume, item = training_image_on_sample_grid(brain_cohort, 1)
    plant_sample(synthetic, "copy", volume, item["condition"], samples / "sample_000000.json")
    names = ["sample_000000.nii.gz", "sample_000001.nii.gz", "copy.nii.gz"]  # sample_000002 is not listed
    columns = ["index", "seed", "image", "sha256"]
    with open(synthetic / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for index, name in enumerate(names):
            writer.writerow([index, 10 + index, name, hashlib.sha256((synthetic / name).read_bytes()).hexdigest()])
    out = tmp_path / "screen"
    _screen(sampling_overrides, brain_cohort, synthetic, out)
    report = json.loads((out / "privacy_report.json").read_text())
    assert report["n_synthetic"] == 3
    assert "copy.nii.gz" in {entry["file"] for entry in report["flagged"]}
    with open(out / "retained_manifest.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == columns
        kept = [row["image"] for row in reader]
    assert "copy.nii.gz" not in kept and set(kept) <= set(names[:2])


def test_a_local_extractor_replaces_the_encoder(
    brain_cohort: Path, sampling_overrides: dict, samples: Path, tmp_path: Path
) -> None:
    extractor = torch.jit.trace(torch.nn.Conv3d(1, 4, 3).eval(), torch.zeros(1, 1, *SPATIAL_SHAPE))
    extractor.save(str(tmp_path / "extractor.pt"))
    out = tmp_path / "screen"
    _screen(sampling_overrides, brain_cohort, samples, out, embedding_extractor_path=str(tmp_path / "extractor.pt"))
    report = json.loads((out / "privacy_report.json").read_text())
    assert report["embedding"] == "extractor.pt" and report["n_synthetic"] == 3


def _wrong_shape(folder: Path) -> str:
    write_nifti(np.zeros([s + 2 for s in SPATIAL_SHAPE]), np.eye(4), folder / "sample_big.nii.gz")
    return "sample_big.nii.gz"


def _missing_listed_file(folder: Path) -> str:
    (folder / "manifest.csv").write_text("index,image,sha256\n0,sample_000000.nii.gz,\n1,gone.nii.gz,\n")
    return "gone.nii.gz"


def _no_sidecar(folder: Path) -> str:
    (folder / "sample_000001.json").unlink()
    return "sample_000001.nii.gz"


@pytest.mark.parametrize("break_folder", [_wrong_shape, _missing_listed_file, _no_sidecar])
def test_bad_synthetic_folders_fail_naming_the_file(
    brain_cohort: Path, sampling_overrides: dict, samples: Path, tmp_path: Path, break_folder
) -> None:
    synthetic = _copy(samples, tmp_path)
    name = break_folder(synthetic)
    out = tmp_path / "screen"
    result = _screen(sampling_overrides, brain_cohort, synthetic, out, check=False)
    assert result.returncode != 0 and name in result.stderr
    assert not out.exists()


def test_empty_folder_and_unreadable_extractor_fail_before_work(
    brain_cohort: Path, sampling_overrides: dict, samples: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "screen"
    result = _screen(sampling_overrides, brain_cohort, empty, out, check=False)
    assert result.returncode != 0 and "holds no manifest.csv and no file matching" in result.stderr
    (tmp_path / "broken.pt").write_text("not torchscript")
    result = _screen(
        sampling_overrides,
        brain_cohort,
        samples,
        out,
        check=False,
        embedding_extractor_path=str(tmp_path / "broken.pt"),
    )
    assert result.returncode != 0 and "broken.pt is not a readable TorchScript file" in result.stderr
    assert not out.exists()
