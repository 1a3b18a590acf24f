"""The copies of bundle_runtime inside the bundles must match the single source."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tools import BUNDLES_DIR
from tools.sync_common import COMMON_SOURCE, bundles_using_common, copy_note, drift, required_files, sync


@pytest.mark.parametrize("bundle", bundles_using_common(BUNDLES_DIR), ids=lambda p: p.name)
def test_bundle_copy_matches_source(bundle: Path):
    assert drift(bundle) == [], "run `python -m tools sync-common` after editing bundle_runtime"


def test_every_bundle_with_scripts_carries_the_copy():
    with_scripts = {p.parent.name for p in BUNDLES_DIR.glob("*/scripts") if p.is_dir()}
    assert with_scripts == {p.name for p in bundles_using_common(BUNDLES_DIR)}


def test_drift_is_detected_and_repaired(tmp_path: Path):
    bundle = tmp_path / "toy"
    (bundle / "scripts").mkdir(parents=True)
    (bundle / "scripts" / "exporting.py").write_text("from scripts.common.export import export_torchscript\n")
    shutil.copytree(COMMON_SOURCE, bundle / "scripts" / "common")
    # every shared module but the ones the toy reaches is reported as unused
    reached = {p.name for p in required_files(bundle)}
    unused = {Path(p.split(":")[0]).name for p in drift(bundle) if "not used by the bundle" in p}
    assert unused == {p.name for p in COMMON_SOURCE.glob("*.py")} - reached and unused
    sync(tmp_path)
    assert drift(bundle) == []
    # export.py imports atomic_io, onnx_runtime and weights: the copy holds them, plus the package's __init__
    assert {"__init__.py", "export.py", "weights.py", "atomic_io.py", "onnx_runtime.py"} <= reached
    assert {p.name for p in (bundle / "scripts" / "common").glob("*.py")} == reached
    module = bundle / "scripts" / "common" / "weights.py"
    module.write_text(module.read_text() + "\n# local edit\n")
    (bundle / "scripts" / "common" / "stray.py").write_text("")
    problems = sync(tmp_path, check=True)
    assert any("differs" in p and module.name in p for p in problems)
    assert any("stray.py" in p and "not in bundle_runtime" in p for p in problems)
    sync(tmp_path)
    assert drift(bundle) == []


def test_a_bundle_carries_only_the_shared_modules_it_uses():
    assert [str(p) for p in required_files(BUNDLES_DIR / "tof_mra_vessel_gan")] == [
        "__init__.py",
        "atomic_io.py",
        "bundle_path.py",
        "checkpoints.py",
        "checks.py",
        "dataset.py",
        "dataset_card.py",
        "engines.py",
        "export.py",
        "feature_extractors.py",
        "memorisation.py",
        "onnx_runtime.py",
        "previews.py",
        "provenance.py",
        "radiomics_features.py",
        "seeding.py",
        "stopping.py",
        "synthetic_folder.py",
        "weights.py",
    ]
    # the diffusion bundle reaches the diffusion code (named in its configs and scripts)
    assert Path("latent_diffusion.py") in required_files(BUNDLES_DIR / "brain_ldm")


@pytest.mark.parametrize("bundle", bundles_using_common(BUNDLES_DIR), ids=lambda p: p.name)
def test_every_copy_opens_with_a_note_naming_its_source(bundle: Path):
    for copy in sorted((bundle / "scripts" / "common").rglob("*.py")):
        relative = copy.relative_to(bundle / "scripts" / "common")
        first_line = copy.read_text().splitlines(keepends=True)[0]
        assert first_line == copy_note(relative) and f"bundle_runtime/{relative.as_posix()}" in first_line
        assert "python -m tools sync-common" in first_line


def test_copies_are_marked_generated_for_review():
    attributes = (BUNDLES_DIR.parent / ".gitattributes").read_text()
    assert "bundles/*/scripts/common/*.py linguist-generated=true" in attributes.splitlines()
