"""``tools download-weights``: fetch the files a bundle's ``large_files.yml`` lists, with the given hash enforced.

Each file is fetched by MONAI's ``monai.apps.utils.download_url``, the call ``monai.bundle download_large_files``
makes per entry. What that command lacks is added here: an entry without a usable hash is refused (MONAI only
warns and keeps the file), every entry is checked before the first download, a path must stay inside the bundle,
``--profile`` picks the entries under ``models/<profile>/``, and each error names the file and its URL.
Publishers give md5 or sha256 (model-zoo accepts both); md5 is accepted as the publisher's word but reported as
the weaker hash, since files with the same md5 can be made on purpose.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
from pathlib import Path
from typing import Any

import yaml

from tools.packaging import BundleNotFoundError, resolve_bundle

LARGE_FILES_NAMES = ("large_files.yml", "large_files.yaml", "large_files.json")
HASH_LENGTHS = {"md5": 32, "sha256": 64}
WEAK_HASHES = frozenset({"md5"})


class LargeFilesError(RuntimeError):
    """A large_files list cannot be used as it stands, or one of its files cannot be fetched as listed."""


def large_files_lists(bundle_dir: Path) -> list[tuple[str, Any]]:
    """(file name, parsed content) of each large_files file in the bundle; a parse failure raises, naming the file."""
    found = []
    for file_name in LARGE_FILES_NAMES:
        path = Path(bundle_dir) / file_name
        if not path.is_file():
            continue
        try:
            content = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        except (yaml.YAMLError, json.JSONDecodeError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise LargeFilesError(f"{file_name}: does not parse: {type(error).__name__}: {first_line}") from error
        found.append((file_name, content))
    return found


def entries_of(content: Any, file_name: str) -> list:
    """The ``large_files:`` list of a parsed file, or an error saying what the list must look like."""
    entries = content.get("large_files") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise LargeFilesError(f"{file_name}: needs a 'large_files:' list of {{path, url, hash_val, hash_type}}")
    return entries


def entry_label(entry: Any, index: int) -> str:
    return str(entry.get("path")) if isinstance(entry, dict) and entry.get("path") else f"entry {index}"


def entry_problems(entry: Any, index: int) -> list[str]:
    """What makes one entry unusable: no path or url, a path leaving the bundle, a missing or malformed hash."""
    label = entry_label(entry, index)
    if not isinstance(entry, dict):
        return [f"{label}: is not a mapping"]
    problems = []
    path = str(entry.get("path") or "")
    if not path:
        problems.append(f"{label}: has no path")
    elif Path(path).is_absolute() or ".." in Path(path).parts:
        problems.append(f"{label}: path must be relative and stay inside the bundle")
    if not entry.get("url"):
        problems.append(f"{label}: has no url")
    hash_type = str(entry.get("hash_type", "")).lower()
    if hash_type not in HASH_LENGTHS:
        problems.append(f"{label}: hash_type is {hash_type!r}, not one of {sorted(HASH_LENGTHS)}")
    elif not re.fullmatch(rf"[0-9a-fA-F]{{{HASH_LENGTHS[hash_type]}}}", str(entry.get("hash_val") or "")):
        problems.append(f"{label}: hash_val is not a {HASH_LENGTHS[hash_type]}-hex {hash_type}")
    return problems


def weak_hash_warnings(bundle_dir: Path) -> list[str]:
    """One line per entry checked only by a weak hash (md5): accepted, but worth replacing by a sha256."""
    warnings = []
    try:
        lists = large_files_lists(bundle_dir)
    except LargeFilesError:
        return []  # reported as a problem by verify
    for file_name, content in lists:
        entries = content.get("large_files") if isinstance(content, dict) else None
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and str(entry.get("hash_type", "")).lower() in WEAK_HASHES:
                warnings.append(
                    f"{Path(bundle_dir).name}: {file_name}: {entry_label(entry, index)}: checked by md5 only, a weaker "
                    "hash than sha256 (accepted as the publisher's; record the sha256 once it is downloaded)"
                )
    return warnings


def select_entries(entries: list[dict], profile: str | None, file_name: str) -> list[dict]:
    """All entries, or those under ``models/<profile>/``; an unknown profile names the ones there are."""
    if profile is None:
        return entries
    chosen = [e for e in entries if Path(e["path"]).parts[:2] == ("models", profile)]
    if not chosen:
        known = sorted({Path(e["path"]).parts[1] for e in entries if len(Path(e["path"]).parts) > 2})
        raise LargeFilesError(f"{file_name}: no entry under models/{profile}/ (profiles there: {known or 'none'})")
    return chosen


def checked_entries(bundle_dir: Path, profile: str | None = None) -> list[dict]:
    """Every entry to fetch, all validated before any download starts."""
    lists = large_files_lists(bundle_dir)
    if not lists:
        raise LargeFilesError(f"{bundle_dir}: has no {' / '.join(LARGE_FILES_NAMES)}, so nothing to download")
    selected = []
    for file_name, content in lists:
        entries = entries_of(content, file_name)
        problems = [p for index, entry in enumerate(entries) for p in entry_problems(entry, index)]
        if problems:
            raise LargeFilesError(f"{file_name}: " + "; ".join(problems))
        selected += select_entries(entries, profile, file_name)
    return selected


def download_weights(bundle: str | Path, profile: str | None = None, progress: bool = True) -> list[Path]:
    """Fetch the listed files into the bundle, each checked against its md5 or sha256; returns their paths.

    A file already present is kept only if its hash matches; a mismatch raises and leaves no new file behind.
    """
    bundle_dir = resolve_bundle(bundle)
    entries = checked_entries(bundle_dir, profile)
    # MONAI (seconds to import) only once the lists are known good, so a bad list or profile is named at once
    from monai.apps.utils import HashCheckError, download_url

    fetched = []
    for entry in entries:
        target = bundle_dir / entry["path"]
        if not target.resolve().is_relative_to(bundle_dir.resolve()):
            raise LargeFilesError(f"{entry['path']}: resolves outside the bundle {bundle_dir}")
        hash_type, hash_val = str(entry["hash_type"]).lower(), str(entry["hash_val"]).lower()
        try:
            download_url(entry["url"], target, hash_val=hash_val, hash_type=hash_type, progress=progress)
        except HashCheckError as error:
            where = "the file already there" if "existing file" in str(error) else "the downloaded file"
            raise LargeFilesError(
                f"{target}: {hash_type} of {where} differs from large_files ({hash_val}); source {entry['url']}"
                + (" (delete it to download again)" if where == "the file already there" else "; nothing was kept")
            ) from None
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            raise LargeFilesError(f"{target}: cannot download {entry['url']}: {error}") from error
        if hash_type in WEAK_HASHES:
            print(f"warning: {target} is checked by md5 only, a weaker hash than sha256", file=sys.stderr)
        fetched.append(target)
    return fetched


def download_weights_cli(bundle: str, profile: str | None = None, progress: bool = True) -> None:
    """Download the files of BUNDLE's large_files.yml (all, or those of --profile) with their hashes enforced.

    Args:
        bundle: bundle folder or name under bundles/.
        profile: only the entries under models/<profile>/ (e.g. ukb).
        progress: show a progress bar per file.
    """
    try:
        paths = download_weights(bundle, None if profile is None else str(profile), progress)
    except (BundleNotFoundError, LargeFilesError) as error:
        print(f"download-weights failed: {error}", file=sys.stderr)
        raise SystemExit(1) from error
    for path in paths:
        print(f"ok  {path}")
