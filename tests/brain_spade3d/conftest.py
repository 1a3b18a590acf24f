"""Session fixtures of the brain_spade3d tests: a tiny cohort and the three tiny trained models.

Every run goes through ``monai.bundle run`` as a user's would. Each training config runs twice, one
epoch then two, so that the second run resumes from the first one's checkpoint.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.brain_spade3d.spade3d_helpers import (
    BUNDLE,
    LESION_NAMES,
    RESOLUTION_MM,
    TINY_SAMPLING,
    run_bundle,
    training_overrides,
)

TRAINING_CONFIGS = ("train_label_autoencoder.json", "train_label_diffusion.json", "train_image_generator.json")


@pytest.fixture(scope="session")
def spade_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a 6-subject 8 mm cohort.

    The shared ``tiny_brain_cohort`` (seed 0) has a single WMH case and no tumour, which cannot
    exercise tumour conditioning nor the unexpected-pathology protocol. Seed 9 gives training
    subjects with WMH, a tumour and two healthy ones, and tumour cases in validation and test.
    """
    from tools.demo_data.brain import make_brain_cohort

    datalist = make_brain_cohort(
        tmp_path_factory.mktemp("spade_data"), seed=9, n_subjects=6, resolution_mm=RESOLUTION_MM, lesion_probability=0.7
    )
    content = json.loads(datalist.read_text())
    assert content["lesion_names"] == LESION_NAMES
    kinds = {split: [tuple(v > 0 for v in item["lesion"]) for item in content[split]] for split in ("training", "test")}
    assert (
        (False,) * 4 in kinds["training"] and any(k[1] for k in kinds["training"]) and any(k[1] for k in kinds["test"])
    )
    return datalist.parent


@pytest.fixture(scope="session")
def spade_trained(spade_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train the three stages in order, each in two runs (the second resumes); keep every run's log."""
    root = tmp_path_factory.mktemp("spade_trained")
    models = root / "models"
    logs: dict[str, list[subprocess.CompletedProcess]] = {}
    for config in TRAINING_CONFIGS:
        run_dir = root / config.removesuffix(".json")
        logs[config] = [
            run_bundle(BUNDLE, config, training_overrides(config, spade_cohort, run_dir, models, max_epochs))
            for max_epochs in (1, 2)
        ]
    return {"root": root, "models": models, "logs": logs}


@pytest.fixture(scope="session")
def sampling_overrides(spade_trained: dict) -> dict:
    """Overrides pointing inference, evaluation and export at the tiny trained weights."""
    return {**TINY_SAMPLING, "models_dir": str(spade_trained["models"])}
