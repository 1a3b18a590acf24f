"""Each bundle's inference runs from an unrelated folder, the way its README documents it.

MONAI 1.6.1 puts the bundle folder on ``sys.path`` only when ``run`` starts, after ``initialize`` has already
imported ``scripts`` (every config's import statements are evaluated together, before the first expression, so no
config entry can fix the path in time). The documented command therefore names the bundle on ``PYTHONPATH`` as
well as in ``--bundle_root`` and the config paths; ``run_bundle(..., cwd=...)`` issues exactly that command.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import BUNDLES_DIR, run_bundle

pytestmark = pytest.mark.slow

#: Shipped weights at the smallest settings they accept (measured: 8-13 s per run on one CPU thread).
TINY_RUNS = {
    "brain_ldm": {"num_inference_steps": 2, "spatial_shape": [16, 24, 16], "resolution_mm": 8, "progress": False},
    "brain_spade3d": {"num_inference_steps": 2, "progress": False},
    "tof_mra_vessel_gan": {"n_samples": 1},
}
EXPECTED = {
    "brain_ldm": {"sample_000000.nii.gz", "sample_000000.json", "sample_000000.png"},
    "brain_spade3d": {"sample_000000_T1w.nii.gz", "sample_000000_label.nii.gz", "sample_000000.json"},
    "tof_mra_vessel_gan": {"pair_000000_image.nii.gz", "pair_000000_label.nii.gz", "generation.json"},
}


@pytest.mark.parametrize("bundle", sorted(TINY_RUNS))
def test_inference_runs_from_another_folder(bundle: str, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    run_bundle(BUNDLES_DIR / bundle, "inference.json", {**TINY_RUNS[bundle], "output_dir": str(out)}, cwd=elsewhere)
    assert EXPECTED[bundle] <= {p.name for p in out.iterdir()}
    assert not any(elsewhere.iterdir())  # nothing was written relative to the working folder
