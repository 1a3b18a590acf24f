"""Copy the shared bundle code into each bundle, or check that the copies match."""

from __future__ import annotations

import filecmp
import shutil
from pathlib import Path

from tools import BUNDLES_DIR

COMMON_SOURCE = Path(__file__).resolve().parent / "common"
COMMON_TARGET = Path("scripts") / "common"


def _source_files() -> list[Path]:
    return sorted(p.relative_to(COMMON_SOURCE) for p in COMMON_SOURCE.rglob("*.py"))


def bundles_using_common(bundles_dir: Path = BUNDLES_DIR) -> list[Path]:
    """Bundles that carry a ``scripts/common`` copy (a bundle opts in by having the folder)."""
    return sorted(p.parent.parent for p in bundles_dir.glob("*/scripts/common") if p.is_dir())


def drift(bundle_dir: Path) -> list[str]:
    """Files of ``bundle_dir/scripts/common`` that differ from the single source, are missing or extra."""
    target = bundle_dir / COMMON_TARGET
    problems = []
    expected = _source_files()
    for rel in expected:
        copy = target / rel
        if not copy.exists():
            problems.append(f"{copy}: missing copy of tools/common/{rel}")
        elif not filecmp.cmp(COMMON_SOURCE / rel, copy, shallow=False):
            problems.append(f"{copy}: differs from tools/common/{rel}")
    extra = {p.relative_to(target) for p in target.rglob("*.py")} - set(expected)
    problems += [f"{target / rel}: not in tools/common (remove it or add it to the source)" for rel in sorted(extra)]
    return problems


def sync(bundles_dir: Path = BUNDLES_DIR, check: bool = False) -> list[str]:
    """Refresh every bundle's copy, or with ``check`` only report drift. Returns the drift found."""
    found: list[str] = []
    for bundle in bundles_using_common(bundles_dir):
        problems = drift(bundle)
        found += problems
        if problems and not check:
            target = bundle / COMMON_TARGET
            shutil.rmtree(target)
            shutil.copytree(COMMON_SOURCE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return found
