"""Two-stage synthesis: lesion condition -> label map (latent diffusion) -> one image per contrast (SPADE).

Sample ``i`` of a run with ``seed`` s draws its latent noise and its style code with seed ``s + i``
on the CPU, so a sample is reproduced by its own seed whatever ``n_samples`` was, and on any device.
Everything of a sample is computed before its first file is written; each file is written atomically
and the JSON sidecar comes last, so a sidecar on disk means the sample is complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.atomic_io import atomic_path, write_json, write_nifti, write_png
from scripts.common.checks import check_non_negative_int
from scripts.common.latent_diffusion import ConditionalLatentSampler
from scripts.common.mni import crop_affine, crop_shape
from scripts.labels import LABEL_NAMES, LESION_NAMES, measure_lesions
from scripts.networks import spade_input
from scripts.overlay import sample_preview
from scripts.transforms import contrast_one_hot

__all__ = ["BrainSPADESynthesis", "ImageGenerator", "LabelGenerator", "load_style_image", "output_affine", "style_seed"]


def style_seed(sample_seed: int) -> int:
    """Seed of a sample's random style code: its own stream, apart from every sample's latent noise."""
    return int(sample_seed) + 2**32


def output_affine(resolution_mm: int, spatial_shape: Sequence[int]) -> np.ndarray:
    """MNI affine of the networks' field of view: the MNI crop, centre-cropped or padded like training."""
    from monai.data import MetaTensor
    from monai.transforms import ResizeWithPadOrCrop

    full = crop_shape(resolution_mm)
    if tuple(int(s) for s in spatial_shape) == full:
        return crop_affine(resolution_mm)
    empty = MetaTensor(torch.zeros((1, *full)), affine=torch.as_tensor(crop_affine(resolution_mm)))
    fitted = ResizeWithPadOrCrop(spatial_size=list(spatial_shape))(empty)
    return np.asarray(fitted.affine, dtype=np.float64)


def load_style_image(path: str | os.PathLike, spatial_shape: Sequence[int]) -> torch.Tensor:
    """A (1, 1, *spatial_shape) style image from a NIfTI file on the bundle's grid, RAS-oriented.

    The image must already have the generator's shape (e.g. an image of the demo cohort, or one
    written by this bundle): resampling a user's scan to MNI space is registration, not done here.
    """
    from monai.transforms import EnsureChannelFirst, LoadImage, Orientation

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"style_image {path} does not exist")
    try:
        image = LoadImage(image_only=True)(str(path))
    except Exception as error:  # readers raise many types for unreadable files
        raise ValueError(f"style_image {path} is not a readable image ({error})") from error
    image = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(EnsureChannelFirst()(image))
    expected = (1, *[int(s) for s in spatial_shape])
    if tuple(image.shape) != expected:
        raise ValueError(
            f"style_image {path} has shape {tuple(image.shape[1:])} with {image.shape[0]} channel(s); the generator "
            f"needs one channel of shape {tuple(expected[1:])} (the bundle's spatial_shape, MNI grid, RAS)"
        )
    array = torch.as_tensor(image.as_tensor() if hasattr(image, "as_tensor") else image, dtype=torch.float32)
    if not torch.isfinite(array).all():
        raise ValueError(f"style_image {path} contains NaN or infinite values")
    return array[None]


