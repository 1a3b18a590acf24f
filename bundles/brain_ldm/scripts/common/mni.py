# Generated copy of bundle_runtime/mni.py: edit the source, then run `python -m tools sync-common`.
"""MNI152 2009a field of view shared by the demo data and the brain bundles.

Every brain volume in this collection lives in one box of the MNI152 ICBM 2009a symmetric template:
the 160x224x160 mm crop used for the UK Biobank latent diffusion model. Keeping its geometry in one
place lets generated volumes carry a real MNI-aligned affine at any resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Shape of the 1 mm MNI152 2009a template that nilearn ships.
TEMPLATE_SHAPE_1MM: tuple[int, int, int] = (197, 233, 189)
#: World coordinate (mm) of the template's voxel (0, 0, 0).
TEMPLATE_ORIGIN_MM: tuple[float, float, float] = (-98.0, -134.0, -72.0)
#: First template voxel of the crop; the box is centred on the brain mask in x and y and keeps
#: the whole brainstem in z.
CROP_START_1MM: tuple[int, int, int] = (18, 5, 0)
#: Crop size at 1 mm, the published UK Biobank input size.
CROP_SHAPE_1MM: tuple[int, int, int] = (160, 224, 160)


def crop_shape(resolution_mm: int) -> tuple[int, int, int]:
    """Shape of the crop at an integer resolution that divides the 1 mm crop."""
    if resolution_mm < 1 or any(size % resolution_mm for size in CROP_SHAPE_1MM):
        raise ValueError(f"resolution_mm={resolution_mm!r} must be a positive divisor of {CROP_SHAPE_1MM}")
    return tuple(size // resolution_mm for size in CROP_SHAPE_1MM)  # type: ignore[return-value]


def crop_affine(resolution_mm: int) -> np.ndarray:
    """RAS voxel-to-world affine of the crop after block-averaging ``resolution_mm`` voxels.

    A block's centre sits halfway between its first and last 1 mm voxel, hence the half-voxel shift.
    """
    crop_shape(resolution_mm)
    affine = np.eye(4)
    affine[:3, :3] *= resolution_mm
    first_voxel_mm = np.add(TEMPLATE_ORIGIN_MM, CROP_START_1MM)
    affine[:3, 3] = first_voxel_mm + (resolution_mm - 1) / 2.0
    return affine


def crop_slices() -> tuple[slice, slice, slice]:
    """Slices that cut the 1 mm crop out of the 1 mm template array."""
    return tuple(slice(start, start + size) for start, size in zip(CROP_START_1MM, CROP_SHAPE_1MM))  # type: ignore[return-value]


def output_affine(resolution_mm: int, spatial_shape: Sequence[int]) -> np.ndarray:
    """MNI affine of a network's field of view: the MNI crop, centre-cropped or padded like training.

    Training fits images to ``spatial_shape`` with ``ResizeWithPadOrCrop``; applying the same
    transform to an empty volume carrying the crop's affine gives the exact voxel-to-MNI mapping.
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import ResizeWithPadOrCrop

    full = crop_shape(resolution_mm)
    if tuple(int(s) for s in spatial_shape) == full:
        return crop_affine(resolution_mm)
    empty = MetaTensor(torch.zeros((1, *full)), affine=torch.as_tensor(crop_affine(resolution_mm)))
    fitted = ResizeWithPadOrCrop(spatial_size=list(spatial_shape))(empty)
    return np.asarray(fitted.affine, dtype=np.float64)
