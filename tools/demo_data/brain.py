"""A synthetic brain cohort grown from nilearn's MNI152 2009a template.

Each subject is the template warped by a smooth random diffeomorphism that also enlarges the
ventricles and scales the head, with age-dependent cortical atrophy, optional inserted lesions,
a bias field and Rician noise. Labels are partial-volume maps in the 10-channel order of
brainSPADE3D (docs/references.md); the conditioning values are measured on those maps, never sampled directly, so a
model that learns them learns something measurable. docs/data_card.md says what this data is not.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from bundle_runtime.mni import CROP_SHAPE_1MM, crop_affine, crop_shape, crop_slices

LABEL_NAMES = ("background", "csf", "gm", "wm", "deep_gm", "brainstem", "wmh", "tumour", "edema", "enhancing")
CONDITION_NAMES = ("sex", "age", "ventricular_vol", "brain_vol")
LESION_NAMES = ("wmh", "tumour", "edema", "enhancing")
#: UK Biobank imaging age range; age is normalised on it so that 0.5 means the same age in any cohort.
AGE_RANGE_YEARS = (44.0, 82.0)
RESOLUTIONS_MM = (1, 2, 4)
#: Mean intensity of each label channel in the synthesised contrasts (T1 comes from the template itself).
CONTRAST_INTENSITY = {
    "t2": (0.0, 0.95, 0.55, 0.38, 0.50, 0.42, 0.78, 0.70, 0.85, 0.62),
    "flair": (0.0, 0.10, 0.55, 0.40, 0.50, 0.45, 0.95, 0.70, 0.88, 0.78),
}
#: T1 intensity of lesion channels relative to the template's white matter.
T1_LESION_INTENSITY = (0.62, 0.35, 0.50, 0.95)  # wmh, tumour, edema, enhancing (as after gadolinium)


@dataclass(frozen=True)
class Template:
    """Template-space maps on the working grid: six tissue channels, T1, and measurement regions."""

    tissues: np.ndarray  # (6, X, Y, Z): background, CSF, cortical GM, WM, deep GM, brainstem
    t1: np.ndarray
    brain_mask: np.ndarray
    ventricle_roi: np.ndarray
    ventricle_pull: np.ndarray  # (3, X, Y, Z) unit-peak field pointing towards the ventricles
    voxel_mm: int


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor``-cubed blocks of the trailing three axes; averaging is what makes partial volumes."""
    if factor == 1:
        return volume
    *lead, x, y, z = volume.shape
    blocks = volume.reshape(*lead, x // factor, factor, y // factor, factor, z // factor, factor)
    return blocks.mean(axis=(-5, -3, -1))


def _world_grid(resolution_mm: int) -> np.ndarray:
    """MNI coordinates (mm) of every voxel centre of the crop at ``resolution_mm``: (3, X, Y, Z)."""
    affine = crop_affine(resolution_mm)
    index = np.indices(crop_shape(resolution_mm), dtype=np.float32)
    return np.einsum("ij,j...->i...", affine[:3, :3], index) + affine[:3, 3, None, None, None]


def _ellipsoid(world: np.ndarray, centre: tuple[float, float, float], radii: tuple[float, float, float]) -> np.ndarray:
    r2 = sum(((world[i] - centre[i]) / radii[i]) ** 2 for i in range(3))
    return r2 <= 1.0


def load_template(working_mm: int) -> Template:
    """Derive the tissue channels from the MNI152 2009a template (nilearn ships it, so this is offline).

    CSF is brain mask minus GM minus WM. Deep GM and brainstem have no template map, so they are
    carved out by geometry: deep GM is grey matter inside an ellipsoid around the basal ganglia and
    thalami that lies more than 12 mm from the brain surface (which excludes insular and cingulate
    cortex); brainstem is tissue in a midline column below the thalami and in front of the
    cerebellum. The ventricle region is the same kind of deep central ellipsoid; CSF inside it is
    what this collection calls ventricular volume, in the data and in every bundle's evaluation.
    """
    from nilearn import datasets

    crop = crop_slices()
    mask = datasets.load_mni152_brain_mask(resolution=1).get_fdata()[crop] > 0.5
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata()[crop] * mask
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata()[crop] * mask
    t1 = datasets.load_mni152_template(resolution=1).get_fdata()[crop] * mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    world = _world_grid(1)
    depth_mm = ndimage.distance_transform_edt(mask)
    deep_region = _ellipsoid(world, (0.0, -6.0, 4.0), (30.0, 32.0, 17.0)) & (depth_mm > 12)
    stem_region = (np.abs(world[0]) < 13) & (world[1] > -42) & (world[1] < -12) & (world[2] < -6)
    deep_gm = gm * deep_region
    brainstem = (gm + wm) * stem_region * ~deep_region
    cortical_gm = gm * ~deep_region * ~stem_region
    white = wm * ~stem_region
    background = 1.0 - csf - cortical_gm - white - deep_gm - brainstem
    tissues = np.stack([background, csf, cortical_gm, white, deep_gm, brainstem]).astype(np.float32)
    ventricle_roi = _ellipsoid(world, (0.0, -8.0, 12.0), (26.0, 42.0, 22.0)) & (depth_mm > 14)

    tissues = _block_mean(tissues, working_mm)
    ventricles = _block_mean((csf * ventricle_roi).astype(np.float32), working_mm)
    pull = np.stack(np.gradient(ndimage.gaussian_filter(ventricles, 12.0 / working_mm)))
    pull /= np.abs(pull).max()
    return Template(
        tissues=tissues,
        t1=_block_mean(t1.astype(np.float32), working_mm),
        brain_mask=_block_mean(mask.astype(np.float32), working_mm) > 0.5,
        ventricle_roi=_block_mean(ventricle_roi.astype(np.float32), working_mm) > 0.5,
        ventricle_pull=pull.astype(np.float32),
        voxel_mm=working_mm,
    )


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float) -> np.ndarray:
    """Zero-mean, unit-std random field with features of about ``sigma_vox`` voxels."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-8)


def _warp(volumes: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Sample ``volumes`` (C, X, Y, Z) at x + displacement(x), linearly so partial volumes still sum to 1."""
    coords = np.indices(volumes.shape[1:], dtype=np.float32) + displacement
    return np.stack([ndimage.map_coordinates(v, coords, order=1, mode="nearest") for v in volumes])