class LabelGenerator:
    """Stage 1: (B, 4) lesion conditions -> (B, C, *S) partial-volume maps (softmax of the decoded latent).

    Args:
        sampler: the conditioned latent sampler (DDIM, guidance scale, scale factor).
        diffusion: the label UNet, or any callable with its signature (TorchScript, ONNX Runtime).
        decode: latent -> label logits (the autoencoder's ``decode_stage_2_outputs`` or an export of it).
    """

    def __init__(
        self,
        sampler: ConditionalLatentSampler,
        diffusion: Callable[..., torch.Tensor],
        decode: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        if sampler.concat_condition:
            raise ValueError("the label UNet takes the lesion condition through cross-attention only")
        self.sampler = sampler
        self.diffusion = diffusion
        self.decode = decode

    def _probabilities(self, latent: torch.Tensor) -> torch.Tensor:
        return torch.softmax(torch.as_tensor(self.decode(latent)).float(), dim=1)

    @torch.no_grad()
    def __call__(self, condition: torch.Tensor, seeds: Sequence[int], device: str | torch.device) -> torch.Tensor:
        """Label maps for ``condition`` (B, 4), item ``b`` starting from noise seeded with ``seeds[b]``."""
        noise = torch.cat([self.sampler.initial_noise(1, torch.Generator().manual_seed(int(s)), device) for s in seeds])
        return self.sampler(self.diffusion, self._probabilities, condition.to(device), noise, description="labels")


class ImageGenerator:
    """Stage 2: partial-volume maps + a contrast + a style code -> an image, clipped to ``value_range``.

    Args:
        decode: ``(seg, z) -> image`` (the generator's ``decode`` or an export of it).
        z_dim: length of the style code.
        contrasts: contrast names in one-hot order.
        encode: ``style image -> z`` (the generator's ``encode_mean``), needed for style images only.
        value_range: range of the training images.
    """

    def __init__(
        self,
        decode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        z_dim: int,
        contrasts: Sequence[str],
        encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.decode = decode
        self.encode = encode
        self.z_dim = int(z_dim)
        self.contrasts = list(contrasts)
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def random_style(self, seeds: Sequence[int], device: str | torch.device) -> torch.Tensor:
        """(B, z_dim) standard normal style codes, drawn on the CPU from ``seeds``."""
        codes = [torch.randn((1, self.z_dim), generator=torch.Generator().manual_seed(style_seed(s))) for s in seeds]
        return torch.cat(codes).to(device)

    @torch.no_grad()
    def style_of(self, image: torch.Tensor) -> torch.Tensor:
        """The deterministic style code of (B, 1, *S) images."""
        if self.encode is None:
            raise ValueError("this image generator has no style encoder: style images cannot be used")
        return torch.as_tensor(self.encode(image)).float()

    @torch.no_grad()
    def __call__(self, probabilities: torch.Tensor, contrast: str, style: torch.Tensor) -> torch.Tensor:
        """(B, 1, *S) images of ``contrast`` for label maps (B, C, *S) and style codes (B, z_dim)."""
        code = torch.tensor([contrast_one_hot(contrast, self.contrasts)] * probabilities.shape[0])
        seg = spade_input(probabilities.float(), code)
        style = style.to(device=seg.device, dtype=seg.dtype)
        return torch.as_tensor(self.decode(seg, style)).float().clamp(*self.value_range)


class BrainSPADESynthesis:
    """Generates ``len(conditions)`` samples and writes each one under ``output_dir``.

    Per sample ``sample_XXX``: ``_label_pv.nii.gz`` (X, Y, Z, C partial volumes), ``_label.nii.gz``
    (argmax, uint8), ``_<contrast>.nii.gz`` per contrast, ``.png`` (label map and each contrast with
    the lesions overlaid) and ``.json`` (inputs, requested vs obtained lesions, provenance).

    Args:
        label_generator: stage 1.
        image_generator: stage 2.
        conditions: (N, 4) validated lesion conditions.
        contrasts: contrasts to generate for each sample.
        seed: base seed; sample ``i`` uses ``seed + i``.
        output_dir: destination folder.
        affine: voxel-to-MNI affine of the outputs.
        voxel_ml: volume of one voxel in ml.
        lesion_fraction_max: the training maxima the conditions are relative to.
        min_lesion_volume_ml: argmax volume from which a lesion counts as present.
        style_image: optional (1, 1, *S) style image; its code replaces the random style of every sample.
        style_image_path: its file, recorded in the sidecar.
        device: where the networks run.
        label_names: class names of the label channels.
        lesion_names: names of the condition entries (also label channels).
        metadata: provenance copied into every sidecar.
        progress: show a progress bar over samples.
    """

    def __init__(
        self,
        label_generator: LabelGenerator,
        image_generator: ImageGenerator,
        conditions: torch.Tensor,
        contrasts: Sequence[str],
        seed: int,
        output_dir: str | os.PathLike,
        affine: np.ndarray,
        voxel_ml: float,
        lesion_fraction_max: Sequence[float],
        min_lesion_volume_ml: float = 0.1,
        style_image: torch.Tensor | None = None,
        style_image_path: str | None = None,
        device: str | torch.device = "cpu",
        label_names: Sequence[str] = LABEL_NAMES,
        lesion_names: Sequence[str] = LESION_NAMES,
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        check_non_negative_int("seed", seed)
        if not float(min_lesion_volume_ml) >= 0:
            raise ValueError(f"min_lesion_volume_ml={min_lesion_volume_ml!r} must be >= 0")
        self.label_generator = label_generator
        self.image_generator = image_generator
        self.conditions = torch.as_tensor(conditions, dtype=torch.float32)
        self.contrasts = list(contrasts)
        self.seed = seed
        self.output_dir = Path(output_dir)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.voxel_ml = float(voxel_ml)
        self.lesion_fraction_max = [float(v) for v in lesion_fraction_max]
        self.min_lesion_volume_ml = float(min_lesion_volume_ml)
        self.style_image = style_image
        self.style_image_path = style_image_path
        self.device = torch.device(device)
        self.label_names = list(label_names)
        self.lesion_names = list(lesion_names)
        self.metadata = dict(metadata or {})
        self.progress = progress

    def style(self, index: int) -> torch.Tensor:
        """(1, z_dim) style code of sample ``index``: the style image's, or a seeded random one."""
        if self.style_image is not None:
            return self.image_generator.style_of(self.style_image.to(self.device))
        return self.image_generator.random_style([self.seed + index], self.device)

    def generate(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The (C, *S) partial-volume maps of sample ``index`` and its (*S) image per contrast."""
        condition = self.conditions[index : index + 1]
        probabilities = self.label_generator(condition, [self.seed + index], self.device)
        style = self.style(index)
        images = {c: self.image_generator(probabilities, c, style)[0, 0].cpu().numpy() for c in self.contrasts}
        return probabilities[0].cpu().numpy(), images

    def sidecar(self, index: int, lesions: Mapping[str, Mapping[str, Any]], files: Mapping[str, str]) -> dict:
        """What was asked, what came out, and enough provenance to regenerate the sample."""
        requested = dict(zip(self.lesion_names, [round(v, 6) for v in self.conditions[index].tolist()]))
        sampler = self.label_generator.sampler
        return {
            "seed": self.seed + index,
            "base_seed": self.seed,
            "index": index,
            "files": dict(files),
            "requested_lesions": [name for name, value in requested.items() if value > 0],
            "present_lesions": [name for name, found in lesions.items() if found["present"]],
            "all_requested_present": all(lesions[name]["present"] for name, value in requested.items() if value > 0),
            "lesions": {name: {"requested_condition": requested[name], **lesions[name]} for name in self.lesion_names},
            "condition": requested,
            "contrasts": self.contrasts,
            "style": {"source": "image", "path": self.style_image_path}
            if self.style_image is not None
            else {"source": "random", "seed": style_seed(self.seed + index)},
            "min_lesion_volume_ml": self.min_lesion_volume_ml,
            "num_inference_steps": sampler.num_inference_steps,
            "guidance_scale": sampler.guidance_scale,
            "scheduler": type(sampler.scheduler).__name__,
            "scale_factor": sampler.scale_factor,
            "affine": self.affine.tolist(),
            **self.metadata,
        }

    def write(self, index: int, probabilities: np.ndarray, images: Mapping[str, np.ndarray]) -> Path:
        """Write every file of one sample, the sidecar last; returns the sidecar path."""
        import nibabel as nib

        stem = f"sample_{index:03d}"
        labels = probabilities.argmax(0).astype(np.uint8)
        lesions = measure_lesions(
            probabilities,
            self.voxel_ml,
            self.lesion_fraction_max,
            self.min_lesion_volume_ml,
            self.label_names,
            self.lesion_names,
        )
        files = {
            "label_pv": f"{stem}_label_pv.nii.gz",
            "label": f"{stem}_label.nii.gz",
            **{contrast: f"{stem}_{contrast}.nii.gz" for contrast in images},
            "preview": f"{stem}.png",
        }
        write_nifti(np.moveaxis(probabilities, 0, -1), self.affine, self.output_dir / files["label_pv"])
        label_image = nib.Nifti1Image(labels, self.affine)
        label_image.set_qform(self.affine, code=4)
        label_image.set_sform(self.affine, code=4)
        atomic_path(self.output_dir / files["label"], lambda tmp: nib.save(label_image, str(tmp)))
        for contrast, volume in images.items():
            write_nifti(volume, self.affine, self.output_dir / files[contrast])
        sidecar = self.sidecar(index, lesions, files)
        caption = f"sample {index}: asked {'+'.join(sidecar['requested_lesions']) or 'healthy'}"
        caption += f" | found {'+'.join(sidecar['present_lesions']) or 'none'}"
        preview = sample_preview(labels, images, caption, self.label_names, self.lesion_names)
        write_png(preview, self.output_dir / files["preview"])
        return write_json(sidecar, self.output_dir / f"{stem}.json")

    def run(self) -> list[Path]:
        """Generate and write every sample; returns the sidecar paths."""
        from tqdm.auto import tqdm

        written = []
        for index in tqdm(range(len(self.conditions)), desc="samples", disable=not self.progress):
            probabilities, images = self.generate(index)
            written.append(self.write(index, probabilities, images))
        return written
