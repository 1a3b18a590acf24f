"""privacy.json (merged over inference.json): label maps screened with the label autoencoder; planted copies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bundle_runtime.atomic_io import atomic_path
from tests.brain_spade3d.spade3d_helpers import BUNDLE, run_bundle, training_overrides
from tests.helpers import written_samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def samples(sampling_overrides: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return written_samples(BUNDLE, sampling_overrides, tmp_path_factory.mktemp("spade_samples"), 2)


def _training_label(cohort: Path, like: Path) -> tuple[nib.Nifti1Image, str]:
    """The first training subject's partial-volume map, cropped like the samples, in the sample file's geometry."""
    item = json.loads((cohort / "datalist.json").read_text())["training"][0]
    pv = np.asarray(nib.load(cohort / item["label"]).dataobj, dtype=np.float32)
    shape = nib.load(like).shape[:3]
    start = [(a - b) // 2 for a, b in zip(pv.shape[:3], shape)]
    crop = pv[tuple(slice(s, s + n) for s, n in zip(start, shape))]
    return nib.Nifti1Image(crop, nib.load(like).affine), item["subject"]


def _screen(overrides: dict, cohort: Path, synthetic: Path, out: Path, check: bool = True):
    extra = {"dataset_dir": str(cohort), "synthetic_dir": str(synthetic), "output_dir": str(out)}
    return run_bundle(BUNDLE, ["inference.json", "privacy.json"], {**overrides, **extra}, check=check)


def test_planted_label_maps_are_flagged(
    spade_cohort: Path, sampling_overrides: dict, samples: Path, tmp_path: Path
) -> None:
    synthetic = tmp_path / "synthetic"
    shutil.copytree(samples, synthetic)
    copy, subject = _training_label(spade_cohort, samples / "sample_000000_label_pv.nii.gz")
    noisy = np.clip(copy.get_fdata() + np.random.default_rng(0).normal(0, 0.02, copy.shape), 0, 1)
    atomic_path(synthetic / "sample_900_label_pv.nii.gz", lambda t: nib.save(copy, str(t)))
    noised = nib.Nifti1Image(noisy.astype(np.float32), copy.affine)
    atomic_path(synthetic / "sample_901_label_pv.nii.gz", lambda t: nib.save(noised, str(t)))
    for planted in ("sample_900", "sample_901"):  # planted samples carry a sample sidecar like the real ones
        shutil.copy(synthetic / "sample_000000.json", synthetic / f"{planted}.json")
    out = tmp_path / "screen"
    _screen(sampling_overrides, spade_cohort, synthetic, out)
    report = json.loads((out / "privacy_report.json").read_text())
    assert report["n_synthetic"] == 4 and report["n_train"] == 4 and report["n_heldout"] == 2
    assert "label autoencoder" in report["embedding"]
    version = json.loads((BUNDLE / "configs" / "metadata.json").read_text())["version"]
    assert report["bundle_version"] == version and "torch" in report["machine"]  # a record names where it ran
    flagged = {entry["file"]: entry for entry in report["flagged"]}
    assert {"sample_900_label_pv.nii.gz", "sample_901_label_pv.nii.gz"} <= set(flagged)
    assert all(flagged[f"sample_90{i}_label_pv.nii.gz"]["nearest_training"] == subject for i in (0, 1))
    retained = (out / "retained_manifest.csv").read_text()
    assert "sample_900" not in retained and "sample_901" not in retained
    # the retraining datalist: retained label maps with the lesions they were generated for, real validation
    datalist = json.loads((out / "retained_datalist.json").read_text())
    kept = {Path(item["label"]).name: item["lesion"] for item in datalist["training"]}
    assert set(kept) == {"sample_000000_label_pv.nii.gz", "sample_000001_label_pv.nii.gz"} - set(flagged)
    for name, lesion in kept.items():
        sidecar = json.loads((synthetic / name.replace("_label_pv.nii.gz", ".json")).read_text())
        assert lesion == [sidecar["lesions"][n]["requested_condition"] for n in ("wmh", "tumour", "edema", "enhancing")]
    assert datalist["validation"] and all("lesion" in item for item in datalist["validation"])
    # step 4: the label diffusion model retrains on the retained maps only (shape check off: mixed grids)
    models = tmp_path / "distilled"
    models.mkdir()
    shutil.copy(Path(sampling_overrides["models_dir"]) / "label_autoencoder.pt", models / "label_autoencoder.pt")
    overrides = training_overrides("train_label_diffusion.json", spade_cohort, tmp_path / "run", models, 1)
    overrides.update(datalist_path=str(out / "retained_datalist.json"), data_shape="$None")
    run_bundle(BUNDLE, "train_label_diffusion.json", overrides)
    assert (models / "model.pt").is_file()
    assert (out / "privacy_pairs.png").stat().st_size > 0


def test_a_label_map_of_the_wrong_shape_is_named(
    spade_cohort: Path, sampling_overrides: dict, samples: Path, tmp_path: Path
) -> None:
    synthetic = tmp_path / "synthetic"
    shutil.copytree(samples, synthetic)
    wrong = nib.Nifti1Image(np.zeros((4, 4, 4, 10), np.float32), np.eye(4))
    nib.save(wrong, str(synthetic / "sample_bad_label_pv.nii.gz"))
    out = tmp_path / "screen"
    result = _screen(sampling_overrides, spade_cohort, synthetic, out, check=False)
    assert result.returncode != 0 and "sample_bad_label_pv.nii.gz has shape (10, 4, 4, 4)" in result.stderr
    assert not out.exists()
