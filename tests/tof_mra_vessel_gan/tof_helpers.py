"""Constants and helpers of the tof_mra_vessel_gan tests.

Test modules import them as ``from tests.tof_mra_vessel_gan.tof_helpers import ...``; fixtures stay in conftest.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import BUNDLES_DIR, REPO_ROOT, SHARED_REFERENCE, run_bundle  # noqa: F401  (re-exported)

BUNDLE = BUNDLES_DIR / "tof_mra_vessel_gan"
#: Overlay merged after the variant: narrow networks (ngf = ndf = 4), batch 4, two epochs.
TINY = "tiny.json"
#: 5 phantom patients (3 training, 1 validation, 1 test), 8 patches each, on a coarse 2 mm grid.
N_TRAINING_PATIENTS = 3
PATCHES_PER_PATIENT = 8
TINY_PHANTOMS = {"voxel_size_mm": (2.0, 2.0, 2.0), "slab_z_mm": (-26.0, 6.0), "verbose": False}


def workspace_overrides(root: Path) -> dict[str, str]:
    """Config keys that send every output of a bundle run under ``root`` instead of the bundle folder."""
    return {
        "ckpt_dir": str(root / "checkpoints"),
        "output_dir": str(root / "logs"),
        "generator_path": str(root / "models" / "generator.pt"),
    }
