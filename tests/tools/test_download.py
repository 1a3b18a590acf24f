"""``tools download`` over loopback HTTP: hashes enforced, unsafe archives refused, nothing partial left behind."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import run_bundle
from tools import REPO_ROOT
from tools.download import DownloadError, download_bundle, extract_archive, same_bundle
from tools.packaging import INDEX_NAME, package

pytestmark = pytest.mark.usefixtures("offline_schema")  # tools package runs verify


@pytest.fixture
def site(tmp_path, serve_directory):
    """A folder served on 127.0.0.1; returns (folder, base URL)."""
    folder = tmp_path / "site"
    folder.mkdir()
    return folder, serve_directory(folder)


@pytest.fixture
def published(site, tiny_bundle):
    """The tiny bundle packaged into the served site; returns the index URL."""
    folder, url = site
    package([tiny_bundle], folder, base_url=url)
    return f"{url}/{INDEX_NAME}"


def _nothing_left(bundle_dir: Path) -> bool:
    return not bundle_dir.exists() or not any(bundle_dir.iterdir())


def _publish_zip(site: tuple[Path, str], zip_name: str, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> str:
    """Serve a hand-made zip with a correct checksum, so only its content can be refused."""
    folder, url = site
    with zipfile.ZipFile(folder / zip_name, "w") as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return _publish_file(site, zip_name, "tiny_bundle_v0.1.0")


def _publish_file(site: tuple[Path, str], file_name: str, key: str, checksum: str | None = None) -> str:
    folder, url = site
    digest = checksum or hashlib.sha256((folder / file_name).read_bytes()).hexdigest()
    index_path = folder / INDEX_NAME
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    index[key] = {"checksum": digest, "source": f"{url}/{file_name}"}
    index_path.write_text(json.dumps(index))
    return f"{url}/{INDEX_NAME}"


def _symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


METADATA_ENTRY = ("tiny_bundle/configs/metadata.json", b'{"version": "0.1.0"}')


def test_download_then_monai_bundle_run(published, tiny_bundle, tmp_path):
    """The CLI with --bundle-dir (hyphen form), then `python -m monai.bundle run` in the result."""
    bundle_dir = tmp_path / "downloaded"
    command = [
        sys.executable,
        "-m",
        "tools",
        "download",
        "tiny_bundle",
        "--index",
        published,
        "--bundle-dir",
        str(bundle_dir),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    downloaded = bundle_dir / "tiny_bundle"
    assert same_bundle(downloaded, tiny_bundle)
    assert [p.name for p in bundle_dir.iterdir()] == ["tiny_bundle"]  # no temp folder or zip left

    run_bundle(downloaded, "inference.json")
    assert json.loads((downloaded / "outputs" / "prediction.json").read_text()) == {"shape": [1, 2, 16, 16, 16]}


def _set_version(bundle: Path, version: str) -> None:
    metadata_path = bundle / "configs" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["version"] = version
    metadata["changelog"][version] = "test release"
    metadata_path.write_text(json.dumps(metadata))


def test_highest_version_is_default_and_versions_can_be_named(site, make_bundle, tmp_path):
    folder, url = site
    for parent, version in (("old", "0.9.0"), ("new", "0.10.0")):  # 0.10.0 is higher, though not as text
        bundle = make_bundle(f"{parent}/tiny_bundle")
        _set_version(bundle, version)
        package([bundle], folder, base_url=url)
    index = f"{url}/{INDEX_NAME}"

    latest = download_bundle("tiny_bundle", index, tmp_path / "latest")
    assert json.loads((latest / "configs" / "metadata.json").read_text())["version"] == "0.10.0"
    pinned = download_bundle("tiny_bundle", index, tmp_path / "pinned", version="0.9.0")
    assert json.loads((pinned / "configs" / "metadata.json").read_text())["version"] == "0.9.0"


def test_local_index_path_works(tiny_bundle, tmp_path):
    package([tiny_bundle], tmp_path / "release")
    result = download_bundle("tiny_bundle", str(tmp_path / "release" / INDEX_NAME), tmp_path / "bundles_out")
    assert same_bundle(result, tiny_bundle)


def test_wrong_hash_is_refused_and_nothing_left(site, published, tmp_path):
    folder, _ = site
    index = json.loads((folder / INDEX_NAME).read_text())
    actual = index["tiny_bundle_v0.1.0"]["checksum"]
    index["tiny_bundle_v0.1.0"]["checksum"] = "0" * 64
    (folder / INDEX_NAME).write_text(json.dumps(index))
    bundle_dir = tmp_path / "downloaded"
    with pytest.raises(DownloadError, match="checksum mismatch") as error:
        download_bundle("tiny_bundle", published, bundle_dir)
    assert f"expected sha256 {'0' * 64}, got {actual}" in str(error.value)
    assert "tiny_bundle_v0.1.0.zip" in str(error.value)
    assert _nothing_left(bundle_dir)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([METADATA_ENTRY, ("tiny_bundle/../evil.txt", b"x")], "entry 'tiny_bundle/../evil.txt' has a '..' component"),
        ([METADATA_ENTRY, ("/tmp/synthbrain_evil.txt", b"x")], "entry '/tmp/synthbrain_evil.txt' is an absolute path"),
        (
            [METADATA_ENTRY, _symlink("tiny_bundle/link", "../../outside")],
            "symlink 'tiny_bundle/link' -> '../../outside'",
        ),
        ([METADATA_ENTRY, _symlink("tiny_bundle/link", "/etc/passwd")], "points outside tiny_bundle/"),
        ([("other_name/configs/metadata.json", b"{}")], "is not under the top folder tiny_bundle/"),
        ([("tiny_bundle/README.md", b"no configs")], "has no tiny_bundle/configs/metadata.json"),
        (
            # Each link looks contained, but sub/up -> .. makes "sub/up/../x" leave the bundle.
            [METADATA_ENTRY, _symlink("tiny_bundle/sub/up", ".."), _symlink("tiny_bundle/chain", "sub/up/../x")],
            "resolves outside the bundle",
        ),
    ],
    ids=["dot-dot", "absolute", "symlink-relative", "symlink-absolute", "top-folder", "not-a-bundle", "symlink-chain"],
)
def test_unsafe_archives_are_refused(site, tmp_path, entries, message):
    index = _publish_zip(site, "tiny_bundle_v0.1.0.zip", entries)
    bundle_dir = tmp_path / "downloaded"
    with pytest.raises(DownloadError, match="refused|not a bundle|resolves outside") as error:
        download_bundle("tiny_bundle", index, bundle_dir)
    assert message in str(error.value)
    assert _nothing_left(bundle_dir)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/synthbrain_evil.txt").exists()


def test_unknown_bundle_name(published, tmp_path):
    with pytest.raises(
        DownloadError, match="unknown bundle 'brain_nope': not in index .* \\(available: tiny_bundle\\)"
    ):
        download_bundle("brain_nope", published, tmp_path / "downloaded")
    assert _nothing_left(tmp_path / "downloaded")


def test_missing_version(published, tmp_path):
    with pytest.raises(DownloadError, match="has no entry 'tiny_bundle_v9.9.9'; versions of tiny_bundle there: 0.1.0"):
        download_bundle("tiny_bundle", published, tmp_path / "downloaded", version="9.9.9")


def test_unreachable_source_and_index(site, closed_port, tmp_path):
    dead = f"http://127.0.0.1:{closed_port}"
    folder, url = site
    index = f"{url}/{INDEX_NAME}"
    (folder / INDEX_NAME).write_text(
        json.dumps({"tiny_bundle_v0.1.0": {"checksum": "0" * 64, "source": f"{dead}/x.zip"}})
    )
    with pytest.raises(DownloadError, match=f"cannot reach {dead}/x.zip"):
        download_bundle("tiny_bundle", index, tmp_path / "downloaded", timeout=5)
    assert _nothing_left(tmp_path / "downloaded")
    with pytest.raises(DownloadError, match=f"cannot reach {dead}/{INDEX_NAME}"):
        download_bundle("tiny_bundle", f"{dead}/{INDEX_NAME}", tmp_path / "downloaded", timeout=5)
    with pytest.raises(DownloadError, match=f"cannot reach {url}/missing.json: HTTP Error 404"):
        download_bundle("tiny_bundle", f"{url}/missing.json", tmp_path / "downloaded", timeout=5)


def test_corrupt_zip(site, published, tmp_path):
    folder, _ = site
    (folder / "garbage.zip").write_bytes(b"this is not a zip archive")
    index = _publish_file(site, "garbage.zip", "tiny_bundle_v0.2.0")
    with pytest.raises(DownloadError, match="garbage.zip is a corrupt zip"):
        download_bundle("tiny_bundle", index, tmp_path / "downloaded", version="0.2.0")
    assert _nothing_left(tmp_path / "downloaded")

    # A zip whose data was damaged after packaging (checksum taken after the damage): the CRC check catches it.
    data = bytearray((folder / "tiny_bundle_v0.1.0.zip").read_bytes())
    with zipfile.ZipFile(folder / "tiny_bundle_v0.1.0.zip") as archive:
        info = archive.getinfo("tiny_bundle/configs/inference.json")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 10] ^= 0xFF
    (folder / "damaged.zip").write_bytes(bytes(data))
    index = _publish_file(site, "damaged.zip", "tiny_bundle_v0.3.0")
    with pytest.raises(DownloadError, match="damaged.zip is (a )?corrupt"):
        download_bundle("tiny_bundle", index, tmp_path / "downloaded", version="0.3.0")
    assert _nothing_left(tmp_path / "downloaded")


def test_existing_bundle_is_kept_unless_overwrite(published, tiny_bundle, tmp_path):
    bundle_dir = tmp_path / "downloaded"
    first = download_bundle("tiny_bundle", published, bundle_dir)
    (first / "outputs").mkdir()
    (first / "outputs" / "result.txt").write_text("a user's run output")
    assert download_bundle("tiny_bundle", published, bundle_dir) == first  # same bundle: left as it is
    assert (first / "outputs" / "result.txt").exists()

    (first / "LICENSE").write_text("edited by the user\n")
    with pytest.raises(DownloadError, match="exists and differs from tiny_bundle v0.1.0; pass --overwrite"):
        download_bundle("tiny_bundle", published, bundle_dir)
    assert (first / "LICENSE").read_text() == "edited by the user\n"

    replaced = download_bundle("tiny_bundle", published, bundle_dir, overwrite=True)
    assert same_bundle(replaced, tiny_bundle)
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["tiny_bundle"]


def test_plain_monai_bundle_download(site, published, tiny_bundle, tmp_path):
    """MONAI's own path works with our zips, but checks no hash and reuses what is already on disk."""
    _, url = site
    bundle_dir = tmp_path / "monai_download"
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def monai_download(zip_url: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "monai.bundle", "download", "--name", "tiny_bundle"]
        command += ["--bundle_dir", str(bundle_dir), "--url", zip_url]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)

    result = monai_download(f"{url}/tiny_bundle_v0.1.0.zip")
    assert result.returncode == 0, result.stderr
    assert same_bundle(bundle_dir / "tiny_bundle", tiny_bundle)

    # A URL that does not exist still "succeeds": the cached tiny_bundle.zip and folder are reused unchecked.
    result = monai_download(f"{url}/does_not_exist.zip")
    assert result.returncode == 0, result.stderr
    assert same_bundle(bundle_dir / "tiny_bundle", tiny_bundle)


