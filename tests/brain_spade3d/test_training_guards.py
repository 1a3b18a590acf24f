"""The label diffusion refuses lesion conditions outside the range inference accepts, before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.brain_spade3d.spade3d_helpers import BUNDLE, run_bundle, training_overrides

pytestmark = pytest.mark.slow


def test_a_lesion_condition_out_of_range_stops_training_before_work(spade_cohort: Path, tmp_path: Path) -> None:
    datalist = json.loads((spade_cohort / "datalist.json").read_text())
    datalist["validation"][0]["lesion"] = [0.0, 1.5, 0.0, 0.0]  # an unnormalised fraction
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    overrides = training_overrides("train_label_diffusion.json", spade_cohort, tmp_path / "run", tmp_path / "models", 1)
    result = run_bundle(BUNDLE, "train_label_diffusion.json", {**overrides, "datalist_path": str(path)}, check=False)
    assert result.returncode != 0
    subject = datalist["validation"][0]["subject"]
    assert (
        f"datalist {path}, item validation[0] ({subject}), key 'lesion'[1]=1.5 is not a finite number" in result.stderr
    )
    assert not (tmp_path / "run").exists()
