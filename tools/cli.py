"""``python -m tools``: verify, package, download bundles and their large files, and write the offline demo data."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable

import fire

#: Each command's module and function. Only the module of the command that runs is imported: ``bench`` and
#: ``dataset-bench`` import torch and MONAI at module level (about 7 s), which ``download``, ``package``,
#: ``verify``, ``inspect`` and ``demo-data`` would otherwise pay at every start.
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("tools.bench", "bench"),
    "verify": ("tools.verify", "verify_cli"),
    "package": ("tools.packaging", "package_cli"),
    "download": ("tools.download", "download_cli"),
    "download-weights": ("tools.large_files", "download_weights_cli"),
    "inspect": ("tools.inspect_bundle", "inspect_cli"),
    "demo-data": ("tools.demo_data", "demo_data_cli"),
    "sync-common": ("tools.cli", "sync_common"),
    "dataset-bench": ("tools.dataset_bench", "dataset_bench"),
}


def sync_common(check: bool = False) -> None:
    """Copy bundle_runtime into every bundle's scripts/common; with --check, fail on drift instead."""
    from tools.sync_common import sync

    problems = sync(check=check)
    for line in problems:
        print(line, file=sys.stderr)
    if check and problems:
        raise SystemExit(1)
    print("copies up to date" if check else f"synced ({len(problems)} file(s) refreshed)")


def _commands(names: Iterable[str] | None = None) -> dict[str, Callable]:
    """The named commands (all of them by default) as fire sees them: command name -> function."""
    chosen = COMMANDS if names is None else {name: COMMANDS[name] for name in names}
    return {name: getattr(importlib.import_module(module), attr) for name, (module, attr) in chosen.items()}


def main(argv: list[str] | None = None) -> None:
    """Run the command named first on the command line, importing only its module.

    Anything else (no command, ``--help``, a misspelt or underscored name) gets every command, so fire lists
    or resolves them exactly as it did when all of them were imported up front.
    """
    arguments = sys.argv[1:] if argv is None else argv
    named = arguments[:1] if arguments and arguments[0] in COMMANDS else None
    fire.Fire(_commands(named), command=argv)


if __name__ == "__main__":
    main()
