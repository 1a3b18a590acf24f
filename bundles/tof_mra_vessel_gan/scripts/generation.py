"""Generating labelled TOF-MRA patch pairs with a trained generator, and writing them out.

A pair is the generator's two tanh channels: channel 0 is the image in [-1, 1], channel 1 becomes
the vessel label where it exceeds ``label_threshold``: 0.3 by default, the threshold calibrated on the
shipped generator (``configs/calibrate.json``); Kossen et al. 2021 used 0.8. Noise is drawn one vector at a time from
a seeded generator, so pair ``i`` of a seed is the same whatever the batch size, the number of pairs
or the shard that generates it. Sampling (``PairSynthesis``), measuring (``VesselFraction``) and
writing (``PairWriter``, named in inference.json) are separate pieces.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from scripts.common.atomic_io import atomic_path, write_json, write_png
from scripts.common.checks import check_positive_int
from scripts.common.dataset import sample_stem
from scripts.common.previews import grid, side_by_side
from scripts.common.seeding import seeded_generator

#: The label-channel value above which a pixel is vessel: the threshold calibrated on the shipped generator
#: (``configs/calibrate.json``); the configs set ``label_threshold`` to it. Kossen et al. 2021 used 0.8.
DEFAULT_LABEL_THRESHOLD = 0.3

__all__ = [
    "LatentStream",
    "PairSynthesis",
    "PairWriter",
    "VesselFraction",
    "check_positive_int",
    "generate_pairs",
    "pairs_preview",
    "sample_latents",
    "split_pairs",
]


def check_threshold(value: float) -> float:
    """The label threshold, which must lie inside tanh's range."""
    if not -1.0 < float(value) < 1.0:
        raise ValueError(f"label_threshold={value!r} must lie in (-1, 1), the range of the generator's tanh")
    return float(value)


class LatentStream:
    """The noise vectors of one seed, one ``randn`` call each, handed out by index.

    Vector ``i`` is the ``i``-th draw of the seeded generator; a shard that needs vectors
    ``r, r + W, ...`` draws and discards the others (cheap next to the generator), so every shard
    agrees with a single process.
    """

    def __init__(self, seed: int, latent_size: int) -> None:
        self.seed = int(seed)
        self.latent_size = int(latent_size)
        self._restart()

    def _restart(self) -> None:
        self._rng = seeded_generator(self.seed)
        self._position = 0

    def take(self, indices: Sequence[int]) -> torch.Tensor:
        """(len(indices), latent_size) noise; increasing indices are drawn in one pass."""
        vectors = []
        for index in indices:
            if index < self._position:
                self._restart()
            while self._position < index:
                torch.randn(self.latent_size, generator=self._rng)
                self._position += 1
            vectors.append(torch.randn(self.latent_size, generator=self._rng))
            self._position += 1
        return torch.stack(vectors) if vectors else torch.empty(0)


def sample_latents(n: int, latent_size: int, seed: int) -> torch.Tensor:
    """(n, latent_size) Gaussian noise; row ``i`` depends only on ``seed`` and ``i``."""
    return LatentStream(seed, latent_size).take(range(int(n)))


