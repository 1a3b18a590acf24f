"""The downstream proof: a 2D vessel segmenter trained on synthetic or real pairs, scored on whole volumes.

Kossen et al. 2021 judged their GANs by training Livne et al.'s "half U-Net" on generated pairs and
testing it on real patients (Dice and 95 % Hausdorff distance of whole-brain predictions tiled from
96x96 axial patches). The segmenter here is MONAI's ``BasicUNet`` configured to match; this module
adds the per-patch input standardisation, the training-set builder and the per-patient evaluation.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from PIL import Image
from tqdm import tqdm

from scripts.common.atomic_io import atomic_path, write_json
from scripts.common.previews import captioned, side_by_side
from scripts.common.provenance import bundle_relative
from scripts.common.weights import file_sha256, load_state_dict, unwrap
from scripts.data import load_patch_pairs
from scripts.generation import DEFAULT_LABEL_THRESHOLD, check_threshold, generate_pairs, split_pairs

__all__ = ["TRAIN_SOURCES", "Standardized", "VolumeEvaluation", "check_train_source", "training_pairs"]

TRAIN_SOURCES = ("synthetic", "real")


class Standardized(torch.nn.Module):
    """Z-score every input sample (each channel over its pixels), then run ``network``.

    Inside the network, the standardisation is applied to every 96x96 window the sliding-window
    inferer cuts from a slice exactly as to every training patch, so training on min-max scaled
    real patches, on tanh-valued synthetic patches and testing on raw volumes all feed the U-Net
    the same kind of input.
    """

    def __init__(self, network: torch.nn.Module, eps: float = 1e-6) -> None:
        super().__init__()
        self.network = network
        self.eps = float(eps)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(2, inputs.ndim))
        mean = inputs.mean(dim=dims, keepdim=True)
        std = inputs.std(dim=dims, keepdim=True, unbiased=False)
        return self.network((inputs - mean) / (std + self.eps))


def training_pairs(
    source: str,
    datalist: str | os.PathLike,
    real_patients: int | Sequence[str] | None = None,
    generator: torch.nn.Module | None = None,
    generator_path: str | os.PathLike | None = None,
    n_synthetic: int | None = None,
    synthetic_seed: int = 0,
    latent_size: int = 128,
    label_threshold: float = DEFAULT_LABEL_THRESHOLD,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> list[dict[str, Any]]:
    """Training items ``{"image": (1, 96, 96), "label": (1, 96, 96)}`` for the segmenter.

    Args:
        source: ``"real"``: the phantom patches of the training split (``real_patients``: all, the
            first N, or a list of ids), or ``"synthetic"``: ``n_synthetic`` pairs generated now
            with ``generator`` after loading ``generator_path``; ``None`` generates as many pairs as
            there are real training patches, so both sources train on the same amount of data.
        datalist: the phantom ``datalist.json``.
        real_patients: which training patients to use for the real source.
        generator, generator_path, n_synthetic, synthetic_seed, latent_size, label_threshold,
        batch_size, device: the synthetic source's generator and sampling settings.
    """
    if check_train_source(source) == "real":
        return load_patch_pairs(datalist, "training", real_patients)
    if generator is None or generator_path is None:
        raise ValueError("train_source='synthetic' needs a generator and generator_path")
    load_state_dict(generator, generator_path, "generator_path")
    if n_synthetic is None:
        n_synthetic = len(load_patch_pairs(datalist, "training", real_patients))
    pairs = generate_pairs(generator, n_synthetic, synthetic_seed, latent_size, batch_size, device, progress=True)
    images, labels = split_pairs(pairs, check_threshold(label_threshold))
    return [{"image": image[None], "label": label[None].astype(np.float32)} for image, label in zip(images, labels)]


def _spacing(image: Any) -> list[float] | None:
    pixdim = getattr(image, "pixdim", None)
    return None if pixdim is None else [float(s) for s in pixdim]


def _finite_or_none(value: float) -> float | None:
    return round(float(value), 4) if math.isfinite(value) else None


def _summary(values: Sequence[float | None]) -> dict[str, float | int | None]:
    finite = [v for v in values if v is not None]
    return {
        "mean": round(float(np.mean(finite)), 4) if finite else None,
        "std": round(float(np.std(finite)), 4) if finite else None,
        "n": len(finite),
    }


def _axial_mip(volume: np.ndarray) -> np.ndarray:
    """Maximum over the axial slices of an (X, Y, Z) volume, anterior up and the subject's left on the left."""
    return np.rot90(np.asarray(volume).max(axis=-1))


