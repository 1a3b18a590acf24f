"""The copies of tools/common inside the bundles must match the single source."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import BUNDLES_DIR
from tools.sync_common import COMMON_SOURCE, bundles_using_common, drift, sync


@pytest.mark.parametrize("bundle", bundles_using_common(BUNDLES_DIR), ids=lambda p: p.name)
def test_bundle_copy_matches_source(bundle: Path):
    assert drift(bundle) == [], "run `python -m tools sync-common` after editing tools/common"


def test_every_bundle_with_scripts_carries_the_copy():
    with_scripts = {p.parent.name for p in BUNDLES_DIR.glob("*/scripts") if p.is_dir()}
    assert with_scripts == {p.name for p in bundles_using_common(BUNDLES_DIR)}


def test_drift_is_detected_and_repaired(tmp_path: Path):
    bundle = tmp_path / "toy"
    shutil.copytree(COMMON_SOURCE, bundle / "scripts" / "common")
    assert drift(bundle) == []
    module = next((bundle / "scripts" / "common").glob("*.py"))
    module.write_text(module.read_text() + "\n# local edit\n")
    (bundle / "scripts" / "common" / "stray.py").write_text("")
    problems = sync(tmp_path, check=True)
    assert any("differs" in p and module.name in p for p in problems)
    assert any("stray.py" in p for p in problems)
    sync(tmp_path)
    assert drift(bundle) == []
