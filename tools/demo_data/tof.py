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
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

#: Folder written inside ``out_dir``.
DATASET_FOLDER = "tof_mra"
SPLIT_KEYS: tuple[str, str, str] = ("training", "validation", "test")

#: Walker step along a centreline (mm); segments are rendered exactly as capsules, so this only sets
#: how finely the tortuosity is resolved.
STEP_MM = 0.7
#: Vessels thinner than this radius (mm) are not grown; TOF at ~0.6 mm hardly shows them.
MIN_RADIUS_MM = 0.25
#: Tissue intensities are quantised to 12-bit levels like a scanner's, which also halves the file size.
QUANTISATION_LEVELS = 4096
#: Safety cap on the rendered centreline segments per patient.
MAX_SEGMENTS = 40_000


@dataclass(frozen=True)
class PhantomGrid:
    """Axis-aligned RAS grid in MNI millimetres: in-plane axes x, y; axial slices along z (last axis)."""

    voxel_size_mm: tuple[float, float, float]
    first_voxel_mm: tuple[float, float, float]
    shape: tuple[int, int, int]

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([*self.voxel_size_mm, 1.0])
        affine[:3, 3] = self.first_voxel_mm
        return affine

    def axis_mm(self, axis: int) -> np.ndarray:
        """World coordinate of each voxel centre along one axis."""
        return self.first_voxel_mm[axis] + self.voxel_size_mm[axis] * np.arange(self.shape[axis])


@dataclass(frozen=True)
class _Template:
    """MNI152 2009a maps at 1 mm (the arrays never change, so they are loaded once per process)."""

    mask: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    affine: np.ndarray


@lru_cache(maxsize=1)
def _load_template() -> _Template:
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template, load_mni152_wm_template

    mask_img = load_mni152_brain_mask(resolution=1)
    mask = (np.asarray(mask_img.dataobj) > 0).astype(np.float32)
    gm = np.asarray(load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32) * mask
    wm = np.asarray(load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32) * mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    return _Template(mask=mask, gm=gm, wm=wm, csf=csf, affine=mask_img.affine)


def make_grid(
    voxel_size_mm: tuple[float, float, float], slab_z_mm: tuple[float, float], margin_mm: float = 6.0
) -> PhantomGrid:
    """Grid covering the template brain in-plane (plus a margin) and the axial slab ``slab_z_mm``."""
    template = _load_template()
    brain_voxels = np.argwhere(template.mask > 0)
    brain_lo = nib.affines.apply_affine(template.affine, brain_voxels.min(0))
    brain_hi = nib.affines.apply_affine(template.affine, brain_voxels.max(0))
    lows = [brain_lo[0] - margin_mm, brain_lo[1] - margin_mm, slab_z_mm[0]]
    highs = [brain_hi[0] + margin_mm, brain_hi[1] + margin_mm, slab_z_mm[1]]
    shape = tuple(max(1, math.ceil((hi - lo) / size)) for lo, hi, size in zip(lows, highs, voxel_size_mm))
    first = tuple(float(lo + size / 2.0) for lo, size in zip(lows, voxel_size_mm))
    return PhantomGrid(tuple(float(v) for v in voxel_size_mm), first, shape)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------
# Anatomy: a per-patient similarity transform of the template
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Anatomy:
    """world -> MNI mapping ``mni = scale * rotation @ (world - centre) + centre + shift``."""

    rotation: np.ndarray
    scale: float
    shift: np.ndarray
    centre: np.ndarray = field(default_factory=lambda: np.array([0.0, -18.0, 10.0]))

    @classmethod
    def sample(cls, rng: np.random.Generator) -> _Anatomy:
        angles = np.deg2rad(rng.uniform(-4.0, 4.0, size=3))
        rotation = _rotation_matrix(angles)
        return cls(rotation=rotation, scale=float(rng.uniform(0.94, 1.06)), shift=rng.uniform(-3.0, 3.0, size=3))

    def mni_to_world(self, points_mni: np.ndarray) -> np.ndarray:
        return (points_mni - self.centre - self.shift) @ self.rotation / self.scale + self.centre

    def resample(self, volume: np.ndarray, grid: PhantomGrid, order: int = 1) -> np.ndarray:
        """Template volume seen on ``grid`` through this patient's transform (linear by default)."""
        template_affine = _load_template().affine
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


