# Generated copy of bundle_runtime/radiomics_features.py: edit the source, then run `python -m tools sync-common`.
"""A fixed, documented set of radiomics-style features and the Fréchet distance between two sets of them.

Why not the Fréchet Radiomics Distance (``frd-score``): it needs pyradiomics, whose PyPI release does
not build for Python >= 3.10 and must come from GitHub, plus OpenCV and SimpleITK; none of that
installs offline on this stack. Why not FID: no pretrained 3D network is reachable offline. So the
distance is MONAI's ``FIDMetric`` (the Fréchet distance of two Gaussians) over these 20 features,
computed with numpy alone for 2D patches and 3D volumes alike. It is not FID and not FRD; reports call
it the "Fréchet radiomics-style feature distance".

Features of one image, intensities mapped from ``value_range`` to [0, 1] and clipped:

* intensity (10), over the foreground (voxels above ``foreground_level``): mean, standard deviation,
  skewness, excess kurtosis, percentiles 10/25/50/75/90, and the entropy of a 32-bin histogram;
* texture (6), grey-level co-occurrence of the foreground quantised to ``levels`` grey levels, one voxel
  apart along each axis, symmetric and averaged over the axes: contrast, dissimilarity, homogeneity,
  energy (angular second moment), correlation and entropy;
* tissue volumes (4): the share of the field of view in fixed intensity bands (``tissue_band_edges``,
  e.g. dark CSF-like, grey-matter-like and white-matter-like in a T1w brain) and the foreground share.

Features are standardised by the real set's mean and spread before the distance, so no feature
dominates by its units. A Fréchet distance depends on the sample sizes, so the real set is split in
two fixed halves A and B and the report gives d(generated, A) beside d(B, A) on equally many images:
the second value is the distance that sampling alone produces between two real sets. The report also
gives each feature's generated mean in real standard deviations from the real mean, which says what
drives a large distance.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from .atomic_io import write_json
from .synthetic_folder import read_synthetic_folder

__all__ = ["FEATURE_NAMES", "FrechetFeatureDistance", "feature_matrix", "folder_distance", "radiomics_features"]

INTENSITY_NAMES = ["mean", "std", "skewness", "kurtosis", "p10", "p25", "p50", "p75", "p90", "histogram_entropy"]
TEXTURE_NAMES = [f"glcm_{n}" for n in ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "entropy")]
TISSUE_NAMES = ["band_dark", "band_mid", "band_bright", "foreground"]
FEATURE_NAMES = INTENSITY_NAMES + TEXTURE_NAMES + TISSUE_NAMES
HISTOGRAM_BINS = 32


def _entropy(probabilities: np.ndarray) -> float:
    nonzero = probabilities[probabilities > 0]
    return float(-(nonzero * np.log2(nonzero)).sum())


def _intensity(values: np.ndarray) -> list[float]:
    mean, std = float(values.mean()), float(values.std())
    centred = values - mean
    skewness = float((centred**3).mean() / std**3) if std > 0 else 0.0
    kurtosis = float((centred**4).mean() / std**4 - 3.0) if std > 0 else 0.0
    histogram = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0] / values.size
    return [mean, std, skewness, kurtosis, *np.percentile(values, [10, 25, 50, 75, 90]).tolist(), _entropy(histogram)]


def _co_occurrence(levels: np.ndarray, mask: np.ndarray, n_levels: int) -> np.ndarray:
    """Symmetric, normalised co-occurrence matrix of neighbours one voxel apart, averaged over the axes."""
    total = np.zeros((n_levels, n_levels))
    for axis in range(levels.ndim):
        first = [slice(None)] * levels.ndim
        second = [slice(None)] * levels.ndim
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        both = mask[tuple(first)] & mask[tuple(second)]
        pairs = levels[tuple(first)][both] * n_levels + levels[tuple(second)][both]
        counts = np.bincount(pairs, minlength=n_levels * n_levels).reshape(n_levels, n_levels)
        counts = counts + counts.T
        if counts.sum() > 0:
            total += counts / counts.sum()
    return total / max(total.sum(), 1e-12)


def _texture(matrix: np.ndarray) -> list[float]:
    i, j = np.indices(matrix.shape)
    mean_i, mean_j = (i * matrix).sum(), (j * matrix).sum()
    std_i = np.sqrt(((i - mean_i) ** 2 * matrix).sum())
    std_j = np.sqrt(((j - mean_j) ** 2 * matrix).sum())
    correlation = ((i - mean_i) * (j - mean_j) * matrix).sum() / (std_i * std_j) if std_i * std_j > 0 else 0.0
    return [
        float(((i - j) ** 2 * matrix).sum()),
        float((np.abs(i - j) * matrix).sum()),
        float((matrix / (1.0 + (i - j) ** 2)).sum()),
        float((matrix**2).sum()),
        float(correlation),
        _entropy(matrix),
    ]


def radiomics_features(
    image: np.ndarray | torch.Tensor,
    value_range: Sequence[float] = (0.0, 1.0),
    foreground_level: float = 0.05,
    levels: int = 16,
    tissue_band_edges: Sequence[float] = (0.05, 0.5, 0.75, 1.0),
) -> np.ndarray:
    """The 20 features of ``FEATURE_NAMES`` for one image (*spatial) or (1, *spatial); see module docstring."""
    array = np.asarray(torch.as_tensor(image).detach().cpu().numpy(), dtype=np.float64)
    if array.ndim in (3, 4) and array.shape[0] == 1:
        array = array[0]
    low, high = float(value_range[0]), float(value_range[1])
    unit = np.clip((array - low) / (high - low), 0.0, 1.0)
    mask = unit > foreground_level
    foreground = unit[mask] if mask.any() else unit.reshape(-1)
    quantised = np.minimum((unit * levels).astype(np.int64), levels - 1)
    bands = np.histogram(unit, bins=np.asarray(tissue_band_edges, dtype=np.float64))[0] / unit.size
    features = (
        _intensity(foreground)
        + _texture(_co_occurrence(quantised, mask, levels))
        + bands.tolist()
        + [float(mask.mean())]
    )
    return np.asarray(features, dtype=np.float64)


def feature_matrix(images: Iterable[np.ndarray | torch.Tensor], **options: Any) -> np.ndarray:
    """(N, 20) features of ``images`` (each (*spatial) or (1, *spatial))."""
    return np.stack([radiomics_features(image, **options) for image in images])


class FrechetFeatureDistance:
    """Fréchet distance of radiomics-style features with its real-vs-real split-half scale (module docstring).

    Args:
        value_range: intensity range of the images (e.g. (0, 1) for the brains, (-1, 1) for TOF patches).
        foreground_level: unit intensity above which a voxel is foreground.
        levels: grey levels of the co-occurrence matrix.
        tissue_band_edges: unit-intensity edges of the three tissue bands.
        split_seed: seed of the fixed permutation that splits the real set in halves.
    """

    name = "Fréchet radiomics-style feature distance"

    def __init__(
        self,
        value_range: Sequence[float] = (0.0, 1.0),
        foreground_level: float = 0.05,
        levels: int = 16,
        tissue_band_edges: Sequence[float] = (0.05, 0.5, 0.75, 1.0),
        split_seed: int = 0,
    ) -> None:
        if len(value_range) != 2 or float(value_range[1]) <= float(value_range[0]):
            raise ValueError(f"value_range={list(value_range)!r} must be [low, high] with high > low")
        if len(tissue_band_edges) != 4 or list(tissue_band_edges) != sorted(tissue_band_edges):
            raise ValueError(f"tissue_band_edges={list(tissue_band_edges)!r} must be 4 increasing unit intensities")
        if int(levels) < 2:
            raise ValueError(f"levels={levels!r} must be at least 2")
        self.options = {
            "value_range": [float(v) for v in value_range],
            "foreground_level": float(foreground_level),
            "levels": int(levels),
            "tissue_band_edges": [float(v) for v in tissue_band_edges],
        }
        self.split_seed = int(split_seed)

    def features(self, images: Iterable[np.ndarray | torch.Tensor]) -> np.ndarray:
        return feature_matrix(images, **self.options)

    def __call__(
        self, generated: Sequence[np.ndarray | torch.Tensor], real: Sequence[np.ndarray | torch.Tensor]
    ) -> dict[str, Any]:
        """d(generated, real half A) and d(real half B, real half A) on equally many images."""
        from monai.metrics import FIDMetric

        if len(real) < 4:
            raise ValueError(f"the real set has {len(real)} image(s); the split-half scale needs at least 4")
        if len(generated) < 2:
            raise ValueError(f"the generated set has {len(generated)} image(s); a covariance needs at least 2")
        real_features, generated_features = self.features(real), self.features(generated)
        centre, spread = real_features.mean(0), real_features.std(0)
        spread = np.where(spread > 0, spread, 1.0)
        real_z = (real_features - centre) / spread
        generated_z = (generated_features - centre) / spread
        order = np.random.default_rng(self.split_seed).permutation(len(real_z))
        half_a, half_b = real_z[order[: len(order) // 2]], real_z[order[len(order) // 2 :]]
        count = min(len(generated_z), len(half_b))
        metric = FIDMetric()

        def distance(x: np.ndarray, y: np.ndarray) -> float:
            with warnings.catch_warnings():  # few images in 20 dimensions: singular covariances are expected
                warnings.simplefilter("ignore")
                return float(metric(torch.from_numpy(x), torch.from_numpy(y)))

        return {
            "name": self.name,
            "value": distance(generated_z[:count], half_a),
            "real_split_half": distance(half_b[:count], half_a),
            "n_generated": count,
            "n_real_half_a": len(half_a),
            "n_real_half_b": count,
            "features": FEATURE_NAMES,
            "mean_shift_in_real_sd": {
                name: float(value) for name, value in zip(FEATURE_NAMES, generated_z[:count].mean(0))
            },
            "options": self.options,
            "note": "Fréchet distance (MONAI FIDMetric) of 20 standardised intensity, co-occurrence and "
            "intensity-band features; not FID. real_split_half: the same distance between two halves of the real set",
        }


def folder_distance(
    distance: FrechetFeatureDistance,
    synthetic_dir: str | os.PathLike,
    pattern: str,
    load: Callable[[str], torch.Tensor],
    real_images: Callable[[], Sequence[np.ndarray | torch.Tensor]],
    output_path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The distance of the samples written in ``synthetic_dir`` (plain or with a manifest) to ``real_images``.

    For bundles whose evaluation does not generate images itself (the TOF patch GAN); the report is
    written to ``output_path`` only after every file was read and the distance computed.
    """
    samples, _ = read_synthetic_folder(synthetic_dir, pattern)
    real = list(real_images())
    if not real:
        raise ValueError("the real set of the distance is empty")
    shape = tuple(torch.as_tensor(real[0]).shape)
    generated = []
    for sample in samples:
        image = torch.as_tensor(load(str(sample.path)))
        if tuple(image.shape) != shape:
            raise ValueError(
                f"synthetic sample {sample.path} has shape {tuple(image.shape)}; the real images have {shape}"
            )
        generated.append(image)
    report = {**(metadata or {}), "synthetic_dir": str(synthetic_dir), **distance(generated, real)}
    write_json(report, output_path)
    return report
