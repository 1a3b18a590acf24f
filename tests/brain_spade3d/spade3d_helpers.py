"""Helpers shared by the brain_spade3d tests: tiny sizes, override sets and in-process bundle imports.

Test modules import them as ``from tests.brain_spade3d.spade3d_helpers import ...``; the repository-wide
runner comes from tests/helpers.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from tests.helpers import BRAIN_TINY_DATA as TINY_DATA
from tests.helpers import BRAIN_TINY_RESOLUTION_MM as RESOLUTION_MM
from tests.helpers import BRAIN_TINY_SPATIAL_SHAPE as SPATIAL_SHAPE
from tests.helpers import BUNDLES_DIR, REPO_ROOT, TINY_LATENT_AUTOENCODER, bundle_scripts_modules, run_bundle  # noqa: F401  (re-exported)
from tests.helpers import TINY_LATENT_DIFFUSION as TINY_DIFFUSION

BUNDLE = BUNDLES_DIR / "brain_spade3d"
LESION_NAMES = ["wmh", "tumour", "edema", "enhancing"]

#: Network sizes of every tiny run; each key exists in every config that defines the network.
TINY_AUTOENCODER = {**TINY_LATENT_AUTOENCODER, "latent_channels": 4}
TINY_GENERATOR = {
    "spatial_shape": SPATIAL_SHAPE,
    "generator_def#channels": [8, 8, 8],
    "generator_def#z_dim": 8,
    "generator_def#spade_intermediate_channels": 8,
}
TINY_SAMPLING = {
    **TINY_AUTOENCODER,
    **TINY_DIFFUSION,
    **TINY_GENERATOR,
    "resolution_mm": RESOLUTION_MM,
    "num_inference_steps": 3,
    "progress": False,
    "max_label_draws": 1,  # random tiny weights rarely conform: redraws are tested on their own
}


def training_overrides(config: str, cohort: Path, run_dir: Path, models_dir: Path, max_epochs: int) -> dict:
    """Overrides for a seconds-long run of one training config (adversarial terms on from epoch 2)."""
    common = {
        **TINY_DATA,
        "dataset_dir": str(cohort),
        "run_dir": str(run_dir),
        "models_dir": str(models_dir),
        "train#trainer#max_epochs": max_epochs,
        "val_interval": 1,
    }
    if config == "train_label_autoencoder.json":
        return {
            **common,
            **TINY_AUTOENCODER,
            "discriminator_def#channels": 8,
            "discriminator_def#num_layers_d": 2,
            "adversarial_warmup_epochs": 1,
        }
    if config == "train_label_diffusion.json":
        return {
            **common,
            **TINY_AUTOENCODER,
            **TINY_DIFFUSION,
            "batch_size": 2,
            "preview_interval": 2,
            "num_inference_steps": 3,
        }
    if config == "train_image_generator.json":
        return {
            **common,
            **TINY_GENERATOR,
            "discriminator_def#channels": 8,
            "discriminator_def#num_layers_d": 1,
            "batch_size": 3,
        }
    raise ValueError(f"no tiny overrides for {config}")


@contextlib.contextmanager
def bundle_module(name: str) -> Iterator[ModuleType]:
    """Import ``scripts.<name>`` of this bundle in-process (see ``tests.helpers.bundle_scripts_modules``)."""
    with bundle_scripts_modules(BUNDLE, name) as (module,):
        yield module
