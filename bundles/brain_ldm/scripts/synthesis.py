"""Sampling brains to disk: one NIfTI, one tri-planar PNG and one JSON sidecar per sample.

Sample ``i`` of a run with ``seed`` s starts from noise drawn with seed ``s + i`` on the CPU, so a
brain is reproduced by its own seed whatever ``n_samples`` was, and on any device.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.atomic_io import write_json, write_nifti, write_png
from scripts.common.checks import check_non_negative_int
from scripts.common.latent_diffusion import ConditionalLatentSampler
from scripts.common.mni import crop_affine, crop_shape
from scripts.common.previews import triplanar

__all__ = ["BrainSynthesis", "output_affine"]


def output_affine(resolution_mm: int, spatial_shape: Sequence[int]) -> np.ndarray:
    """MNI affine of the network's field of view: the MNI crop, centre-cropped or padded like training.

    Training fits images to ``spatial_shape`` with ``ResizeWithPadOrCrop``; applying the same
    transform to an empty volume carrying the crop's affine gives the exact voxel-to-MNI mapping.
    """
    from monai.data import MetaTensor
    from monai.transforms import ResizeWithPadOrCrop

    full = crop_shape(resolution_mm)
    if tuple(int(s) for s in spatial_shape) == full:
        return crop_affine(resolution_mm)
    empty = MetaTensor(torch.zeros((1, *full)), affine=torch.as_tensor(crop_affine(resolution_mm)))
    fitted = ResizeWithPadOrCrop(spatial_size=list(spatial_shape))(empty)
    return np.asarray(fitted.affine, dtype=np.float64)


class BrainSynthesis:
    """Generates ``len(conditions)`` brains and writes each one atomically under ``output_dir``.

    Args:
        sampler: the conditioned latent sampler (scheduler, steps, scale factor).
        diffusion: the UNet, or any callable with its signature (e.g. an ONNX Runtime wrapper).
        decode: latent -> image callable (the autoencoder's ``decode_stage_2_outputs``).
        conditions: (N, 4) validated condition matrix.
        condition_names: names of the condition columns, for the sidecar.
        seed: base seed; sample ``i`` uses ``seed + i``.
        output_dir: folder for ``sample_XXX.{nii.gz,png,json}``.
        affine: voxel-to-MNI affine written into the NIfTI.
        device: where the networks run.
        value_range: generated intensities are clipped to this range (the training data range).
        metadata: extra provenance copied into every sidecar (profile, bundle version, weights...).
        progress: show tqdm bars over samples and denoising steps.
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
        affine: np.ndarray,
        device: str | torch.device = "cpu",
        value_range: tuple[float, float] = (0.0, 1.0),
        metadata: dict[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        check_non_negative_int("seed", seed)
        self.sampler = sampler
        self.diffusion = diffusion
        self.decode = decode
        self.conditions = torch.as_tensor(conditions, dtype=torch.float64)
        self.condition_names = list(condition_names)
        self.seed = seed
        self.output_dir = Path(output_dir)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.device = torch.device(device)
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.metadata = dict(metadata or {})
        self.progress = progress

    def generate(self, index: int) -> np.ndarray:
        """The (X, Y, Z) volume of sample ``index``, clipped to ``value_range``."""
        generator = torch.Generator().manual_seed(self.seed + index)
        noise = self.sampler.initial_noise(1, generator, self.device)
        condition = self.conditions[index : index + 1].to(self.device)
        image = self.sampler(self.diffusion, self.decode, condition, noise, description=f"sample {index}")
        volume = torch.as_tensor(image)[0, 0].float().clamp(*self.value_range)
        return volume.cpu().numpy()

    def sidecar(self, index: int) -> dict[str, Any]:
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
            "affine": self.affine.tolist(),
            **self.metadata,
        }

    def run(self) -> list[Path]:
        """Write every sample; returns the NIfTI paths."""
        from tqdm.auto import tqdm

        written = []
        for index in tqdm(range(len(self.conditions)), desc="samples", disable=not self.progress):
            volume = self.generate(index)
            stem = self.output_dir / f"sample_{index:03d}"
            nifti = write_nifti(volume, self.affine, stem.with_suffix(".nii.gz"))
            write_png(triplanar(volume, self.value_range), stem.with_suffix(".png"))
            write_json(
                {"image": nifti.name, "preview": f"{stem.name}.png", **self.sidecar(index)}, stem.with_suffix(".json")
            )
            written.append(nifti)
        return written
