"""Study: how often the lesions a condition asks for appear in sampled label maps, and how large they are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from scripts.common.checks import check_non_negative_int, check_positive_int
from scripts.conformity import LabelRedraw
from scripts.evaluation.seeds import stream_seeds
from scripts.labels import requested_lesions
from scripts.measures import LesionMeasure
from scripts.synthesis import LabelGenerator

__all__ = ["LesionPresenceStudy"]

#: The study's entry over all settings, beside one entry per setting.
TOTAL = "all_requested_present_rate"


class LesionPresenceStudy:
    """Label maps sampled for fixed lesion conditions (healthy, each pathology alone, combined).

    Setting ``name`` draws its label noise from seed stream ``"lesion_presence/<name>"``.

    Args:
        label_generator: stage 1 (lesion condition -> label map).
        conditions: setting name -> lesion condition (``presence_conditions``).
        measure: what a label map measures (the ``measure`` of inference.json: voxel volume, training
            maxima, the volume from which a lesion counts as present, the lesion names).
        samples: label maps per setting (``presence_samples``).
        batch_size: label maps sampled together (``presence_batch_size``); the seeds do not depend on it.
        seed: base of the seed streams.
        device: where sampling runs.
        label_redraw: the redraw inference applies (``label_redraw``); with more than one draw, each setting
            also reports ``delivered``: the same rates after redrawing, i.e. what inference writes, and the draws
            it took. The first draws are the model's raw rates either way.
    """

    def __init__(
        self,
        label_generator: LabelGenerator,
        conditions: Mapping[str, Sequence[float]],
        measure: LesionMeasure,
        samples: int = 20,
        batch_size: int = 4,
        seed: int = 0,
        device: str | torch.device = "cpu",
        label_redraw: LabelRedraw | None = None,
    ) -> None:
        self.label_generator = label_generator
        self.label_redraw = label_redraw if label_redraw is not None and label_redraw.max_draws > 1 else None
        self.measure = measure
        self.lesion_names = list(measure.lesion_names)
        self.conditions = {name: self._condition(name, value) for name, value in conditions.items()}
        self.samples = check_positive_int("presence_samples", samples)
        self.batch_size = check_positive_int("presence_batch_size", batch_size)
        self.seed = check_non_negative_int("seed", seed)
        self.device = torch.device(device)

    def _condition(self, setting: str, value: Sequence[float]) -> list[float]:
        if setting == TOTAL:
            raise ValueError(f"presence_conditions: {TOTAL!r} names the rate over all settings, not a setting")
        values = [float(v) for v in value]
        if len(values) != len(self.lesion_names) or not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(
                f"presence_conditions[{setting!r}]={list(value)!r} must hold {len(self.lesion_names)} fractions in [0, 1]"
            )
        return values

    def seeds(self, setting: str) -> list[int]:
        """The label-noise seeds of the samples of ``setting``."""
        return stream_seeds(self.seed, f"lesion_presence/{setting}", self.samples)

    def measured(self, setting: str) -> tuple[list[dict], list[dict] | None, list[dict] | None]:
        """The lesion measures of every first draw of ``setting``; with ``label_redraw``, also those of the
        delivered maps and their draw records."""
        condition, seeds = self.conditions[setting], self.seeds(setting)
        first, delivered, draws = [], [], []
        for start in range(0, len(seeds), self.batch_size):
            batch_seeds = seeds[start : start + self.batch_size]
            batch = torch.tensor([condition] * len(batch_seeds), dtype=torch.float32)
            maps = self.label_generator(batch, batch_seeds, self.device)
            found = [self.measure.details(m.cpu().numpy()) for m in maps]
            first += found
            if self.label_redraw is not None:
                kept, records = self.label_redraw(self.label_generator, batch, batch_seeds, self.device, maps)
                delivered += [  # a map kept from its first draw is measured already
                    found[b] if r["kept_draw"] == 0 else self.measure.details(kept[b].cpu().numpy())
                    for b, r in enumerate(records)
                ]
                draws += records
        return (first, delivered, draws) if self.label_redraw is not None else (first, None, None)

    def _setting(self, condition: list[float], measured: list[dict]) -> dict[str, Any]:
        requested = requested_lesions(self.lesion_names, condition)
        unrequested = [name for name in self.lesion_names if name not in requested]
        all_present = [all(m[name]["present"] for name in requested) for m in measured]
        return {
            "condition": dict(zip(self.lesion_names, condition)),
            "n_samples": len(measured),
            "all_requested_present_rate": float(np.mean(all_present)) if requested else None,
            "any_lesion_rate": float(np.mean([any(m[n]["present"] for n in self.lesion_names) for m in measured])),
            # samples carrying at least one lesion the condition did not ask for (for healthy: any lesion)
            "unrequested_lesion_rate": float(np.mean([any(m[n]["present"] for n in unrequested) for m in measured])),
            "per_lesion": {
                name: {
                    "present_rate": float(np.mean([m[name]["present"] for m in measured])),
                    "mean_volume_ml": float(np.mean([m[name]["volume_ml"] for m in measured])),
                    "mean_measured_condition": float(np.mean([m[name]["measured_condition"] for m in measured])),
                }
                for name in self.lesion_names
            },
        }

    def run(self) -> dict[str, Any]:
        """Per setting its rates and volumes; over the settings that request a lesion, the all-present rate."""
        report: dict[str, Any] = {}
        hits, requested_samples = 0, 0
        for setting, condition in self.conditions.items():
            measured, delivered, draws = self.measured(setting)
            report[setting] = self._setting(condition, measured)
            if delivered is not None:
                report[setting]["delivered"] = {
                    **self._setting(condition, delivered),
                    "max_label_draws": self.label_redraw.max_draws,
                    "mean_draws": float(np.mean([d["draws"] for d in draws])),
                    "non_conforming": int(sum(not d["conforms"] for d in draws)),
                }
            requested = requested_lesions(self.lesion_names, condition)
            if requested:
                hits += sum(all(m[name]["present"] for name in requested) for m in measured)
                requested_samples += len(measured)
        report[TOTAL] = hits / requested_samples if requested_samples else None
        return report

    def protocol(self) -> dict[str, Any]:
        return {
            "presence_conditions": {name: dict(zip(self.lesion_names, c)) for name, c in self.conditions.items()},
            "presence_samples": self.samples,
            "min_lesion_volume_ml": self.measure.min_lesion_volume_ml,
            "num_inference_steps": self.label_generator.sampler.num_inference_steps,
            "guidance_scale": self.label_generator.sampler.guidance_scale,
            "max_label_draws": self.label_redraw.max_draws if self.label_redraw is not None else 1,
            "seed": self.seed,
        }
