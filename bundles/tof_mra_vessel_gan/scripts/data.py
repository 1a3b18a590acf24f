"""Reading the TOF-MRA patch datasets, with errors that name the file at fault.

A dataset is a ``datalist.json`` whose items point to one ``patches/<patient>.npz`` per patient
(``image`` (n, 96, 96) float32 and ``label`` (n, 96, 96) {0, 1}) and to the patient's whole volumes
(``image``, ``label``, optionally ``brain_mask``). Every patch file is read and checked when the
bundle initialises, before anything is written, so a missing or damaged file stops the run early.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scripts.common.checks import check_positive_int
from scripts.networks import check_patch_size

__all__ = [
    "REAL_LABEL_ENCODINGS",
    "check_enough_patches",
    "load_patch_pairs",
    "named_patches",
    "patient_volumes",
    "read_datalist",
]

#: How train.json hands real labels to the critic (``real_label_encoding``): ``binary`` as stored, {0, 1};
#: ``symmetric`` as label * 2 - 1, {-1, 1}, the range of the generator's tanh. With ``real_label_blur_sigma`` > 0
#: the label is blurred first, so either encoding gives soft values between its two extremes at vessel edges.
REAL_LABEL_ENCODINGS = ("binary", "symmetric")


def read_datalist(path: str | os.PathLike, split: str) -> tuple[list[dict], Path]:
    """The items of ``split`` in the datalist at ``path`` and the folder their relative paths start from."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"datalist {path} does not exist (write the phantoms with `python -m tools demo-data`)")
    try:
        datalist = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"datalist {path} is not valid JSON ({error})") from error
    if not isinstance(datalist, dict) or not isinstance(datalist.get(split), list):
        keys = sorted(datalist) if isinstance(datalist, dict) else type(datalist).__name__
        raise ValueError(f"datalist {path} has no list {split!r} (it has {keys})")
    if "patch_size" in datalist:
        check_patch_size(datalist["patch_size"], name=f"patch_size of datalist {path}")
    return datalist[split], path.parent


def _select(items: list[dict], patients: int | Sequence[str] | None, datalist: Path, split: str) -> list[dict]:
    if patients is None:
        return items
    if isinstance(patients, int):
        if not 1 <= patients <= len(items):
            raise ValueError(f"patients={patients}: the {split!r} split of {datalist} has {len(items)} patients")
        return items[:patients]
    wanted = list(patients)
    known = {item.get("patient") for item in items}
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise ValueError(f"patients {unknown} are not in the {split!r} split of {datalist}")
    return [item for item in items if item.get("patient") in wanted]


def _chosen_items(
    datalist: str | os.PathLike, split: str, patients: int | Sequence[str] | None
) -> tuple[list[dict], Path]:
    """The chosen patients' items of ``split`` and their root folder; an error when none are left to read."""
    items, root = read_datalist(datalist, split)
    items = _select(items, patients, Path(datalist), split)
    if not items:
        raise ValueError(f"the {split!r} split of {datalist} is empty")
    return items, root


def _read_patches(path: Path, datalist: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"patch file {path} listed in {datalist} does not exist")
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in ("image", "label") if key in archive.files}
    except Exception as error:  # numpy/zipfile/zlib raise many types for a truncated or foreign file
        raise ValueError(
            f"patch file {path} listed in {datalist} is corrupt or not an .npz archive ({error})"
        ) from error
    missing = {"image", "label"} - set(arrays)
    if missing:
        raise ValueError(f"patch file {path} listed in {datalist} lacks the arrays {sorted(missing)}")
    images, labels = arrays["image"], arrays["label"]
    if images.ndim != 3 or images.shape != labels.shape or images.shape[0] == 0:
        raise ValueError(
            f"patch file {path}: image {images.shape} and label {labels.shape} must both be (n, 96, 96) with n > 0"
        )
    check_patch_size(images.shape[1:], name=f"patch size of {path}")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"patch file {path} has non-finite image values")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"patch file {path}: labels must be 0 or 1, found {np.unique(labels)[:8].tolist()}")
    return images.astype(np.float32), labels.astype(np.float32)


def load_patch_pairs(
    datalist: str | os.PathLike,
    split: str = "training",
    patients: int | Sequence[str] | None = None,
    max_patches_per_patient: int | None = None,
) -> list[dict[str, Any]]:
    """Every patch of the chosen patients as ``{"image": (1, 96, 96), "label": (1, 96, 96), "patient"}``.

    Args:
        datalist: path of ``datalist.json``.
        split: ``training``, ``validation`` or ``test``.
        patients: all patients (None), the first N, or a list of patient ids.
        max_patches_per_patient: keep at most this many patches per patient (in file order, so
            vessel-centred patches come first); None keeps all.
    """
    items, root = _chosen_items(datalist, split, patients)
    pairs = []
    for item in items:
        if "patches" not in item:
            raise ValueError(f"datalist {datalist}: item {item.get('patient', item)} has no 'patches' entry")
        images, labels = _read_patches(root / item["patches"], Path(datalist))
        keep = len(images) if max_patches_per_patient is None else min(int(max_patches_per_patient), len(images))
        patient = item.get("patient", Path(item["patches"]).stem)
        pairs += [{"image": images[i][None], "label": labels[i][None], "patient": patient} for i in range(keep)]
    return pairs


def patient_volumes(
    datalist: str | os.PathLike, split: str = "test", patients: int | Sequence[str] | None = None
) -> list[dict[str, str]]:
    """Whole-volume items ``{"patient", "image", "label"[, "brain_mask"]}`` with absolute paths, checked to exist."""
    items, root = _chosen_items(datalist, split, patients)
    volumes = []
    for item in items:
        entry = {"patient": item.get("patient", Path(item["image"]).name)}
        for key in ("image", "label", "brain_mask"):
            if key not in item:
                if key == "brain_mask":
                    continue
                raise ValueError(f"datalist {datalist}: item {entry['patient']} has no {key!r} volume")
            path = root / item[key]
            if not path.is_file():
                raise FileNotFoundError(f"{key} volume {path} listed in {datalist} does not exist")
            entry[key] = str(path)
        volumes.append(entry)
    return volumes


def check_enough_patches(pairs: Sequence, batch_size: int, world_size: int = 1) -> int:
    """The number of full batches per epoch; an error when the data cannot fill one on every process."""
    batch_size = check_positive_int("batch_size", batch_size)
    per_process = len(pairs) // max(int(world_size), 1)
    if per_process < batch_size:
        raise ValueError(
            f"{len(pairs)} training patches over {world_size} process(es) cannot fill one batch of {batch_size}; "
            "lower batch_size or add patches"
        )
    return per_process // batch_size


def named_patches(datalist: str | os.PathLike, splits: Sequence[str]) -> list[dict[str, Any]]:
    """Every patch of ``splits`` with a ``name`` "<patient> patch <i>" (i counts within the patient's file).

    The memorisation screen names each synthetic sample's nearest training patch this way.
    """
    named = []
    for split in splits:
        counts: dict[str, int] = {}
        for pair in load_patch_pairs(datalist, split):
            index = counts.get(pair["patient"], 0)
            counts[pair["patient"]] = index + 1
            named.append({**pair, "name": f"{pair['patient']} patch {index}"})
    return named