def _rotation_matrix(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class _DepthMap:
    """Depth below the brain surface on a coarse world grid, to keep cortical branches in the cortex."""

    depth_mm: np.ndarray
    inward: np.ndarray
    grid: PhantomGrid

    @classmethod
    def build(cls, anatomy: _Anatomy, fine_grid: PhantomGrid, spacing_mm: float = 2.0) -> _DepthMap:
        lo = np.asarray(fine_grid.first_voxel_mm) - 10.0
        hi = lo + np.asarray(fine_grid.voxel_size_mm) * fine_grid.shape + 20.0
        shape = tuple(int(v) for v in np.ceil((hi - lo) / spacing_mm))
        grid = PhantomGrid((spacing_mm,) * 3, tuple(float(v) for v in lo), shape)  # type: ignore[arg-type]
        mask = anatomy.resample(_load_template().mask, grid) > 0.5
        depth = ndimage.distance_transform_edt(mask, sampling=spacing_mm) - ndimage.distance_transform_edt(
            ~mask, sampling=spacing_mm
        )
        gradient = np.stack(np.gradient(ndimage.gaussian_filter(depth, 1.0)), axis=-1)
        gradient /= np.linalg.norm(gradient, axis=-1, keepdims=True) + 1e-6
        return cls(depth_mm=depth.astype(np.float32), inward=gradient.astype(np.float32), grid=grid)

    def lookup(self, point_mm: np.ndarray) -> tuple[float, np.ndarray]:
        index = np.rint((point_mm - self.grid.first_voxel_mm) / self.grid.voxel_size_mm).astype(int)
        if np.any(index < 0) or np.any(index >= self.grid.shape):
            return -10.0, np.zeros(3)
        i, j, k = index
        return float(self.depth_mm[i, j, k]), self.inward[i, j, k]


# ----------------------------------------------------------------------------------------------------
# Vessel tree
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trunk:
    """A named artery that follows MNI waypoints (left-hemisphere x for paired arteries)."""

    name: str
    waypoints_mni: tuple[tuple[float, float, float], ...]
    radius_mm: tuple[float, float]
    paired: bool
    continue_as_cortical: bool
    cortical_rate_per_mm: float
    perforator_rate_per_mm: float


# Rough circle-of-Willis layout in MNI mm, from atlas positions; every patient jitters each waypoint.
_TRUNKS: tuple[_Trunk, ...] = (
    # name, waypoints (MNI mm), radius start/end (mm), paired, continues as cortical, side-branch rates
    _Trunk(
        "ica",
        ((-19, 1, -56), (-17, -2, -42), (-20, 5, -32), (-18, -1, -23), (-21, 2, -15)),
        (1.9, 1.5),
        True,
        False,
        0,
        0,
    ),
    _Trunk("mca_m1", ((-21, 2, -15), (-32, 4, -13), (-40, 3, -6)), (1.3, 1.2), True, False, 0.05, 0.3),
    _Trunk("mca_frontal", ((-40, 3, -6), (-38, 8, 6), (-40, 14, 20), (-42, 22, 30)), (0.95, 0.8), True, True, 0.12, 0),
    _Trunk(
        "mca_parietal", ((-40, 3, -6), (-40, -10, 4), (-44, -28, 14), (-46, -45, 24)), (0.9, 0.75), True, True, 0.12, 0
    ),
    _Trunk(
        "mca_temporal", ((-40, 3, -6), (-46, -6, -10), (-54, -20, -12), (-56, -40, -6)), (0.8, 0.7), True, True, 0.12, 0
    ),
    _Trunk(
        "aca",
        ((-21, 2, -15), (-4, 14, -10), (-3, 26, 0), (-3, 34, 14), (-3, 24, 30)),
        (0.95, 0.8),
        True,
        True,
        0.1,
        0.1,
    ),
    _Trunk("acom", ((-4, 14, -10), (4, 14, -10)), (0.55, 0.55), False, False, 0, 0),
    _Trunk("basilar", ((0, -30, -56), (0, -24, -40), (0, -19, -28), (0, -17, -19)), (1.5, 1.35), False, False, 0, 0.2),
    _Trunk(
        "pca",
        ((0, -17, -19), (-12, -20, -14), (-22, -34, -8), (-25, -58, 0), (-16, -82, 4)),
        (1.0, 0.85),
        True,
        True,
        0.1,
        0.1,
    ),
    _Trunk("pcom", ((-20, 1, -21), (-15, -10, -17), (-12, -20, -14)), (0.5, 0.45), True, False, 0, 0),
    _Trunk("sca", ((0, -20, -30), (-12, -28, -30), (-20, -45, -26), (-12, -62, -22)), (0.7, 0.6), True, True, 0.05, 0),
)


@dataclass
class _Walker:
    position: np.ndarray
    direction: np.ndarray
    radius_mm: float
    kind: str  # "trunk", "cortical" or "perforator"
    max_length_mm: float
    path_mm: float = 0.0
    waypoints: list[np.ndarray] = field(default_factory=list)
    radius_schedule: tuple[float, float, float] | None = None  # start, end, planned length (trunks)
    murray_scale: float = 1.0
    trunk: _Trunk | None = None
    length_mm: float = 0.0


@dataclass
class VesselTree:
    """Centreline segments ``start -> end`` with radii (mm) and the TOF inflow signal at each."""

    start_mm: np.ndarray
    end_mm: np.ndarray
    radius_start_mm: np.ndarray
    radius_end_mm: np.ndarray
    signal: np.ndarray

    def __len__(self) -> int:
        return len(self.signal)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / (np.linalg.norm(vector) + 1e-9)


def _branch_direction(direction: np.ndarray, rng: np.random.Generator, angle_deg: tuple[float, float]) -> np.ndarray:
    """Direction turned away from ``direction`` by a random angle around a random perpendicular axis."""
    perpendicular = _unit(np.cross(direction, rng.standard_normal(3)))
    angle = np.deg2rad(rng.uniform(*angle_deg))
    return _unit(np.cos(angle) * direction + np.sin(angle) * perpendicular)


def grow_vessel_tree(
    rng: np.random.Generator, anatomy: _Anatomy, depth_map: _DepthMap, slab_z_mm: tuple[float, float]
) -> VesselTree:
    """Grow the trunks along jittered waypoints, then their tortuous branches, until they thin out.

    Side branches take radius ``r_child`` and shrink the parent to ``(r^3 - r_child^3)^(1/3)``
    (Murray's law). Cortical branches are steered to stay 1-8 mm below the brain surface, where
    pial arteries run; perforators head upwards into deep tissue and do not branch further.
    """
    # One jitter per landmark, shared by every trunk through it, keeps junctions connected.
    jittered: dict[tuple[float, float, float], np.ndarray] = {}

    def landmark(point_mni: tuple[float, float, float]) -> np.ndarray:
        if point_mni not in jittered:
            jittered[point_mni] = np.asarray(point_mni, dtype=float) + rng.normal(0.0, 1.5, size=3)
        return jittered[point_mni]

    walkers: list[_Walker] = []
    for trunk in _TRUNKS:
        for mirror in (1.0, -1.0) if trunk.paired else (1.0,):
            points = np.array([landmark((mirror * x, y, z)) for x, y, z in trunk.waypoints_mni])
            points = anatomy.mni_to_world(points)
            planned = float(np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1)))
            walkers.append(
                _Walker(
                    position=points[0],
                    direction=_unit(points[1] - points[0]),
                    radius_mm=trunk.radius_mm[0],
                    kind="trunk",
                    max_length_mm=planned * 1.6 + 10.0,
                    waypoints=list(points[1:]),
                    radius_schedule=(trunk.radius_mm[0], trunk.radius_mm[1], planned),
                    trunk=trunk,
                )
            )

    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    radii_start: list[float] = []
    radii_end: list[float] = []
    signals: list[float] = []
    z_low, z_high = slab_z_mm[0] - 4.0, slab_z_mm[1] + 4.0
    up = np.array([0.0, 0.0, 1.0])

    while walkers and len(signals) < MAX_SEGMENTS:
        walker = walkers.pop()
        gain = rng.uniform(0.9, 1.1)  # per-vessel flow variation
        wiggle = rng.standard_normal(3) * 0.3
        outside_steps = 0
        while len(signals) < MAX_SEGMENTS:
            wiggle = 0.9 * wiggle + 0.45 * rng.standard_normal(3)
            wiggle_perp = wiggle - np.dot(wiggle, walker.direction) * walker.direction
            steer = walker.direction.copy()
            step_mm = STEP_MM
            depth, inward = depth_map.lookup(walker.position)
            if walker.kind == "trunk":
                steer += 0.12 * wiggle_perp
                if walker.waypoints:
                    to_target = walker.waypoints[0] - walker.position
                    steer += 0.5 * _unit(to_target)
                    if np.linalg.norm(to_target) < 2.5:
                        walker.waypoints.pop(0)
                        if not walker.waypoints:  # land exactly on the junction the next trunks start from
                            steer, step_mm = to_target, float(np.linalg.norm(to_target))
                elif walker.trunk is not None and walker.trunk.continue_as_cortical:
                    walker.kind = "cortical"
                    walker.max_length_mm = walker.length_mm + rng.uniform(50.0, 100.0)
                else:
                    break
            elif walker.kind == "cortical":
                steer += 0.35 * wiggle_perp
                if depth < 1.5:
                    steer += 0.8 * inward
                elif depth > 8.0:
                    steer -= 0.4 * inward
            else:
                steer += 0.3 * wiggle_perp + 0.35 * up
            walker.direction = _unit(steer)

            new_position = walker.position + step_mm * walker.direction
            walker.length_mm += step_mm
            walker.path_mm += step_mm
            if walker.radius_schedule is not None and walker.kind == "trunk":
                r0, r1, planned = walker.radius_schedule
                new_radius = (r0 + (r1 - r0) * min(1.0, walker.length_mm / planned)) * walker.murray_scale
            elif walker.kind == "perforator":
                new_radius = walker.radius_mm
            else:
                new_radius = walker.radius_mm * math.exp(-step_mm / 150.0)

            # Inflow signal: big vessels carry fast, fresh blood; it saturates the further it travels.
            saturation = math.exp(-walker.path_mm / 350.0)
            signal = gain * (0.6 + 0.4 * min(1.0, walker.radius_mm / 1.5)) * saturation
            starts.append(walker.position)
            ends.append(new_position)
            radii_start.append(walker.radius_mm)
            radii_end.append(new_radius)
            signals.append(signal)
            walker.position = new_position
            walker.radius_mm = new_radius

            if walker.kind != "trunk":
                outside_steps = outside_steps + 1 if depth < 0.0 else 0
                if (
                    walker.radius_mm < MIN_RADIUS_MM
                    or walker.length_mm > walker.max_length_mm
                    or outside_steps > 3
                    or not z_low <= walker.position[2] <= z_high
                ):
                    break
            elif walker.length_mm > walker.max_length_mm or walker.position[2] > z_high:
                break

            if walker.kind == "perforator":
                continue
            cortical_rate = 0.08 if walker.kind == "cortical" else walker.trunk.cortical_rate_per_mm
            perforator_rate = 0.0 if walker.kind == "cortical" else walker.trunk.perforator_rate_per_mm
            if rng.random() < cortical_rate * step_mm:
                ratio = rng.uniform(0.45, 0.85) if walker.kind == "cortical" else rng.uniform(0.35, 0.6)
                child_radius = ratio * walker.radius_mm
                if child_radius >= MIN_RADIUS_MM:
                    walker.murray_scale *= (1.0 - ratio**3) ** (1.0 / 3.0)
                    walker.radius_mm *= (1.0 - ratio**3) ** (1.0 / 3.0)
                    child = _Walker(
                        position=walker.position.copy(),
                        direction=_branch_direction(walker.direction, rng, (30.0, 75.0)),
                        radius_mm=child_radius,
                        kind="cortical",
                        max_length_mm=rng.uniform(40.0, 100.0),
                        path_mm=walker.path_mm,
                    )
                    walkers.append(child)
            if rng.random() < perforator_rate * step_mm and walker.position[2] < slab_z_mm[1]:
                walkers.append(
                    _Walker(
                        position=walker.position.copy(),
                        direction=_branch_direction(up, rng, (0.0, 35.0)),
                        radius_mm=rng.uniform(0.28, 0.45),
                        kind="perforator",
                        max_length_mm=rng.uniform(12.0, 30.0),
                        path_mm=walker.path_mm,
                    )
                )
    return VesselTree(
        start_mm=np.asarray(starts),
        end_mm=np.asarray(ends),
        radius_start_mm=np.asarray(radii_start),
        radius_end_mm=np.asarray(radii_end),
        signal=np.asarray(signals),
    )


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


