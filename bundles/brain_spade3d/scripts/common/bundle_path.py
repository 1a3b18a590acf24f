# Generated copy of bundle_runtime/bundle_path.py: edit the source, then run `python -m tools sync-common`.
"""Makes a bundle's ``scripts`` package importable from any working folder, before ``initialize`` uses it.

MONAI 1.6.1 evaluates every ``$import`` of a config before its first other expression and keeps the results,
failed ones included, while ``ConfigWorkflow`` puts the bundle folder on ``sys.path`` only when ``run`` starts.
From another folder, ``$import scripts`` would stay a failed import for the whole run. So every config's first
``initialize`` step is ``"$@bundle_scripts"``, the :data:`CONFIG_ENTRY` below: it runs this file by its path under
``@bundle_root`` (it cannot be imported yet) and calls :func:`put_bundle_first`, which puts the bundle first on
``sys.path`` and makes MONAI repeat its import pass. A ``bundle_root`` that is not the bundle folder (the default
``.`` run from elsewhere) stops there with an error that names it and ``--bundle_root``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["CONFIG_ENTRY", "put_bundle_first"]

#: The ``bundle_scripts`` entry of every config that defines ``bundle_root`` (a test compares them).
#: ``__local_refs`` is what MONAI names its resolved items inside an expression; ``(_ for _ in ()).throw(...)``
#: raises from inside one. MONAI tries any expression holding the word "import" as an import statement (and fails
#: to parse one with ``@`` references), so the entry never spells it.
CONFIG_ENTRY = (
    "$runpy.run_path(os.path.join(@bundle_root, 'scripts/common/bundle_path.py'))['put_bundle_first']"
    "(@bundle_root, __local_refs) if os.path.isfile(os.path.join(@bundle_root, 'scripts/common/bundle_path.py'))"
    " else (_ for _ in ()).throw(FileNotFoundError('bundle_root ' + repr(os.path.abspath(@bundle_root))"
    " + ' is not the bundle folder (it holds no scripts/common/bundle_path.py): run from the bundle folder,"
    " or pass --bundle_root /path/to/the/bundle'))"
)


def _is_scripts_module(name: str) -> bool:
    return name == "scripts" or name.startswith("scripts.")


def _from_folder(module: Any, folder: str) -> bool:
    origin = getattr(module, "__file__", None)
    return origin is not None and os.path.realpath(origin).startswith(folder + os.sep)


def put_bundle_first(bundle_root: str, resolved: MutableMapping[str, Any]) -> str:
    """Put ``bundle_root`` first on ``sys.path`` and forget what the config resolved so far.

    ``resolved`` is MONAI's cache of resolved items (``__local_refs`` in a config expression): emptying it makes
    MONAI evaluate the config's ``$import`` statements again on its next lookup, now from the bundle. A ``scripts``
    package imported from elsewhere (a working folder with a ``scripts/`` of its own, e.g. another bundle) is
    dropped from ``sys.modules`` first, so that no module of another bundle runs here. Returns the bundle folder.
    """
    root = os.path.realpath(bundle_root)
    loaded = sys.modules.get("scripts")
    if loaded is not None and not _from_folder(loaded, os.path.join(root, "scripts")):
        for name in [name for name in sys.modules if _is_scripts_module(name)]:
            del sys.modules[name]
    if not sys.path or os.path.realpath(sys.path[0] or os.curdir) != root:
        sys.path.insert(0, root)
    resolved.clear()
    return root
