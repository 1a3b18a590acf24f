"""inference.json: files per sample, MNI geometry, sidecar provenance, conditioning inputs, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from bundle_runtime.mni import crop_affine, crop_shape
from tests.brain_ldm.ldm_helpers import BUNDLE, RESOLUTION_MM, SPATIAL_SHAPE, bundle_module, run_bundle
from tests.helpers import bundle_version

pytestmark = pytest.mark.slow


def _centre_crop_affine(resolution_mm: int, shape: list[int]) -> np.ndarray:
    """MNI crop affine moved to the first voxel of a centred crop (MONAI's centre: size // 2)."""
    full = np.array(crop_shape(resolution_mm))
    start = full // 2 - np.array(shape) // 2
    affine = crop_affine(resolution_mm).copy()
    affine[:3, 3] += affine[:3, :3] @ start
    return affine


def _volume(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)


def test_samples_are_written_with_mni_affine_preview_and_sidecar(sampling_overrides: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_bundle(
        BUNDLE,
        "inference.json",
        {
            **sampling_overrides,
            "output_dir": str(out),
            "n_samples": 2,
            "seed": 7,
            "sex": 1,
            "age": [0.2, 0.8],
            "progress": True,
        },
    )
    assert sorted(p.name for p in out.iterdir()) == [
        f"sample_00000{i}.{ext}" for i in range(2) for ext in ("json", "nii.gz", "png")
    ]
    assert not list(out.glob(".tmp-*"))  # atomic writes leave no temporary files
    image = nib.load(out / "sample_000001.nii.gz")
    assert list(image.shape) == SPATIAL_SHAPE
    np.testing.assert_allclose(image.affine, _centre_crop_affine(RESOLUTION_MM, SPATIAL_SHAPE), atol=1e-5)
    assert image.get_qform(coded=True)[1] == 4 and image.get_sform(coded=True)[1] == 4  # MNI152 code
    data = image.get_fdata()
    assert np.isfinite(data).all() and data.min() >= 0.0 and data.max() <= 1.0
    with Image.open(out / "sample_000001.png") as preview:
        assert preview.width > preview.height > 0

    sidecar = json.loads((out / "sample_000001.json").read_text())
    assert sidecar["seed"] == 8 and sidecar["base_seed"] == 7 and sidecar["index"] == 1
    assert sidecar["conditioning"] == {"sex": 1.0, "age": 0.8, "ventricular_vol": 0.5, "brain_vol": 0.5}
    assert sidecar["profile"] == "demo" and sidecar["bundle_version"] == bundle_version(BUNDLE)
    assert sidecar["num_inference_steps"] == 3 and sidecar["scheduler"] == "DDIMScheduler"
    assert len(sidecar["weights"]["diffusion_sha256"]) == 64
    np.testing.assert_allclose(sidecar["affine"], image.affine, atol=1e-5)
    assert "samples: 100%" in result.stderr and "sample 1: " in result.stderr  # tqdm over samples and steps


def test_default_demo_geometry_is_the_mni_crop() -> None:
    with bundle_module("synthesis") as synthesis:
        np.testing.assert_array_equal(synthesis.output_affine(4, [40, 56, 40]), crop_affine(4))
        np.testing.assert_allclose(synthesis.output_affine(8, SPATIAL_SHAPE), _centre_crop_affine(8, SPATIAL_SHAPE))


def test_same_seed_gives_the_same_brain(sampling_overrides: dict, tmp_path: Path) -> None:
    runs = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        run_bundle(BUNDLE, "inference.json", {**sampling_overrides, "output_dir": str(tmp_path / name), "seed": seed})
        runs[name] = _volume(tmp_path / name / "sample_000000.nii.gz")
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert not np.array_equal(runs["a"], runs["c"])


def test_conditions_from_csv(sampling_overrides: dict, tmp_path: Path) -> None:
    table = tmp_path / "conditions.csv"
    table.write_text("subject,sex,age,ventricular_vol,brain_vol\nx,0,0.1,0.9,0.3\ny,1,0.9,0.1,0.7\n")
    out = tmp_path / "out"
    overrides = {**sampling_overrides, "output_dir": str(out), "n_samples": 2, "conditions_csv": str(table)}
    run_bundle(BUNDLE, "inference.json", overrides)
    conditioning = [json.loads((out / f"sample_00000{i}.json").read_text())["conditioning"] for i in range(2)]
    assert conditioning == [
        {"sex": 0.0, "age": 0.1, "ventricular_vol": 0.9, "brain_vol": 0.3},
        {"sex": 1.0, "age": 0.9, "ventricular_vol": 0.1, "brain_vol": 0.7},
    ]


def test_tensorrt_overlay_parses_and_runs_without_tensorrt(sampling_overrides: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_bundle(BUNDLE, ["inference.json", "inference_trt.json"], {**sampling_overrides, "output_dir": str(out)})
    assert (out / "sample_000000.nii.gz").exists() and (out / "sample_000000.png").exists()


def test_split_decoding_and_the_dpm_solver_through_the_bundle(sampling_overrides: dict, tmp_path: Path) -> None:
    """decode_mode "split" writes the same brain as "whole" (within 1e-4); solver "dpmpp_2m" is the one used."""
    volumes = {}
    for mode in ("whole", "split"):
        out = tmp_path / mode
        overrides = {**sampling_overrides, "output_dir": str(out), "solver": "dpmpp_2m", "decode_mode": mode}
        run_bundle(BUNDLE, "inference.json", {**overrides, "decode_splits": 4})
        sidecar = json.loads((out / "sample_000000.json").read_text())
        assert sidecar["scheduler"] == "DPMSolverMultistepScheduler" and sidecar["decode_mode"] == mode
        volumes[mode] = _volume(out / "sample_000000.nii.gz")
    assert 0.0 < float(volumes["whole"].std())
    np.testing.assert_allclose(volumes["split"], volumes["whole"], rtol=0, atol=1e-4)


def test_compiled_networks_write_the_brain_eager_networks_write(sampling_overrides: dict, tmp_path: Path) -> None:
    volumes = {}
    for compiled in (False, True):
        out = tmp_path / str(compiled)
        run_bundle(
            BUNDLE, "inference.json", {**sampling_overrides, "output_dir": str(out), "compile_networks": compiled}
        )
        volumes[compiled] = _volume(out / "sample_000000.nii.gz")
    assert 0.0 < float(volumes[False].std())
    np.testing.assert_allclose(volumes[True], volumes[False], rtol=0, atol=1e-4)


@pytest.mark.parametrize("solver", ["ddim", "dpmpp_2m"])
def test_x0_clip_bounds_the_sampled_latent_and_is_recorded(
    sampling_overrides: dict, tmp_path: Path, solver: str
) -> None:
    """x0_clip reaches the sampler (a tight bound changes the brain, none leaves it) and each sidecar names it."""
    volumes = {}
    for clip in (None, 0.05):
        out = tmp_path / f"{solver}_{clip}"
        overrides = {**sampling_overrides, "output_dir": str(out), "solver": solver, "ddim_eta": 0.0}
        run_bundle(BUNDLE, "inference.json", {**overrides, "x0_clip": "$None" if clip is None else clip})
        assert json.loads((out / "sample_000000.json").read_text())["x0_clip"] == clip
        volumes[clip] = _volume(out / "sample_000000.nii.gz")
    assert float(np.abs(volumes[0.05] - volumes[None]).max()) > 1e-3
