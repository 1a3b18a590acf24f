"""TOF phantom vessels: an arterial tree grown by random walkers in millimetre space.

Trunks follow jittered circle-of-Willis landmarks; cortical branches then wander under the brain
surface and perforators rise into deep tissue, each segment's radius set by Murray's law at every
branching. The walkers draw from one generator in a fixed order, so a seed gives one tree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tools.demo_data.tof_anatomy import Anatomy, DepthMap

__all__ = ["MAX_SEGMENTS", "MIN_RADIUS_MM", "STEP_MM", "VesselTree", "grow_vessel_tree"]

#: Walker step along a centreline (mm); segments are rendered exactly as capsules, so this only sets
#: how finely the tortuosity is resolved.
STEP_MM = 0.7
#: Vessels thinner than this radius (mm) are not grown; TOF at ~0.6 mm hardly shows them.
MIN_RADIUS_MM = 0.25
#: Safety cap on the rendered centreline segments per patient.
MAX_SEGMENTS = 40_000
_UP = np.array([0.0, 0.0, 1.0])


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
    """Unit vector; the small offset keeps a zero vector from dividing by zero."""
    return vector / (np.linalg.norm(vector) + 1e-9)


def _branch_direction(direction: np.ndarray, rng: np.random.Generator, angle_deg: tuple[float, float]) -> np.ndarray:
    """Direction turned away from ``direction`` by a random angle around a random perpendicular axis."""
    perpendicular = _unit(np.cross(direction, rng.standard_normal(3)))
    angle = np.deg2rad(rng.uniform(*angle_deg))
    return _unit(np.cos(angle) * direction + np.sin(angle) * perpendicular)


@dataclass
class _Segments:
    """Centreline segments gathered while the walkers move, in the order they are drawn."""

    starts: list[np.ndarray] = field(default_factory=list)
    ends: list[np.ndarray] = field(default_factory=list)
    radii_start: list[float] = field(default_factory=list)
    radii_end: list[float] = field(default_factory=list)
    signals: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.signals)

    @property
    def full(self) -> bool:
        """At :data:`MAX_SEGMENTS`, so a runaway walker cannot exhaust memory or time."""
        return len(self.signals) >= MAX_SEGMENTS

    def add(self, start: np.ndarray, end: np.ndarray, radius_start: float, radius_end: float, signal: float) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.radii_start.append(radius_start)
        self.radii_end.append(radius_end)
        self.signals.append(signal)

    def tree(self) -> VesselTree:
        """The gathered segments as arrays, in the order they were drawn."""
        return VesselTree(
            start_mm=np.asarray(self.starts),
            end_mm=np.asarray(self.ends),
            radius_start_mm=np.asarray(self.radii_start),
            radius_end_mm=np.asarray(self.radii_end),
            signal=np.asarray(self.signals),
        )


def _trunk_walkers(rng: np.random.Generator, anatomy: Anatomy) -> list[_Walker]:
    """One walker per trunk (two for paired arteries) along its jittered, patient-posed waypoints."""
    # One jitter per landmark, shared by every trunk through it, keeps junctions connected.
    jittered: dict[tuple[float, float, float], np.ndarray] = {}

    def landmark(point_mni: tuple[float, float, float]) -> np.ndarray:
        """Jitter a landmark on first use (so draw order follows the trunk table), then reuse it."""
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
    return walkers


def _steer(
    walker: _Walker, rng: np.random.Generator, wiggle_perp: np.ndarray, depth: float, inward: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Next direction (unnormalised) and step length, or ``None`` when a trunk ends here.

    Trunks head for their next waypoint and land exactly on the last one, where the next trunks
    start; a trunk that continues as a cortical branch turns into one. Cortical branches keep
    1.5-8 mm below the brain surface, perforators drift upwards.
    """
    steer = walker.direction.copy()
    step_mm = STEP_MM
    if walker.kind == "trunk":
        steer += 0.12 * wiggle_perp
        if walker.waypoints:
            to_target = walker.waypoints[0] - walker.position
            steer += 0.5 * _unit(to_target)
            if np.linalg.norm(to_target) < 2.5:
                walker.waypoints.pop(0)
                if not walker.waypoints:
                    steer, step_mm = to_target, float(np.linalg.norm(to_target))
        elif walker.trunk is not None and walker.trunk.continue_as_cortical:
            walker.kind = "cortical"
            walker.max_length_mm = walker.length_mm + rng.uniform(50.0, 100.0)
        else:
            return None
    elif walker.kind == "cortical":
        steer += 0.35 * wiggle_perp
        if depth < 1.5:
            steer += 0.8 * inward
        elif depth > 8.0:
            steer -= 0.4 * inward
    else:
        steer += 0.3 * wiggle_perp + 0.35 * _UP
    return steer, step_mm


def _next_radius(walker: _Walker, step_mm: float) -> float:
    """Trunks taper on their planned schedule, perforators keep their radius, branches thin slowly."""
    if walker.radius_schedule is not None and walker.kind == "trunk":
        r0, r1, planned = walker.radius_schedule
        return (r0 + (r1 - r0) * min(1.0, walker.length_mm / planned)) * walker.murray_scale
    if walker.kind == "perforator":
        return walker.radius_mm
    return walker.radius_mm * math.exp(-step_mm / 150.0)