def _exponentiate(velocity: np.ndarray, squarings: int = 5) -> np.ndarray:
    """Scaling and squaring of a stationary velocity field: the result is a diffeomorphic displacement."""
    displacement = velocity / 2**squarings
    for _ in range(squarings):
        displacement = displacement + _warp(displacement, displacement)
    return displacement


def _soft_ball(distance: np.ndarray, radius: float, edge: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(np.clip((distance - radius) / edge, -50.0, 50.0)))


def _insert_lesions(
    rng: np.random.Generator, tissues: np.ndarray, kinds: set[str], voxel_mm: int, depth_mm: np.ndarray
) -> np.ndarray:
    """Return the four lesion channels and take their share from the tissue channels in place.

    Lesions only replace brain tissue (never background), so every voxel still sums to 1.
    """
    shape = tissues.shape[1:]
    brain = 1.0 - tissues[0]
    lesions = np.zeros((4, *shape), dtype=np.float32)
    index = np.indices(shape, dtype=np.float32) * voxel_mm
    if "wmh" in kinds:
        # Periventricular and deep white-matter blobs: thresholded smooth noise where WM is deep.
        blobs = _smooth_noise(rng, shape, 3.0 / voxel_mm)
        threshold = rng.uniform(1.2, 2.0)
        lesions[0] = np.clip((blobs - threshold) * 2.0, 0.0, 1.0) * tissues[3] * (depth_mm > 15)
    if "tumour" in kinds:
        candidates = np.argwhere((tissues[3] + tissues[2] > 0.6) & (depth_mm > 20))
        centre = candidates[rng.integers(len(candidates))].astype(np.float32) * voxel_mm
        distance = np.sqrt(((index - centre[:, None, None, None]) ** 2).sum(0))
        distance *= 1.0 + 0.15 * _smooth_noise(rng, shape, 6.0 / voxel_mm)  # irregular outline
        core_mm, rim_mm = rng.uniform(5.0, 14.0), rng.uniform(2.5, 5.0)
        edema_mm = core_mm + rim_mm + rng.uniform(6.0, 18.0)
        core = _soft_ball(distance, core_mm, 1.0)
        enhancing = _soft_ball(distance, core_mm + rim_mm, 1.0) - core
        edema = (_soft_ball(distance, edema_mm, 3.0) - core - enhancing).clip(0.0) * (tissues[3] + 0.3 * tissues[2])
        lesions[1], lesions[2], lesions[3] = core * brain, edema * brain, enhancing * brain
    total = lesions.sum(0)
    scale = np.clip(total / np.maximum(brain, 1e-6), 0.0, 1.0)
    lesions *= np.where(total > brain, brain / np.maximum(total, 1e-6), 1.0)
    tissues[1:] *= 1.0 - scale
    return lesions


