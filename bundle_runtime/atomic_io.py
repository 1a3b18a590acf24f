"""Atomic file writers: every output appears whole or not at all.

Each writer saves to a hidden temporary file in the destination folder and renames it into place
(``os.replace`` is atomic within one file system), so an interrupted run never leaves a truncated
NIfTI, PNG or JSON that a later step would read as valid.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "json_safe",
    "atomic_path",
    "prepare_output_dir",
    "stale_temporaries",
    "temporary_target",
    "write_json",
    "write_nifti",
    "write_png",
]

#: ``.tmp-<pid>-<final name>``: the name :func:`atomic_path` writes before renaming.
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-(.+)$")


def atomic_path(path: str | os.PathLike, write: Callable[[Path], Any], stable_temporary: bool = False) -> Path:
    """Call ``write(temporary)`` then rename the temporary file to ``path``; clean up on failure.

    ``stable_temporary`` drops the process id from the temporary's name, for writers that embed that
    name in the file (a TorchScript archive's top folder), so the bytes do not change from run to run.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: nibabel and PIL choose the format from it
    owner = "0" if stable_temporary else str(os.getpid())
    temporary = path.with_name(f".tmp-{owner}-{path.name}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def json_safe(value: Any) -> Any:
    """Copy with NaN and infinities as None: a diverged measurement must not write invalid JSON tokens."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Pretty JSON, atomically."""
    return atomic_path(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))


def write_nifti(volume: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """A float32 NIfTI with ``affine`` as both qform and sform (code 4, MNI152 space)."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), np.asarray(affine, dtype=np.float64))
    image.set_qform(image.affine, code=4)
    image.set_sform(image.affine, code=4)
    image.header.set_xyzt_units("mm")
    return atomic_path(path, lambda tmp: nib.save(image, str(tmp)))


def write_png(image: Any, path: str | os.PathLike) -> Path:
    """A PIL image as PNG, atomically."""
    return atomic_path(path, lambda tmp: image.save(tmp, format="PNG"))


def temporary_target(name: str) -> str | None:
    """The final file name an :func:`atomic_path` temporary called ``name`` was meant for, else None."""
    match = _TEMPORARY.match(name)
    return match.group(2) if match else None


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files under ``folder`` (any depth) that a killed writer left behind."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob(".tmp-*") if p.is_file() and temporary_target(p.name) is not None)


def prepare_output_dir(path: str | os.PathLike, key: str = "output_dir") -> Path:
    """Prove ``path`` writable with a probe file, before any sample is computed.

    A file in the way or a read-only folder would otherwise be found only when the first sample is
    written, after its whole computation. A folder that does not exist yet is not created here (a
    later refusal must leave nothing behind): the probe goes into its nearest existing parent, which
    must be a folder. The error names the config key and the path.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is below {existing}, which is a file"
        raise NotADirectoryError(f"{key} {path} {where}, not a folder")
    probe = existing / f".tmp-{os.getpid()}-write-probe"
    try:
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"{key} {path} is not writable ({existing}: {error.strerror or error})") from error
    return path
