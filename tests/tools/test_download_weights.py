"""``tools download-weights`` over loopback HTTP: md5 or sha256 enforced, profiles, bad entries refused first."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tools import REPO_ROOT
from tools.large_files import LargeFilesError, download_weights

AUTOENCODER = b"autoencoder weights"
DIFFUSION = b"diffusion weights"


@pytest.fixture
def served(tmp_path: Path, serve_directory) -> str:
    """Two weight files on a loopback server; returns its base URL."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "ae.pt").write_bytes(AUTOENCODER)
    (site / "unet.pt").write_bytes(DIFFUSION)
    return serve_directory(site)


def _list(bundle: Path, *entries: tuple[str, str, str, str]) -> None:
    lines = ["large_files:"]
    for path, url, hash_type, hash_val in entries:
        lines += [f"  - path: {path}", f"    url: {url}", f"    hash_type: {hash_type}", f'    hash_val: "{hash_val}"']
    (bundle / "large_files.yml").write_text("\n".join(lines) + "\n")


def _entries(url: str) -> list[tuple[str, str, str, str]]:
    """The publisher's md5 for one file (as for the ukb weights) and a sha256 for the other."""
    return [
        ("models/ukb/autoencoder.pt", f"{url}/ae.pt", "md5", hashlib.md5(AUTOENCODER).hexdigest()),
        ("models/ukb/diffusion.pt", f"{url}/unet.pt", "sha256", hashlib.sha256(DIFFUSION).hexdigest()),
    ]


def test_files_of_a_profile_are_fetched_with_their_hash_checked(tiny_bundle: Path, served: str) -> None:
    _list(tiny_bundle, *_entries(served), ("models/other/x.pt", f"{served}/missing.pt", "md5", "0" * 32))
    paths = download_weights(tiny_bundle, profile="ukb", progress=False)
    assert paths == [tiny_bundle / "models/ukb/autoencoder.pt", tiny_bundle / "models/ukb/diffusion.pt"]
    assert paths[0].read_bytes() == AUTOENCODER and paths[1].read_bytes() == DIFFUSION
    assert not (tiny_bundle / "models" / "other").exists()  # the other profile was not asked for
    assert download_weights(tiny_bundle, profile="ukb", progress=False) == paths  # present and matching: kept


@pytest.mark.parametrize("hash_type", ["md5", "sha256"])
def test_a_hash_mismatch_names_the_file_and_keeps_nothing(tiny_bundle: Path, served: str, hash_type: str) -> None:
    wrong = "0" * (32 if hash_type == "md5" else 64)
    _list(tiny_bundle, ("models/ukb/autoencoder.pt", f"{served}/ae.pt", hash_type, wrong))
    target = tiny_bundle / "models" / "ukb" / "autoencoder.pt"
    with pytest.raises(LargeFilesError, match=f"{target}: {hash_type} of the downloaded file differs"):
        download_weights(tiny_bundle, progress=False)
    assert not target.exists()


def test_a_tampered_file_already_there_is_refused(tiny_bundle: Path, served: str) -> None:
    _list(tiny_bundle, *_entries(served))
    target = tiny_bundle / "models" / "ukb" / "autoencoder.pt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"something else")
    with pytest.raises(LargeFilesError, match="md5 of the file already there differs"):
        download_weights(tiny_bundle, progress=False)


@pytest.mark.parametrize(
    ("hash_type", "hash_val", "path", "message"),
    [
        ("md5", "", "models/ukb/a.pt", "hash_val is not a 32-hex md5"),
        ("sha1", "0" * 40, "models/ukb/a.pt", "hash_type is 'sha1'"),
        ("md5", "0" * 32, "../outside.pt", "path must be relative and stay inside the bundle"),
    ],
)
def test_unusable_entries_are_refused_before_any_download(
    tiny_bundle: Path, served: str, hash_type: str, hash_val: str, path: str, message: str
) -> None:
    good = _entries(served)[0]
    _list(tiny_bundle, good, (path, f"{served}/unet.pt", hash_type, hash_val))
    with pytest.raises(LargeFilesError, match=message):
        download_weights(tiny_bundle, progress=False)
    assert not (tiny_bundle / good[0]).exists()  # the good entry before it was not fetched either


def test_cli_names_an_unknown_profile(tiny_bundle: Path, served: str) -> None:
    _list(tiny_bundle, *_entries(served))
    command = [sys.executable, "-m", "tools", "download-weights", str(tiny_bundle), "--profile", "adni"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "no entry under models/adni/ (profiles there: ['ukb'])" in result.stderr

    command = [sys.executable, "-m", "tools", "download-weights", str(tiny_bundle), "--progress", "False"]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"ok  {tiny_bundle / 'models/ukb/autoencoder.pt'}" in result.stdout
    assert "checked by md5 only" in result.stderr
