"""``tools download``: fetch a packaged bundle named in a ``model_info.json`` index, with its sha256 enforced.

``python -m monai.bundle download --url`` checks no hash and reuses whatever zip or folder is already on disk; this
command is the checked path. It verifies the archive before extracting anything, refuses entries that would land
outside the bundle folder, and only renames a complete extraction into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import IO

from tools.packaging import is_excluded

_URL_SCHEMES = ("http", "https", "file")
#: Default ceiling on what one archive may expand to: well above any bundle with weights under 25 MiB per file.
MAX_EXTRACTED_BYTES = 2 * 1024**3
_ABSOLUTE = re.compile(r"^([A-Za-z]:|[\\/])")


class DownloadError(RuntimeError):
    """The bundle cannot be downloaded as asked: bad index entry, unreachable source, bad or unsafe archive."""


def _is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in _URL_SCHEMES


def _open(location: str, timeout: float) -> IO[bytes]:
    """Open a URL or a local file for reading bytes, with a clear error naming what could not be reached."""
    try:
        if _is_url(location):
            return urllib.request.urlopen(location, timeout=timeout)
        return open(location, "rb")
    except (urllib.error.URLError, OSError, ValueError) as error:
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # it holds the response socket open
        reason = error if isinstance(error, urllib.error.HTTPError) else getattr(error, "reason", error)
        raise DownloadError(f"cannot reach {location}: {reason}") from error


def read_index(index: str, timeout: float = 60.0) -> dict[str, dict]:
    """Read a ``model_info.json`` index from a path, a file:// or an http(s):// URL."""
    with _open(index, timeout) as stream:
        try:
            content = stream.read()
        except OSError as error:
            raise DownloadError(f"cannot read index {index}: {error}") from error
    try:
        data = json.loads(content)
    except ValueError as error:
        raise DownloadError(f"index {index} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise DownloadError(f"index {index} is not a JSON object of '<name>_v<version>' entries")
    return data


def _version_key(version: str) -> tuple:
    """Order versions by their numeric parts; a text part (e.g. ``rc1``) sorts below any number."""
    return tuple((1, int(part), "") if part.isdigit() else (0, 0, part) for part in re.split(r"[.+-]", version))


def index_versions(index_data: dict, name: str) -> list[str]:
    """Versions of ``name`` listed in an index, highest first."""
    versions = []
    for key in index_data:
        entry_name, separator, version = key.rpartition("_v")
        if separator and entry_name == name and version:
            versions.append(version)
    return sorted(versions, key=_version_key, reverse=True)


def select_entry(index_data: dict, name: str, version: str | None, index: str) -> tuple[str, dict]:
    """The version and index entry to download: the one asked for, or the highest version of ``name``."""
    versions = index_versions(index_data, name)
    if not versions:
        names = sorted({key.rpartition("_v")[0] for key in index_data if "_v" in key})
        raise DownloadError(f"unknown bundle {name!r}: not in index {index} (available: {', '.join(names) or 'none'})")
    chosen = versions[0] if version is None else str(version)
    key = f"{name}_v{chosen}"
    if key not in index_data:
        raise DownloadError(f"index {index} has no entry {key!r}; versions of {name} there: {', '.join(versions)}")
    entry = index_data[key]
    if not isinstance(entry, dict) or not entry.get("source") or not entry.get("checksum"):
        raise DownloadError(f"index {index}: entry {key!r} needs both 'source' and 'checksum'")
    return chosen, entry


def _source_location(source: str, index: str) -> str:
    """A relative ``source`` is read relative to a local index, so a folder of zips can be moved as a whole."""
    if _is_url(source) or Path(source).is_absolute():
        return source
    if _is_url(index):
        return urllib.parse.urljoin(index, source)
    return str(Path(index).expanduser().resolve().parent / source)


def fetch(location: str, destination: Path, timeout: float = 60.0) -> str:
    """Copy a URL or file to ``destination`` and return its sha256."""
    digest = hashlib.sha256()
    with _open(location, timeout) as stream, open(destination, "wb") as out:
        try:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        except OSError as error:
            raise DownloadError(f"download of {location} broke off: {error}") from error
    return digest.hexdigest()


def _member_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        return "symlink"
    if info.is_dir():
        return "dir"
    if info.create_system == 3 and mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "special"
    return "file"


def check_expanded_size(archive: zipfile.ZipFile, label: str, max_bytes: int) -> None:
    """Refuse an archive whose entries declare more than ``max_bytes`` in all, before anything is decompressed."""
    declared = sum(info.file_size for info in archive.infolist())
    if declared > max_bytes:
        raise DownloadError(
            f"{label} refused: it expands to {declared} bytes, over the limit of {max_bytes} "
            "(raise --max_extracted_bytes if this bundle is really that large)"
        )


def check_archive(archive: zipfile.ZipFile, name: str, label: str, max_bytes: int = MAX_EXTRACTED_BYTES) -> None:
    """Refuse entries outside ``<name>/``: absolute paths, ``..`` parts, escaping symlinks, special files, and an
    expanded size over ``max_bytes`` (checked from the headers, before the CRC pass decompresses anything)."""
    check_expanded_size(archive, label, max_bytes)
    bad = archive.testzip()
    if bad is not None:
        raise DownloadError(f"{label} is corrupt: entry {bad!r} fails its CRC check")
    for info in archive.infolist():
        member = info.filename
        if _ABSOLUTE.match(member):
            raise DownloadError(f"{label} refused: entry {member!r} is an absolute path")
        parts = [p for p in re.split(r"[\\/]", member) if p not in ("", ".")]
        if ".." in parts:
            raise DownloadError(f"{label} refused: entry {member!r} has a '..' component")
        if not parts or parts[0] != name:
            raise DownloadError(f"{label} refused: entry {member!r} is not under the top folder {name}/")
        kind = _member_kind(info)
        if kind == "special":
            raise DownloadError(f"{label} refused: entry {member!r} is not a regular file, folder or symlink")
        if kind == "symlink":
            target = archive.read(info).decode("utf-8", errors="replace")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname("/".join(parts)), target))
            if _ABSOLUTE.match(target) or not (resolved == name or resolved.startswith(f"{name}/")):
                raise DownloadError(f"{label} refused: symlink {member!r} -> {target!r} points outside {name}/")
    if f"{name}/configs/metadata.json" not in archive.namelist():
        raise DownloadError(f"{label} is not a bundle: it has no {name}/configs/metadata.json")


