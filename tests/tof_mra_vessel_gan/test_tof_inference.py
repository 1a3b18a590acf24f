"""Pair generation through inference.json: files, binary labels, seed determinism, and bad inputs."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.tof_mra_vessel_gan.tof_helpers import run_tiny


def _generate(weights, output_dir, check=True, **overrides):
    overrides = {"generator_path": str(weights), "output_dir": str(output_dir), **overrides}
    return run_tiny("inference.json", overrides, check=check)


def _pairs(output_dir):
    sidecar = json.loads((output_dir / "generation.json").read_text())
    images = [np.asarray(nib.load(output_dir / p["image"]).dataobj) for p in sidecar["pairs"]]
    labels = [np.asarray(nib.load(output_dir / p["label"]).dataobj) for p in sidecar["pairs"]]
    return sidecar, images, labels


@pytest.fixture(scope="module")
def generated(vivid_generator, tmp_path_factory):
    """Five pairs with seed 3 in batches of 2."""
    output_dir = tmp_path_factory.mktemp("pairs")
    _generate(vivid_generator, output_dir, n_samples=5, seed=3, batch_size=2)
    return output_dir


def test_inference_writes_image_label_pairs_a_preview_and_a_sidecar(generated, vivid_generator):
    sidecar, images, labels = _pairs(generated)
    assert sidecar["n_samples"] == 5 and sidecar["seed"] == 3 and len(sidecar["pairs"]) == 5
    assert sidecar["weights_sha256"] == hashlib.sha256(vivid_generator.read_bytes()).hexdigest()
    names = sorted(p.name for p in generated.iterdir())
    assert names == sorted(
        ["generation.json", "preview.png"] + [f"pair_{i:06d}_{k}.nii.gz" for i in range(5) for k in ("image", "label")]
    )  # no staging folder or temporary file left behind
    for image, label, record in zip(images, labels, sidecar["pairs"]):
        assert image.shape == (96, 96) and image.dtype == np.float32
        assert image.min() >= -1.0 and image.max() <= 1.0 and image.std() > 0.05
        assert label.shape == (96, 96) and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1}
        assert record["vessel_fraction"] == pytest.approx(label.mean(), abs=1e-6)
    assert 0 < np.mean(labels) < 1  # the label channel is thresholded, not all one value
    assert not np.array_equal(images[0], images[1])
    with Image.open(generated / "preview.png") as preview:
        assert preview.width > 96 * 2 and preview.height >= 96


def test_same_seed_gives_the_same_pairs_whatever_the_batch(generated, vivid_generator, tmp_path):
    _generate(vivid_generator, tmp_path, n_samples=7, seed=3, batch_size=4)
    _, first_images, first_labels = _pairs(generated)
    _, images, labels = _pairs(tmp_path)
    for index in range(5):
        np.testing.assert_allclose(images[index], first_images[index], atol=1e-5)
        assert (
            np.mean(labels[index] != first_labels[index]) < 1e-3
        )  # only pixels sitting exactly at the threshold may flip


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"n_samples": 0}, "n_samples=0 must be a positive integer"),
        ({"patch_size": [64, 64]}, "patch_size=[64, 64] is not supported"),
        ({"seed": 2**32}, "seed=4294967296 with 1 sample(s) reaches seed 4294967296; seeds must stay below 2**32"),
    ],
)
def test_bad_settings_fail_clearly_and_write_nothing(vivid_generator, tmp_path, overrides, message):
    output_dir = tmp_path / "pairs"
    result = _generate(vivid_generator, output_dir, check=False, **overrides)
    assert result.returncode != 0 and message in result.stderr
    assert not output_dir.exists()


def test_missing_weights_fail_clearly_and_write_nothing(tmp_path):
    missing = tmp_path / "no_such_generator.pt"
    output_dir = tmp_path / "pairs"
    result = _generate(missing, output_dir, check=False)
    assert result.returncode != 0
    assert f"generator_path: weights file {missing} does not exist" in result.stderr
    assert not output_dir.exists()


def test_tensorrt_overlay_is_a_no_op_on_cpu_that_still_generates(generated, vivid_generator, tmp_path):
    """inference_trt.json without a GPU: the same five pairs as plain inference (seed 3, batches of 2)."""
    output_dir = tmp_path / "trt"
    overrides = {"generator_path": str(vivid_generator), "output_dir": str(output_dir)}
    run_tiny(["inference.json", "inference_trt.json"], {**overrides, "n_samples": 5, "seed": 3, "batch_size": 2})
    _, images, labels = _pairs(output_dir)
    _, expected_images, expected_labels = _pairs(generated)
    assert len(images) == 5
    for got, expected in zip(images + labels, expected_images + expected_labels, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