# ----------------------------------------------------------------------------------------------------
# Image formation
# ----------------------------------------------------------------------------------------------------


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
    template = _load_template()
    anatomy = _Anatomy.sample(anatomy_rng)

    # TOF tissue contrast: short-TR T1 weighting with background suppression; CSF darkest, WM > GM.
    csf_level = anatomy_rng.uniform(0.04, 0.07)
    gm_level = anatomy_rng.uniform(0.16, 0.21)
    wm_level = gm_level * anatomy_rng.uniform(1.12, 1.3)
    tissue_1mm = csf_level * template.csf + gm_level * template.gm + wm_level * template.wm
    tissue = anatomy.resample(tissue_1mm, grid)
    brain_soft = np.clip(anatomy.resample(template.mask, grid), 0.0, 1.0)
    brain_mask = brain_soft >= 0.5

    tree = grow_vessel_tree(tree_rng, anatomy, _DepthMap.build(anatomy, grid), slab_z_mm)
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


# ----------------------------------------------------------------------------------------------------
# Patches
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------


def _check_inputs(
    seed: int,
    n_patients: int,
    patches_per_patient: int,
    voxel_size_mm: tuple[float, float, float],
    slab_z_mm: tuple[float, float],
    patch_size: int,
    split_fractions: tuple[float, float, float],
) -> None:
    def is_int(value: object) -> bool:
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
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _is_occupied(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


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
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out_dir={str(out_dir)!r} exists and is not a folder")
    target = out_dir / DATASET_FOLDER
    if _is_occupied(target) and not overwrite:
        raise FileExistsError(f"{target} already exists and is not empty; pass overwrite=True to replace it")
    splits = split_patients(n_patients, split_fractions)

    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{DATASET_FOLDER}.partial-", dir=out_dir))
    try:
        work.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; the dataset should not be
        grid = make_grid(voxel_size_mm, slab_z_mm)
        (work / "volumes").mkdir()
        (work / "patches").mkdir()
        datalist: dict = {
            "patch_size": [patch_size, patch_size],
            "seed": seed,
            "voxel_size_mm": list(grid.voxel_size_mm),
            "spatial_shape": list(grid.shape),
            "slab_z_mm": list(slab_z_mm),
            **{key: [] for key in SPLIT_KEYS},
        }
        for index, (patient_seeds, split) in enumerate(zip(np.random.SeedSequence(seed).spawn(n_patients), splits)):
            started = time.perf_counter()
            patient = f"pat-{index:03d}"
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
            datalist[split].append(item)
            if verbose:
                vessel_share = 100.0 * phantom.vessel.sum() / max(int(phantom.brain_mask.sum()), 1)
                print(
                    f"tof_mra {index + 1}/{n_patients} {patient} ({split}): {phantom.n_segments} segments, "
                    f"{vessel_share:.2f}% of brain voxels are vessel, {time.perf_counter() - started:.1f} s",
                    flush=True,
                )
        (work / "datalist.json").write_text(json.dumps(datalist, indent=2) + "\n")

        if target.exists():
            if _is_occupied(target) and not overwrite:
                raise FileExistsError(f"{target} appeared while generating; pass overwrite=True to replace it")
            retired = Path(tempfile.mkdtemp(prefix=f".{DATASET_FOLDER}.old-", dir=out_dir))
            target.rename(retired / DATASET_FOLDER)
            work.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target / "datalist.json"
