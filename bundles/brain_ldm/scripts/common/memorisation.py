# Generated copy of bundle_runtime/memorisation.py: edit the source, then run `python -m tools sync-common`.
"""Memorisation screen: is a synthetic sample closer to a training subject than unseen real subjects are?

Every image is embedded (by the bundle's own encoder, or a TorchScript extractor from a local path).
For each synthetic sample the nearest training image is the one of highest Pearson correlation between
embeddings. The threshold tau is the ``percentile`` (95th) of the same nearest-training correlation of
held-out real images, which the model never saw: a sample at or above tau is as close to a training
subject as only the closest 5 % of new real subjects are, and is flagged. Filter mode writes the
retained samples' manifest (and, where the bundle says how, a datalist to retrain on them only), the
third step of privacy distillation (Fernandez et al. 2023).

MONAI has metrics for image pairs and distributions but no nearest-neighbour memorisation screen,
hence this module.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic_io import atomic_path, write_json, write_png
from .feature_extractors import load_feature_extractor, pooled_features
from .previews import captioned, grid, side_by_side, triplanar
from .synthetic_folder import SyntheticSample, read_synthetic_folder
from .weights import file_sha256

__all__ = ["MemorisationScreen", "correlation_matrix", "embedder", "nearest_by_correlation"]


def correlation_matrix(queries: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """(Q, R) Pearson correlation between rows of ``queries`` (Q, D) and ``references`` (R, D)."""
    q = queries.double().flatten(1)
    r = references.double().flatten(1)
    q = q - q.mean(1, keepdim=True)
    r = r - r.mean(1, keepdim=True)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    r = r / r.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return q @ r.T


def nearest_by_correlation(queries: torch.Tensor, references: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the index of its most correlated reference and that correlation."""
    values, indices = correlation_matrix(queries, references).max(dim=1)
    return indices.numpy(), values.numpy()