def _stops(walker: _Walker, outside_steps: int, z_limits: tuple[float, float]) -> bool:
    """A branch stops when too thin, too long, out of the brain or the slab; a trunk when too long or too high."""
    z_low, z_high = z_limits
    if walker.kind != "trunk":
        return (
            walker.radius_mm < MIN_RADIUS_MM
            or walker.length_mm > walker.max_length_mm
            or outside_steps > 3
            or not z_low <= walker.position[2] <= z_high
        )
    return walker.length_mm > walker.max_length_mm or walker.position[2] > z_high


def _branches(walker: _Walker, rng: np.random.Generator, step_mm: float, slab_top_mm: float) -> list[_Walker]:
    """Side branches leaving ``walker`` after one step: a cortical one (Murray's law), then a perforator."""
    children = []
    cortical_rate = 0.08 if walker.kind == "cortical" else walker.trunk.cortical_rate_per_mm
    perforator_rate = 0.0 if walker.kind == "cortical" else walker.trunk.perforator_rate_per_mm
    if rng.random() < cortical_rate * step_mm:
        ratio = rng.uniform(0.45, 0.85) if walker.kind == "cortical" else rng.uniform(0.35, 0.6)
        child_radius = ratio * walker.radius_mm
        if child_radius >= MIN_RADIUS_MM:
            walker.murray_scale *= (1.0 - ratio**3) ** (1.0 / 3.0)
            walker.radius_mm *= (1.0 - ratio**3) ** (1.0 / 3.0)
            children.append(
                _Walker(
                    position=walker.position.copy(),
                    direction=_branch_direction(walker.direction, rng, (30.0, 75.0)),
                    radius_mm=child_radius,
                    kind="cortical",
                    max_length_mm=rng.uniform(40.0, 100.0),
                    path_mm=walker.path_mm,
                )
            )
    if rng.random() < perforator_rate * step_mm and walker.position[2] < slab_top_mm:
        children.append(
            _Walker(
                position=walker.position.copy(),
                direction=_branch_direction(_UP, rng, (0.0, 35.0)),
                radius_mm=rng.uniform(0.28, 0.45),
                kind="perforator",
                max_length_mm=rng.uniform(12.0, 30.0),
                path_mm=walker.path_mm,
            )
        )
    return children


def _walk(
    walker: _Walker,
    rng: np.random.Generator,
    depth_map: DepthMap,
    slab_z_mm: tuple[float, float],
    segments: _Segments,
) -> list[_Walker]:
    """Move one walker step by step until it stops, adding its segments; return the branches it left."""
    z_limits = (slab_z_mm[0] - 4.0, slab_z_mm[1] + 4.0)
    gain = rng.uniform(0.9, 1.1)  # per-vessel flow variation
    wiggle = rng.standard_normal(3) * 0.3
    outside_steps = 0
    children: list[_Walker] = []
    while not segments.full:
        wiggle = 0.9 * wiggle + 0.45 * rng.standard_normal(3)
        wiggle_perp = wiggle - np.dot(wiggle, walker.direction) * walker.direction
        depth, inward = depth_map.lookup(walker.position)
        steering = _steer(walker, rng, wiggle_perp, depth, inward)
        if steering is None:
            break
        steer, step_mm = steering
        walker.direction = _unit(steer)

        new_position = walker.position + step_mm * walker.direction
        walker.length_mm += step_mm
        walker.path_mm += step_mm
        new_radius = _next_radius(walker, step_mm)
        # Inflow signal: big vessels carry fast, fresh blood; it saturates the further it travels.
        saturation = math.exp(-walker.path_mm / 350.0)
        signal = gain * (0.6 + 0.4 * min(1.0, walker.radius_mm / 1.5)) * saturation
        segments.add(walker.position, new_position, walker.radius_mm, new_radius, signal)
        walker.position = new_position
        walker.radius_mm = new_radius

        if walker.kind != "trunk":
            outside_steps = outside_steps + 1 if depth < 0.0 else 0
        if _stops(walker, outside_steps, z_limits):
            break
        if walker.kind != "perforator":
            children += _branches(walker, rng, step_mm, slab_z_mm[1])
    return children


def grow_vessel_tree(
    rng: np.random.Generator, anatomy: Anatomy, depth_map: DepthMap, slab_z_mm: tuple[float, float]
) -> VesselTree:
    """Grow the trunks along jittered waypoints, then their tortuous branches, until they thin out.

    Side branches take radius ``r_child`` and shrink the parent to ``(r^3 - r_child^3)^(1/3)``
    (Murray's law). Cortical branches are steered to stay 1-8 mm below the brain surface, where
    pial arteries run; perforators head upwards into deep tissue and do not branch further.
    Walkers wait on a stack: the last one left is the next to grow.
    """
    walkers = _trunk_walkers(rng, anatomy)
    segments = _Segments()
    while walkers and not segments.full:
        walkers += _walk(walkers.pop(), rng, depth_map, slab_z_mm, segments)
    return segments.tree()