def test_archive_expanding_past_the_limit_is_refused_before_extraction(site, tmp_path):
    """A zip of about 200 KB that expands to 200 MB (zeros compress about 1000:1)."""
    folder, _ = site
    zip_path = folder / "bomb.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(*METADATA_ENTRY)
        with archive.open("tiny_bundle/models/zeros.pt", "w") as writer:
            block = bytes(1 << 20)
            for _ in range(200):
                writer.write(block)
    assert zip_path.stat().st_size < 300_000
    index = _publish_file(site, "bomb.zip", "tiny_bundle_v0.1.0")
    bundle_dir = tmp_path / "out"
    with pytest.raises(DownloadError, match=r"expands to 209715\d\d\d bytes, over the limit of 10000000"):
        download_bundle("tiny_bundle", index, bundle_dir, max_extracted_bytes=10_000_000)
    assert _nothing_left(bundle_dir)


def test_extraction_stops_at_the_limit_even_when_headers_understate(tmp_path):
    """The header check is bypassed here; the count kept while decompressing still stops the write."""
    zip_path = tmp_path / "big.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(*METADATA_ENTRY)
        archive.writestr("tiny_bundle/models/zeros.pt", bytes(50_000))
    with zipfile.ZipFile(zip_path) as archive, pytest.raises(DownloadError, match="zeros.pt' expands past the limit"):
        extract_archive(archive, tmp_path / "extracted", "tiny_bundle", max_bytes=20_000)
    assert (tmp_path / "extracted" / "tiny_bundle" / "models" / "zeros.pt").stat().st_size <= 20_000
