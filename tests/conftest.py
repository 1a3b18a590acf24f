"""Shared fixtures: the model-zoo schema and tiny offline datasets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import SHARED_REFERENCE


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """The real model-zoo metadata schema, never downloaded by the tests: the workplace's shared/reference,
    else where ``tools verify`` looks offline (``$SYNTHBRAIN_SCHEMA_DIR``, then its cache)."""
    from tools.verify import local_schema_candidates

    name = "meta_schema_20240725.json"
    candidates = [SHARED_REFERENCE / name, *local_schema_candidates(name)]
    found = next((path for path in candidates if path.is_file()), None)
    if found is None:
        pytest.skip(f"model-zoo schema not found in {[str(path) for path in candidates]}")
    return found


@pytest.fixture(scope="session")
def tiny_brain_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 5-subject brain cohort at 8 mm (20x28x20), some with lesions; returns its datalist.json."""
    from tools.demo_data.brain import make_brain_cohort

    return make_brain_cohort(
        tmp_path_factory.mktemp("brain"), seed=0, n_subjects=5, resolution_mm=8, lesion_probability=0.6
    )