def split_pairs(
    pairs: np.ndarray | torch.Tensor, threshold: float = DEFAULT_LABEL_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2, H, W) generator output -> image (B, H, W) float32 in [-1, 1] and label (B, H, W) uint8."""
    pairs = pairs.detach().cpu().numpy() if isinstance(pairs, torch.Tensor) else np.asarray(pairs)
    return pairs[:, 0].astype(np.float32), (pairs[:, 1] > threshold).astype(np.uint8)


def generate_pairs(
    generator: torch.nn.Module,
    n_samples: int,
    seed: int = 0,
    latent_size: int = 128,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """(n_samples, 2, 96, 96) raw generator outputs (CPU), computed in batches in evaluation mode."""
    n_samples = check_positive_int("n_samples", n_samples)
    batch_size = check_positive_int("batch_size", batch_size)
    noise = sample_latents(n_samples, latent_size, seed)
    was_training = generator.training
    generator.eval()
    outputs = []
    try:
        with torch.inference_mode():
            starts = range(0, n_samples, batch_size)
            for start in tqdm(starts, desc="generating pairs", unit="batch", disable=not progress):
                outputs.append(generator(noise[start : start + batch_size].to(device)).float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(outputs)


def label_statistics(
    pairs: np.ndarray | torch.Tensor, threshold: float = DEFAULT_LABEL_THRESHOLD
) -> dict[str, float | None]:
    """How much the label channel marks, and whether the image is bright where it does.

    A label channel that collapses to the thickest trunks shows as a vessel fraction far below the
    real pairs'; a label that ignores the image shows as no contrast. ``vessel_contrast`` is the
    mean image value under labelled pixels minus that under the rest (None when nothing is labelled).
    """
    images, labels = split_pairs(pairs, threshold)
    vessel = labels.astype(bool)
    statistics: dict[str, float | None] = {"label_vessel_fraction": float(vessel.mean())}
    if vessel.any() and not vessel.all():
        statistics["vessel_contrast"] = float(images[vessel].mean() - images[~vessel].mean())
    else:
        statistics["vessel_contrast"] = None
    return statistics


def _tile(plane: np.ndarray, low: float, high: float) -> Image.Image:
    # patches are (x, y) of an RAS axial slice: rotate so anterior is up, like previews.triplanar
    scaled = np.clip((np.rot90(plane) - low) / (high - low), 0.0, 1.0)
    return Image.fromarray((scaled * 255).round().astype(np.uint8), mode="L")


def pairs_preview(
    pairs: np.ndarray | torch.Tensor, threshold: float = DEFAULT_LABEL_THRESHOLD, per_row: int = 4
) -> Image.Image:
    """A PNG-ready grid: for each pair its image and its binary label side by side, ``per_row`` pairs a row."""
    images, labels = split_pairs(pairs, threshold)
    tiles = [
        side_by_side([_tile(i, -1.0, 1.0), _tile(lab, 0.0, 1.0)], gap=2, background=255)
        for i, lab in zip(images, labels)
    ]
    rows = [
        side_by_side(tiles[start : start + per_row], gap=8, background=255) for start in range(0, len(tiles), per_row)
    ]
    return grid(rows, gap=8, background=255)


def _nifti(array: np.ndarray, spacing: Sequence[float]) -> nib.Nifti1Image:
    affine = np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0])
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm")
    return image


class VesselFraction:
    """``pair -> {"vessel_fraction"}``: the share of label pixels, the pair's measured value."""

    def __init__(self, label_threshold: float = DEFAULT_LABEL_THRESHOLD) -> None:
        self.threshold = check_threshold(label_threshold)

    def __call__(self, pair: np.ndarray) -> dict[str, float]:
        _, label = split_pairs(pair[None], self.threshold)
        return {"vessel_fraction": round(float(label.mean()), 6)}


class PairWriter:
    """Writes one pair as ``<stem>_image.nii.gz`` (float32, [-1, 1]) and ``<stem>_label.nii.gz`` (uint8), atomically.

    Args:
        label_threshold: label-channel value above which a pixel is vessel.
        pixel_spacing_mm: in-plane spacing written into the NIfTI headers (that of the training patches).
    """

    def __init__(
        self, label_threshold: float = DEFAULT_LABEL_THRESHOLD, pixel_spacing_mm: Sequence[float] = (0.6, 0.6)
    ) -> None:
        self.threshold = check_threshold(label_threshold)
        self.spacing = [float(s) for s in pixel_spacing_mm]

    def write(self, folder: Path, stem: str, pair: np.ndarray, record: dict | None = None) -> dict[str, str]:
        """Write the two files of one pair; returns their names relative to ``folder``."""
        (image,), (label,) = split_pairs(pair[None], self.threshold)
        files = {"image": f"{stem}_image.nii.gz", "label": f"{stem}_label.nii.gz"}
        for key, array in (("image", image), ("label", label)):
            nifti = _nifti(array, self.spacing)
            atomic_path(folder / files[key], lambda tmp, nifti=nifti: nib.save(nifti, str(tmp)))
        return files

    def thumbnail(self, folder: Path, files: dict[str, str]) -> Image.Image:
        """Image and label side by side, for dataset overviews."""
        image = np.asarray(nib.load(folder / files["image"]).dataobj, dtype=np.float32)
        label = np.asarray(nib.load(folder / files["label"]).dataobj, dtype=np.float32)
        return side_by_side([_tile(image, -1.0, 1.0), _tile(label, 0.0, 1.0)], gap=2, background=255)


