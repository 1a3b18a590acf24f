"""The training datalist check: every problem is found before work and named by file, item and key."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bundle_runtime.datalist import DatalistCheck


def _volume(path: Path, shape: tuple[int, ...] = (6, 8, 6), spacing: float = 4.0) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(
        nib.Nifti1Image(np.random.default_rng(0).random(shape, dtype=np.float32), np.diag([spacing] * 3 + [1])), path
    )
    return path.name


def _datalist(tmp_path: Path, items: list[dict], validation: list[dict] | None = None) -> Path:
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": items, "validation": validation if validation is not None else items[:1]}))
    return path


def _item(tmp_path: Path, name: str = "a", condition: list | None = None, **volume: object) -> dict:
    return {
        "subject": name,
        "image": _volume(tmp_path / f"{name}.nii.gz", **volume),
        "condition": condition or [0.5] * 4,
    }


def _check(path: Path, **kwargs: object) -> dict:
    options = {"image_shape": (6, 8, 6), "spacing_mm": 4.0, "condition_key": "condition", "condition_length": 4}
    return DatalistCheck(path, **{**options, **kwargs})()


def test_a_good_datalist_passes_and_counts_items(tmp_path: Path) -> None:
    path = _datalist(tmp_path, [_item(tmp_path, "a"), _item(tmp_path, "b")])
    assert _check(path) == {"training": 2, "validation": 1}


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ([0.5, 7.0, 0.5, 0.5], r"key 'condition'\[1\]=7\.0 is not a finite number in \[0\.0, 1\.0\]"),
        ([0.5, math.nan, 0.5, 0.5], r"key 'condition'\[1\]=nan is not a finite number"),
        ([0.5, 0.5, 0.5], r"key 'condition': expected 4 values, got 3"),
        ([0.5, "old", 0.5, 0.5], r"key 'condition'\[1\]='old'"),
    ],
)
def test_conditions_inference_refuses_are_refused(tmp_path: Path, condition: list, message: str) -> None:
    path = _datalist(tmp_path, [_item(tmp_path, "a"), _item(tmp_path, "b", condition=condition)])
    with pytest.raises(ValueError, match=rf"datalist {path}, item training\[1\] \(b\), {message}"):
        _check(path)


def test_wrong_shape_and_spacing_are_refused_unless_unchecked(tmp_path: Path) -> None:
    path = _datalist(tmp_path, [_item(tmp_path, "a", shape=(6, 8, 7))])
    with pytest.raises(
        ValueError, match=r"item training\[0\] \(a\), key 'image': .* spatial shape \(6, 8, 7\), expected"
    ):
        _check(path)
    assert _check(path, image_shape=None) == {"training": 1, "validation": 1}  # a config that crops on purpose
    path = _datalist(tmp_path, [_item(tmp_path, "a", spacing=2.0)])
    with pytest.raises(
        ValueError, match=r"key 'image': .* spacing \(2\.0, 2\.0, 2\.0\) mm, expected \(4\.0, 4\.0, 4\.0\)"
    ):
        _check(path)


def test_label_channels_are_checked(tmp_path: Path) -> None:
    item = _item(tmp_path, "a")
    item["label"] = _volume(tmp_path / "a_label.nii.gz", shape=(6, 8, 6, 3))
    with pytest.raises(ValueError, match=r"key 'label': .* expected 10 channels"):
        _check(_datalist(tmp_path, [item]), image_keys=["image", "label"], channels={"label": 10})


def test_missing_or_truncated_files_are_named(tmp_path: Path) -> None:
    item = _item(tmp_path, "a")
    whole = (tmp_path / "a.nii.gz").read_bytes()
    (tmp_path / "a.nii.gz").write_bytes(whole[: len(whole) // 2])
    path = _datalist(tmp_path, [item])
    with pytest.raises(
        ValueError, match=rf"item training\[0\] \(a\), key 'image': file {tmp_path / 'a.nii.gz'} is truncated"
    ):
        _check(path)
    # a gzip stream that is complete but holds too few voxels
    (tmp_path / "a.nii.gz").write_bytes(gzip.compress(gzip.decompress(whole)[:400]))
    with pytest.raises(ValueError, match="is truncated"):
        _check(path)
    (tmp_path / "a.nii.gz").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"item training\[0\] \(a\), key 'image': file .*a\.nii\.gz does not exist"
    ):
        _check(path)


def test_malformed_or_empty_datalists_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "datalist.json"
    path.write_text('{"training": [')
    with pytest.raises(ValueError, match=f"datalist {path} is not valid JSON"):
        _check(path)
    path.write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match=f"datalist {path}: the 'training' split is empty"):
        _check(path)
    path.write_text(json.dumps({"training": [{"subject": "a"}], "validation": []}))
    with pytest.raises(ValueError, match=rf"datalist {path}, item training\[0\] \(a\): key 'image' is missing"):
        _check(path)
    path.write_text(json.dumps({"train": []}))
    with pytest.raises(ValueError, match=rf"datalist {path} has no list 'training' \(it has \['train'\]\)"):
        _check(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _check(tmp_path / "absent.json")
