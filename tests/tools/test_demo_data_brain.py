"""The demo brain cohort: geometry, partial volumes, measured conditions, determinism, bad input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bundle_runtime.mni import crop_affine, crop_shape
from tools.demo_data.brain import make_brain_cohort


def _items(datalist: dict) -> list[dict]:
    return datalist["training"] + datalist["validation"] + datalist["test"]


def test_files_shapes_and_affines(tiny_brain_cohort: Path):
    folder = tiny_brain_cohort.parent
    datalist = json.loads(tiny_brain_cohort.read_text())
    assert datalist["spatial_shape"] == [20, 28, 20] == list(crop_shape(8))
    assert all(len(datalist[split]) >= 1 for split in ("training", "validation", "test"))
    for item in _items(datalist):
        for key in ("image", "t2", "flair"):
            image = nib.load(folder / item[key])
            assert image.shape == crop_shape(8)
            np.testing.assert_allclose(image.affine, crop_affine(8))
            data = image.get_fdata()
            assert data.min() >= 0.0 and data.max() <= 1.0 and data.max() > 0.5
        label = nib.load(folder / item["label"])
        assert label.shape == (*crop_shape(8), 10)
        np.testing.assert_allclose(label.affine, crop_affine(8))
    for atlas in ("mni_brain_mask", "mni_ventricle_roi"):
        mask = nib.load(folder / "atlas" / f"{atlas}.nii.gz")
        assert mask.shape == crop_shape(8) and 0 < mask.get_fdata().sum() < np.prod(crop_shape(8))


def test_label_maps_are_partial_volumes_that_sum_to_one(tiny_brain_cohort: Path):
    folder = tiny_brain_cohort.parent
    for item in _items(json.loads(tiny_brain_cohort.read_text())):
        label = nib.load(folder / item["label"]).get_fdata()
        assert label.min() >= -1e-5 and label.max() <= 1 + 1e-5
        np.testing.assert_allclose(label.sum(-1), 1.0, atol=1e-4)
        # every healthy tissue class is present, and fractional voxels exist (partial volume)
        assert (label[..., 1:6].reshape(-1, 5).sum(0) > 1.0).all()
        assert ((label[..., 2] > 0.05) & (label[..., 2] < 0.95)).any()


def test_conditions_are_measured_and_normalised(tiny_brain_cohort: Path):
    folder = tiny_brain_cohort.parent
    datalist = json.loads(tiny_brain_cohort.read_text())
    with open(folder / "participants.csv") as handle:
        rows = {row["subject"]: row for row in csv.DictReader(handle)}
    roi = nib.load(folder / "atlas" / "mni_ventricle_roi.nii.gz").get_fdata() > 0
    low, high = datalist["condition_ranges"]["ventricular_vol"]
    for item in _items(datalist):
        assert len(item["condition"]) == 4 and all(0.0 <= v <= 1.0 for v in item["condition"])
        assert item["condition"] == [item[name] for name in datalist["condition_names"]]
        label = nib.load(folder / item["label"]).get_fdata()
        measured_ml = float((label[..., 1] * roi).sum() * 8**3 / 1000)
        row = rows[item["subject"]]
        assert measured_ml == pytest.approx(float(row["ventricular_vol_ml"]), rel=1e-4)
        assert item["ventricular_vol"] == pytest.approx((measured_ml - low) / (high - low), abs=1e-4)
        assert item["sex"] == float(row["sex"])
    ventricles = [item["ventricular_vol"] for item in _items(datalist)]
    assert min(ventricles) == 0.0 and max(ventricles) == 1.0


def test_lesions_only_where_inserted(tiny_brain_cohort: Path):
    folder = tiny_brain_cohort.parent
    items = _items(json.loads(tiny_brain_cohort.read_text()))
    with_lesions = [item for item in items if any(item["lesion"])]
    assert with_lesions and len(with_lesions) < len(items)
    for item in items:
        lesion_volume = nib.load(folder / item["label"]).get_fdata()[..., 6:].sum((0, 1, 2))
        assert (lesion_volume > 0.01).tolist() == [v > 0 for v in item["lesion"]], item["subject"]


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path, tiny_brain_cohort: Path):
    again = make_brain_cohort(tmp_path / "a", seed=0, n_subjects=5, resolution_mm=8, lesion_probability=0.6)
    other = make_brain_cohort(tmp_path / "b", seed=1, n_subjects=5, resolution_mm=8, lesion_probability=0.6)
    first = json.loads(tiny_brain_cohort.read_text())["training"][0]
    t1 = nib.load(tiny_brain_cohort.parent / first["image"]).get_fdata()
    np.testing.assert_array_equal(t1, nib.load(again.parent / first["image"]).get_fdata())
    assert not np.allclose(t1, nib.load(other.parent / first["image"]).get_fdata())
    assert json.loads(again.read_text()) == json.loads(tiny_brain_cohort.read_text())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"resolution_mm": 3}, "resolution_mm=3"),
        ({"n_subjects": 2}, "n_subjects=2"),
        ({"lesion_probability": 1.5}, "lesion_probability=1.5"),
    ],
)
def test_bad_input_is_named(tmp_path: Path, kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        make_brain_cohort(tmp_path, **{"n_subjects": 3, "resolution_mm": 8, **kwargs})
    assert not any(tmp_path.iterdir())


def test_refuses_to_overwrite_and_leaves_nothing_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "brain_cohort_8mm"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="brain_cohort_8mm"):
        make_brain_cohort(tmp_path, n_subjects=3, resolution_mm=8)
    assert (target / "keep.txt").read_text() == "user data"

    import tools.demo_data.brain as brain

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(brain, "make_subject", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        make_brain_cohort(tmp_path / "fresh", n_subjects=3, resolution_mm=8)
    assert not (tmp_path / "fresh" / "brain_cohort_8mm").exists()
    assert list((tmp_path / "fresh").iterdir()) == []


def test_cli_writes_the_cohort(tmp_path: Path):
    command = [sys.executable, "-m", "tools", "demo-data", "--out", str(tmp_path), "--kind", "brain"]
    command += ["--n_subjects", "3", "--resolution_mm", "8", "--seed", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "brain_cohort_8mm" / "datalist.json").exists()
    bad = subprocess.run(command[:5] + ["--kind", "mri"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "kind='mri'" in bad.stderr
