"""Atomic writers and Pillow previews."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bundle_runtime.atomic_io import atomic_path, json_safe, write_json, write_nifti, write_png
from bundle_runtime.mni import crop_affine
from bundle_runtime.previews import axial, captioned, scatter_panel, triplanar


def test_nifti_carries_the_mni_affine(tmp_path: Path) -> None:
    path = write_nifti(np.zeros((4, 5, 6)), crop_affine(4), tmp_path / "a" / "x.nii.gz")
    image = nib.load(path)
    np.testing.assert_array_equal(image.affine, crop_affine(4))
    assert image.get_sform(coded=True)[1] == 4 and image.get_data_dtype() == np.float32


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    def fail(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_path(tmp_path / "x.json", fail)
    assert list(tmp_path.iterdir()) == []
    write_json({"a": 1}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "a": 1\n}\n'


def test_temporary_names_carry_the_pid_unless_stable(tmp_path: Path) -> None:
    seen: list[str] = []
    atomic_path(tmp_path / "a.pt", lambda tmp: (seen.append(tmp.name), tmp.write_bytes(b"1")))
    atomic_path(tmp_path / "b.pt", lambda tmp: (seen.append(tmp.name), tmp.write_bytes(b"2")), stable_temporary=True)
    assert seen == [f".tmp-{os.getpid()}-a.pt", ".tmp-0-b.pt"]
    assert (tmp_path / "b.pt").read_bytes() == b"2" and not list(tmp_path.glob(".tmp-*"))


def test_triplanar_orientation(tmp_path: Path) -> None:
    volume = np.zeros((10, 12, 8))
    volume[0, 6, 4] = 1.0  # the subject's far left, on the central coronal and axial planes
    image = triplanar(volume, zoom=1)
    assert image.size == (12 + 10 + 10 + 2 * 2, 12)
    pixels = np.asarray(image)
    coronal = pixels[:, 12 + 2 : 12 + 2 + 10]
    rows, columns = np.nonzero(coronal)
    offset = (12 - 8) // 2  # the 8-row coronal tile is centred in the 12-row strip
    assert list(columns) == [0] and list(rows) == [offset + 8 - 1 - 4]  # left on the left, superior up
    write_png(captioned(image, "test"), tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


def test_axial_is_the_axial_tile_of_triplanar() -> None:
    volume = np.random.default_rng(0).random((10, 12, 8))
    tile = np.asarray(axial(volume, zoom=2))
    assert tile.shape == (12 * 2, 10 * 2)
    strip = np.asarray(triplanar(volume, zoom=2))
    np.testing.assert_array_equal(tile, strip[:, -10 * 2 :])  # the axial tile is triplanar's last one
    assert not np.array_equal(np.asarray(axial(volume, zoom=1, z=0)), np.asarray(axial(volume, zoom=1)))


def test_scatter_panel_draws_points() -> None:
    panel = scatter_panel([0.1, 0.5, 0.9], [10.0, 20.0, 30.0], "title", "x", "y", size=(300, 200))
    assert panel.size == (300, 200)
    blue = np.all(np.asarray(panel) == (31, 119, 180), axis=-1)
    assert blue.sum() >= 3


def test_json_safe_turns_non_finite_floats_into_none_at_any_depth(tmp_path):
    record = {"r": float("nan"), "rows": [{"mse": float("inf")}, (1.5, -float("inf"))], "name": "ddim", "n": 3}
    safe = json_safe(record)
    assert safe == {"r": None, "rows": [{"mse": None}, [1.5, None]], "name": "ddim", "n": 3}
    assert json.loads(write_json(safe, tmp_path / "r.json").read_text()) == safe  # valid JSON, no NaN tokens
