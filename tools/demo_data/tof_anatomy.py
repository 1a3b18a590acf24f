"""TOF phantom anatomy: the phantom grid, the MNI152 template and each patient's pose of it.

A patient is the template moved by a small random similarity transform (:class:`Anatomy`); the
depth below its brain surface (:class:`DepthMap`) steers cortical vessels in ``tof_vessels``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import nibabel as nib
import numpy as np
from scipy import ndimage

__all__ = ["Anatomy", "DepthMap", "PhantomGrid", "Template", "load_template", "make_grid", "rotation_matrix"]


@dataclass(frozen=True)
class PhantomGrid:
    """Axis-aligned RAS grid in MNI millimetres: in-plane axes x, y; axial slices along z (last axis)."""

    voxel_size_mm: tuple[float, float, float]
    first_voxel_mm: tuple[float, float, float]
    shape: tuple[int, int, int]

    @property
    def affine(self) -> np.ndarray:
        """Voxel index -> world mm, for the NIfTI headers and for resampling onto this grid."""
        affine = np.diag([*self.voxel_size_mm, 1.0])
        affine[:3, 3] = self.first_voxel_mm
        return affine

    def axis_mm(self, axis: int) -> np.ndarray:
        """World coordinate of each voxel centre along one axis."""
        return self.first_voxel_mm[axis] + self.voxel_size_mm[axis] * np.arange(self.shape[axis])


@dataclass(frozen=True)
class Template:
    """MNI152 2009a maps at 1 mm (the arrays never change, so they are loaded once per process)."""

    mask: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    affine: np.ndarray


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Mask and tissue maps, with CSF as the brain left over; cached because every patient reuses them."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_wm_template

    mask_img = load_mni152_brain_mask(resolution=1)
    mask = (np.asarray(mask_img.dataobj) > 0).astype(np.float32)
    gm = np.asarray(load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32) * mask
    wm = np.asarray(load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32) * mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    return Template(mask=mask, gm=gm, wm=wm, csf=csf, affine=mask_img.affine)


def make_grid(
    voxel_size_mm: tuple[float, float, float], slab_z_mm: tuple[float, float], margin_mm: float = 6.0
) -> PhantomGrid:
    """Grid covering the template brain in-plane (plus a margin) and the axial slab ``slab_z_mm``."""
    template = load_template()
    brain_voxels = np.argwhere(template.mask > 0)
    brain_lo = nib.affines.apply_affine(template.affine, brain_voxels.min(0))
    brain_hi = nib.affines.apply_affine(template.affine, brain_voxels.max(0))
    lows = [brain_lo[0] - margin_mm, brain_lo[1] - margin_mm, slab_z_mm[0]]
    highs = [brain_hi[0] + margin_mm, brain_hi[1] + margin_mm, slab_z_mm[1]]
    shape = tuple(max(1, math.ceil((hi - lo) / size)) for lo, hi, size in zip(lows, highs, voxel_size_mm))
    first = tuple(float(lo + size / 2.0) for lo, size in zip(lows, voxel_size_mm))
    return PhantomGrid(tuple(float(v) for v in voxel_size_mm), first, shape)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Anatomy:
    """world -> MNI mapping ``mni = scale * rotation @ (world - centre) + centre + shift``."""

    rotation: np.ndarray
    scale: float
    shift: np.ndarray
    centre: np.ndarray = field(default_factory=lambda: np.array([0.0, -18.0, 10.0]))

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Anatomy:
        """A patient's pose: up to 4 degrees about each axis, 6 % size, 3 mm shift (drawn in this order)."""
        angles = np.deg2rad(rng.uniform(-4.0, 4.0, size=3))
        rotation = rotation_matrix(angles)
        return cls(rotation=rotation, scale=float(rng.uniform(0.94, 1.06)), shift=rng.uniform(-3.0, 3.0, size=3))

    def mni_to_world(self, points_mni: np.ndarray) -> np.ndarray:
        """Inverse mapping, to place MNI landmarks (the vessel waypoints) in this patient."""
        return (points_mni - self.centre - self.shift) @ self.rotation / self.scale + self.centre

    def resample(self, volume: np.ndarray, grid: PhantomGrid, order: int = 1) -> np.ndarray:
        """Template volume seen on ``grid`` through this patient's transform (linear by default)."""
        template_affine = load_template().affine
        world_to_mni = np.eye(4)
        world_to_mni[:3, :3] = self.scale * self.rotation
        world_to_mni[:3, 3] = self.centre + self.shift - self.scale * self.rotation @ self.centre
        grid_to_template = np.linalg.inv(template_affine) @ world_to_mni @ grid.affine
        return ndimage.affine_transform(
            volume,
            grid_to_template[:3, :3],
            offset=grid_to_template[:3, 3],
            output_shape=grid.shape,
            order=order,
            mode="constant",
            cval=0.0,
        ).astype(np.float32)


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z by ``angles`` (radians), the order the pose is defined in."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class DepthMap:
    """Depth below the brain surface on a coarse world grid, to keep cortical branches in the cortex."""

    depth_mm: np.ndarray
    inward: np.ndarray
    grid: PhantomGrid

    @classmethod
    def build(cls, anatomy: Anatomy, fine_grid: PhantomGrid, spacing_mm: float = 2.0) -> DepthMap:
        """Signed distance to the posed brain surface on a coarse grid reaching past ``fine_grid``.

        The margin lets a walker that strays a little outside still find its way back inwards.
        """
        lo = np.asarray(fine_grid.first_voxel_mm) - 10.0
        hi = lo + np.asarray(fine_grid.voxel_size_mm) * fine_grid.shape + 20.0
        shape = tuple(int(v) for v in np.ceil((hi - lo) / spacing_mm))
        grid = PhantomGrid((spacing_mm,) * 3, tuple(float(v) for v in lo), shape)  # type: ignore[arg-type]
        mask = anatomy.resample(load_template().mask, grid) > 0.5
        depth = ndimage.distance_transform_edt(mask, sampling=spacing_mm) - ndimage.distance_transform_edt(
            ~mask, sampling=spacing_mm
        )
        gradient = np.stack(np.gradient(ndimage.gaussian_filter(depth, 1.0)), axis=-1)
        gradient /= np.linalg.norm(gradient, axis=-1, keepdims=True) + 1e-6
        return cls(depth_mm=depth.astype(np.float32), inward=gradient.astype(np.float32), grid=grid)

    def lookup(self, point_mm: np.ndarray) -> tuple[float, np.ndarray]:
        """Nearest-voxel depth (mm) and inward direction; beyond the map counts as well outside the brain."""
        index = np.rint((point_mm - self.grid.first_voxel_mm) / self.grid.voxel_size_mm).astype(int)
        if np.any(index < 0) or np.any(index >= self.grid.shape):
            return -10.0, np.zeros(3)
        i, j, k = index
        return float(self.depth_mm[i, j, k]), self.inward[i, j, k]
