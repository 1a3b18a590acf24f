"""Inference writes paired labels and images per sample, with combined pathologies, seeds and styles."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from bundle_runtime.mni import crop_affine, crop_shape
from tests.brain_spade3d.spade3d_helpers import BUNDLE, LESION_NAMES, RESOLUTION_MM, SPATIAL_SHAPE, run_bundle

pytestmark = pytest.mark.slow

COMBINED = {"wmh": 0.6, "tumour": 0.5, "edema": 0.5, "enhancing": 0.4}
VOXEL_ML = RESOLUTION_MM**3 / 1000.0


@pytest.fixture(scope="module")
def combined_run(sampling_overrides: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two samples with WMH and a tumour requested together, in two of the three contrasts."""
    out = tmp_path_factory.mktemp("combined")
    overrides = {
        **sampling_overrides,
        "output_dir": str(out),
        "n_samples": 2,
        "seed": 0,
        "pathologies": COMBINED,
        "contrasts": ["T1w", "FLAIR"],
        "max_label_draws": 2,
    }
    run_bundle(BUNDLE, "inference.json", overrides)
    return out


def _load(path: Path) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj)


def test_every_output_of_every_sample(combined_run: Path) -> None:
    names = sorted(p.name for p in combined_run.iterdir())
    expected = sorted(
        f"sample_{i:06d}{suffix}"
        for i in range(2)
        for suffix in ("_label_pv.nii.gz", "_label.nii.gz", "_T1w.nii.gz", "_FLAIR.nii.gz", ".png", ".json")
    )
    assert names == expected  # no T2w (not requested), no temporary file left
    offset = (np.array(crop_shape(RESOLUTION_MM)) - SPATIAL_SHAPE) // 2  # centre crop, as in training
    expected_affine = crop_affine(RESOLUTION_MM).copy()
    expected_affine[:3, 3] += offset * RESOLUTION_MM
    for index in range(2):
        stem = combined_run / f"sample_{index:06d}"
        partial = nib.load(f"{stem}_label_pv.nii.gz")
        assert partial.shape == (*SPATIAL_SHAPE, 10) and partial.get_data_dtype() == np.float32
        np.testing.assert_allclose(partial.affine, expected_affine)
        maps = np.asarray(partial.dataobj)
        np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-4)
        labels = nib.load(f"{stem}_label.nii.gz")
        assert labels.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(labels.dataobj), maps.argmax(-1))
        for contrast in ("T1w", "FLAIR"):
            image = _load(Path(f"{stem}_{contrast}.nii.gz"))
            assert image.shape == tuple(SPATIAL_SHAPE) and image.min() >= 0 and image.max() <= 1
        with Image.open(f"{stem}.png") as preview:
            assert preview.mode == "RGB" and preview.height > 3 * SPATIAL_SHAPE[2] * 4  # label row + 2 contrasts


def test_sidecar_lists_requested_and_obtained_lesions(combined_run: Path) -> None:
    for index in range(2):
        sidecar = json.loads((combined_run / f"sample_{index:06d}.json").read_text())
        assert sidecar["seed"] == index and sidecar["contrasts"] == ["T1w", "FLAIR"]
        assert sidecar["requested_lesions"] == LESION_NAMES  # WMH and the tumour, in one sample
        assert sidecar["condition"] == pytest.approx(COMBINED)
        labels = _load(combined_run / sidecar["files"]["label"])
        maps = _load(combined_run / sidecar["files"]["label_pv"])
        for channel, name in enumerate(LESION_NAMES, start=6):
            lesion = sidecar["lesions"][name]
            assert lesion["requested_condition"] == pytest.approx(COMBINED[name])
            assert lesion["volume_ml"] == pytest.approx((labels == channel).sum() * VOXEL_ML, abs=1e-3)
            assert lesion["partial_volume_ml"] == pytest.approx(maps[..., channel].sum() * VOXEL_ML, rel=1e-3, abs=1e-3)
            assert lesion["present"] == (lesion["volume_ml"] >= sidecar["min_lesion_volume_ml"])
            assert (name in sidecar["present_lesions"]) == lesion["present"]
        assert sidecar["all_requested_present"] == all(sidecar["lesions"][n]["present"] for n in LESION_NAMES)
        assert sidecar["style"]["source"] == "random"
        assert sidecar["guidance_scale"] == 7.0 and sidecar["num_inference_steps"] == 3
        assert len(sidecar["weights"]["label_diffusion_sha256"]) == 64
        draws = sidecar["label_draws"]  # every lesion was asked for, so only a missing one can force a redraw
        assert draws["max_draws"] == 2 and draws["kept_draw"] in (0, 1) and "seed" not in draws  # the sidecar has it
        assert draws["conforms"] == sidecar["all_requested_present"] == (draws["missing"] == [])
        assert draws["draws"] == (1 if draws["kept_draw"] == 0 and draws["conforms"] else 2)


def test_a_sample_is_reproduced_by_its_seed_with_the_trt_overlay(
    combined_run: Path, sampling_overrides: dict, tmp_path: Path
) -> None:
    """Sample 1 of the combined run again, alone (seed 1), through inference_trt.json (a no-op without TensorRT)."""
    out = tmp_path / "out"
    overrides = {**sampling_overrides, "output_dir": str(out), "seed": 1, "pathologies": COMBINED}
    run_bundle(BUNDLE, ["inference.json", "inference_trt.json"], overrides)
    np.testing.assert_allclose(
        _load(out / "sample_000000_label_pv.nii.gz"), _load(combined_run / "sample_000001_label_pv.nii.gz"), atol=1e-6
    )
    for contrast in ("T1w", "FLAIR"):
        np.testing.assert_allclose(
            _load(out / f"sample_000000_{contrast}.nii.gz"),
            _load(combined_run / f"sample_000001_{contrast}.nii.gz"),
            atol=1e-6,
        )
    assert (out / "sample_000000_T2w.nii.gz").exists()  # the default is every contrast


def test_sampled_pathologies_and_a_style_image(
    combined_run: Path, sampling_overrides: dict, spade_trained: dict, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    style = combined_run / "sample_000000_T1w.nii.gz"  # any image on the bundle's grid
    overrides = {
        **sampling_overrides,
        "output_dir": str(out),
        "n_samples": 2,
        "pathologies": "sample",
        "contrasts": "T2w",
        "style_image": str(style),
    }
    run_bundle(BUNDLE, "inference.json", overrides)
    patterns = json.loads((spade_trained["models"] / "label_stats.json").read_text())["lesion_patterns"]
    for index in range(2):
        sidecar = json.loads((out / f"sample_{index:06d}.json").read_text())
        assert sidecar["style"] == {"source": "image", "path": str(style)}
        assert [sidecar["condition"][name] for name in LESION_NAMES] in [pytest.approx(p) for p in patterns]
        assert sidecar["contrasts"] == ["T2w"] and (out / f"sample_{index:06d}_T2w.nii.gz").exists()
