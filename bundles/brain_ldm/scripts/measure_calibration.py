"""Calibrates the evaluation's ventricle measurement on real images whose ventricular volume is known.

Conditioning fidelity on samples can be no better than the measurement that reads the volumes, so the
measurement is chosen where the answer is known: the threshold and the reference percentile (see
``scripts.evaluation.ventricle_volume_ml``) that correlate best with the known volumes of one split
(``fit_split``, the training images), then reported on the other splits, which played no part in the choice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.atomic_io import json_safe, write_json, write_png
from scripts.common.previews import scatter_panel, side_by_side
from scripts.evaluation import pearson_r
from scripts.measures import check_percentile, describe_ventricle_measure, ventricle_volume_ml

__all__ = ["VentricleMeasureCalibration"]

Measure = tuple[float, float | None]


class VentricleMeasureCalibration:
    """Sweeps thresholds x reference percentiles; writes ``ventricle_measure.json`` and a scatter picture.

    Args:
        images: callable returning ``{split: [{"image": (1, X, Y, Z), "condition": (K,)}, ...]}``.
        ventricle_roi: (X, Y, Z) mask on the image grid.
        condition_names: the condition columns; ``ventricular_vol`` is the known (normalised) volume.
        thresholds: thresholds to try; relative to the percentile, or absolute where the percentile is None.
        percentiles: reference percentiles to try; None means absolute intensities.
        configured: the (threshold, percentile) the bundle's configs use, reported beside the best.
        baselines: further (threshold, percentile) pairs reported on every split, e.g. a former setting.
        output_dir: destination, written only after every measure is computed.
        voxel_mm: voxel side in millimetres.
        fit_split: the split the choice is made on.
        metadata: provenance written into the record.
    """

    def __init__(
        self,
        images: Callable[[], Mapping[str, Sequence[Mapping[str, Any]]]],
        ventricle_roi: np.ndarray,
        condition_names: Sequence[str],
        thresholds: Sequence[float],
        percentiles: Sequence[float | None],
        configured: Sequence[float | None],
        output_dir: str | os.PathLike,
        voxel_mm: float = 4.0,
        fit_split: str = "training",
        metadata: Mapping[str, Any] | None = None,
        baselines: Sequence[Sequence[float | None]] = (),
    ) -> None:
        if "ventricular_vol" not in condition_names:
            raise ValueError(f"condition_names {list(condition_names)} lacks 'ventricular_vol'")
        if not thresholds or any(isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0 for t in thresholds):
            raise ValueError(f"calibration_thresholds={list(thresholds)!r} must be positive numbers")
        if not percentiles:
            raise ValueError("calibration_percentiles is empty")
        self.percentiles = [check_percentile(p, "calibration_percentiles") for p in percentiles]
        self.images, self.ventricle_roi = images, np.asarray(ventricle_roi)
        self.column = list(condition_names).index("ventricular_vol")
        self.thresholds = [float(t) for t in thresholds]
        self.configured: Measure = (float(configured[0]), check_percentile(configured[1]))
        self.baselines: list[Measure] = [(float(t), check_percentile(p, "calibration_baselines")) for t, p in baselines]
        self.output_dir, self.voxel_ml = Path(output_dir), float(voxel_mm) ** 3 / 1000.0
        self.fit_split, self.metadata = fit_split, dict(metadata or {})

    def split_data(self, items: Sequence[Mapping[str, Any]]) -> tuple[list[np.ndarray], list[float]]:
        volumes = [torch.as_tensor(item["image"])[0].numpy() for item in items]
        for volume in volumes:
            if volume.shape != self.ventricle_roi.shape:
                raise ValueError(
                    f"ventricle_roi shape {self.ventricle_roi.shape} differs from an image's {volume.shape}"
                )
        return volumes, [float(torch.as_tensor(item["condition"]).reshape(-1)[self.column]) for item in items]

    def measured(self, volumes: Sequence[np.ndarray], measure: Measure) -> list[float]:
        return [ventricle_volume_ml(v, self.ventricle_roi, measure[0], self.voxel_ml, measure[1]) for v in volumes]

    def run(self) -> dict[str, Any]:
        splits = {name: self.split_data(items) for name, items in self.images().items()}
        if self.fit_split not in splits or len(splits[self.fit_split][0]) < 3:
            raise ValueError(f"fit split {self.fit_split!r} needs at least 3 images; got splits {list(splits)}")
        volumes, truth = splits[self.fit_split]
        sweep = [
            {"threshold": t, "percentile": p, "pearson_r": pearson_r(truth, self.measured(volumes, (t, p)))}
            for p in self.percentiles
            for t in self.thresholds
        ]
        scored = [row for row in sweep if row["pearson_r"] is not None]
        if not scored:
            raise ValueError("no threshold gave a varying measurement on the fit split; widen calibration_thresholds")
        best_row = max(scored, key=lambda row: row["pearson_r"])
        best: Measure = (best_row["threshold"], best_row["percentile"])

        def report(measure: Measure) -> dict[str, Any]:
            per_split = {name: pearson_r(t, self.measured(v, measure)) for name, (v, t) in splits.items()}
            description = describe_ventricle_measure(*measure)
            return {
                "threshold": measure[0],
                "percentile": measure[1],
                "pearson_r": per_split,
                "description": description,
            }

        record = json_safe(
            {
                **self.metadata,
                "fit_split": self.fit_split,
                "n_images": {name: len(v) for name, (v, _) in splits.items()},
                "best_on_fit_split": report(best),
                "configured": report(self.configured),
                "baselines": [report(measure) for measure in self.baselines],
                "sweep_on_fit_split": sweep,
            }
        )
        panels = []
        for name, (v, t) in splits.items():
            if name != self.fit_split:
                r = record["configured"]["pearson_r"][name]
                title = f"{name}: r = {r:.3f}" if r is not None else f"{name}: r undefined"
                panels.append(
                    scatter_panel(t, self.measured(v, self.configured), title, "known (normalised)", "measured ml")
                )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if panels:
            write_png(side_by_side(panels, gap=8, background=255), self.output_dir / "ventricle_measure.png")
        write_json(record, self.output_dir / "ventricle_measure.json")
        print(f"best on {self.fit_split}: {record['best_on_fit_split']}\nconfigured: {record['configured']}")
        return record
