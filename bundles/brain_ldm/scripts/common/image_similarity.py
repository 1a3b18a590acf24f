# Generated copy of bundle_runtime/image_similarity.py: edit the source, then run `python -m tools sync-common`.
"""Similarity indices used to measure the diversity of generated images.

``four_gradient_region_ssim`` is our implementation of the four-component gradient-based regional
SSIM (4-G-R-SSIM) that Renieblas et al. (J. Med. Imaging 2017) recommend for radiological images
and that Pinaya et al. (2022) report for the brain LDM. It combines two published ideas:

* gradient SSIM (Chen et al. 2006): the luminance term comes from the images, the contrast and
  structure terms from their gradient-magnitude images;
* four-component pooling (Li and Bovik 2010): voxels are split by gradient magnitude into preserved
  edges, changed edges, smooth and textured regions (thresholds 0.12 and 0.06 of the reference's
  largest gradient), the SSIM map is averaged per region, and the region means are combined with
  weights (equal by default; regions absent from an image are skipped and the weights renormalised).

Everything works for 2D and 3D batches (B, C, *spatial); channels are averaged.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["four_gradient_region_ssim", "gaussian_filter_valid", "gradient_magnitude", "pairwise_mean"]


def gaussian_filter_valid(x: torch.Tensor, kernel_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Separable Gaussian smoothing without padding (each spatial side shrinks by ``kernel_size - 1``)."""
    spatial_dims = x.ndim - 2
    coords = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - (kernel_size - 1) / 2
    kernel_1d = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel_1d = kernel_1d / kernel_1d.sum()
    conv = (F.conv1d, F.conv2d, F.conv3d)[spatial_dims - 1]
    channels = x.shape[1]
    for axis in range(spatial_dims):
        shape = [1] * spatial_dims
        shape[axis] = kernel_size
        weight = kernel_1d.reshape(1, 1, *shape).expand(channels, 1, *shape)
        x = conv(x, weight, groups=channels)
    return x


def gradient_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of central-difference gradients over the spatial axes (same shape as ``x``)."""
    spatial_axes = list(range(2, x.ndim))
    gradients = torch.gradient(x, dim=spatial_axes)
    return torch.sqrt(sum(g**2 for g in gradients))


def _crop_like(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    slices = [slice(None), slice(None)]
    for size, target_size in zip(x.shape[2:], target.shape[2:]):
        start = (size - target_size) // 2
        slices.append(slice(start, start + target_size))
    return x[tuple(slices)]


def four_gradient_region_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    kernel_size: int = 11,
    kernel_sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    edge_threshold: float = 0.12,
    smooth_threshold: float = 0.06,
    region_weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
) -> torch.Tensor:
    """4-G-R-SSIM of reference ``x`` and image ``y``, one value per batch item (see module docstring).

    Args:
        x: reference batch (B, C, *spatial); its gradients set the region thresholds.
        y: compared batch, same shape.
        data_range: intensity range, for the stabilising constants.
        kernel_size: side of the Gaussian window (valid filtering, so each side must exceed it).
        kernel_sigma: standard deviation of the window.
        k1: luminance stabiliser factor.
        k2: contrast/structure stabiliser factor.
        edge_threshold: share of the reference's largest gradient above which a voxel is an edge.
        smooth_threshold: share below which a voxel of the reference is smooth.
        region_weights: weights of (preserved edge, changed edge, smooth, texture).
    """
    if x.shape != y.shape:
        raise ValueError(f"x and y shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if any(side <= kernel_size for side in x.shape[2:]):
        raise ValueError(f"every spatial side of {tuple(x.shape[2:])} must exceed kernel_size={kernel_size}")
    x, y = x.double(), y.double()
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2

    def smooth(t: torch.Tensor) -> torch.Tensor:
        return gaussian_filter_valid(t, kernel_size, kernel_sigma)

    mu_x, mu_y = smooth(x), smooth(y)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    gx, gy = gradient_magnitude(x), gradient_magnitude(y)
    mu_gx, mu_gy = smooth(gx), smooth(gy)
    var_gx = (smooth(gx * gx) - mu_gx**2).clamp_min(0)
    var_gy = (smooth(gy * gy) - mu_gy**2).clamp_min(0)
    cov_g = smooth(gx * gy) - mu_gx * mu_gy
    contrast_structure = (2 * cov_g + c2) / (var_gx + var_gy + c2)
    ssim_map = luminance * contrast_structure

    gx_c, gy_c = _crop_like(gx, ssim_map), _crop_like(gy, ssim_map)
    g_max = gx.flatten(1).amax(1).reshape(-1, *([1] * (x.ndim - 1)))
    th_edge, th_smooth = edge_threshold * g_max, smooth_threshold * g_max
    edge_x, edge_y = gx_c > th_edge, gy_c > th_edge
    preserved = edge_x & edge_y
    changed = edge_x ^ edge_y
    smooth_region = (gx_c < th_smooth) & ~edge_y
    texture = ~(preserved | changed | smooth_region)

    scores = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    weight_sum = torch.zeros_like(scores)
    for weight, region in zip(region_weights, (preserved, changed, smooth_region, texture)):
        count = region.flatten(1).sum(1)
        mean = (ssim_map * region).flatten(1).sum(1) / count.clamp_min(1)
        present = (count > 0).double()
        scores += weight * mean * present
        weight_sum += weight * present
    return (scores / weight_sum.clamp_min(1e-12)).float()


def pairwise_mean(
    images: torch.Tensor,
    similarity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    max_pairs: int | None = None,
    batch_size: int = 8,
) -> tuple[float, int]:
    """Mean ``similarity`` over distinct pairs (i < j) of ``images`` (N, C, *spatial): the diversity index.

    Pairs are taken in a fixed order, up to ``max_pairs``. Returns (mean, number of pairs).
    """
    pairs = list(itertools.combinations(range(images.shape[0]), 2))
    if max_pairs is not None:
        pairs = pairs[: int(max_pairs)]
    if not pairs:
        raise ValueError(f"need at least two images to form a pair, got {images.shape[0]}")
    values = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        first = images[[i for i, _ in chunk]]
        second = images[[j for _, j in chunk]]
        values.append(torch.as_tensor(similarity(first, second)).reshape(len(chunk), -1).mean(1))
    return float(torch.cat(values).mean()), len(pairs)
