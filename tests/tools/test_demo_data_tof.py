"""TOF-MRA phantom generator: layout, contents, determinism, atomic writes and input checks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tools import REPO_ROOT
from tools.demo_data import tof

# Coarse grid and thin slab keep each patient well under a second; patches stay 96x96 (padded).
TINY = {"voxel_size_mm": (2.0, 2.0, 2.0), "slab_z_mm": (-26.0, 6.0), "verbose": False}
N_PATIENTS = 3
N_PATCHES = 6


def _make(out_dir: Path, seed: int = 0, n_patients: int = N_PATIENTS, **kwargs) -> Path:
    return tof.make_tof_dataset(
        out_dir, seed=seed, n_patients=n_patients, patches_per_patient=N_PATCHES, **{**TINY, **kwargs}
    )


def _items(datalist_path: Path) -> list[dict]:
    datalist = json.loads(datalist_path.read_text())
    return [item for key in tof.SPLIT_KEYS for item in datalist[key]]


def _arrays(datalist_path: Path) -> dict[str, np.ndarray]:
    """Every array of the dataset: ``pat-XXX/<volume key>`` and ``pat-XXX/patches/<npz key>``."""
    root = datalist_path.parent
    arrays = {}
    for item in _items(datalist_path):
        with np.load(root / item["patches"]) as patches:
            arrays.update({f"{item['patient']}/patches/{key}": patches[key] for key in patches.files})
        for key in ("image", "label", "brain_mask"):
            arrays[f"{item['patient']}/{key}"] = np.asarray(nib.load(root / item[key]).dataobj)
    return arrays


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _make(tmp_path_factory.mktemp("tof"))


def test_datalist_splits_and_files(dataset):
    assert dataset.name == "datalist.json" and dataset.parent.name == "tof_mra"
    datalist = json.loads(dataset.read_text())
    assert datalist["patch_size"] == [96, 96]
    assert [len(datalist[key]) for key in tof.SPLIT_KEYS] == [1, 1, 1]
    patients = [item["patient"] for item in _items(dataset)]
    assert patients == ["pat-000", "pat-001", "pat-002"]
    for item in _items(dataset):
        for key in ("patches", "image", "label", "brain_mask"):
            assert not Path(item[key]).is_absolute()
            assert (dataset.parent / item[key]).is_file(), item[key]
    assert [p.name for p in dataset.parent.parent.iterdir()] == ["tof_mra"], "temporary folders left behind"


def test_patch_shapes_dtypes_and_ranges(dataset):
    for item in _items(dataset):
        with np.load(dataset.parent / item["patches"]) as patches:
            image, label = patches["image"], patches["label"]
        assert image.shape == label.shape == (N_PATCHES, 96, 96)
        assert image.dtype == np.float32 and label.dtype == np.uint8
        np.testing.assert_allclose(image.min(axis=(1, 2)), -1.0, atol=1e-6)
        np.testing.assert_allclose(image.max(axis=(1, 2)), 1.0, atol=1e-6)
        assert set(np.unique(label)) <= {0, 1}


def test_volumes_shapes_dtypes_and_affines(dataset):
    datalist = json.loads(dataset.read_text())
    affines = []
    for item in _items(dataset):
        image = nib.load(dataset.parent / item["image"])
        label = nib.load(dataset.parent / item["label"])
        assert image.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
        assert image.shape == label.shape == tuple(datalist["spatial_shape"])
        values = np.asarray(image.dataobj)
        assert values.min() >= 0.0 and values.max() <= 1.0
        assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1}
        np.testing.assert_allclose(label.affine, image.affine)
        affines.append(image.affine)
    affine = affines[0]
    for other in affines[1:]:
        np.testing.assert_allclose(other, affine)
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.diag(affine)[:3], TINY["voxel_size_mm"])
    # The slab spans slab_z_mm in MNI z; the in-plane field of view contains the MNI brain (x -72..72 mm).
    bottom = nib.affines.apply_affine(affine, [0, 0, 0])
    top = nib.affines.apply_affine(affine, np.array(datalist["spatial_shape"]) - 1)
    assert bottom[2] == pytest.approx(TINY["slab_z_mm"][0] + 1.0)
    assert top[2] == pytest.approx(TINY["slab_z_mm"][1] - 1.0)
    assert bottom[0] < -72 and top[0] > 72


def test_vessels_are_inside_the_brain_and_bright(dataset):
    arrays = _arrays(dataset)
    for item in _items(dataset):
        patient = item["patient"]
        vessel = arrays[f"{patient}/label"] > 0
        brain = arrays[f"{patient}/brain_mask"] > 0
        image = arrays[f"{patient}/image"]
        assert vessel.sum() > 20
        assert not np.any(vessel & ~brain)
        # TOF contrast: inflowing blood is far brighter than the tissue around it.
        assert image[vessel].mean() > 2.0 * image[brain & ~vessel].mean()


def test_half_of_the_patches_are_centred_on_vessels(dataset):
    arrays = _arrays(dataset)
    for item in _items(dataset):
        patient = item["patient"]
        label_patches = arrays[f"{patient}/patches/label"]
        vessel_centred = arrays[f"{patient}/patches/vessel_centred"]
        centres = arrays[f"{patient}/patches/centre"]
        volume_label = arrays[f"{patient}/label"]
        brain = arrays[f"{patient}/brain_mask"]
        np.testing.assert_array_equal(vessel_centred, np.arange(N_PATCHES) < N_PATCHES // 2)
        assert np.all(label_patches[vessel_centred, 48, 48] == 1)
        i, j, k = centres.T
        assert np.all(volume_label[i[vessel_centred], j[vessel_centred], k[vessel_centred]] == 1)
        assert np.all(brain[i, j, k] == 1)


def test_patches_are_cut_from_the_volumes(dataset):
    """Each patch shows its volume's axial slice around the centre, min-max scaled (padding outside the grid)."""
    arrays = _arrays(dataset)
    volume_image, volume_label = arrays["pat-000/image"], arrays["pat-000/label"]
    nx, ny, _ = volume_image.shape
    for image_patch, label_patch, (i, j, k) in zip(
        arrays["pat-000/patches/image"], arrays["pat-000/patches/label"], arrays["pat-000/patches/centre"]
    ):
        x0, y0 = i - 48, j - 48
        xs, ys = slice(max(x0, 0), min(x0 + 96, nx)), slice(max(y0, 0), min(y0 + 96, ny))
        inner = (slice(xs.start - x0, xs.stop - x0), slice(ys.start - y0, ys.stop - y0))
        np.testing.assert_array_equal(label_patch[inner], volume_label[xs, ys, k])
        outside = np.ones((96, 96), dtype=bool)
        outside[inner] = False
        assert not label_patch[outside].any()
        # Min-max scaling is affine, so the inner region relates to the volume by one positive gain and offset.
        source, scaled = volume_image[xs, ys, k].ravel(), image_patch[inner].ravel()
        gain, offset = np.polyfit(source, scaled, 1)
        assert gain > 0
        np.testing.assert_allclose(gain * source + offset, scaled, atol=1e-4)


