# Generated copy of bundle_runtime/provenance.py: edit the source, then run `python -m tools sync-common`.
"""What a measurement record says about where it came from: the machine, and files named relative to the bundle.

A record that names an absolute path of the measuring machine, or leaves the machine out, cannot be checked by anyone
who downloads the bundle; these helpers give every report the same portable description.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

__all__ = ["bundle_relative", "machine_description", "machine_facts"]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts(torch_threads: int | None = None) -> dict[str, Any]:
    """The machine as a record's ``machine`` object: processor, cores, GPU, torch build and threads, load."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts: dict[str, Any] = {
        "cpu": _cpu_name(),
        "usable_cpus": usable,
        "logical_cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads() if torch_threads is None else int(torch_threads),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if hasattr(os, "getloadavg"):  # a busy machine explains slow numbers
        facts["load_average_at_start"] = list(os.getloadavg())
    return facts


def machine_description() -> str:
    """One line naming the processor, its usable cores, the GPU if any, and the torch build."""
    facts = machine_facts()
    parts = [
        f"{facts['cpu']}, {facts['usable_cpus']} cores",
        f"torch {facts['torch']}, {facts['torch_threads']} threads",
    ]
    if facts["gpu"]:
        parts.insert(1, facts["gpu"])
    return "; ".join(parts)


def bundle_relative(path: str | os.PathLike, bundle_root: str | os.PathLike) -> str:
    """``path`` relative to the bundle when it lies inside it, else its bare file name (never a machine's path)."""
    resolved, root = Path(path).resolve(), Path(bundle_root).resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return resolved.name