class PairSynthesis:
    """Generate ``n_samples`` pairs and hand each one to the ``writer``, into ``output_dir``.

    Each pair becomes ``pair_<i>_image.nii.gz`` and ``pair_<i>_label.nii.gz``; ``preview.png`` shows
    the first ``preview_pairs`` pairs; ``generation.json`` lists every file with its vessel fraction,
    the seed and the weights' sha256. Everything is written to a hidden staging folder first and moved
    into ``output_dir`` only when all pairs are done, the sidecar last, so a failed run leaves no
    partial output (and the next run removes a killed run's staging folder).

    Args:
        generator: a ``PairGenerator`` with trained weights loaded.
        n_samples: number of pairs (> 0).
        seed: noise seed.
        output_dir: destination folder (created if missing).
        writer: puts one pair on disk (``PairWriter``).
        measure: the pair's vessel fraction (``VesselFraction``).
        latent_size: noise length of the generator.
        batch_size: pairs per forward pass; pair ``i`` is the same in any batch.
        device: where the generator runs.
        preview_pairs: pairs shown in ``preview.png`` (0: no preview).
        metadata: extra entries for ``generation.json`` (e.g. bundle version, weights' sha256).
        progress: show a tqdm progress bar.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        n_samples: int,
        seed: int,
        output_dir: str,
        writer: PairWriter,
        measure: VesselFraction,
        latent_size: int = 128,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
        preview_pairs: int = 16,
        metadata: dict | None = None,
        progress: bool = True,
    ) -> None:
        self.n_samples = check_positive_int("n_samples", n_samples)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.seed = int(seed)
        self.generator = generator
        self.output_dir = Path(output_dir)
        self.writer = writer
        self.measure = measure
        self.latent_size = int(latent_size)
        self.device = device
        self.preview_pairs = max(int(preview_pairs), 0)
        self.metadata = dict(metadata or {})
        self.progress = progress
        self.noise = LatentStream(self.seed, self.latent_size)

    def generate_batch(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The raw (2, H, W) generator outputs of pairs ``indices``, in one forward pass (evaluation mode)."""
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.inference_mode():
                pairs = self.generator(self.noise.take(indices).to(self.device)).float().cpu().numpy()
        finally:
            self.generator.train(was_training)
        return list(pairs)

    def describe(self, index: int, pair: np.ndarray | None = None) -> dict:
        """Provenance of pair ``index``: the seed's stream and the position in it."""
        return {"index": index, "seed": self.seed, "noise": f"draw {index} of the seed's stream", **self.metadata}

    def run(self) -> Path:
        """Write the pairs; returns the sidecar's path."""
        created = not self.output_dir.exists()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.output_dir.glob(".partial-*"):  # a killed run's staging folder
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=self.output_dir))
        try:
            records, shown = self._write_all(staging)
            if self.preview_pairs:
                write_png(pairs_preview(np.stack(shown), self.writer.threshold), staging / "preview.png")
            for file in sorted(staging.iterdir()):
                os.replace(file, self.output_dir / file.name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                shutil.rmtree(self.output_dir, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)
        fractions = [r["vessel_fraction"] for r in records]
        sidecar = {
            **self.metadata,
            "n_samples": self.n_samples,
            "seed": self.seed,
            "latent_size": self.latent_size,
            "label_rule": f"label channel (tanh) > {self.writer.threshold}",
            "pixel_spacing_mm": self.writer.spacing,
            "image_value_range": [-1.0, 1.0],
            "preview": "preview.png" if self.preview_pairs else None,
            "mean_vessel_fraction": round(float(np.mean(fractions)), 6),
            "pairs": records,
        }
        path = write_json(sidecar, self.output_dir / "generation.json")
        print(f"wrote {self.n_samples} pairs, preview.png and {path} to {self.output_dir}")
        return path

    def _write_all(self, staging: Path) -> tuple[list[dict], list[np.ndarray]]:
        records, shown = [], []
        batches = range(0, self.n_samples, self.batch_size)
        for start in tqdm(batches, desc="generating pairs", unit="batch", disable=not self.progress):
            indices = list(range(start, min(start + self.batch_size, self.n_samples)))
            for index, pair in zip(indices, self.generate_batch(indices)):
                files = self.writer.write(staging, sample_stem(index, self.n_samples, "pair"), pair)
                records.append({**files, **self.measure(pair)})
                if len(shown) < self.preview_pairs:
                    shown.append(pair)
        return records, shown