def _copy_bounded(reader: IO[bytes], writer: IO[bytes], budget: int, member: str, limit: int) -> int:
    """Copy until ``reader`` ends; refuse once more than ``budget`` bytes came out (headers can understate)."""
    written = 0
    for block in iter(lambda: reader.read(1 << 20), b""):
        written += len(block)
        if written > budget:
            raise DownloadError(f"archive refused: entry {member!r} expands past the limit of {limit} bytes in all")
        writer.write(block)
    return written


def extract_archive(archive: zipfile.ZipFile, root: Path, name: str, max_bytes: int = MAX_EXTRACTED_BYTES) -> None:
    """Extract a checked archive under ``root``; symlinks come last so no write can pass through one.

    At most ``max_bytes`` are written in all, counted as they are decompressed.
    """
    budget = max_bytes
    links = []
    for info in archive.infolist():
        parts = [p for p in info.filename.split("/") if p not in ("", ".")]
        target = root.joinpath(*parts)
        kind = _member_kind(info)
        if kind == "dir":
            target.mkdir(parents=True, exist_ok=True)
        elif kind == "symlink":
            links.append((target, archive.read(info).decode("utf-8")))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as reader, open(target, "wb") as writer:
                budget -= _copy_bounded(reader, writer, budget, info.filename, max_bytes)
            if (info.external_attr >> 16) & 0o111:
                target.chmod(0o755)
    real_bundle = (root / name).resolve()
    for link, link_target in links:
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(link_target, link)
        except FileExistsError as error:
            raise DownloadError(
                f"symlink {link.relative_to(root)} clashes with another entry of the same path"
            ) from error
    for link, link_target in links:  # chains of links can escape even when each one looks contained
        if not link.resolve().is_relative_to(real_bundle):
            raise DownloadError(f"symlink {link.relative_to(root)} -> {link_target!r} resolves outside the bundle")


def _tree(folder: Path) -> dict[str, Path]:
    found = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not is_excluded(relative) and (path.is_symlink() or not path.is_dir()):
            found[relative.as_posix()] = path
    return found


