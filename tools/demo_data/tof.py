"""TOF-MRA vessel phantoms: procedurally grown arterial trees rendered over the MNI152 brain.

No public TOF-MRA data can be reached offline, so the TOF demo data is made here. Each phantom
"patient" is the nilearn MNI152 2009a brain (mask, GM and WM maps, slightly rotated and scaled) with a
random arterial tree grown inside it: circle-of-Willis-like trunks (internal carotids, basilar, MCA,
ACA, PCA and the communicating arteries) that enter from below, then tortuous cortical branches that
follow the brain surface and thin perforators, with radii split by Murray's law at every branching.
The tree is rendered as a signed distance field so vessel edges have partial volume, over a dim TOF
tissue background, then a smooth bias field and Rician noise are applied.

From every volume, 96x96 axial patches are cut the way Kossen et al. 2021 did: half centred on vessel
voxels, half on random brain voxels, each image min-max scaled to [-1, 1] (see docs/data_card_tof_mra.md).

This module writes the dataset; the phantom itself is made by ``tof_anatomy`` (grid, template, pose),
``tof_vessels`` (the grown tree) and ``tof_rendering`` (signal, bias field, noise).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from tools.demo_data.tof_anatomy import PhantomGrid, make_grid
from tools.demo_data.tof_rendering import TofPhantom, make_phantom, render_vessels
from tools.demo_data.tof_vessels import VesselTree, grow_vessel_tree

__all__ = [
    "DATASET_FOLDER",
    "SPLIT_KEYS",
    "PhantomGrid",
    "TofPhantom",
    "VesselTree",
    "extract_patches",
    "grow_vessel_tree",
    "make_grid",
    "make_phantom",
    "make_tof_dataset",
    "render_vessels",
    "split_patients",
]

#: Folder written inside ``out_dir``.
DATASET_FOLDER = "tof_mra"
SPLIT_KEYS: tuple[str, str, str] = ("training", "validation", "test")


def extract_patches(
    phantom: TofPhantom, n_patches: int, patch_size: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Axial patches as in Kossen et al. 2021: the first half centred on vessel voxels, the rest on brain voxels.

    The centre voxel lands at pixel ``(patch_size // 2, patch_size // 2)``. Where a patch reaches past
    the grid, the missing part is filled with the Rician noise floor a larger field of view would show.
    """
    vessel_voxels = np.argwhere(phantom.vessel > 0)
    brain_voxels = np.argwhere(phantom.brain_mask > 0)
    if len(vessel_voxels) == 0:
        raise ValueError("the phantom has no vessel voxels inside its slab; widen slab_z_mm or refine voxel_size_mm")
    half = n_patches // 2
    centres = np.concatenate(
        [
            vessel_voxels[rng.choice(len(vessel_voxels), size=half, replace=len(vessel_voxels) < half)],
            brain_voxels[rng.choice(len(brain_voxels), size=half, replace=len(brain_voxels) < half)],
        ]
    )
    images = np.empty((n_patches, patch_size, patch_size), dtype=np.float32)
    labels = np.empty((n_patches, patch_size, patch_size), dtype=np.uint8)
    nx, ny, _ = phantom.image.shape
    for index, (i, j, k) in enumerate(centres):
        x0, y0 = i - patch_size // 2, j - patch_size // 2
        xs, ys = slice(max(x0, 0), min(x0 + patch_size, nx)), slice(max(y0, 0), min(y0 + patch_size, ny))
        inner = (slice(xs.start - x0, xs.stop - x0), slice(ys.start - y0, ys.stop - y0))
        image = np.abs(rng.normal(0.0, phantom.noise_sigma, size=(patch_size, patch_size))).astype(np.float32)
        label = np.zeros((patch_size, patch_size), dtype=np.uint8)
        image[inner] = phantom.image[xs, ys, k]
        label[inner] = phantom.vessel[xs, ys, k]
        low, high = float(image.min()), float(image.max())
        images[index] = (image - low) / max(high - low, 1e-8) * 2.0 - 1.0
        labels[index] = label
    return {
        "image": images,
        "label": labels,
        "centre": centres.astype(np.int32),
        "vessel_centred": np.arange(n_patches) < half,
    }


