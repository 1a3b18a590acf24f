"""``tools inspect``: list what a bundle's configs would run, so it can be read before it is run.

A ``_target_`` names any importable callable and ``monai.bundle run`` calls it; a ``$`` value is passed to
``eval()``; ``$import scripts`` runs the bundle's own Python files. This lists all three without parsing the
configs with MONAI, so nothing of the bundle is imported or evaluated while it is being inspected.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tools.packaging import BundleNotFoundError, resolve_bundle
from tools.verify_configs import config_files, walk_config

#: Call targets that stay inside the libraries a bundle declares anyway; everything else is flagged.
LIBRARY_PREFIXES = ("monai.", "torch.", "ignite.")


def _load(path: Path) -> object:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def _is_library_target(target: str) -> bool:
    return target.startswith(LIBRARY_PREFIXES) or "." not in target  # a bare name is a MONAI component


def inspect_bundle(bundle: str | Path) -> list[str]:
    """One line per ``_target_`` and ``$`` expression (``<file>  <config id>  <kind>  <value>``), then the
    bundle's Python files; ``!`` marks targets outside MONAI, torch and ignite (the bundle's own code or other)."""
    bundle_dir = resolve_bundle(bundle)
    lines = []
    for file in config_files(bundle_dir):
        try:
            content = _load(bundle_dir / file)
        except (ValueError, yaml.YAMLError) as error:
            lines.append(f"{file}  (does not parse: {type(error).__name__})")
            continue
        for config_id, key, value in walk_config(content):
            if not isinstance(value, str):
                continue
            if key == "_target_":
                mark = " " if _is_library_target(value) else "!"
                lines.append(f"{mark} {file}  {config_id.rpartition('#')[0] or '(top)'}  _target_  {value}")
            elif value.startswith("$"):
                lines.append(f"  {file}  {config_id}  eval  {value[1:]}")
    python_files = sorted(p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*.py"))
    lines += [f"  python file  {name}" for name in python_files if "__pycache__" not in name]
    return lines


def inspect_cli(bundle: str) -> None:
    """List every ``_target_`` and ``$`` expression in BUNDLE's configs, and its Python files (see SECURITY.md).

    Args:
        bundle: bundle folder or name under bundles/.
    """
    try:
        lines = inspect_bundle(bundle)
    except BundleNotFoundError as error:
        raise SystemExit(f"inspect failed: {error}") from error
    print("\n".join(lines))
    flagged = sum(line.startswith("!") for line in lines)
    print(f"{len(lines)} item(s); {flagged} _target_(s) outside monai/torch/ignite marked '!'")
