"""brain_ldm side of the memorisation screen: the retraining datalist item of a retained sample.

A retained sample is retrained on with the conditions it was generated for, read from its JSON
sidecar (``conditioning``) or, in a folder with a manifest, from the manifest's condition columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scripts.common.synthetic_folder import SyntheticSample

__all__ = ["retraining_item"]


def retraining_item(sample: SyntheticSample, condition_names: Sequence[str]) -> dict[str, Any]:
    """``{"image": path, "condition": [...]}`` for train_diffusion.json; an error names a sample without conditions."""
    conditioning = (sample.sidecar or {}).get("conditioning") or sample.row
    missing = [name for name in condition_names if name not in conditioning]
    if missing:
        raise ValueError(
            f"synthetic sample {sample.path} has no condition {missing} in its .json sidecar or manifest row: "
            "the retraining datalist needs the conditions each sample was generated for"
        )
    return {"image": str(sample.path), "condition": [float(conditioning[name]) for name in condition_names]}
