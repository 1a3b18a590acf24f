"""Constants and helpers of the tof_mra_vessel_gan tests.

Test modules import them as ``from tests.tof_mra_vessel_gan.tof_helpers import ...``; fixtures stay in conftest.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.helpers import BUNDLES_DIR, REPO_ROOT, SHARED_REFERENCE, run_bundle  # noqa: F401  (re-exported)

BUNDLE = BUNDLES_DIR / "tof_mra_vessel_gan"
#: Test-only sizes, given after every config (explicit overrides win): narrow GAN (ngf = ndf = 4) and segmenter,
#: batch 4, two epochs. Unused keys are harmless, so one set serves every config; the bundle ships no tiny config.
TINY = {
    "ngf": 4,
    "ndf": 4,
    "batch_size": 4,
    "max_epochs": 2,
    "log_interval": 1,
    "preview_interval": 2,
    "preview_pairs": 4,
    "n_synthetic": 16,
    "segmenter_features": [4, 8, 8, 16, 16, 4],
    "sw_batch_size": 8,
}
#: 5 phantom patients (3 training, 1 validation, 1 test), 8 patches each, on a coarse 2 mm grid.
N_TRAINING_PATIENTS = 3
PATCHES_PER_PATIENT = 8
TINY_PHANTOMS = {"voxel_size_mm": (2.0, 2.0, 2.0), "slab_z_mm": (-26.0, 6.0), "verbose": False}


def workspace_overrides(root: Path) -> dict[str, str]:
    """Config keys that send every output of a bundle run under ``root`` instead of the bundle folder."""
    return {
        "ckpt_dir": str(root / "checkpoints"),
        "output_dir": str(root / "logs"),
        "generator_path": str(root / "models" / "model.pt"),
    }


def run_tiny(config: str | list[str], overrides: dict | None = None, **options: Any) -> subprocess.CompletedProcess:
    """``run_bundle`` on this bundle at the TINY sizes; ``overrides`` win over them, ``options`` go to run_bundle."""
    return run_bundle(BUNDLE, config, {**TINY, **(overrides or {})}, **options)
