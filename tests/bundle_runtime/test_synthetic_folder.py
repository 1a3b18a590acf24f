"""bundle_runtime/synthetic_folder.py: the conditions a retained sample is retrained with."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundle_runtime.synthetic_folder import SyntheticSample, generated_conditions, sidecar_path


def test_conditions_come_back_in_the_asked_order() -> None:
    sample = SyntheticSample("s.nii.gz", Path("s.nii.gz"))
    assert generated_conditions(sample, ["b", "a"], {"a": "0.25", "b": 1}) == [1.0, 0.25]


def test_a_sample_without_a_condition_is_named() -> None:
    sample = SyntheticSample("s.nii.gz", Path("/out/s.nii.gz"))
    with pytest.raises(ValueError, match=r"/out/s.nii.gz has no condition \['age'\]"):
        generated_conditions(sample, ["sex", "age"], {"sex": 0.0})


def test_the_sidecar_sits_beside_the_image_under_its_stem() -> None:
    assert sidecar_path(Path("/o/sample_000001.nii.gz")) == Path("/o/sample_000001.json")
    assert sidecar_path(Path("/o/pair_000001.npz")) == Path("/o/pair_000001.json")
