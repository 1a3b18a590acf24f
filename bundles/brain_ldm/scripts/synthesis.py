"""Sampling brains, and the writer that puts each one on disk (NIfTI, tri-planar PNG, JSON sidecar).

Sample ``i`` of a run with ``seed`` s starts from noise drawn with seed ``s + i`` on the CPU, so a
brain is reproduced by its own seed whatever ``n_samples`` or the batch it was sampled in, and on
any device. Sampling and writing are separate pieces: ``BrainSynthesis`` samples and hands each
volume to the ``writer`` the config names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.atomic_io import write_json, write_nifti, write_png
from scripts.common.checks import check_positive_int
from scripts.common.dataset import write_samples
from scripts.common.latent_diffusion import ConditionalLatentSampler
from scripts.common.mni import output_affine  # re-exported: configs name scripts.synthesis.output_affine
from scripts.common.previews import triplanar
from scripts.common.seeding import check_seed_span, seeded_generator

__all__ = ["BrainSynthesis", "BrainWriter", "output_affine"]


class BrainWriter:
    """Writes one brain as ``<stem>.nii.gz`` (MNI affine), ``<stem>.png`` and ``<stem>.json``, each atomically.

    Args:
        affine: voxel-to-MNI affine written into the NIfTI.
        value_range: intensities shown black to white in the preview.
    """

    def __init__(self, affine: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> None:
        self.affine = np.asarray(affine, dtype=np.float64)
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def write(self, folder: Path, stem: str, volume: np.ndarray, record: dict[str, Any]) -> dict[str, str]:
        """Write the files of one sample (the sidecar last); returns their names relative to ``folder``."""
        files = {"image": f"{stem}.nii.gz", "preview": f"{stem}.png", "sidecar": f"{stem}.json"}
        write_nifti(volume, self.affine, folder / files["image"])
        write_png(triplanar(volume, self.value_range), folder / files["preview"])
        names = {"image": Path(files["image"]).name, "preview": Path(files["preview"]).name}
        write_json({**names, **record, "affine": self.affine.tolist()}, folder / files["sidecar"])
        return files

    def thumbnail(self, folder: Path, files: dict[str, str]) -> Any:
        """The sample's preview, for dataset overviews."""
        from PIL import Image

        with Image.open(folder / files["preview"]) as image:
            return image.copy()


class BrainSynthesis:
    """Generates ``len(conditions)`` brains and writes each one atomically under ``output_dir``.

    Args:
        sampler: the conditioned latent sampler (scheduler, steps, scale factor).
        diffusion: the UNet, or any callable with its signature (e.g. an ONNX Runtime wrapper).
        decode: latent -> image callable (the autoencoder's ``decode_stage_2_outputs``).
        conditions: (N, 4) validated condition matrix.
        condition_names: names of the condition columns, for the sidecar.
        seed: base seed; sample ``i`` uses ``seed + i``.
        output_dir: folder for ``sample_XXXXXX.{nii.gz,png,json}``.
        writer: puts one sample on disk (``BrainWriter``).
        device: where the networks run.
        value_range: generated intensities are clipped to this range (the training data range).
        metadata: extra provenance copied into every sidecar (profile, bundle version, weights...).
        progress: show tqdm bars over samples and denoising steps.
        batch_size: samples per UNet call; sample ``i`` is the same in any batch.
    """

    def __init__(
        self,
        sampler: ConditionalLatentSampler,
        diffusion: Callable[..., torch.Tensor],
        decode: Callable[[torch.Tensor], torch.Tensor],
        conditions: torch.Tensor,
        condition_names: Sequence[str],
        seed: int,
        output_dir: str | os.PathLike,
        writer: BrainWriter,
        device: str | torch.device = "cpu",
        value_range: tuple[float, float] = (0.0, 1.0),
        metadata: dict[str, Any] | None = None,
        progress: bool = True,
        batch_size: int = 1,
    ) -> None:
        check_seed_span("seed", seed, len(conditions))
        self.sampler = sampler
        self.diffusion = diffusion
        self.decode = decode
        self.conditions = torch.as_tensor(conditions, dtype=torch.float64)
        self.condition_names = list(condition_names)
        self.seed = seed
        self.output_dir = Path(output_dir)
        self.writer = writer
        self.device = torch.device(device)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.metadata = dict(metadata or {})
        self.progress = progress
        self.batch_size = check_positive_int("batch_size", batch_size)

    def generate_batch(self, indices: Sequence[int]) -> list[np.ndarray]:
        """The (X, Y, Z) volumes of samples ``indices``, sampled together and clipped to ``value_range``."""
        noise = torch.cat(
            [self.sampler.initial_noise(1, seeded_generator(self.seed + i), self.device) for i in indices]
        )
        condition = self.conditions[list(indices)].to(self.device)
        description = f"sample {indices[0]}" if len(indices) == 1 else f"samples {indices[0]}-{indices[-1]}"
        images = self.sampler(self.diffusion, self.decode, condition, noise, description=description)
        return [v.float().clamp(*self.value_range).cpu().numpy() for v in torch.as_tensor(images)[:, 0]]

    def generate(self, index: int) -> np.ndarray:
        """The (X, Y, Z) volume of sample ``index``, clipped to ``value_range``."""
        return self.generate_batch([index])[0]

    def describe(self, index: int, volume: np.ndarray | None = None) -> dict[str, Any]:
        """Provenance of sample ``index``: enough to regenerate it."""
        values = self.conditions[index].tolist()
        return {
            "seed": self.seed + index,
            "base_seed": self.seed,
            "index": index,
            "conditioning": dict(zip(self.condition_names, values)),
            "num_inference_steps": self.sampler.num_inference_steps,
            "guidance_scale": self.sampler.guidance_scale,
            "scheduler": type(self.sampler.scheduler).__name__,
            "scale_factor": self.sampler.scale_factor,
            **self.metadata,
        }

    def run(self) -> list[Path]:
        """Write every sample through the writer; returns the NIfTI paths."""
        files = write_samples(self, self.writer, self.output_dir, len(self.conditions), self.batch_size)
        return [self.output_dir / f["image"] for f in files]