def _check_inputs(
    seed: int,
    n_patients: int,
    patches_per_patient: int,
    voxel_size_mm: tuple[float, float, float],
    slab_z_mm: tuple[float, float],
    patch_size: int,
    split_fractions: tuple[float, float, float],
) -> None:
    """Refuse every bad argument by name before any file or folder is made."""

    def is_int(value: object) -> bool:
        """NumPy integers count as integers; ``True`` is an ``int`` in Python but no count."""
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not is_int(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if not is_int(n_patients) or n_patients < 3:
        raise ValueError(f"n_patients={n_patients!r} must be an integer >= 3 (one each for training, validation, test)")
    if not is_int(patches_per_patient) or patches_per_patient < 2 or patches_per_patient % 2:
        raise ValueError(f"patches_per_patient={patches_per_patient!r} must be an even integer >= 2 (half on vessels)")
    if not is_int(patch_size) or patch_size < 2 or patch_size % 2:
        raise ValueError(f"patch_size={patch_size!r} must be an even integer >= 2")
    if len(voxel_size_mm) != 3 or not all(math.isfinite(v) and v > 0 for v in voxel_size_mm):
        raise ValueError(f"voxel_size_mm={voxel_size_mm!r} must be three positive sizes in mm")
    if len(slab_z_mm) != 2 or not -70.0 <= slab_z_mm[0] < slab_z_mm[1] <= 80.0:
        raise ValueError(f"slab_z_mm={slab_z_mm!r} must be (bottom, top) MNI z in mm with -70 <= bottom < top <= 80")
    if (
        len(split_fractions) != 3
        or any(not math.isfinite(f) or f < 0 for f in split_fractions)
        or abs(sum(split_fractions) - 1.0) > 1e-6
    ):
        raise ValueError(f"split_fractions={split_fractions!r} must be three non-negative fractions summing to 1")


def _as_floats(name: str, values: object) -> tuple[float, ...]:
    """Command-line values arrive as lists, tuples or a bare number; only sequences of numbers are accepted."""
    try:
        return tuple(float(v) for v in values)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={values!r} must be a list of numbers, e.g. [0.6, 0.6, 1.0]") from None


def split_patients(n_patients: int, split_fractions: tuple[float, float, float]) -> list[str]:
    """Split key per patient, in patient order, with at least one patient in every split."""
    n_validation = max(1, round(n_patients * split_fractions[1]))
    n_test = max(1, round(n_patients * split_fractions[2]))
    n_training = n_patients - n_validation - n_test
    if n_training < 1:
        raise ValueError(f"n_patients={n_patients} with split_fractions={split_fractions} leaves no training patient")
    return ["training"] * n_training + ["validation"] * n_validation + ["test"] * n_test


def _current_umask() -> int:
    """The process umask; ``os.umask`` can only be read by setting it, so it is put back at once."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _is_occupied(path: Path) -> bool:
    """A missing path or an empty folder may be written without ``overwrite``."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _checked_target(out_dir: Path, overwrite: bool) -> Path:
    """``out_dir/tof_mra``, refused before any work when it is taken and ``overwrite`` is off."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir={str(out_dir)!r} exists and is not a folder")
    target = out_dir / DATASET_FOLDER
    if _is_occupied(target) and not overwrite:
        raise FileExistsError(f"{target} already exists and is not empty; pass overwrite=True to replace it")
    return target


def _write_patient(
    work: Path,
    grid: PhantomGrid,
    patient: str,
    patient_seeds: np.random.SeedSequence,
    slab_z_mm: tuple[float, float],
    patches_per_patient: int,
    patch_size: int,
) -> tuple[dict[str, str], TofPhantom]:
    """Render one patient, write its volumes and patches under ``work`` and return its datalist item."""
    volume_seeds, patch_seeds = patient_seeds.spawn(2)
    phantom = make_phantom(volume_seeds, grid, slab_z_mm)
    patches = extract_patches(phantom, patches_per_patient, patch_size, np.random.default_rng(patch_seeds))
    item = {
        "patient": patient,
        "patches": f"patches/{patient}.npz",
        "image": f"volumes/{patient}_tof.nii.gz",
        "label": f"volumes/{patient}_vessel.nii.gz",
        "brain_mask": f"volumes/{patient}_brainmask.nii.gz",
    }
    nib.save(nib.Nifti1Image(phantom.image, grid.affine), work / item["image"])
    nib.save(nib.Nifti1Image(phantom.vessel, grid.affine), work / item["label"])
    nib.save(nib.Nifti1Image(phantom.brain_mask, grid.affine), work / item["brain_mask"])
    np.savez_compressed(work / item["patches"], **patches)
    return item, phantom


def _empty_datalist(seed: int, grid: PhantomGrid, slab_z_mm: tuple[float, float], patch_size: int) -> dict:
    """The datalist's description of the dataset, with an empty list per split."""
    return {
        "patch_size": [patch_size, patch_size],
        "seed": seed,
        "voxel_size_mm": list(grid.voxel_size_mm),
        "spatial_shape": list(grid.shape),
        "slab_z_mm": list(slab_z_mm),
        **{key: [] for key in SPLIT_KEYS},
    }


def _progress_line(progress: str, phantom: TofPhantom, seconds: float) -> str:
    """One line per patient: a long run shows it is moving, and an odd vessel share shows at once."""
    vessel_share = 100.0 * phantom.vessel.sum() / max(int(phantom.brain_mask.sum()), 1)
    return (
        f"tof_mra {progress}: {phantom.n_segments} segments, "
        f"{vessel_share:.2f}% of brain voxels are vessel, {seconds:.1f} s"
    )


def _publish(work: Path, target: Path, overwrite: bool) -> None:
    """Rename the finished ``work`` folder to ``target``, retiring an old dataset only once it is whole."""
    if target.exists():
        if _is_occupied(target) and not overwrite:
            raise FileExistsError(f"{target} appeared while generating; pass overwrite=True to replace it")
        retired = Path(tempfile.mkdtemp(prefix=f".{DATASET_FOLDER}.old-", dir=target.parent))
        target.rename(retired / DATASET_FOLDER)
        work.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        work.rename(target)


def make_tof_dataset(
    out_dir: Path,
    seed: int = 0,
    n_patients: int = 20,
    patches_per_patient: int = 200,
    voxel_size_mm: tuple[float, float, float] = (0.6, 0.6, 1.0),
    slab_z_mm: tuple[float, float] = (-40.0, 32.0),
    patch_size: int = 96,
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    overwrite: bool = False,
    verbose: bool = True,
) -> Path:
    """Write the TOF-MRA phantom dataset to ``out_dir/tof_mra`` and return its ``datalist.json``.

    Patient ``i`` derives from child ``i`` of ``numpy.random.SeedSequence(seed)``, so it is the same
    whatever ``n_patients`` is, and its volumes do not depend on ``patches_per_patient``. The dataset
    is built in a hidden folder next to the target and renamed into place only when complete.

    Args:
        out_dir: parent folder; created if missing.
        seed: root of every random choice.
        n_patients: phantom patients, split in patient order into training / validation / test.
        patches_per_patient: even number of 2D patches per patient; the first half is centred on vessels.
        voxel_size_mm: grid spacing (x, y, z); axial slices run along z, the last axis.
        slab_z_mm: bottom and top of the axial slab in MNI z (mm), around the circle of Willis.
        patch_size: side of the square axial patches (96 in Kossen et al. 2021).
        split_fractions: training / validation / test shares of the patients.
        overwrite: replace an existing non-empty ``out_dir/tof_mra``.
        verbose: print one progress line per patient.
    """
    voxel_size_mm = _as_floats("voxel_size_mm", voxel_size_mm)  # type: ignore[assignment]
    slab_z_mm = _as_floats("slab_z_mm", slab_z_mm)  # type: ignore[assignment]
    split_fractions = _as_floats("split_fractions", split_fractions)  # type: ignore[assignment]
    _check_inputs(seed, n_patients, patches_per_patient, voxel_size_mm, slab_z_mm, patch_size, split_fractions)
    out_dir = Path(out_dir)
    target = _checked_target(out_dir, overwrite)
    splits = split_patients(n_patients, split_fractions)

    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{DATASET_FOLDER}.partial-", dir=out_dir))
    try:
        work.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; the dataset should not be
        grid = make_grid(voxel_size_mm, slab_z_mm)
        (work / "volumes").mkdir()
        (work / "patches").mkdir()
        datalist = _empty_datalist(seed, grid, slab_z_mm, patch_size)
        for index, (patient_seeds, split) in enumerate(zip(np.random.SeedSequence(seed).spawn(n_patients), splits)):
            started = time.perf_counter()
            patient = f"pat-{index:03d}"
            item, phantom = _write_patient(
                work, grid, patient, patient_seeds, slab_z_mm, patches_per_patient, patch_size
            )
            datalist[split].append(item)
            if verbose:
                progress = f"{index + 1}/{n_patients} {patient} ({split})"
                print(_progress_line(progress, phantom, time.perf_counter() - started), flush=True)
        (work / "datalist.json").write_text(json.dumps(datalist, indent=2) + "\n")
        _publish(work, target, overwrite)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target / "datalist.json"
