"""Shared brain_ldm fixtures: a tiny demo cohort and tiny trained models, made once per session.

Sizes: the 8 mm cohort (20x28x20) centre-cropped to 16x24x16, a 3-level autoencoder of width 8
(latent 3x4x6x4) and a 2-level UNet of width 16. Every run goes through ``monai.bundle run``.
Plain helpers live in ``ldm_helpers.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.brain_ldm.ldm_helpers import (  # noqa: F401  (re-exported)
    BUNDLE,
    BUNDLES_DIR,
    REPO_ROOT,
    RESOLUTION_MM,
    SHARED_REFERENCE,
    SPATIAL_SHAPE,
    TINY_AUTOENCODER,
    TINY_DIFFUSION,
    TINY_SAMPLING,
    bundle_module,
    run_bundle,
    tiny_autoencoder_training,
    tiny_diffusion_training,
)


@pytest.fixture(scope="session")
def brain_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the 4-subject 8 mm demo cohort (2 training, 1 validation, 1 test)."""
    from tools.demo_data.brain import make_brain_cohort

    datalist = make_brain_cohort(
        tmp_path_factory.mktemp("data"), seed=0, n_subjects=4, resolution_mm=RESOLUTION_MM, lesion_probability=0.5
    )
    assert json.loads(datalist.read_text())["condition_names"] == ["sex", "age", "ventricular_vol", "brain_vol"]
    return datalist.parent


@pytest.fixture(scope="session")
def trained(brain_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train the tiny autoencoder then the tiny diffusion model, as a user would; returns their folders."""
    root = tmp_path_factory.mktemp("trained")
    models = root / "models"
    run_bundle(BUNDLE, "train_autoencoder.json", tiny_autoencoder_training(brain_cohort, root / "autoencoder", models))
    run_bundle(BUNDLE, "train_diffusion.json", tiny_diffusion_training(brain_cohort, root / "diffusion", models))
    return {"models": models, "autoencoder_run": root / "autoencoder", "diffusion_run": root / "diffusion"}


@pytest.fixture(scope="session")
def sampling_overrides(trained: dict[str, Path]) -> dict:
    """Overrides that point inference/evaluate at the tiny trained weights."""
    return {
        **TINY_SAMPLING,
        "load_autoencoder_path": str(trained["models"] / "autoencoder.pt"),
        "load_diffusion_path": str(trained["models"] / "model.pt"),
    }
