"""Shared fixtures: the model-zoo schema and tiny offline datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED_REFERENCE


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """The real model-zoo metadata schema, kept in shared/ for offline tests."""
    path = SHARED_REFERENCE / "meta_schema_20240725.json"
    if not path.exists():
        pytest.skip(f"model-zoo schema not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_brain_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-subject brain cohort at 8 mm (20x28x20), some with lesions; returns its datalist.json."""
    from tools.demo_data.brain import make_brain_cohort

    return make_brain_cohort(
        tmp_path_factory.mktemp("brain"), seed=0, n_subjects=5, resolution_mm=8, lesion_probability=0.6
    )
