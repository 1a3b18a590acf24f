"""``tools package``: reproducible zips with a top-level folder, and a merged checksum index."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tools import REPO_ROOT
from tools.packaging import INDEX_NAME, PackagingError, package, package_bundle
from tools.sync_common import sync

pytestmark = pytest.mark.usefixtures("offline_schema")  # tools package runs verify


def _add_clutter(bundle: Path) -> None:
    """Run products and caches that must never reach the zip."""
    for folder in ("__pycache__", "scripts/__pycache__", "outputs", "eval", "runs/exp1", ".pytest_cache"):
        (bundle / folder).mkdir(parents=True, exist_ok=True)
        (bundle / folder / "junk.txt").write_text("not part of the bundle\n")
    (bundle / "scripts" / "writer.cpython-311.pyc").write_bytes(b"\x00compiled")


def test_same_tree_gives_identical_bytes(tiny_bundle, tmp_path):
    package([tiny_bundle], tmp_path / "first")
    for path in tiny_bundle.rglob("*"):  # new timestamps must not change the archive
        os.utime(path, (2_000_000_000, 2_000_000_000))
    _add_clutter(tiny_bundle)
    package([tiny_bundle], tmp_path / "second")
    first = (tmp_path / "first" / "tiny_bundle_v0.1.0.zip").read_bytes()
    second = (tmp_path / "second" / "tiny_bundle_v0.1.0.zip").read_bytes()
    assert first == second


def test_zip_layout_timestamps_and_permissions(tiny_bundle, tmp_path):
    _add_clutter(tiny_bundle)
    package([tiny_bundle], tmp_path / "out")
    with zipfile.ZipFile(tmp_path / "out" / "tiny_bundle_v0.1.0.zip") as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert names[0] == "tiny_bundle/"
    assert all(name.startswith("tiny_bundle/") for name in names)
    expected_files = {
        f"tiny_bundle/{p.relative_to(tiny_bundle).as_posix()}"
        for p in tiny_bundle.rglob("*")
        if p.is_file()
        and not any(part in p.parts for part in ("__pycache__", "outputs", "eval", "runs", ".pytest_cache"))
        and p.suffix != ".pyc"
    }
    assert {n for n in names if not n.endswith("/")} == expected_files
    assert "tiny_bundle/configs/metadata.json" in names
    assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in infos)
    file_modes = {info.external_attr >> 16 for info in infos if not info.is_dir()}
    assert file_modes == {0o100644}
    assert all(info.compress_type == zipfile.ZIP_DEFLATED for info in infos if not info.is_dir())


def test_index_checksum_and_source(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    entries = package([tiny_bundle], out)
    zip_path = out / "tiny_bundle_v0.1.0.zip"
    index = json.loads((out / INDEX_NAME).read_text())
    assert index == entries
    assert index["tiny_bundle_v0.1.0"]["checksum"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert index["tiny_bundle_v0.1.0"]["source"] == zip_path.resolve().as_uri()

    key, entry = package_bundle(tiny_bundle, out, base_url="https://example.org/releases/")
    assert key == "tiny_bundle_v0.1.0"
    assert entry["source"] == "https://example.org/releases/tiny_bundle_v0.1.0.zip"


def test_index_merges_bundles_with_sorted_keys(make_bundle, tmp_path):
    out = tmp_path / "out"
    zebra = make_bundle("zebra_bundle")
    alpha = make_bundle("alpha_bundle")
    package([zebra], out)
    package([alpha], out)
    text = (out / INDEX_NAME).read_text()
    index = json.loads(text)
    assert list(index) == ["alpha_bundle_v0.1.0", "zebra_bundle_v0.1.0"]
    assert text.index("alpha_bundle_v0.1.0") < text.index("zebra_bundle_v0.1.0")
    for key, entry in index.items():
        assert entry["checksum"] == hashlib.sha256((out / f"{key}.zip").read_bytes()).hexdigest()
    assert {p.name for p in out.iterdir()} == {INDEX_NAME, "alpha_bundle_v0.1.0.zip", "zebra_bundle_v0.1.0.zip"}


def test_stale_common_copy_is_refused(tiny_bundle, tmp_path):
    common_copy = tiny_bundle / "scripts" / "common"
    common_copy.mkdir()
    (tiny_bundle / "scripts" / "space.py").write_text("from scripts.common.mni import *  # noqa: F403\n")
    sync(tiny_bundle.parent)  # copies what the bundle uses: mni and the package's __init__
    package([tiny_bundle], tmp_path / "fresh")
    with zipfile.ZipFile(tmp_path / "fresh" / "tiny_bundle_v0.1.0.zip") as archive:
        shipped = {name for name in archive.namelist() if "/scripts/common/" in name and not name.endswith("/")}
    assert shipped == {"tiny_bundle/scripts/common/__init__.py", "tiny_bundle/scripts/common/mni.py"}

    with open(common_copy / "mni.py", "a") as stale:
        stale.write("\n# edited in the copy instead of bundle_runtime\n")
    with pytest.raises(PackagingError, match="scripts/common is out of date with bundle_runtime") as error:
        package([tiny_bundle], tmp_path / "stale")
    assert "mni.py: differs from bundle_runtime/mni.py" in str(error.value)
    assert "python -m tools sync-common" in str(error.value)
    assert not (tmp_path / "stale").exists()


def test_metadata_without_usable_version_is_refused(tiny_bundle, tmp_path):
    metadata = tiny_bundle / "configs" / "metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "version": "../0.1"}))
    with pytest.raises(PackagingError, match="version '../0.1' is not a plain version string"):
        package_bundle(tiny_bundle, tmp_path / "out")  # without the verify step, which refuses it as well


def test_a_bundle_failing_verify_is_not_packaged(make_bundle, tmp_path):
    good, bad = make_bundle("good_bundle"), make_bundle("bad_bundle")
    inference = bad / "configs" / "inference.json"
    config = json.loads(inference.read_text())
    config["network_def"]["_target_"] = "scripts.writer.NoSuchNetwork"
    inference.write_text(json.dumps(config))
    out = tmp_path / "out"
    with pytest.raises(PackagingError, match="bad_bundle: fails `python -m tools verify`") as refused:
        package([good, bad], out)
    assert "NoSuchNetwork" in str(refused.value)
    assert not out.exists()  # neither the good bundle's zip nor an index was written


def test_cli(make_bundle, tmp_path):
    bundle = make_bundle()
    out = tmp_path / "site"
    command = [sys.executable, "-m", "tools", "package", str(bundle), "--out", str(out), "--base_url", "http://x/y"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "tiny_bundle_v0.1.0: http://x/y/tiny_bundle_v0.1.0.zip sha256=" in result.stdout
    assert (
        json.loads((out / INDEX_NAME).read_text())["tiny_bundle_v0.1.0"]["source"]
        == "http://x/y/tiny_bundle_v0.1.0.zip"
    )

    command = [sys.executable, "-m", "tools", "package", "no_such_bundle", "--out", str(out)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "package failed: unknown bundle 'no_such_bundle'" in result.stderr
