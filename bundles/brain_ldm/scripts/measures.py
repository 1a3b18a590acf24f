"""What a generated brain measures: ventricle and brain volume in ml, one definition for every report.

The evaluation, the solver study, the measure calibration and the dataset manifest all read volumes here, so
they cannot disagree. Ventricles are the CSF-dark voxels inside the MNI ventricle region, dark relative to
the region's own white matter; brain is the tissue-bright voxels of the skull-stripped image.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from scripts.common.checks import check_optional_positive_number

__all__ = [
    "BrainVolumes",
    "brain_volume_ml",
    "check_percentile",
    "describe_ventricle_measure",
    "load_ventricle_roi",
    "ventricle_volume_ml",
]


def ventricle_volume_ml(
    volume: np.ndarray,
    ventricle_roi: np.ndarray,
    csf_threshold: float,
    voxel_ml: float,
    reference_percentile: float | None = None,
) -> float:
    """CSF-dark voxels inside the ventricle region, in millilitres.

    With ``reference_percentile`` the threshold is a fraction of that percentile of the region's own
    intensities (the white matter around the ventricles), so that an image's overall brightness and a
    smooth bias field, which move a fixed threshold across the ventricle walls, cancel out.
    """
    region = ventricle_roi > 0
    if reference_percentile is not None:
        if not region.any():
            raise ValueError("ventricle_roi is empty: a relative threshold needs the region's intensities")
        csf_threshold = csf_threshold * float(np.percentile(volume[region], reference_percentile))
    return float(((volume < csf_threshold) & region).sum() * voxel_ml)


def brain_volume_ml(volume: np.ndarray, csf_threshold: float, voxel_ml: float) -> float:
    """Tissue-bright voxels of a skull-stripped image, in millilitres."""
    return float((volume >= csf_threshold).sum() * voxel_ml)


def describe_ventricle_measure(threshold: float, reference_percentile: float | None) -> str:
    """How ventricles were measured, in words, for a report."""
    if reference_percentile is None:
        return f"voxels below {threshold} inside the MNI ventricle ROI"
    return (
        f"voxels darker than {threshold} x the {reference_percentile:g}th intensity percentile of the MNI "
        "ventricle ROI (its white matter), inside that ROI"
    )


def check_percentile(value: Any, name: str = "ventricle_reference_percentile") -> float | None:
    """A percentile in (0, 100], or None; anything else is named before any sample is drawn."""
    percentile = check_optional_positive_number(name, value)
    if percentile is not None and percentile > 100:
        raise ValueError(f"{name}={value!r} must be a number in (0, 100] or null")
    return percentile


def load_ventricle_roi(path: str | os.PathLike, resolution_mm: float, spatial_shape: list[int]) -> np.ndarray:
    """The 4 mm MNI ventricle region resampled to ``resolution_mm`` and fitted to ``spatial_shape`` like training."""
    from monai.transforms import Compose, LoadImage, Orientation, ResizeWithPadOrCrop, Spacing

    roi = Compose(
        [
            LoadImage(image_only=True, ensure_channel_first=True),
            Orientation(axcodes="RAS", labels=None),
            Spacing(pixdim=[float(resolution_mm)] * 3, mode="nearest"),
            ResizeWithPadOrCrop(spatial_size=list(spatial_shape)),
        ]
    )(str(path))
    return np.asarray(roi[0]) > 0


class BrainVolumes:
    """``volume -> {"ventricle_ml", "brain_ml"}`` of one (X, Y, Z) brain.

    Args:
        ventricle_roi: MNI ventricle region on the image grid.
        csf_threshold: intensity below which a voxel is CSF (brain volume; ventricles unless set below).
        voxel_ml: volume of one voxel in ml.
        ventricle_threshold, ventricle_reference_percentile: the ventricle threshold, relative to that percentile
            of the region's intensities (see :func:`ventricle_volume_ml`); None each falls back to
            ``csf_threshold`` on absolute intensities.
    """

    def __init__(
        self,
        ventricle_roi: np.ndarray,
        csf_threshold: float,
        voxel_ml: float,
        ventricle_threshold: float | None = None,
        ventricle_reference_percentile: float | None = None,
    ) -> None:
        self.ventricle_roi = np.asarray(ventricle_roi)
        self.csf_threshold = float(csf_threshold)
        self.voxel_ml = float(voxel_ml)
        self.ventricle_threshold = self.csf_threshold if ventricle_threshold is None else float(ventricle_threshold)
        self.ventricle_reference_percentile = check_percentile(ventricle_reference_percentile)

    def ventricles(self, volume: np.ndarray) -> float:
        return ventricle_volume_ml(
            volume, self.ventricle_roi, self.ventricle_threshold, self.voxel_ml, self.ventricle_reference_percentile
        )

    def brain(self, volume: np.ndarray) -> float:
        return brain_volume_ml(volume, self.csf_threshold, self.voxel_ml)

    def describe(self) -> dict[str, Any]:
        """The settings and their meaning, for a report."""
        return {
            "csf_threshold": self.csf_threshold,
            "ventricle_threshold": self.ventricle_threshold,
            "ventricle_reference_percentile": self.ventricle_reference_percentile,
            "voxel_ml": self.voxel_ml,
            "ventricles": describe_ventricle_measure(self.ventricle_threshold, self.ventricle_reference_percentile),
            "brain": "voxels at or above csf_threshold in the skull-stripped field of view",
        }

    def __call__(self, volume: np.ndarray) -> dict[str, float]:
        return {"ventricle_ml": self.ventricles(volume), "brain_ml": self.brain(volume)}