def test_same_seed_is_identical_and_patients_do_not_depend_on_cohort_size(dataset, tmp_path):
    again = _make(tmp_path / "again", n_patients=N_PATIENTS + 1)
    first, second = _arrays(dataset), _arrays(again)
    assert set(first) < set(second)
    for key, value in first.items():
        np.testing.assert_array_equal(second[key], value, err_msg=key)
    # Byte for byte too: the gzip and zip containers carry no timestamps.
    for item in _items(dataset):
        for key in ("patches", "image", "label", "brain_mask"):
            assert (again.parent / item[key]).read_bytes() == (dataset.parent / item[key]).read_bytes(), item[key]


def test_different_seed_differs(dataset, tmp_path):
    other = _arrays(_make(tmp_path / "other", seed=1))
    first = _arrays(dataset)
    for key in ("pat-000/image", "pat-000/label", "pat-001/image", "pat-000/patches/image"):
        assert first[key].shape == other[key].shape
        assert not np.array_equal(first[key], other[key]), key


def test_refuses_to_overwrite_then_replaces_with_overwrite(tmp_path):
    target = tmp_path / "tof_mra"
    target.mkdir()
    (target / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="overwrite"):
        _make(tmp_path)
    assert (target / "keep.txt").read_text() == "user data"
    datalist = _make(tmp_path, overwrite=True)
    assert datalist.is_file() and not (target / "keep.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tof_mra"]


