# Generated copy of tools/common/atomic_io.py: edit the source, then run `python -m tools sync-common`.
"""Atomic file writers: every output appears whole or not at all.

Each writer saves to a hidden temporary file in the destination folder and renames it into place
(``os.replace`` is atomic within one file system), so an interrupted run never leaves a truncated
NIfTI, PNG or JSON that a later step would read as valid.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "write_json", "write_nifti", "write_png"]


def atomic_path(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(temporary)`` then rename the temporary file to ``path``; clean up on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the real suffix last: nibabel and PIL choose the format from it
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


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
