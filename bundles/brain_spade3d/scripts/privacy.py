"""brain_spade3d side of the memorisation screen: the retraining datalist item of a retained label map.

The label diffusion model is what sees the training anatomy, so privacy distillation retrains it on the
retained partial-volume maps, each with the lesion conditions it was generated for. Those come from the
sample's JSON sidecar (``sample_000000.json`` beside ``sample_000000_label_pv.nii.gz``: inference.json
writes one sidecar per sample, not per file) or, in a folder with a manifest, from its condition columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.common.synthetic_folder import SyntheticSample, generated_conditions

__all__ = ["retraining_item"]

LABEL_SUFFIX = "_label_pv.nii.gz"


def _requested_lesions(sample: SyntheticSample) -> dict[str, Any]:
    if sample.row:
        return dict(sample.row)
    if not sample.name.endswith(LABEL_SUFFIX):
        return {}
    sidecar = Path(sample.path).with_name(sample.name[: -len(LABEL_SUFFIX)] + ".json")
    if not sidecar.is_file():
        return {}
    lesions = json.loads(sidecar.read_text()).get("lesions", {})
    return {name: entry["requested_condition"] for name, entry in lesions.items() if "requested_condition" in entry}


def retraining_item(sample: SyntheticSample, lesion_names: Sequence[str]) -> dict[str, Any]:
    """``{"label": path, "lesion": [...]}`` for train_label_diffusion.json; an error names a sample without them."""
    return {"label": str(sample.path), "lesion": generated_conditions(sample, lesion_names, _requested_lesions(sample))}