def test_empty_target_folder_is_filled(tmp_path):
    (tmp_path / "tof_mra").mkdir()
    assert _make(tmp_path).is_file()


def test_crash_leaves_nothing_half_written(tmp_path, monkeypatch):
    previous = _make(tmp_path)
    before = previous.read_bytes()
    calls = []

    def failing_extract(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real_extract(*args, **kwargs)

    real_extract = tof.extract_patches
    monkeypatch.setattr(tof, "extract_patches", failing_extract)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _make(tmp_path, seed=5, overwrite=True)
    assert previous.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["tof_mra"]
    calls.clear()
    with pytest.raises(RuntimeError, match="simulated crash"):
        _make(tmp_path / "fresh")
    assert list((tmp_path / "fresh").iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_patients": 2}, "n_patients"),
        ({"patches_per_patient": 3}, "patches_per_patient"),
        ({"patches_per_patient": 0}, "patches_per_patient"),
        ({"seed": -1}, "seed"),
        ({"voxel_size_mm": (0.0, 1.0, 1.0)}, "voxel_size_mm"),
        ({"voxel_size_mm": 0.5}, "voxel_size_mm"),
        ({"voxel_size_mm": ["a", 1, 1]}, "voxel_size_mm"),
        ({"slab_z_mm": (10.0, -10.0)}, "slab_z_mm"),
        ({"patch_size": 95}, "patch_size"),
        ({"split_fractions": (0.5, 0.5, 0.5)}, "split_fractions"),
    ],
)
def test_bad_inputs_name_the_argument(tmp_path, kwargs, name):
    arguments = {"seed": 0, "n_patients": 3, "patches_per_patient": 2, **TINY, **kwargs}
    with pytest.raises(ValueError, match=name):
        tof.make_tof_dataset(tmp_path, **arguments)
    assert list(tmp_path.iterdir()) == []


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(NotADirectoryError, match="out_dir"):
        _make(path)


def test_split_fractions_keep_every_split():
    assert tof.split_patients(3, (0.6, 0.2, 0.2)) == ["training", "validation", "test"]
    splits = tof.split_patients(20, (0.6, 0.2, 0.2))
    assert [splits.count(key) for key in tof.SPLIT_KEYS] == [12, 4, 4]


def test_cli_writes_the_dataset(tmp_path):
    """Through ``python -m tools demo-data`` as a user runs it, on a second-scanner grid (the transfer set's option)."""
    result = subprocess.run(
        [sys.executable, "-m", "tools", "demo-data", "--out", str(tmp_path), "--kind", "tof"]
        + ["--n_patients", "3", "--patches_per_patient", "2", "--seed", "3", "--tof_voxel_size_mm", "[0.8,0.8,1.5]"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "pat-002" in result.stdout
    datalist = tmp_path / "tof_mra" / "datalist.json"
    assert datalist.is_file()
    assert json.loads(datalist.read_text())["voxel_size_mm"] == [0.8, 0.8, 1.5]
    items = _items(datalist)
    assert len(items) == 3
    with np.load(datalist.parent / items[0]["patches"]) as patches:
        assert patches["image"].shape == (2, 96, 96)
        assert patches["label"][0, 48, 48] == 1