@dataclass(frozen=True)
class Subject:
    labels: np.ndarray  # (10, X, Y, Z) at the output resolution
    images: dict[str, np.ndarray]
    sex: int
    age_years: float


def make_subject(template: Template, rng: np.random.Generator, resolution_mm: int, lesion_kinds: set[str]) -> Subject:
    """One synthetic subject at ``resolution_mm``, grown on the template's working grid."""
    shape = template.tissues.shape[1:]
    vox = template.voxel_mm
    sex = int(rng.integers(2))
    age = float(rng.uniform(*AGE_RANGE_YEARS))
    age_norm = (age - AGE_RANGE_YEARS[0]) / (AGE_RANGE_YEARS[1] - AGE_RANGE_YEARS[0])

    # One stationary velocity field: random smooth shape change, head scaling, ventricle enlargement.
    coarse = tuple(max(4, s // 10) for s in shape)
    random_field = np.stack(
        [ndimage.zoom(rng.standard_normal(coarse), np.divide(shape, coarse), order=3) for _ in range(3)]
    )
    random_field *= rng.uniform(1.5, 3.0) / vox / (np.abs(random_field).max() + 1e-8)
    head_scale = rng.normal(1.0 + 0.035 * sex, 0.025)
    centre = (np.array(shape, dtype=np.float32) - 1) / 2
    scaling = (1.0 / head_scale - 1.0) * (np.indices(shape, dtype=np.float32) - centre[:, None, None, None])
    ventricle_mm = (2.0 + 14.0 * age_norm) * rng.uniform(0.6, 1.4)
    velocity = random_field + scaling + template.ventricle_pull * (ventricle_mm / vox)
    displacement = _exponentiate(velocity.astype(np.float32))

    warped = _warp(np.concatenate([template.tissues, template.t1[None]]), displacement)
    tissues, t1 = warped[:6], warped[6]

    # Age-related cortical atrophy: patchy transfer of cortical GM to CSF.
    atrophy = (0.3 * age_norm * rng.uniform(0.5, 1.2)) * np.clip(1.0 + 0.5 * _smooth_noise(rng, shape, 8.0 / vox), 0, 2)
    lost_gm = tissues[2] * np.clip(atrophy, 0.0, 0.6)
    tissues[2] -= lost_gm
    tissues[1] += lost_gm
    gm_t1 = float(np.median(template.t1[template.tissues[2] > 0.9]))
    csf_t1 = float(np.median(template.t1[template.tissues[1] > 0.9]))
    wm_t1 = float(np.median(template.t1[template.tissues[3] > 0.9]))
    t1 += lost_gm * (csf_t1 - gm_t1)

    depth_mm = ndimage.distance_transform_edt(tissues[0] < 0.5) * vox
    brain_before = 1.0 - tissues[0]
    lesions = _insert_lesions(rng, tissues, lesion_kinds, vox, depth_mm)
    lesion_total = lesions.sum(0)
    t1 = t1 * (1.0 - lesion_total / np.maximum(brain_before, 1e-6)).clip(0.0, 1.0)
    t1 += np.tensordot(np.multiply(T1_LESION_INTENSITY, wm_t1), lesions, axes=1)

    factor = resolution_mm // vox
    labels = _block_mean(np.concatenate([tissues, lesions]), factor).astype(np.float32)
    labels[0] = 1.0 - labels[1:].sum(0)
    t1 = _block_mean(t1, factor)

    out_shape = labels.shape[1:]
    images = {"t1": t1}
    for contrast, intensity in CONTRAST_INTENSITY.items():
        texture = 1.0 + 0.04 * _smooth_noise(rng, (10, *out_shape), 1.0)
        images[contrast] = (labels * texture * np.asarray(intensity, dtype=np.float32)[:, None, None, None]).sum(0)
    brain = 1.0 - labels[0]
    for contrast, image in images.items():
        bias = np.exp(0.08 * _smooth_noise(rng, out_shape, 20.0 / resolution_mm))
        sigma = rng.uniform(0.01, 0.025)
        noisy = np.hypot(image * bias + sigma * rng.standard_normal(out_shape), sigma * rng.standard_normal(out_shape))
        noisy *= np.clip(brain * 4.0, 0.0, 1.0)  # skull-stripped like the template
        images[contrast] = np.clip(noisy / np.percentile(noisy[brain > 0.5], 99.5), 0.0, 1.0).astype(np.float32)
    return Subject(labels=labels, images=images, sex=sex, age_years=age)


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data, affine), str(path))


