"""What a generated brain measures, for the dataset manifest: ventricle and brain volume in ml.

The same simple segmentation as the evaluation (``scripts.evaluation``): CSF-dark voxels inside the
MNI ventricle region (dark relative to the region's white matter), and tissue-bright voxels anywhere. Measuring is its own piece, apart from
sampling and writing, so the manifest records what was obtained next to what was asked.
"""

from __future__ import annotations

import os

import numpy as np

from scripts.evaluation import brain_volume_ml, check_percentile, ventricle_volume_ml

__all__ = ["BrainVolumes", "load_ventricle_roi"]


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
    """``volume -> {"ventricle_ml", "brain_ml"}`` of one generated (X, Y, Z) brain.

    Args:
        ventricle_roi: boolean MNI ventricle region on the output grid.
        csf_threshold: intensity below which a voxel is CSF (brain volume; ventricles unless set below).
        voxel_ml: volume of one voxel in ml.
        ventricle_threshold, ventricle_reference_percentile: as in ``evaluate.json`` (None: ``csf_threshold``
            on absolute intensities).
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

    def __call__(self, volume: np.ndarray) -> dict[str, float]:
        return {
            "ventricle_ml": ventricle_volume_ml(
                volume, self.ventricle_roi, self.ventricle_threshold, self.voxel_ml, self.ventricle_reference_percentile
            ),
            "brain_ml": brain_volume_ml(volume, self.csf_threshold, self.voxel_ml),
        }