def _unit_range(plane: np.ndarray) -> np.ndarray:
    """``plane`` min-max scaled to [0, 1] (a flat plane becomes 0)."""
    plane = plane.astype(np.float64)
    return (plane - plane.min()) / max(float(plane.max() - plane.min()), 1e-12)


def overlap_mip(prediction: np.ndarray, label: np.ndarray, image: np.ndarray | None = None) -> Image.Image:
    """Axial MIP of a prediction against its label: found vessels white, false positives red, missed blue.

    A vessel tree is judged at a glance in projection; the DSC alone does not say whether the errors
    are a halo around every vessel or whole branches missed.
    """
    predicted, labelled = _axial_mip(prediction) > 0, _axial_mip(label) > 0
    if image is None:
        background = np.zeros(predicted.shape, dtype=np.float64)
    else:
        background = 0.4 * _unit_range(_axial_mip(image))
    rgb = np.repeat(background[..., None], 3, axis=-1)
    rgb[predicted & labelled] = (1.0, 1.0, 1.0)
    rgb[predicted & ~labelled] = (1.0, 0.15, 0.15)
    rgb[~predicted & labelled] = (0.2, 0.45, 1.0)
    return Image.fromarray((rgb * 255).round().astype(np.uint8), mode="RGB")


class VolumeEvaluation:
    """Dice and 95 % Hausdorff distance of each segmenter on each held-out patient volume.

    Each volume is predicted slice by slice (``inferer``, e.g. MONAI ``SliceInferer`` with 96x96
    windows over axial slices), passed through a sigmoid, thresholded, restricted to the brain mask
    when the datalist gives one, and compared with the vessel label. Results go to
    ``<output_dir>/<name>.json`` (per patient and mean), ``<name>.md`` (a table) and ``<name>.png``
    (axial projections of the first patient's label and of each segmenter's errors), written atomically.

    Args:
        segmenters: ``{row name: weights path}``, e.g. ``{"synthetic": "models/segmenter_synthetic.pt"}``.
        network: the segmenter architecture the weights load into.
        volumes: items ``{"patient", "image", "label"[, "brain_mask"]}`` (see ``scripts.data.patient_volumes``).
        transform: loads an item into channel-first tensors (``LoadImaged`` + ``EnsureChannelFirstd``).
        inferer: whole-volume inferer.
        output_dir: destination of the report.
        threshold: probability threshold (0.5 in the paper).
        device: where the network runs.
        report_name: stem of the report files.
        use_brain_mask: zero predictions outside the brain mask when the item has one.
        bundle_root: weights paths are recorded relative to it (a file outside it by name only).
        metadata: provenance copied into the report (bundle version, the generator behind the synthetic
            segmenter and its sha256, the machine), so the record names what a reader can download.
    """

    def __init__(
        self,
        segmenters: Mapping[str, str],
        network: torch.nn.Module,
        volumes: Sequence[Mapping[str, str]],
        transform: Callable[[Mapping], Mapping],
        inferer: Callable,
        output_dir: str,
        threshold: float = 0.5,
        device: str | torch.device = "cpu",
        report_name: str = "segmentation_metrics",
        use_brain_mask: bool = True,
        bundle_root: str | os.PathLike = ".",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not segmenters:
            raise ValueError("segmenters is empty: give {name: weights path}")
        missing = {name: path for name, path in segmenters.items() if not Path(path).is_file()}
        if missing:
            raise FileNotFoundError(f"segmenter weights not found: {missing}")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold={threshold!r} must lie in (0, 1)")
        self.segmenters = dict(segmenters)
        self.network = network
        self.volumes = list(volumes)
        self.transform = transform
        self.inferer = inferer
        self.output_dir = Path(output_dir)
        self.threshold = float(threshold)
        self.device = device
        self.report_name = report_name
        self.use_brain_mask = use_brain_mask
        self.bundle_root = bundle_root
        self.metadata = dict(metadata or {})
        self._first_patient_tiles: list[Image.Image] = []

    def _predict(self, image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits = self.inferer(image[None].to(self.device), self.network)
        return (torch.sigmoid(logits) > self.threshold).float().cpu()

    def _score(self, name: str, path: str) -> dict[str, Any]:
        load_state_dict(self.network, path, f"segmenters#{name}")
        unwrap(self.network).eval()
        dice_metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
        hausdorff_metric = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
        patients = []
        for item in tqdm(self.volumes, desc=f"evaluating {name}", unit="patient"):
            data = self.transform(dict(item))
            prediction = self._predict(data["image"])
            label = (torch.as_tensor(data["label"]) > 0).float()[None]
            if self.use_brain_mask and "brain_mask" in data:
                prediction = prediction * (torch.as_tensor(data["brain_mask"]) > 0).float()[None]
            dice = float(dice_metric(prediction, label).item())
            if not patients:
                self._keep_first_patient_tiles(name, data["image"], prediction, label, dice)
            if prediction.sum() > 0 and label.sum() > 0:
                hausdorff = float(hausdorff_metric(prediction, label, spacing=_spacing(data["image"])).item())
            else:
                hausdorff = float("nan")  # undefined when either mask is empty
            patients.append(
                {
                    "patient": item["patient"],
                    "dice": _finite_or_none(dice),
                    "hd95_mm": _finite_or_none(hausdorff),
                    "predicted_voxels": int(prediction.sum()),
                    "label_voxels": int(label.sum()),
                }
            )
        return {
            "weights": bundle_relative(path, self.bundle_root),
            "weights_sha256": file_sha256(path),
            "patients": patients,
            "dice": _summary([p["dice"] for p in patients]),
            "hd95_mm": _summary([p["hd95_mm"] for p in patients]),
        }

    def _keep_first_patient_tiles(
        self, name: str, image: torch.Tensor, prediction: torch.Tensor, label: torch.Tensor, dice: float
    ) -> None:
        image_array = np.asarray(torch.as_tensor(image)[0].cpu())
        label_array = np.asarray(label[0, 0].cpu())
        if not self._first_patient_tiles:  # the image and label once, before the first segmenter's tile
            scaled = (_unit_range(_axial_mip(image_array)) * 255).round().astype(np.uint8)
            patient = self.volumes[0]["patient"]
            self._first_patient_tiles += [
                captioned(Image.fromarray(scaled, mode="L"), f"{patient} image MIP"),
                captioned(overlap_mip(label_array, label_array), "label"),
            ]
        tile = overlap_mip(np.asarray(prediction[0, 0].cpu()), label_array, image_array)
        self._first_patient_tiles.append(captioned(tile, f"{name}: DSC {dice:.2f}"))

    def _markdown(self, results: Mapping[str, Any]) -> str:
        def cell(summary: Mapping[str, Any]) -> str:
            return "n/a" if summary["mean"] is None else f"{summary['mean']:.3f} ± {summary['std']:.3f}"

        lines = [
            f"Whole-volume vessel segmentation on {len(self.volumes)} held-out patient(s), threshold {self.threshold}.",
            "",
            "| segmenter | DSC (mean ± sd) | 95HD mm (mean ± sd) | patients |",
            "|---|---|---|---|",
        ]
        for name, result in results.items():
            lines.append(f"| {name} | {cell(result['dice'])} | {cell(result['hd95_mm'])} | {len(result['patients'])} |")
        lines += ["", "| segmenter | patient | DSC | 95HD mm |", "|---|---|---|---|"]
        for name, result in results.items():
            for patient in result["patients"]:
                dice = "n/a" if patient["dice"] is None else f"{patient['dice']:.3f}"
                hd = "n/a" if patient["hd95_mm"] is None else f"{patient['hd95_mm']:.2f}"
                lines.append(f"| {name} | {patient['patient']} | {dice} | {hd} |")
        return "\n".join(lines) + "\n"

    def run(self) -> dict[str, Any]:
        """Score every segmenter, then write the JSON and markdown reports."""
        self._first_patient_tiles = []
        results = {name: self._score(name, path) for name, path in self.segmenters.items()}
        report = {
            **self.metadata,
            "threshold": self.threshold,
            "patients": [v["patient"] for v in self.volumes],
            "segmenters": results,
        }
        markdown = self._markdown(results)
        figure = side_by_side(self._first_patient_tiles, gap=4)
        json_path = write_json(report, self.output_dir / f"{self.report_name}.json")
        atomic_path(self.output_dir / f"{self.report_name}.md", lambda tmp: tmp.write_text(markdown))
        png_path = atomic_path(self.output_dir / f"{self.report_name}.png", lambda tmp: figure.save(tmp, format="PNG"))
        print(markdown)
        print(f"wrote {json_path}, {json_path.with_suffix('.md')} and {png_path}")
        print("picture: white = vessel found, red = false positive, blue = missed (axial maximum projection)")
        return report


def check_train_source(source: str) -> str:
    """``source`` when it names a training source, else a ValueError naming the config key."""
    if source not in TRAIN_SOURCES:
        raise ValueError(f"train_source={source!r} is not one of {TRAIN_SOURCES}")
    return source
