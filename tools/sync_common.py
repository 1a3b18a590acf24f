"""Copy the shared bundle code into each bundle, or check that the copies match.

A bundle receives only the shared modules it uses: those its own scripts and configs name, and
what those import in turn, so a packaged bundle carries no code it never runs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tools import BUNDLES_DIR, REPO_ROOT

COMMON_SOURCE = REPO_ROOT / "bundle_runtime"
COMMON_TARGET = Path("scripts") / "common"

# How a bundle's scripts and configs name a shared module: scripts.common.x, from .common.x,
# from scripts.common import x, y, or by file path, scripts/common/x.py (a config that runs it before it can import
# it); and how shared modules name each other: from .x import, from . import x.
_BUNDLE_REFERENCE = re.compile(
    r"scripts\.common\.(\w+)|\.common\.(\w+)|(?:scripts)?\.common import ([\w, ]+)|scripts/common/(\w+)\.py"
)
_SIBLING_REFERENCE = re.compile(r"from \.(\w+) import|from \. import ([\w, ]+)|scripts\.common\.(\w+)")


def copy_note(rel: Path) -> str:
    """The first line of every copy: where its source is and how copies are refreshed."""
    return f"# Generated copy of bundle_runtime/{rel.as_posix()}: edit the source, then run `python -m tools sync-common`.\n"


def copy_text(rel: Path) -> str:
    """What the copy of ``bundle_runtime/<rel>`` holds: the note, then the source unchanged."""
    return copy_note(rel) + (COMMON_SOURCE / rel).read_text()


def _named_modules(text: str, pattern: re.Pattern) -> set[str]:
    names = set()
    for groups in pattern.findall(text):
        for group in groups:
            names.update(name.strip() for name in group.split(",") if name.strip())
    return names


def _source_files() -> list[Path]:
    return sorted(p.relative_to(COMMON_SOURCE) for p in COMMON_SOURCE.rglob("*.py"))


def required_files(bundle_dir: Path) -> list[Path]:
    """The shared files ``bundle_dir`` needs: ``__init__.py`` plus every module it reaches."""
    own_files = [p for p in (bundle_dir / "scripts").rglob("*.py") if COMMON_TARGET.name not in p.parts]
    own_files += sorted((bundle_dir / "configs").glob("*.json"))
    pending = set().union(*(_named_modules(f.read_text(), _BUNDLE_REFERENCE) for f in own_files))
    available = {p.stem for p in COMMON_SOURCE.glob("*.py")} - {"__init__"}
    needed: set[str] = set()
    while pending:
        name = pending.pop()
        if name in needed or name not in available:
            continue
        needed.add(name)
        pending |= _named_modules((COMMON_SOURCE / f"{name}.py").read_text(), _SIBLING_REFERENCE)
    return sorted([Path("__init__.py")] + [Path(f"{name}.py") for name in needed])


def bundles_using_common(bundles_dir: Path = BUNDLES_DIR) -> list[Path]:
    """Bundles that carry a ``scripts/common`` copy (a bundle opts in by having the folder)."""
    return sorted(p.parent.parent for p in bundles_dir.glob("*/scripts/common") if p.is_dir())


def drift(bundle_dir: Path) -> list[str]:
    """Files of ``bundle_dir/scripts/common`` that differ from the single source, are missing or extra."""
    target = bundle_dir / COMMON_TARGET
    problems = []
    expected = required_files(bundle_dir)
    for rel in expected:
        copy = target / rel
        if not copy.exists():
            problems.append(f"{copy}: missing copy of bundle_runtime/{rel}")
        elif copy.read_text() != copy_text(rel):
            problems.append(f"{copy}: differs from bundle_runtime/{rel}")
    extra = {p.relative_to(target) for p in target.rglob("*.py")} - set(expected)
    sources = set(_source_files())
    problems += [
        f"{target / rel}: not used by the bundle (sync-common removes it)"
        if rel in sources
        else f"{target / rel}: not in bundle_runtime (remove it or add it to the source)"
        for rel in sorted(extra)
    ]
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
            target.mkdir(parents=True)
            for rel in required_files(bundle):
                (target / rel).write_text(copy_text(rel))
    return found
