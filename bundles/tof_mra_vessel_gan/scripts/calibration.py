"""How the generated label channel compares with real labels at every threshold.

The generator's label channel is a tanh trained against real labels of exactly 0 and 1, so a vessel
is asked to sit at the tanh's asymptote. A generator can learn where vessels are and still undershoot
that value, and a fixed threshold (the paper's 0.8) then keeps only the thickest trunks. This study
sweeps the threshold on generated pairs and reports, per threshold, the share of labelled pixels and
the image contrast under them, next to the real training patches' share; the threshold whose share
matches the real one is the calibrated ``label_threshold`` for that generator.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from scripts.common.atomic_io import write_json, write_png
from scripts.common.checks import check_positive_int
from scripts.common.previews import captioned, side_by_side
from scripts.generation import check_threshold, label_statistics, pairs_preview, sample_latents

__all__ = ["ThresholdCalibration", "matching_threshold", "threshold_sweep"]


def threshold_sweep(pairs: np.ndarray | torch.Tensor, thresholds: Sequence[float]) -> list[dict[str, float | None]]:
    """:func:`scripts.generation.label_statistics` of ``pairs`` at each threshold, in the given order."""
    return [{"threshold": float(t), **label_statistics(pairs, float(t))} for t in thresholds]


def matching_threshold(sweep: Sequence[Mapping[str, Any]], target_fraction: float) -> float | None:
    """The swept threshold whose vessel fraction is nearest ``target_fraction`` by ratio (None if none labels)."""
    scored = [
        (abs(math.log(row["label_vessel_fraction"] / target_fraction)), row["threshold"])
        for row in sweep
        if row["label_vessel_fraction"] > 0
    ]
    return min(scored)[1] if scored and target_fraction > 0 else None


def _sweep_plot(sweep: Sequence[Mapping[str, Any]], real_fraction: float, size: tuple[int, int] = (360, 220)) -> Any:
    """Vessel fraction (log scale) against threshold, with the real patches' fraction as a line.

    The threshold axis spans [0, 1], or [lowest, 1] when a threshold is negative (a generator trained with
    ``real_label_encoding`` symmetric has its natural threshold at 0, so its sweep reaches below it).
    """
    width, height = size
    lowest = min(0.0, min(float(row["threshold"]) for row in sweep))
    left, bottom, top = 40, height - 24, 10
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    fractions = [row["label_vessel_fraction"] for row in sweep if row["label_vessel_fraction"] > 0] + [real_fraction]
    low, high = math.log10(min(fractions)), math.log10(max(fractions))
    span = max(high - low, 1e-6)

    def y_of(fraction: float) -> float:
        return bottom - (math.log10(fraction) - low) / span * (bottom - top)

    def x_of(threshold: float) -> float:
        return left + (threshold - lowest) / (1.0 - lowest) * (width - left - 10)

    draw.line([(left, bottom), (width - 10, bottom)], fill=0)
    draw.line([(left, top), (left, bottom)], fill=0)
    draw.line([(left, y_of(real_fraction)), (width - 10, y_of(real_fraction))], fill=150)
    points = [
        (x_of(row["threshold"]), y_of(row["label_vessel_fraction"]))
        for row in sweep
        if row["label_vessel_fraction"] > 0
    ]
    if len(points) > 1:
        draw.line(points, fill=0, width=2)
    for threshold in (0.0, 0.5, 1.0) if lowest == 0.0 else (lowest, 0.0, 1.0):
        draw.text((x_of(threshold) - 6, bottom + 4), f"{threshold:g}", fill=0)
    draw.text((left + 30, bottom + 4), "label threshold", fill=0)
    draw.text((2, top), f"{100 * 10**high:.2g}%", fill=0)
    draw.text((2, bottom - 10), f"{100 * 10**low:.2g}%", fill=0)
    draw.text((left + 4, max(y_of(real_fraction) - 12, 0)), f"real {100 * real_fraction:.2f} %", fill=90)
    return image


class ThresholdCalibration:
    """Sweeps the label threshold on generated pairs against the real training patches; writes the report.

    Args:
        generator: the loaded generator (in eval mode).
        real_labels: callable returning the real training labels as one array of {0, 1}.
        thresholds: label-channel thresholds to sweep, each in (-1, 1).
        n_pairs: generated pairs measured.
        latent_size: noise length.
        seed: noise seed.
        batch_size: pairs per generator call.
        device: where the generator runs.
        output_dir: destination of ``label_threshold_calibration.json`` and its two pictures.
        configured_threshold: the ``label_threshold`` the bundle uses now, shown beside the calibrated one.
        metadata: provenance written into the report (bundle version, weights and their sha256).
    """

    def __init__(
        self,
        generator: Callable[[torch.Tensor], torch.Tensor],
        real_labels: Callable[[], np.ndarray],
        thresholds: Sequence[float],
        n_pairs: int,
        latent_size: int,
        seed: int,
        batch_size: int,
        device: str | torch.device,
        output_dir: str | os.PathLike,
        configured_threshold: float,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        check_positive_int("calibration_pairs", n_pairs)
        check_positive_int("batch_size", batch_size)
        if not thresholds:
            raise ValueError("calibration_thresholds is empty")
        self.thresholds = [check_threshold(t) for t in thresholds]
        self.generator = generator
        self.real_labels = real_labels
        self.n_pairs, self.latent_size, self.seed = int(n_pairs), int(latent_size), int(seed)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.output_dir = Path(output_dir)
        self.configured_threshold = check_threshold(configured_threshold)
        self.metadata = dict(metadata or {})

    def generate(self) -> np.ndarray:
        noise = sample_latents(self.n_pairs, self.latent_size, self.seed)
        with torch.no_grad():
            return torch.cat(
                [self.generator(chunk.to(self.device)).cpu() for chunk in noise.split(self.batch_size)]
            ).numpy()

    def run(self) -> dict[str, Any]:
        labels = np.asarray(self.real_labels())
        real_fraction = float((labels > 0).mean())
        pairs = self.generate()
        sweep = threshold_sweep(pairs, self.thresholds)
        calibrated = matching_threshold(sweep, real_fraction)
        report = {
            **self.metadata,
            "n_generated_pairs": len(pairs),
            "seed": self.seed,
            "real_vessel_fraction": real_fraction,
            "n_real_patches": int(labels.shape[0]),
            "configured_threshold": self.configured_threshold,
            "configured": threshold_sweep(pairs, [self.configured_threshold])[0],
            "calibrated_threshold": calibrated,
            "sweep": sweep,
            "definition": (
                "label_vessel_fraction: share of generated label-channel pixels above the threshold; vessel_contrast:"
                " mean generated image value under those pixels minus elsewhere (images in [-1, 1])"
            ),
        }
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json(report, self.output_dir / "label_threshold_calibration.json")
        write_png(_sweep_plot(sweep, real_fraction), self.output_dir / "label_threshold_sweep.png")
        shown = [self.configured_threshold] + ([calibrated] if calibrated is not None else [])
        panels = [captioned(pairs_preview(pairs[:8], t, per_row=2), f"threshold {t:g}") for t in shown]
        write_png(side_by_side(panels, gap=12, background=255), self.output_dir / "label_threshold_pairs.png")
        print(f"real vessel fraction {100 * real_fraction:.3f} %; calibrated threshold {calibrated}")
        return report
