"""Offline demo data: a brain cohort made from nilearn's MNI152 template, and TOF-MRA vessel phantoms.

See docs/data_card.md for what this data is and is not.
"""

from __future__ import annotations

from pathlib import Path


def demo_data_cli(
    out: str,
    seed: int = 0,
    kind: str = "all",
    n_subjects: int = 64,
    resolution_mm: int = 4,
    lesion_probability: float = 0.5,
    n_patients: int = 20,
    patches_per_patient: int = 200,
    tof_voxel_size_mm: tuple[float, float, float] = (0.6, 0.6, 1.0),
    overwrite: bool = False,
) -> None:
    """Write the demo datasets under ``out``.

    Args:
        out: output folder; ``brain_cohort_<r>mm/`` and ``tof_mra/`` are written inside it.
        seed: every random choice derives from it, so the same seed gives the same files.
        kind: ``brain``, ``tof`` or ``all``.
        n_subjects: brain cohort size.
        resolution_mm: brain resolution, 1, 2 or 4 (4 is the CPU training default).
        lesion_probability: share of brain subjects that receive inserted lesions.
        n_patients: TOF-MRA phantom patients (split into train / validation / test).
        patches_per_patient: 96x96 patches per TOF patient, half centred on vessels.
        tof_voxel_size_mm: TOF grid spacing (x, y, z); another spacing makes a second "scanner" whose
            vessels span other pixel widths, for transfer experiments.
        overwrite: replace existing datasets instead of refusing.
    """
    kinds = {"brain", "tof", "all"}
    if kind not in kinds:
        raise ValueError(f"kind={kind!r} is not one of {sorted(kinds)}")
    out_dir = Path(out)
    if kind in ("brain", "all"):
        from tools.demo_data.brain import make_brain_cohort

        datalist = make_brain_cohort(
            out_dir,
            seed=seed,
            n_subjects=n_subjects,
            resolution_mm=resolution_mm,
            lesion_probability=lesion_probability,
            overwrite=overwrite,
        )
        print(f"brain cohort: {datalist}")
    if kind in ("tof", "all"):
        from tools.demo_data.tof import make_tof_dataset

        datalist = make_tof_dataset(
            out_dir,
            seed=seed,
            n_patients=n_patients,
            patches_per_patient=patches_per_patient,
            voxel_size_mm=tof_voxel_size_mm,
            overwrite=overwrite,
        )
        print(f"TOF-MRA phantoms: {datalist}")
