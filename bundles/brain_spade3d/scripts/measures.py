"""What a generated label map measures: per lesion its volumes and the condition-like fraction.

Measuring is its own piece, apart from sampling and writing: the synthesis puts the details in each
sidecar, and a dataset run puts the flat values in its manifest next to the requested conditions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scripts.labels import LABEL_NAMES, LESION_NAMES, measure_lesions

__all__ = ["LesionMeasure"]


class LesionMeasure:
    """``(probabilities, images[, draws]) -> {"<lesion>": measured condition, "<lesion>_ml": argmax volume}``,
    plus ``label_draws`` and ``label_conforms`` (1 or 0) for a sample that carries its draw record.

    Args:
        voxel_ml: volume of one voxel in ml.
        lesion_fraction_max: the training maxima the conditions are relative to.
        min_lesion_volume_ml: argmax volume from which a lesion counts as present.
        label_names: class names of the label channels.
        lesion_names: names of the condition entries (also label channels).
    """

    def __init__(
        self,
        voxel_ml: float,
        lesion_fraction_max: Sequence[float],
        min_lesion_volume_ml: float = 0.1,
        label_names: Sequence[str] = LABEL_NAMES,
        lesion_names: Sequence[str] = LESION_NAMES,
    ) -> None:
        if not float(min_lesion_volume_ml) >= 0:
            raise ValueError(f"min_lesion_volume_ml={min_lesion_volume_ml!r} must be >= 0")
        self.voxel_ml = float(voxel_ml)
        self.lesion_fraction_max = [float(v) for v in lesion_fraction_max]
        self.min_lesion_volume_ml = float(min_lesion_volume_ml)
        self.label_names = list(label_names)
        self.lesion_names = list(lesion_names)

    def details(self, probabilities: np.ndarray) -> dict[str, dict[str, Any]]:
        """Per lesion: present, argmax and partial volume (ml), measured condition."""
        return measure_lesions(
            probabilities,
            self.voxel_ml,
            self.lesion_fraction_max,
            self.min_lesion_volume_ml,
            self.label_names,
            self.lesion_names,
        )

    def __call__(self, sample: tuple[Any, ...]) -> dict[str, float | int]:
        lesions = self.details(sample[0])
        values = {name: float(found["measured_condition"]) for name, found in lesions.items()}
        values.update({f"{name}_ml": float(found["volume_ml"]) for name, found in lesions.items()})
        draws = sample[2] if len(sample) > 2 else None
        if draws is not None:  # the manifest can then be filtered on conformity without opening sidecars
            values.update(label_draws=int(draws["draws"]), label_conforms=int(draws["conforms"]))
        return values