def same_bundle(first: Path, second: Path) -> bool:
    """Whether two bundle folders hold the same files (caches and run outputs are ignored)."""
    left, right = _tree(first), _tree(second)
    if left.keys() != right.keys():
        return False
    for key, path in left.items():
        other = right[key]
        if path.is_symlink() or other.is_symlink():
            if not (path.is_symlink() and other.is_symlink() and os.readlink(path) == os.readlink(other)):
                return False
        elif not filecmp.cmp(path, other, shallow=False):
            return False
    return True


def download_bundle(
    name: str,
    index: str,
    bundle_dir: str | Path,
    version: str | None = None,
    overwrite: bool = False,
    timeout: float = 60.0,
    max_extracted_bytes: int = MAX_EXTRACTED_BYTES,
) -> Path:
    """Download, check and extract ``name`` into ``bundle_dir/name``; returns that folder.

    Args:
        name: bundle name, the ``<name>`` of ``<name>_v<version>`` index keys.
        index: ``model_info.json`` as a path, file:// or http(s):// URL.
        bundle_dir: parent folder for the bundle (created when missing).
        version: version to fetch; default the highest in the index.
        overwrite: replace an existing, different ``bundle_dir/name``.
        timeout: seconds to wait on the network per request.
        max_extracted_bytes: refuse an archive that would expand to more bytes than this.
    """
    name = str(name)
    index = str(index)
    version, entry = select_entry(read_index(index, timeout), name, version, index)
    location = _source_location(str(entry["source"]), index)
    expected = str(entry["checksum"]).lower()
    parent = Path(bundle_dir).expanduser()
    if parent.exists() and not parent.is_dir():
        raise DownloadError(f"--bundle_dir {parent} is a file, not a folder")
    created_parent = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    destination = parent / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-download-", dir=parent))
    try:
        zip_path = staging / f"{name}_v{version}.zip"
        actual = fetch(location, zip_path, timeout)
        if actual != expected:
            raise DownloadError(f"checksum mismatch for {location}: expected sha256 {expected}, got {actual}")
        label = f"archive {location}"
        try:
            with zipfile.ZipFile(zip_path) as archive:
                check_archive(archive, name, label, max_extracted_bytes)
                extract_archive(archive, staging / "extracted", name, max_extracted_bytes)
        except (zipfile.BadZipFile, EOFError, zlib.error) as error:
            raise DownloadError(f"{label} is a corrupt zip: {error}") from error
        extracted = staging / "extracted" / name
        if destination.exists() or destination.is_symlink():
            if same_bundle(destination, extracted):
                print(f"{destination} already holds {name} v{version}; left as it is")
                return destination
            if not overwrite:
                raise DownloadError(
                    f"{destination} exists and differs from {name} v{version}; pass --overwrite to replace it"
                )
            os.rename(destination, staging / "previous")
            try:
                os.rename(extracted, destination)
            except OSError:
                os.rename(staging / "previous", destination)
                raise
        else:
            os.rename(extracted, destination)
        return destination
    except BaseException:
        if created_parent:
            shutil.rmtree(staging, ignore_errors=True)
            if not any(parent.iterdir()):
                parent.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_cli(
    name: str,
    version: str | None = None,
    index: str | None = None,
    bundle_dir: str | None = None,
    overwrite: bool = False,
    timeout: float = 60.0,
    max_extracted_bytes: int = MAX_EXTRACTED_BYTES,
) -> None:
    """Download bundle NAME from the index into BUNDLE_DIR/NAME, with its sha256 enforced.

    Args:
        name: bundle name.
        version: version to fetch (default: the highest in the index). Quote versions fire would read as a
            number, e.g. --version '"0.10"'.
        index: model_info.json path or URL (file://, http://, https://).
        bundle_dir: folder that receives NAME/ (``--bundle-dir`` or ``--bundle_dir``).
        overwrite: replace an existing, different NAME/ folder.
        timeout: network timeout in seconds.
        max_extracted_bytes: refuse archives that expand to more bytes than this (default 2 GiB).
    """
    if index is None or bundle_dir is None:
        raise SystemExit("download: both --index and --bundle_dir are required")
    try:
        chosen = None if version is None else str(version)
        path = download_bundle(name, index, bundle_dir, chosen, overwrite, timeout, int(max_extracted_bytes))
    except DownloadError as error:
        print(f"download failed: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    print(f"{name}: {path}")
