"""``tools package``: reproducible bundle zips and the ``model_info.json`` index that ``tools download`` reads.

The same bundle tree must give the same bytes, so that a checksum recorded once stays valid: entries are sorted,
timestamps and permissions are fixed, and run outputs or caches never enter the archive.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Iterable
from pathlib import Path

from bundle_runtime.atomic_io import atomic_path
from tools import BUNDLES_DIR
from tools.sync_common import COMMON_TARGET, drift

INDEX_NAME = "model_info.json"
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip can hold
FILE_MODE = 0o644
DIR_MODE = 0o755
# Caches and run products: never part of a published bundle, wherever they appear.
EXCLUDED_NAMES = frozenset({"__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".ruff_cache", ".git", ".DS_Store"})
EXCLUDED_SUFFIXES = frozenset({".pyc", ".pyo"})
# Folders that bundle configs write into (evaluation reports, logs, generated samples), only at the top level so
# that e.g. a ``scripts/eval`` package is still packaged.
EXCLUDED_TOP_DIRS = frozenset({"data", "eval", "output", "outputs", "runs"})
_VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]*$")


class BundleNotFoundError(ValueError):
    """A bundle argument is neither a folder nor the name of a folder under bundles/."""


class PackagingError(RuntimeError):
    """A bundle cannot be packaged as it stands (stale shared code, no version, a symlink)."""


def available_bundles(bundles_dir: Path = BUNDLES_DIR) -> list[str]:
    """Names of the bundle folders under ``bundles_dir`` (those with a ``configs/`` folder)."""
    if not bundles_dir.is_dir():
        return []
    return sorted(p.name for p in bundles_dir.iterdir() if (p / "configs").is_dir() and not p.name.startswith("."))


def resolve_bundle(bundle: str | Path, bundles_dir: Path = BUNDLES_DIR) -> Path:
    """Accept a bundle as a path or as a name under ``bundles_dir``, the two ways users name one."""
    candidate = Path(str(bundle)).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    by_name = bundles_dir / str(bundle)
    if by_name.is_dir():
        return by_name.resolve()
    known = ", ".join(available_bundles(bundles_dir)) or "none"
    raise BundleNotFoundError(f"unknown bundle {str(bundle)!r}: not a folder, nor a bundle in {bundles_dir} ({known})")


def is_excluded(relative: Path) -> bool:
    """Whether a path inside a bundle is a cache or a run product rather than part of the bundle."""
    parts = relative.parts
    if any(part in EXCLUDED_NAMES for part in parts) or relative.suffix in EXCLUDED_SUFFIXES:
        return True
    return bool(parts) and parts[0] in EXCLUDED_TOP_DIRS


def bundle_files(bundle_dir: Path) -> list[Path]:
    """Files that make up the bundle, relative to it and sorted, so every consumer sees the same list."""
    bundle_dir = Path(bundle_dir)
    files: list[Path] = []
    for root, dir_names, file_names in os.walk(bundle_dir):
        root_path = Path(root)
        kept_dirs = []
        for dir_name in dir_names:
            relative = (root_path / dir_name).relative_to(bundle_dir)
            if is_excluded(relative):
                continue
            if (root_path / dir_name).is_symlink():
                raise PackagingError(f"{bundle_dir / relative}: symlinks are not packaged; replace it with the files")
            kept_dirs.append(dir_name)
        dir_names[:] = kept_dirs
        for file_name in file_names:
            relative = (root_path / file_name).relative_to(bundle_dir)
            if is_excluded(relative):
                continue
            if (root_path / file_name).is_symlink():
                raise PackagingError(f"{bundle_dir / relative}: symlinks are not packaged; replace it with the file")
            files.append(relative)
    return sorted(files, key=lambda p: p.as_posix())


def bundle_version(bundle_dir: Path) -> str:
    """The ``version`` of ``configs/metadata.json``, checked to be usable in a file name."""
    metadata_path = Path(bundle_dir) / "configs" / "metadata.json"
    try:
        version = json.loads(metadata_path.read_text())["version"]
    except FileNotFoundError as error:
        raise PackagingError(f"{metadata_path}: missing, so the bundle has no version") from error
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise PackagingError(f"{metadata_path}: no readable 'version' ({error})") from error
    if not isinstance(version, str) or not _VERSION_PATTERN.match(version):
        raise PackagingError(f"{metadata_path}: version {version!r} is not a plain version string like '0.1.0'")
    return version


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks so large weights do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _zip_info(name: str, is_dir: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.create_system = 3  # unix, so the permission bits below are read back the same everywhere
    if is_dir:
        info.external_attr = ((0o040000 | DIR_MODE) << 16) | 0x10
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.external_attr = (0o100000 | FILE_MODE) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
    return info


def write_bundle_zip(bundle_dir: Path, zip_path: Path, name: str | None = None) -> None:
    """Write the bundle under a top-level ``<name>/`` folder; a temp file is renamed so no half zip is left."""
    bundle_dir = Path(bundle_dir)
    name = name or bundle_dir.name
    files = bundle_files(bundle_dir)
    folders = {Path()}
    for relative in files:
        folders.update(relative.parents)
    entries = [(f"{name}/{p.as_posix()}/" if p != Path() else f"{name}/", None) for p in folders]
    entries += [(f"{name}/{p.as_posix()}", bundle_dir / p) for p in files]
    entries.sort(key=lambda entry: entry[0])

    def write_archive(temporary: Path) -> None:
        with zipfile.ZipFile(temporary, "w") as archive:
            for arcname, source in entries:
                if source is None:
                    archive.writestr(_zip_info(arcname, is_dir=True), b"")
                    continue
                info = _zip_info(arcname, is_dir=False)
                info.file_size = source.stat().st_size  # lets zipfile pick zip64 for weights over 2 GiB
                with open(source, "rb") as reader, archive.open(info, "w") as writer:
                    shutil.copyfileobj(reader, writer, 1 << 20)
        os.chmod(temporary, FILE_MODE)

    atomic_path(zip_path, write_archive)


def check_common_copy(bundle_dir: Path) -> None:
    """Refuse a bundle whose ``scripts/common`` copy is stale: the zip must carry the current shared code."""
    if not (Path(bundle_dir) / COMMON_TARGET).is_dir():
        return
    problems = drift(Path(bundle_dir))
    if problems:
        details = "\n  ".join(problems)
        raise PackagingError(
            f"{bundle_dir}: scripts/common is out of date with bundle_runtime; run `python -m tools sync-common` "
            f"first:\n  {details}"
        )


def package_bundle(bundle: str | Path, out_dir: Path, base_url: str | None = None) -> tuple[str, dict[str, str]]:
    """Zip one bundle into ``out_dir`` and return its index key ``<name>_v<version>`` and entry."""
    bundle_dir = resolve_bundle(bundle)
    name = bundle_dir.name
    version = bundle_version(bundle_dir)
    check_common_copy(bundle_dir)
    out_dir = Path(out_dir)
    zip_name = f"{name}_v{version}.zip"
    zip_path = out_dir / zip_name
    write_bundle_zip(bundle_dir, zip_path, name=name)
    base = base_url if base_url is not None else out_dir.resolve().as_uri()
    return f"{name}_v{version}", {"checksum": sha256_file(zip_path), "source": f"{base.rstrip('/')}/{zip_name}"}


def update_index(out_dir: Path, entries: dict[str, dict[str, str]]) -> Path:
    """Merge ``entries`` into ``out_dir/model_info.json`` (sorted keys, written atomically)."""
    out_dir = Path(out_dir)
    index_path = out_dir / INDEX_NAME
    index: dict = {}
    if index_path.exists():
        try:
            index = json.loads(index_path.read_text())
        except json.JSONDecodeError as error:
            raise PackagingError(f"{index_path}: existing index is not valid JSON ({error})") from error
        if not isinstance(index, dict):
            raise PackagingError(f"{index_path}: existing index is not a JSON object")
    index.update(entries)

    def write_index(temporary: Path) -> None:
        temporary.write_text(json.dumps(index, indent=4, sort_keys=True) + "\n")
        os.chmod(temporary, FILE_MODE)

    atomic_path(index_path, write_index)
    return index_path


def check_verified(bundle: str | Path, schema: str | Path | None = None, networks: bool = True) -> None:
    """Refuse a bundle that fails ``tools verify``: a published zip must meet the rules it is checked against."""
    from tools.verify import verify_bundle  # verify imports this module

    problems = verify_bundle(resolve_bundle(bundle), schema=schema, networks=networks)
    if problems:
        details = "\n  ".join(problems)
        raise PackagingError(f"{bundle}: fails `python -m tools verify`, so it is not packaged:\n  {details}")


def package(
    bundles: Iterable[str | Path],
    out: str | Path,
    base_url: str | None = None,
    schema: str | Path | None = None,
    networks: bool = True,
) -> dict[str, dict[str, str]]:
    """Verify every bundle, then package each and update the index once, so a failure writes nothing."""
    bundles = list(bundles)
    for bundle in bundles:
        check_verified(bundle, schema, networks)
    entries = dict(package_bundle(bundle, Path(out), base_url) for bundle in bundles)
    update_index(Path(out), entries)
    return entries


def package_cli(
    *bundles: str,
    out: str | None = None,
    base_url: str | None = None,
    schema: str | None = None,
    networks: bool = True,
) -> None:
    """Verify each bundle, write ``<name>_v<version>.zip`` per bundle into ``--out`` and merge them into
    ``model_info.json`` there; a bundle that fails verify stops the command before anything is written.

    Args:
        bundles: bundle folders or names under bundles/.
        out: output folder for the zips and the index.
        base_url: URL the zips will be served from (default: a file:// URL of ``out``).
        schema: local metadata schema for the verify step (offline use; see docs/tools.md).
        networks: set to False to skip building and running the networks during verify.
    """
    if out is None:
        raise SystemExit("package: --out DIR is required")
    if not bundles:
        raise SystemExit("package: name at least one bundle")
    try:
        entries = package([str(b) for b in bundles], out, base_url, schema, networks)
    except (BundleNotFoundError, PackagingError) as error:
        print(f"package failed: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    for key, entry in entries.items():
        print(f"{key}: {entry['source']} sha256={entry['checksum']}")
    print(f"index: {Path(out) / INDEX_NAME}")
