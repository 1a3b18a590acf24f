"""Helpers shared by the brain_ldm tests: tiny sizes, override sets and in-process bundle imports.

Test modules import them as ``from tests.brain_ldm.ldm_helpers import ...``; fixtures stay in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np

from bundle_runtime.atomic_io import write_json, write_nifti
from tests.helpers import BRAIN_TINY_DATA as TINY_DATA
from tests.helpers import BRAIN_TINY_RESOLUTION_MM as RESOLUTION_MM
from tests.helpers import BRAIN_TINY_SPATIAL_SHAPE as SPATIAL_SHAPE
from tests.helpers import BUNDLES_DIR, REPO_ROOT, SHARED_REFERENCE, bundle_scripts_modules, run_bundle  # noqa: F401  (re-exported)
from tests.helpers import TINY_LATENT_AUTOENCODER as TINY_AUTOENCODER
from tests.helpers import TINY_LATENT_DIFFUSION as TINY_DIFFUSION

BUNDLE = BUNDLES_DIR / "brain_ldm"
TINY_SAMPLING = {
    **TINY_AUTOENCODER,
    **TINY_DIFFUSION,
    "resolution_mm": RESOLUTION_MM,
    "num_inference_steps": 3,
    "progress": False,
}


@contextlib.contextmanager
def bundle_module(name: str) -> Iterator[ModuleType]:
    """Import ``scripts.<name>`` of this bundle in-process (see ``tests.helpers.bundle_scripts_modules``)."""
    with bundle_scripts_modules(BUNDLE, name) as (module,):
        yield module


def tiny_autoencoder_training(cohort: Path, run_dir: Path, models_dir: Path, max_epochs: int = 2) -> dict:
    """Overrides for a seconds-long autoencoder training with the adversarial term on from epoch 2."""
    return {
        **TINY_AUTOENCODER,
        **TINY_DATA,
        "dataset_dir": str(cohort),
        "run_dir": str(run_dir),
        "models_dir": str(models_dir),
        "discriminator_def#channels": 8,
        "discriminator_def#num_layers_d": 2,
        "train#trainer#max_epochs": max_epochs,
        "adversarial_warmup_epochs": 1,
        "val_interval": 1,
    }


def tiny_diffusion_training(cohort: Path, run_dir: Path, models_dir: Path, max_epochs: int = 2) -> dict:
    """Overrides for a seconds-long diffusion training with a preview at the last epoch."""
    return {
        **TINY_AUTOENCODER,
        **TINY_DIFFUSION,
        **TINY_DATA,
        "dataset_dir": str(cohort),
        "run_dir": str(run_dir),
        "models_dir": str(models_dir),
        "train#trainer#max_epochs": max_epochs,
        "batch_size": 2,
        "val_interval": 1,
        "preview_interval": 2,
        "num_inference_steps": 3,
    }


def training_image_on_sample_grid(cohort: Path, index: int = 0) -> tuple[np.ndarray, dict]:
    """A training subject on the sample grid (centre crop, as privacy.json loads it) and its datalist item."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, ResizeWithPadOrCropd

    item = json.loads((cohort / "datalist.json").read_text())["training"][index]
    load = Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            Orientationd("image", axcodes="RAS", labels=None),
            ResizeWithPadOrCropd("image", SPATIAL_SHAPE),
        ]
    )
    return np.asarray(load({"image": str(cohort / item["image"])})["image"][0]), item


def plant_sample(folder: Path, name: str, volume: np.ndarray, condition: list[float], like: Path) -> None:
    affine = np.asarray(json.loads(like.read_text())["affine"])
    write_nifti(volume, affine, folder / f"{name}.nii.gz")
    sidecar = json.loads(like.read_text())
    sidecar["conditioning"] = dict(zip(["sex", "age", "ventricular_vol", "brain_vol"], condition))
    write_json(sidecar, folder / f"{name}.json")
