"""brain_ldm side of the memorisation screen: the retraining datalist item of a retained sample.

A retained sample is retrained on with the conditions it was generated for, read from its JSON
sidecar (``conditioning``) or, in a folder with a manifest, from the manifest's condition columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scripts.common.synthetic_folder import SyntheticSample, generated_conditions

__all__ = ["retraining_item"]


def retraining_item(sample: SyntheticSample, condition_names: Sequence[str]) -> dict[str, Any]:
    """``{"image": path, "condition": [...]}`` for train_diffusion.json; an error names a sample without conditions."""
    conditioning = (sample.sidecar or {}).get("conditioning") or sample.row
    return {"image": str(sample.path), "condition": generated_conditions(sample, condition_names, conditioning)}
