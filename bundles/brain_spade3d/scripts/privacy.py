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

from scripts.common.synthetic_folder import SyntheticSample

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
    requested = _requested_lesions(sample)
    missing = [name for name in lesion_names if name not in requested]
    if missing:
        raise ValueError(
            f"synthetic sample {sample.path} has no requested lesion {missing} in its sample .json sidecar or "
            "manifest row: the retraining datalist needs the conditions each label map was generated for"
        )
    return {"label": str(sample.path), "lesion": [float(requested[name]) for name in lesion_names]}
