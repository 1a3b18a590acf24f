"""tof side of the memorisation screen: retained pairs packed the way the GAN trains on them.

The GAN reads one ``patches/<patient>.npz`` per datalist item (``image`` and ``label``, (n, 96, 96)), not
NIfTI pairs, so privacy distillation's last step needs the retained pairs in that form. The screen lists each
retained pair (``datalist_item`` below, checked for every sample before any work); ``pack_retained_pairs``
then turns that list into ``retained_patches.npz`` and a datalist ``train.json`` reads as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from scripts.common.atomic_io import atomic_path, write_json
from scripts.common.synthetic_folder import SyntheticSample

__all__ = ["pack_retained_pairs", "retained_pair"]

IMAGE_SUFFIX = "_image.nii.gz"
PACKED_NAME = "retained_patches.npz"


def retained_pair(sample: SyntheticSample) -> dict[str, Any]:
    """``{"image", "label"}`` files of a synthetic pair; an error names a pair whose label file is missing."""
    path = Path(sample.path)
    if not path.name.endswith(IMAGE_SUFFIX):
        raise ValueError(f"synthetic pair {path} is not named <stem>{IMAGE_SUFFIX}: its label file cannot be found")
    label = path.with_name(path.name[: -len(IMAGE_SUFFIX)] + "_label.nii.gz")
    if not label.is_file():
        raise FileNotFoundError(f"synthetic pair {path} has no label file {label.name}: it cannot be retrained on")
    try:  # read now, before any output, not when the retained pairs are packed after the screen
        label_shape = _patch(str(label)).shape
    except Exception as error:  # nibabel, gzip and zlib each raise their own kind for a cut or corrupt file
        raise ValueError(f"synthetic pair {path}: its label file {label.name} cannot be read ({error})") from error
    image_shape = tuple(nib.load(str(path)).shape[:2])
    if label_shape != image_shape:
        raise ValueError(
            f"synthetic pair {path}: its label file {label.name} is {label_shape}, the image {image_shape}"
        )
    return {"image": str(path), "label": str(label)}


def _patch(path: str) -> np.ndarray:
    image = nib.load(path)
    return np.asarray(image.dataobj, dtype=np.float32).reshape(image.shape[:2])


def pack_retained_pairs(output_dir: str | os.PathLike, patient: str = "retained_synthetic") -> Path | None:
    """Rewrite ``retained_datalist.json`` as a GAN datalist of one packed patch file (None when none was written)."""
    folder = Path(output_dir)
    datalist_path = folder / "retained_datalist.json"
    if not datalist_path.is_file():  # filter mode off: nothing to pack
        return None
    pairs = json.loads(datalist_path.read_text())["training"]
    if not pairs:
        raise ValueError(f"{datalist_path}: every synthetic pair was flagged, so there is nothing to retrain on")
    images = np.stack([_patch(pair["image"]) for pair in pairs])
    labels = (np.stack([_patch(pair["label"]) for pair in pairs]) > 0).astype(np.float32)
    atomic_path(folder / PACKED_NAME, lambda tmp: np.savez(tmp, image=images, label=labels))
    patch_size = list(images.shape[1:])
    write_json({"patch_size": patch_size, "training": [{"patient": patient, "patches": PACKED_NAME}]}, datalist_path)
    print(f"packed {len(pairs)} retained pairs into {folder / PACKED_NAME} (datalist {datalist_path})")
    return datalist_path
