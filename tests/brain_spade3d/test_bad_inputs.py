"""Each bad input stops inference before any work, with an error naming it and nothing written.

Every kind of bad input in the issue runs once through ``monai.bundle run``; the other variants of
the same checks run in-process against ``scripts/labels.py`` to keep the suite fast.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.brain_spade3d.spade3d_helpers import BUNDLE, LESION_NAMES, bundle_module
from tests.helpers import assert_inference_refused

BAD_INPUTS = [
    pytest.param({"pathologies": {"glioma": 0.5}}, "unknown lesion(s) ['glioma']", id="unknown-pathology"),
    pytest.param({"contrasts": ["T1w", "PD"]}, "contrasts: ['PD'] unknown", id="unknown-contrast"),
    pytest.param({"pathologies": {"wmh": 1.5}}, "pathologies['wmh']=1.5 is outside [0, 1]", id="fraction-above-one"),
    pytest.param({"max_label_draws": 0}, "max_label_draws=0 must be a positive integer", id="no-label-draws"),
    pytest.param(
        {"seed": 2**32 - 1, "n_samples": 2}, "seed=4294967295 with 2 sample(s) reaches seed 4294967296", id="seed-span"
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS)
def test_bad_request_is_refused(overrides: dict, message: str, sampling_overrides: dict, tmp_path: Path) -> None:
    assert_inference_refused(BUNDLE, {**sampling_overrides, **overrides}, message, tmp_path / "out")


@pytest.mark.slow
def test_style_image_of_the_wrong_shape_is_refused(
    sampling_overrides: dict, spade_cohort: Path, tmp_path: Path
) -> None:
    style = next(spade_cohort.glob("sub-*/sub-*_T1w.nii.gz"))  # 20x28x20: not cropped to the bundle's 16x24x16
    overrides = {**sampling_overrides, "style_image": str(style)}
    assert_inference_refused(BUNDLE, overrides, f"style_image {style} has shape (20, 28, 20)", tmp_path / "out")


@pytest.mark.slow
def test_missing_weights_are_named(sampling_overrides: dict, spade_trained: dict, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("label_autoencoder.pt", "model.pt", "label_stats.json"):  # the image generator is missing
        (models / name).write_bytes((spade_trained["models"] / name).read_bytes())
    message = f"load_generator_path: weights file {models / 'image_generator.pt'} does not exist"
    assert_inference_refused(BUNDLE, {**sampling_overrides, "models_dir": str(models)}, message, tmp_path / "out")


@pytest.mark.parametrize(
    ("pathologies", "n_samples", "message"),
    [
        ({"wmh": -0.1}, 1, "pathologies['wmh']=-0.1 is outside [0, 1]"),
        ({"wmh": "nan"}, 1, "pathologies['wmh']=nan is outside [0, 1]"),
        ({"tumour": "large"}, 1, "pathologies['tumour']='large' is neither a number in [0, 1] nor 'sample'"),
        ({"tumour": True}, 1, "pathologies['tumour']=True is neither a number"),
        ({"edema": [0.1, 0.2, 0.3]}, 2, "pathologies['edema']: 3 values for n_samples=2"),
        ({"edema": [0.1, 2.0]}, 2, "pathologies['edema'][1]=2.0 is outside [0, 1]"),
        ("random", 1, "pathologies='random': give 'sample' or a mapping"),
        ([0.1, 0.2], 1, "must be 'sample' or a mapping"),
        ({}, 0, "n_samples=0 must be a positive integer"),
    ],
)
def test_pathology_checks(pathologies, n_samples: int, message: str) -> None:
    with bundle_module("labels") as labels, pytest.raises(ValueError) as error:
        labels.resolve_pathologies(pathologies, LESION_NAMES, n_samples, seed=0)
    assert message in str(error.value)


def test_sampling_needs_the_label_stats_file(tmp_path: Path) -> None:
    with bundle_module("labels") as labels, pytest.raises(FileNotFoundError, match="label stats file .* not found"):
        labels.resolve_pathologies({"wmh": "sample"}, LESION_NAMES, 1, 0, tmp_path / "label_stats.json")


@pytest.mark.parametrize(
    ("contrasts", "message"),
    [([], "must be a non-empty list"), (["T1w", "T1w"], "lists a contrast twice"), (["t1w"], "['t1w'] unknown")],
)
def test_contrast_checks(contrasts, message: str) -> None:
    with bundle_module("labels") as labels, pytest.raises(ValueError) as error:
        labels.check_contrasts(contrasts, ["T1w", "T2w", "FLAIR"])
    assert message in str(error.value)


def test_style_image_checks(tmp_path: Path) -> None:
    two_channels = tmp_path / "two.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 24, 16, 2), np.float32), np.eye(4)), str(two_channels))
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti")
    nans = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(np.full((16, 24, 16), np.nan, np.float32), np.eye(4)), str(nans))
    with bundle_module("synthesis") as synthesis:
        with pytest.raises(FileNotFoundError, match="does not exist"):
            synthesis.load_style_image(tmp_path / "absent.nii.gz", [16, 24, 16])
        with pytest.raises(ValueError, match="with 2 channel"):
            synthesis.load_style_image(two_channels, [16, 24, 16])
        with pytest.raises(ValueError, match="is not a readable image"):
            synthesis.load_style_image(broken, [16, 24, 16])
        with pytest.raises(ValueError, match="NaN or infinite"):
            synthesis.load_style_image(nans, [16, 24, 16])
        good = tmp_path / "good.nii.gz"
        nib.save(nib.Nifti1Image(np.ones((16, 24, 16), np.float32), np.eye(4)), str(good))
        assert synthesis.load_style_image(good, [16, 24, 16]).shape == torch.Size([1, 1, 16, 24, 16])
