"""TOF phantom rendering: the vessel tree as partial-volume signal over the tissue, then bias and noise.

The tree is drawn as a signed distance field, so vessel edges have partial volume, over a dim TOF
tissue background; a smooth multiplicative bias field and Rician noise follow, and intensities are
quantised like a scanner's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tools.demo_data.tof_anatomy import Anatomy, DepthMap, PhantomGrid, load_template
from tools.demo_data.tof_vessels import VesselTree, grow_vessel_tree

__all__ = ["QUANTISATION_LEVELS", "TofPhantom", "make_phantom", "render_vessels"]

#: Tissue intensities are quantised to 12-bit levels like a scanner's, which also halves the file size.
QUANTISATION_LEVELS = 4096


def render_vessels(tree: VesselTree, grid: PhantomGrid) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to the vessel wall (mm, negative inside) and the inflow signal of the nearest vessel.

    Each segment is a capsule whose radius varies linearly along it; only its bounding box is visited.
    """
    signed = np.full(grid.shape, 1e3, dtype=np.float32)
    signal = np.zeros(grid.shape, dtype=np.float32)
    axes = [grid.axis_mm(axis) for axis in range(3)]
    first = np.asarray(grid.first_voxel_mm)
    size = np.asarray(grid.voxel_size_mm)
    reach = np.maximum(tree.radius_start_mm, tree.radius_end_mm)[:, None] + size.max()
    box_lo = np.floor((np.minimum(tree.start_mm, tree.end_mm) - reach - first) / size).astype(int)
    box_hi = np.ceil((np.maximum(tree.start_mm, tree.end_mm) + reach - first) / size).astype(int) + 1
    box_lo = np.clip(box_lo, 0, grid.shape)
    box_hi = np.clip(box_hi, 0, grid.shape)
    for index in np.flatnonzero(np.all(box_hi > box_lo, axis=1)):
        (i0, j0, k0), (i1, j1, k1) = box_lo[index], box_hi[index]
        start = tree.start_mm[index]
        along = tree.end_mm[index] - start
        length_sq = float(np.dot(along, along)) + 1e-12
        dx = (axes[0][i0:i1] - start[0])[:, None, None]
        dy = (axes[1][j0:j1] - start[1])[None, :, None]
        dz = (axes[2][k0:k1] - start[2])[None, None, :]
        t = np.clip((dx * along[0] + dy * along[1] + dz * along[2]) / length_sq, 0.0, 1.0)
        distance = np.sqrt((dx - t * along[0]) ** 2 + (dy - t * along[1]) ** 2 + (dz - t * along[2]) ** 2)
        radius = tree.radius_start_mm[index] + t * (tree.radius_end_mm[index] - tree.radius_start_mm[index])
        candidate = (distance - radius).astype(np.float32)
        box = (slice(i0, i1), slice(j0, j1), slice(k0, k1))
        closer = candidate < signed[box]
        signed[box] = np.where(closer, candidate, signed[box])
        signal[box] = np.where(closer, np.float32(tree.signal[index]), signal[box])
    return signed, signal


def _bias_field(rng: np.random.Generator, grid: PhantomGrid, strength: float = 0.12) -> np.ndarray:
    """Smooth multiplicative field: exp of a random quadratic polynomial over the normalised grid."""
    coords = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in grid.shape]
    x, y, z = coords[0][:, None, None], coords[1][None, :, None], coords[2][None, None, :]
    log_field = np.zeros(grid.shape, dtype=np.float32)
    terms = (x, y, z, x * x - 0.33, y * y - 0.33, z * z - 0.33, x * y, x * z, y * z)
    for coefficient, term in zip(rng.normal(0.0, strength, size=len(terms)), terms):
        log_field += np.float32(coefficient) * term
    return np.exp(log_field)


def _rician(magnitude: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of a complex signal with Gaussian noise on both channels, as an MR magnitude image."""
    real = magnitude + np.float32(sigma) * rng.standard_normal(magnitude.shape, dtype=np.float32)
    imaginary = np.float32(sigma) * rng.standard_normal(magnitude.shape, dtype=np.float32)
    return np.sqrt(real * real + imaginary * imaginary)


@dataclass(frozen=True)
class TofPhantom:
    """One patient: TOF image in [0, 1], vessel label, brain mask (all on ``grid``) and its noise level."""

    image: np.ndarray
    vessel: np.ndarray
    brain_mask: np.ndarray
    noise_sigma: float
    n_segments: int


def make_phantom(
    seed_sequence: np.random.SeedSequence, grid: PhantomGrid, slab_z_mm: tuple[float, float]
) -> TofPhantom:
    """Render one phantom; independent streams keep the anatomy, tree and noise of a patient stable."""
    anatomy_rng, tree_rng, image_rng = (np.random.default_rng(s) for s in seed_sequence.spawn(3))
    template = load_template()
    anatomy = Anatomy.sample(anatomy_rng)

    # TOF tissue contrast: short-TR T1 weighting with background suppression; CSF darkest, WM > GM.
    csf_level = anatomy_rng.uniform(0.04, 0.07)
    gm_level = anatomy_rng.uniform(0.16, 0.21)
    wm_level = gm_level * anatomy_rng.uniform(1.12, 1.3)
    tissue_1mm = csf_level * template.csf + gm_level * template.gm + wm_level * template.wm
    tissue = anatomy.resample(tissue_1mm, grid)
    brain_soft = np.clip(anatomy.resample(template.mask, grid), 0.0, 1.0)
    brain_mask = brain_soft >= 0.5

    tree = grow_vessel_tree(tree_rng, anatomy, DepthMap.build(anatomy, grid), slab_z_mm)
    signed, signal = render_vessels(tree, grid)
    edge_mm = float(np.mean(grid.voxel_size_mm))
    fraction = np.clip(0.5 - signed / np.float32(edge_mm), 0.0, 1.0) * brain_soft
    vessel = ((signed <= 0.0) & brain_mask).astype(np.uint8)

    image = (tissue * (1.0 - fraction) + signal * fraction) * _bias_field(image_rng, grid)
    noise_sigma = float(image_rng.uniform(0.015, 0.03))
    image = _rician(image, noise_sigma, image_rng)
    image = np.round(np.clip(image, 0.0, 1.0) * (QUANTISATION_LEVELS - 1)) / np.float32(QUANTISATION_LEVELS - 1)
    return TofPhantom(
        image=image.astype(np.float32),
        vessel=vessel,
        brain_mask=brain_mask.astype(np.uint8),
        noise_sigma=noise_sigma,
        n_segments=len(tree),
    )
