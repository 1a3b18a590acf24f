# Generated copy of bundle_runtime/provenance.py: edit the source, then run `python -m tools sync-common`.
"""What a measurement record says about where it came from: the machine, and files named relative to the bundle.

A record that names an absolute path of the measuring machine, or leaves the machine out, cannot be checked by anyone
who downloads the bundle; these helpers give every report the same portable description.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

__all__ = ["bundle_relative", "machine_description"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """One line naming the processor, its usable cores, the GPU if any, and the torch build."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [f"{_cpu_name()}, {cores} cores", f"torch {torch.__version__}, {torch.get_num_threads()} threads"]
    if torch.cuda.is_available():
        parts.insert(1, torch.cuda.get_device_name(0))
    return "; ".join(parts)


def bundle_relative(path: str | os.PathLike, bundle_root: str | os.PathLike) -> str:
    """``path`` relative to the bundle when it lies inside it, else its bare file name (never a machine's path)."""
    resolved, root = Path(path).resolve(), Path(bundle_root).resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return resolved.name