def _lesion_kinds(rng: np.random.Generator, lesion_probability: float) -> set[str]:
    if rng.uniform() >= lesion_probability:
        return set()
    return [{"wmh"}, {"tumour"}, {"wmh", "tumour"}][int(rng.integers(3))]


def _split_names(n_subjects: int) -> list[str]:
    n_val = max(1, round(0.1 * n_subjects))
    n_test = max(1, round(0.1 * n_subjects))
    return ["training"] * (n_subjects - n_val - n_test) + ["validation"] * n_val + ["test"] * n_test


def _min_max(values: list[float]) -> tuple[float, float, list[float]]:
    low, high = min(values), max(values)
    span = high - low if high > low else 1.0
    return low, high, [(v - low) / span for v in values]


def make_brain_cohort(
    out_dir: Path | str,
    seed: int = 0,
    n_subjects: int = 64,
    resolution_mm: int = 4,
    lesion_probability: float = 0.5,
    overwrite: bool = False,
) -> Path:
    """Write ``out_dir/brain_cohort_<r>mm/`` (images, labels, atlas, participants.csv, datalist.json).

    The cohort is built in a temporary sibling folder and renamed at the end, so an interrupted run
    leaves nothing half-written. Returns the datalist path.
    """
    if resolution_mm not in RESOLUTIONS_MM and resolution_mm != 8:  # 8 mm exists for fast tests
        raise ValueError(f"resolution_mm={resolution_mm!r} is not one of {RESOLUTIONS_MM}")
    if n_subjects < 3:
        raise ValueError(f"n_subjects={n_subjects!r}: need at least 3 (training, validation and test)")
    if not 0.0 <= lesion_probability <= 1.0:
        raise ValueError(f"lesion_probability={lesion_probability!r} must lie in [0, 1]")
    target = Path(out_dir) / f"brain_cohort_{resolution_mm}mm"
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{target} already exists and is not empty; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)

    working_mm = max(1, resolution_mm // 2)
    template = load_template(working_mm)
    affine = crop_affine(resolution_mm)
    voxel_ml = resolution_mm**3 / 1000.0
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_subjects)]
    splits = _split_names(n_subjects)
    ventricle_roi = _block_mean(template.ventricle_roi.astype(np.float32), resolution_mm // working_mm) > 0.5
    brain_mask = _block_mean(template.brain_mask.astype(np.float32), resolution_mm // working_mm) > 0.5

    rows = []
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        (staging / "atlas").mkdir()
        _save(staging / "atlas" / "mni_brain_mask.nii.gz", brain_mask.astype(np.uint8), affine)
        _save(staging / "atlas" / "mni_ventricle_roi.nii.gz", ventricle_roi.astype(np.uint8), affine)
        for index, (rng, split) in enumerate(zip(rngs, splits)):
            name = f"sub-{index:03d}"
            subject = make_subject(template, rng, resolution_mm, _lesion_kinds(rng, lesion_probability))
            folder = staging / name
            folder.mkdir()
            _save(folder / f"{name}_label.nii.gz", np.moveaxis(subject.labels, 0, -1), affine)
            for contrast, suffix in (("t1", "T1w"), ("t2", "T2w"), ("flair", "FLAIR")):
                _save(folder / f"{name}_{suffix}.nii.gz", subject.images[contrast], affine)
            volumes = subject.labels.reshape(10, -1).sum(1) * voxel_ml
            rows.append(
                {
                    "subject": name,
                    "split": split,
                    "sex": subject.sex,
                    "age_years": round(subject.age_years, 2),
                    "ventricular_vol_ml": float((subject.labels[1] * ventricle_roi).sum() * voxel_ml),
                    "brain_vol_ml": float(volumes[2:].sum()),
                    **{f"{lesion}_vol_ml": float(v) for lesion, v in zip(LESION_NAMES, volumes[6:])},
                }
            )
            print(f"[demo-data brain] {index + 1}/{n_subjects} {name} ({split})", file=sys.stderr, flush=True)

        ranges = {"sex": (0.0, 1.0), "age": AGE_RANGE_YEARS}
        ventricle_low, ventricle_high, ventricle_norm = _min_max([r["ventricular_vol_ml"] for r in rows])
        brain_low, brain_high, brain_norm = _min_max([r["brain_vol_ml"] for r in rows])
        ranges.update(ventricular_vol=(ventricle_low, ventricle_high), brain_vol=(brain_low, brain_high))
        lesion_fraction = np.array([[r[f"{k}_vol_ml"] / r["brain_vol_ml"] for k in LESION_NAMES] for r in rows])
        lesion_max = np.maximum(lesion_fraction.max(0), 1e-12)
        lesion_norm = np.where(lesion_fraction > 1e-4, lesion_fraction / lesion_max, 0.0)

        datalist: dict = {
            "description": "synthbrain-zoo demo brain cohort (MNI152 2009a derived phantoms; see docs/data_card.md)",
            "seed": seed,
            "resolution_mm": resolution_mm,
            "spatial_shape": list(crop_shape(resolution_mm)),
            "label_names": list(LABEL_NAMES),
            "condition_names": list(CONDITION_NAMES),
            "condition_ranges": {k: [float(v) for v in r] for k, r in ranges.items()},
            "lesion_names": list(LESION_NAMES),
            "lesion_fraction_max": [float(v) for v in lesion_max],
            "training": [],
            "validation": [],
            "test": [],
        }
        for i, row in enumerate(rows):
            age = (row["age_years"] - AGE_RANGE_YEARS[0]) / (AGE_RANGE_YEARS[1] - AGE_RANGE_YEARS[0])
            condition = [float(row["sex"]), float(np.clip(age, 0, 1)), ventricle_norm[i], brain_norm[i]]
            row.update(zip([f"{c}_norm" for c in CONDITION_NAMES], condition))
            row.update(zip([f"{k}_norm" for k in LESION_NAMES], lesion_norm[i].tolist()))
            name = row["subject"]
            datalist[row["split"]].append(
                {
                    "subject": name,
                    "image": f"{name}/{name}_T1w.nii.gz",
                    "t2": f"{name}/{name}_T2w.nii.gz",
                    "flair": f"{name}/{name}_FLAIR.nii.gz",
                    "label": f"{name}/{name}_label.nii.gz",
                    "condition": condition,
                    **dict(zip(CONDITION_NAMES, condition)),
                    "lesion": [float(v) for v in lesion_norm[i]],
                }
            )
        (staging / "datalist.json").write_text(json.dumps(datalist, indent=1))
        with open(staging / "participants.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / "datalist.json"


__all__ = ["make_brain_cohort", "make_subject", "load_template", "CROP_SHAPE_1MM"]
