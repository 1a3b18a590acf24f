"""Constants and helpers of the tof_mra_vessel_gan tests.

Test modules import these from here, not from ``conftest``: pytest imports every conftest.py as the
module ``conftest``, so which one ``from conftest import ...`` reaches depends on the folders collected.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# the repository-wide runner of tests/conftest.py, loaded under a private name
_spec = importlib.util.spec_from_file_location(
    "_synthbrain_tests_conftest_tof", Path(__file__).parent.parent / "conftest.py"
)
_root_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root_conftest)
REPO_ROOT = _root_conftest.REPO_ROOT
BUNDLES_DIR = _root_conftest.BUNDLES_DIR
SHARED_REFERENCE = _root_conftest.SHARED_REFERENCE
run_bundle = _root_conftest.run_bundle

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
