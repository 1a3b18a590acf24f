"""``tools verify``'s config check: every config parses, every ``_target_`` resolves, every ``scripts`` reference exists.

MONAI is imported inside the check, so ``tools package``/``download`` start fast.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.verify_problems import bundle_problem, first_line

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_SCRIPTS_REFERENCE = re.compile(r"(?<![\w.])scripts((?:\.\w+)*)")


def config_files(bundle_dir: Path) -> list[Path]:
    """Config files under configs/, relative to the bundle, inference.json first."""
    configs = sorted(
        p.relative_to(bundle_dir)
        for p in (bundle_dir / "configs").rglob("*")
        if p.suffix in CONFIG_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
    )
    first = Path("configs/inference.json")
    return ([first] if first in configs else []) + [c for c in configs if c != first]


def _drop_scripts_modules() -> None:
    for module_name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[module_name]


@contextmanager
def inside_bundle(bundle_dir: Path) -> Iterator[None]:
    """Work as ``monai.bundle run`` does from the bundle folder (cwd, ``scripts`` importable); undo it after.

    Every bundle has its own ``scripts`` package, so cached ``scripts`` modules are dropped on the way in and out.
    """
    saved_path = list(sys.path)
    saved_cwd = os.getcwd()
    _drop_scripts_modules()
    sys.path.insert(0, str(bundle_dir))
    importlib.invalidate_caches()
    os.chdir(bundle_dir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        _drop_scripts_modules()
        importlib.invalidate_caches()


def walk_config(node: Any, at: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Yield (config id, key, value) for every dict entry and list item in a config."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{at}#{key}" if at else str(key)
            yield child, key, value
            yield from walk_config(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            child = f"{at}#{index}" if at else str(index)
            yield child, index, value
            yield from walk_config(value, child)


def _locate_target(target: str, locator: Any) -> tuple[Any, str]:
    """Resolve a ``_target_`` the way ``ConfigComponent`` does: a MONAI component name, else a dotted path."""
    from monai.utils.module import locate

    module = locator.get_component_module_name(target)
    full_name = target
    if isinstance(module, list):
        module = module[0]
    if module is not None:
        full_name = f"{module}.{target}"
    try:
        return locate(full_name), full_name
    except Exception as error:  # an import error inside the target module is the finding itself
        raise ImportError(f"importing {full_name!r} failed: {first_line(error)}") from error


def _missing_scripts_module(bundle_dir: Path, dotted: str) -> str | None:
    """The first part of a ``scripts.a.b`` reference with no module file, package or name behind it."""
    current = bundle_dir / "scripts"
    if not current.is_dir():
        return "scripts"
    reached = "scripts"
    for part in [p for p in dotted.split(".") if p]:
        if (current / part).is_dir():
            current = current / part
        elif (current / f"{part}.py").is_file():
            return None  # a module; what follows are names inside it
        else:
            init = current / "__init__.py"
            if init.is_file() and re.search(rf"\b{re.escape(part)}\b", init.read_text(errors="replace")):
                return None  # a name defined or imported by the package
            return f"{reached}.{part}"
        reached = f"{reached}.{part}"
    return None


def _check_target(bundle_dir: Path, file: Path, item_id: str, target: str, locator: Any) -> list[str]:
    where = f"_target_ {target!r} at {item_id!r}"
    if target.split(".", 1)[0] == "scripts":
        missing = _missing_scripts_module(bundle_dir, target.partition(".")[2])
        if missing:
            return [
                bundle_problem(bundle_dir, file, f"{where} cannot be resolved: {missing} does not exist in the bundle")
            ]
    try:
        component, _ = _locate_target(target, locator)
    except ImportError as error:
        return [bundle_problem(bundle_dir, file, f"{where}: {error}")]
    if component is None:
        return [bundle_problem(bundle_dir, file, f"{where} cannot be resolved")]
    return []


def check_configs(bundle_dir: Path) -> list[str]:
    """Every config parses, every ``_target_`` resolves, and every ``scripts`` reference exists in the bundle."""
    from monai.bundle import ConfigParser
    from monai.bundle.config_item import ComponentLocator

    problems = []
    locator = ComponentLocator()
    with inside_bundle(bundle_dir):
        for file in config_files(bundle_dir):
            try:
                content = ConfigParser.load_config_file(bundle_dir / file)
                parser = ConfigParser(content)
                parser.parse()
            except Exception as error:  # any parse failure is reported with the file named
                problems.append(bundle_problem(bundle_dir, file, f"does not parse: {first_line(error)}"))
                continue
            for config_id, key, value in walk_config(content):
                if key == "_target_" and isinstance(value, str) and not value.startswith(("$", "@", "%")):
                    problems += _check_target(
                        bundle_dir, file, config_id.rpartition("#")[0] or "(top level)", value, locator
                    )
                elif isinstance(value, str) and value.startswith("$"):
                    for match in _SCRIPTS_REFERENCE.finditer(value):
                        missing = _missing_scripts_module(bundle_dir, match.group(1))
                        if missing:
                            message = f"{config_id!r} references {match.group(0)!r} but {missing} does not exist"
                            problems.append(bundle_problem(bundle_dir, file, f"{message} in the bundle's scripts/"))
    return problems
