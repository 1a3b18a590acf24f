"""Bad training data is refused before work, and a non-finite loss stops training without touching the weights."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.brain_ldm.ldm_helpers import BUNDLE, run_bundle, tiny_autoencoder_training, tiny_diffusion_training

pytestmark = pytest.mark.slow


def _absolute_datalist(cohort: Path, folder: Path) -> tuple[dict, Path]:
    """The cohort's datalist with absolute image paths, to be edited and written under ``folder``."""
    datalist = json.loads((cohort / "datalist.json").read_text())
    for split in ("training", "validation", "test"):
        for item in datalist[split]:
            item.update({key: str(cohort / item[key]) for key in ("image", "t2", "flair", "label")})
    return datalist, folder / "datalist.json"


def test_a_condition_inference_refuses_stops_training_before_work(brain_cohort: Path, tmp_path: Path) -> None:
    datalist, path = _absolute_datalist(brain_cohort, tmp_path)
    datalist["training"][1]["condition"][1] = 7.0  # an age in years, not the normalised [0, 1]
    path.write_text(json.dumps(datalist))
    overrides = {
        **tiny_diffusion_training(brain_cohort, tmp_path / "run", tmp_path / "models"),
        "datalist_path": str(path),
    }
    result = run_bundle(BUNDLE, "train_diffusion.json", overrides, check=False)
    assert result.returncode != 0
    subject = datalist["training"][1]["subject"]
    assert (
        f"datalist {path}, item training[1] ({subject}), key 'condition'[1]=7.0 is not a finite number in [0.0, 1.0]"
        in (result.stderr)
    )
    assert not (tmp_path / "run").exists() and not (tmp_path / "models").exists()


def test_a_nan_loss_stops_training_and_keeps_the_shipped_weights(brain_cohort: Path, tmp_path: Path) -> None:
    datalist, path = _absolute_datalist(brain_cohort, tmp_path)
    source = nib.load(datalist["training"][0]["image"])
    volume = np.asarray(source.dataobj, dtype=np.float32)
    volume[5:8, 5:8, 5:8] = np.nan  # a corrupt scan: the header is fine, some voxels are not numbers
    broken = tmp_path / "nan_T1w.nii.gz"
    nib.save(nib.Nifti1Image(volume, source.affine, source.header), broken)
    datalist["training"][0]["image"] = str(broken)
    path.write_text(json.dumps(datalist))
    models = tmp_path / "models"
    models.mkdir()
    (models / "autoencoder.pt").write_bytes(b"shipped weights")
    overrides = {**tiny_autoencoder_training(brain_cohort, tmp_path / "run", models), "datalist_path": str(path)}
    result = run_bundle(BUNDLE, "train_autoencoder.json", overrides, check=False)
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "non-finite loss" in log and "at epoch 1, iteration 1; batch items: [" in log and str(broken) in log
    assert (models / "autoencoder.pt").read_bytes() == b"shipped weights"
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))


@pytest.mark.parametrize("flag", ["cache_latents", "use_ema"])
def test_a_training_flag_given_as_a_string_stops_before_work(flag: str, brain_cohort: Path, tmp_path: Path) -> None:
    """``bool("false")`` is True: a switch written as a string must be refused, not read as on."""
    overrides = {**tiny_diffusion_training(brain_cohort, tmp_path / "run", tmp_path / "models"), flag: "false"}
    result = run_bundle(BUNDLE, "train_diffusion.json", overrides, check=False)
    assert result.returncode != 0
    assert f"{flag}='false' must be true or false" in result.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "models" / "model.pt").exists()