def embedder(
    default: Callable[[torch.Tensor], torch.Tensor], extractor_path: str | None, device: str | torch.device = "cpu"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The bundle's own embedding, or pooled features of a TorchScript extractor (loaded now, so a bad file fails early)."""
    if extractor_path is None:
        return default
    extractor = load_feature_extractor(extractor_path, device)
    return lambda images: pooled_features(extractor, images.to(device))


def _item_name(value: Any, fallback: str) -> str:
    return os.path.basename(value) if isinstance(value, str) else fallback


def _picture(image: torch.Tensor) -> Any:
    """A tile of one image: 3D volumes tri-planar, 2D patches as they are, multi-channel maps as their argmax."""
    from PIL import Image

    channels = image.detach().cpu().float().numpy()  # (C, *S)
    array = channels[0] if len(channels) == 1 else channels.argmax(0).astype(np.float32)
    low, high = float(array.min()), float(array.max())
    if array.ndim == 3:
        return triplanar(array, (low, high if high > low else low + 1.0))
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return Image.fromarray((scaled.T[::-1] * 255).astype(np.uint8)).resize((array.shape[0] * 2, array.shape[1] * 2))


class MemorisationScreen:
    """Embeds, flags and writes ``privacy_report.json``, ``privacy_pairs.png`` and (filter mode) the retained set.

    Args:
        embed: (B, C, *S) images -> (B, D) embeddings.
        load_synthetic: path of a synthetic sample file -> (C, *S) image on the training images' grid.
        train_items: callable returning the training images as dicts with ``image`` (C, *S) and ``name_key``.
        heldout_items: the same for the held-out real images (they set the threshold).
        synthetic_dir: folder of synthetic samples (plain files or ``manifest.csv``).
        output_dir: destination of the report, picture and retained manifest.
        synthetic_pattern: glob of the sample files in a plain folder.
        manifest_file_column: column of ``manifest.csv`` naming each sample's file.
        percentile: percentile of the held-out nearest-training correlations used as the threshold.
        filter_mode: also write ``retained_manifest.csv`` (and ``retained_datalist.json`` with ``datalist_item``).
        n_pairs: closest pairs drawn in the picture.
        datalist_item: retained sample -> training item of the bundle's datalist; None writes no datalist.
        datalist_splits: other entries copied into the retained datalist (e.g. the real validation split, and
            dataset-level keys a training config reads, such as brain_spade3d's lesion normalisation).
        image_key: item key of the real image that is embedded (e.g. ``label`` for label maps).
        name_key: item key naming a real image in the report.
        batch_size: images embedded together.
        metadata: provenance copied into the report.
        progress: show a progress bar.
    """

    def __init__(
        self,
        embed: Callable[[torch.Tensor], torch.Tensor],
        load_synthetic: Callable[[str], torch.Tensor],
        train_items: Callable[[], Sequence[Mapping[str, Any]]],
        heldout_items: Callable[[], Sequence[Mapping[str, Any]]],
        synthetic_dir: str | os.PathLike | None,
        output_dir: str | os.PathLike,
        synthetic_pattern: str = "sample_*.nii.gz",
        manifest_file_column: str = "image",
        percentile: float = 95.0,
        filter_mode: bool = True,
        n_pairs: int = 6,
        datalist_item: Callable[[SyntheticSample], dict[str, Any]] | None = None,
        datalist_splits: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        image_key: str = "image",
        name_key: str = "subject",
        batch_size: int = 4,
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        if synthetic_dir is None:
            raise ValueError("synthetic_dir is not set: pass --synthetic_dir, the folder of samples to screen")
        if not 0.0 < float(percentile) <= 100.0:
            raise ValueError(f"percentile={percentile!r} must lie in (0, 100]")
        self.embed = embed
        self.load_synthetic = load_synthetic
        self.train_items = train_items
        self.heldout_items = heldout_items
        self.synthetic_dir = Path(synthetic_dir)
        self.output_dir = Path(output_dir)
        self.synthetic_pattern = synthetic_pattern
        self.manifest_file_column = manifest_file_column
        self.percentile = float(percentile)
        self.filter_mode = bool(filter_mode)
        self.n_pairs = int(n_pairs)
        self.datalist_item = datalist_item
        self.datalist_splits = dict(datalist_splits or {})
        self.image_key = image_key
        self.name_key = name_key
        self.batch_size = int(batch_size)
        self.metadata = dict(metadata or {})
        self.progress = progress

    def _real(self, loader: Callable[[], Sequence[Mapping[str, Any]]], split: str) -> tuple[torch.Tensor, list[str]]:
        items = list(loader())
        if not items:
            raise ValueError(f"the {split} set is empty: the screen needs real {split} images")
        images = torch.stack([torch.as_tensor(item[self.image_key]).float() for item in items])
        names = [_item_name(item.get(self.name_key), f"{split} {index}") for index, item in enumerate(items)]
        return images, names

    def _synthetic(self, samples: Sequence[SyntheticSample], shape: tuple[int, ...]) -> torch.Tensor:
        images = []
        for sample in samples:
            try:
                image = torch.as_tensor(self.load_synthetic(str(sample.path))).float()
            except Exception as error:  # nibabel/numpy raise many types for a damaged file
                raise ValueError(f"synthetic sample {sample.path} cannot be read ({error})") from error
            if tuple(image.shape) != shape:
                raise ValueError(
                    f"synthetic sample {sample.path} has shape {tuple(image.shape)}; the training images have {shape}"
                )
            if not torch.isfinite(image).all():
                raise ValueError(f"synthetic sample {sample.path} contains NaN or infinite values")
            images.append(image)
        return torch.stack(images)

    def _embed(self, images: torch.Tensor, description: str) -> torch.Tensor:
        from tqdm.auto import tqdm

        batches = range(0, len(images), self.batch_size)
        with torch.no_grad():
            parts = [
                torch.as_tensor(self.embed(images[s : s + self.batch_size])).detach().cpu().double().flatten(1)
                for s in tqdm(batches, desc=f"embedding {description}", disable=not self.progress)
            ]
        return torch.cat(parts)

    def _pairs_picture(self, order: np.ndarray, synthetic: torch.Tensor, train: torch.Tensor, report: dict) -> Any:
        rows = []
        for index in order[: self.n_pairs]:
            entry = report["samples"][index]
            flag = "FLAGGED " if entry["flagged"] else ""
            text = f"{flag}{entry['file']} | nearest {entry['nearest_training']} | r = {entry['correlation']:.4f}"
            pair = side_by_side([_picture(synthetic[index]), _picture(train[entry["nearest_index"]])], gap=8)
            rows.append(captioned(pair, text))
        return grid(rows, gap=6)

    def _retained_manifest(self, samples: Sequence[SyntheticSample], columns: list[str] | None) -> str:
        buffer = io.StringIO()
        if columns is None:
            writer = csv.DictWriter(buffer, fieldnames=["index", "file", "sha256"], lineterminator="\n")
            writer.writeheader()
            for index, sample in enumerate(samples):
                writer.writerow({"index": index, "file": sample.name, "sha256": file_sha256(sample.path)})
        else:
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(sample.row for sample in samples)
        return buffer.getvalue()

    def run(self) -> dict[str, Any]:
        """Check every input, embed, flag, then write the outputs (nothing is written if a check fails)."""
        samples, columns = read_synthetic_folder(self.synthetic_dir, self.synthetic_pattern, self.manifest_file_column)
        train, train_names = self._real(self.train_items, "training")
        heldout, _ = self._real(self.heldout_items, "held-out")
        if heldout.shape[1:] != train.shape[1:]:
            raise ValueError(
                f"held-out images {tuple(heldout.shape[1:])} differ from training {tuple(train.shape[1:])}"
            )
        synthetic = self._synthetic(samples, tuple(train.shape[1:]))
        datalist_items = [self.datalist_item(s) for s in samples] if self.filter_mode and self.datalist_item else None

        train_embedding = self._embed(train, "training images")
        heldout_index, heldout_corr = nearest_by_correlation(self._embed(heldout, "held-out images"), train_embedding)
        nearest_index, nearest_corr = nearest_by_correlation(
            self._embed(synthetic, "synthetic samples"), train_embedding
        )
        threshold = float(np.percentile(heldout_corr, self.percentile))
        flagged = nearest_corr >= threshold
        report: dict[str, Any] = {
            **self.metadata,
            "n_synthetic": len(samples),
            "n_train": len(train),
            "n_heldout": len(heldout),
            "threshold": threshold,
            "percentile": self.percentile,
            "similarity": "Pearson correlation of embeddings",
            "heldout_nearest_correlations": heldout_corr.tolist(),
            "flagged": [
                {"file": s.name, "nearest_training": train_names[i], "correlation": float(c)}
                for s, i, c, f in zip(samples, nearest_index, nearest_corr, flagged)
                if f
            ],
            "flagged_fraction": float(flagged.mean()),
            "samples": [
                {
                    "file": s.name,
                    "nearest_training": train_names[i],
                    "nearest_index": int(i),
                    "correlation": float(c),
                    "flagged": bool(f),
                }
                for s, i, c, f in zip(samples, nearest_index, nearest_corr, flagged)
            ],
        }
        picture = self._pairs_picture(np.argsort(-nearest_corr), synthetic, train, report)
        retained = [s for s, f in zip(samples, flagged) if not f]
        report["n_retained"] = len(retained)
        if self.filter_mode:
            manifest = self._retained_manifest(retained, columns)
            atomic_path(self.output_dir / "retained_manifest.csv", lambda tmp: tmp.write_text(manifest))
            report["retained_manifest"] = "retained_manifest.csv"
            if datalist_items is not None:
                kept = [item for item, f in zip(datalist_items, flagged) if not f]
                datalist = {**self.datalist_splits, "training": kept}
                atomic_path(self.output_dir / "retained_datalist.json", lambda t: t.write_text(json.dumps(datalist)))
                report["retained_datalist"] = "retained_datalist.json"
        write_png(picture, self.output_dir / "privacy_pairs.png")
        write_json(report, self.output_dir / "privacy_report.json")
        print(
            f"screened {len(samples)} samples: {int(flagged.sum())} flagged at tau = {threshold:.4f}; "
            f"report in {self.output_dir / 'privacy_report.json'}"
        )
        return report
