"""Two-stage synthesis: lesion condition -> label map (latent diffusion) -> one image per contrast (SPADE).

Sample ``i`` of a run with ``seed`` s draws its latent noise with seed ``s + i`` and its random style code
from that seed's ``style`` side stream (``scripts.common.seeding``), both on the CPU, so a sample is reproduced
by its own seed whatever ``n_samples`` or its batch was, and on any device. Sampling, measuring and writing are separate pieces: ``BrainSPADESynthesis`` samples,
the ``measure`` component measures the lesions, and the ``writer`` the config names puts each sample
on disk (each file atomically, the JSON sidecar last, so a sidecar on disk means a complete sample).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from scripts.common.atomic_io import atomic_path, write_json, write_nifti, write_png
from scripts.common.checks import check_positive_int
from scripts.common.dataset import write_samples
from scripts.common.latent_diffusion import ConditionalLatentSampler
from scripts.common.mni import output_affine  # re-exported: configs name scripts.synthesis.output_affine
from scripts.common.seeding import check_seed_span, seeded_generator, stream_normal
from scripts.conformity import LabelRedraw
from scripts.labels import LABEL_NAMES, LESION_NAMES, requested_lesions
from scripts.measures import LesionMeasure
from scripts.networks import spade_input
from scripts.overlay import sample_preview
from scripts.transforms import contrast_one_hot

__all__ = [
    "BrainSPADESynthesis",
    "ImageGenerator",
    "LabelGenerator",
    "SpadeSample",
    "SpadeWriter",
    "load_style_image",
    "output_affine",
]

STYLE_STREAM = "style"
REDRAW_STREAM = "label_redraw"


class SpadeSample(NamedTuple):
    """One generated sample, as ``generate_batch`` hands it to the measure and the writer."""

    label_map: np.ndarray  # (C, X, Y, Z) partial volumes
    images: dict[str, np.ndarray]  # contrast -> (X, Y, Z)
    label_draws: dict[str, Any] | None = None  # the draw record of ``LabelRedraw``; None without redraws


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

    def noise(self, seeds: Sequence[int], draw: int, device: str | torch.device) -> torch.Tensor:
        """Starting noise of draw ``draw`` of each sample seed: draw 0 is the seed's own torch stream (the map a
        run without redraws gives), a redraw comes from the seed's ``label_redraw`` side stream."""
        if draw == 0:
            return torch.cat([self.sampler.initial_noise(1, seeded_generator(int(s)), device) for s in seeds])
        shape = (1, *self.sampler.latent_shape)
        return torch.cat([stream_normal(shape, int(s), REDRAW_STREAM, draw) for s in seeds]).to(device)

    @torch.no_grad()
    def __call__(
        self, condition: torch.Tensor, seeds: Sequence[int], device: str | torch.device, draw: int = 0
    ) -> torch.Tensor:
        """Label maps for ``condition`` (B, 4), item ``b`` from draw ``draw`` of sample seed ``seeds[b]``."""
        noise = self.noise(seeds, draw, device)
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
        """(B, z_dim) standard normal style codes from the ``style`` side stream of each sample seed."""
        codes = [stream_normal((1, self.z_dim), int(s), STYLE_STREAM) for s in seeds]
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


class SpadeWriter:
    """Writes one sample: ``_label_pv.nii.gz`` (X, Y, Z, C partial volumes), ``_label.nii.gz`` (argmax,
    uint8), ``_<contrast>.nii.gz`` per contrast, ``.png`` (label map and each contrast, lesions overlaid)
    and ``.json`` (the record), each atomically and the sidecar last.

    Args:
        affine: voxel-to-MNI affine of the outputs.
        label_names: class names of the label channels.
        lesion_names: lesion classes, outlined in the preview.
    """

    def __init__(
        self, affine: np.ndarray, label_names: Sequence[str] = LABEL_NAMES, lesion_names: Sequence[str] = LESION_NAMES
    ) -> None:
        self.affine = np.asarray(affine, dtype=np.float64)
        self.label_names = list(label_names)
        self.lesion_names = list(lesion_names)

    def write(self, folder: Path, stem: str, sample: SpadeSample, record: Mapping[str, Any]) -> dict[str, str]:
        """Write every file of one sample; returns their names relative to ``folder``."""
        import nibabel as nib

        probabilities, images = sample.label_map, sample.images
        labels = probabilities.argmax(0).astype(np.uint8)
        files = {
            "label_pv": f"{stem}_label_pv.nii.gz",
            "label": f"{stem}_label.nii.gz",
            **{contrast: f"{stem}_{contrast}.nii.gz" for contrast in images},
            "preview": f"{stem}.png",
        }
        write_nifti(np.moveaxis(probabilities, 0, -1), self.affine, folder / files["label_pv"])
        label_image = nib.Nifti1Image(labels, self.affine)
        label_image.set_qform(self.affine, code=4)
        label_image.set_sform(self.affine, code=4)
        atomic_path(folder / files["label"], lambda tmp: nib.save(label_image, str(tmp)))
        for contrast, volume in images.items():
            write_nifti(volume, self.affine, folder / files[contrast])
        caption = f"sample {record['index']}: asked {'+'.join(record['requested_lesions']) or 'healthy'}"
        caption += f" | found {'+'.join(record['present_lesions']) or 'none'}"
        write_png(
            sample_preview(labels, images, caption, self.label_names, self.lesion_names), folder / files["preview"]
        )
        names = {key: Path(name).name for key, name in files.items()}
        write_json({**record, "files": names, "affine": self.affine.tolist()}, folder / f"{stem}.json")
        return {**files, "sidecar": f"{stem}.json"}

    def thumbnail(self, folder: Path, files: Mapping[str, str]) -> Any:
        """The sample's preview, for dataset overviews."""
        from PIL import Image

        with Image.open(folder / files["preview"]) as image:
            return image.copy()


class BrainSPADESynthesis:
    """Generates ``len(conditions)`` samples and hands each one to the ``writer``.

    Args:
        label_generator: stage 1.
        image_generator: stage 2.
        conditions: (N, 4) validated lesion conditions.
        contrasts: contrasts to generate for each sample.
        seed: base seed; sample ``i`` uses ``seed + i``.
        output_dir: destination folder.
        writer: puts one sample on disk (``SpadeWriter``).
        measure: measures the lesions of a sample (``LesionMeasure``).
        style_image: optional (1, 1, *S) style image; its code replaces the random style of every sample.
        style_image_path: its file, recorded in the sidecar.
        device: where the networks run.
        metadata: provenance copied into every sidecar.
        progress: show a progress bar over samples.
        batch_size: samples per network call; sample ``i`` is the same in any batch.
        label_redraw: redraws label maps whose lesions contradict their condition (``max_label_draws``);
            ``None`` delivers every first draw.
    """

    def __init__(
        self,
        label_generator: LabelGenerator,
        image_generator: ImageGenerator,
        conditions: torch.Tensor,
        contrasts: Sequence[str],
        seed: int,
        output_dir: str | os.PathLike,
        writer: SpadeWriter,
        measure: LesionMeasure,
        style_image: torch.Tensor | None = None,
        style_image_path: str | None = None,
        device: str | torch.device = "cpu",
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
        batch_size: int = 1,
        label_redraw: LabelRedraw | None = None,
    ) -> None:
        check_seed_span("seed", seed, len(conditions))
        self.label_generator = label_generator
        self.image_generator = image_generator
        self.conditions = torch.as_tensor(conditions, dtype=torch.float32)
        self.contrasts = list(contrasts)
        self.seed = seed
        self.output_dir = Path(output_dir)
        self.writer = writer
        self.measure = measure
        self.style_image = style_image
        self.style_image_path = style_image_path
        self.device = torch.device(device)
        self.lesion_names = list(measure.lesion_names)
        self.metadata = dict(metadata or {})
        self.progress = progress
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.label_redraw = label_redraw

    def styles(self, indices: Sequence[int]) -> torch.Tensor:
        """(B, z_dim) style codes of samples ``indices``: the style image's, or seeded random ones."""
        if self.style_image is not None:
            code = self.image_generator.style_of(self.style_image.to(self.device))
            return code.expand(len(indices), -1)
        return self.image_generator.random_style([self.seed + i for i in indices], self.device)

    def generate_batch(self, indices: Sequence[int]) -> list[SpadeSample]:
        """Per sample of ``indices``: its (C, *S) partial-volume maps, its (*S) image per contrast, and the
        record of its label draws (``None`` without ``label_redraw``)."""
        condition = self.conditions[list(indices)]
        seeds = [self.seed + i for i in indices]
        probabilities = self.label_generator(condition, seeds, self.device)
        draws: list[dict | None] = [None] * len(indices)
        if self.label_redraw is not None:
            probabilities, draws = self.label_redraw(self.label_generator, condition, seeds, self.device, probabilities)
        style = self.styles(indices)
        images = {c: self.image_generator(probabilities, c, style)[:, 0].cpu().numpy() for c in self.contrasts}
        maps = probabilities.cpu().numpy()
        return [SpadeSample(maps[b], {c: images[c][b] for c in self.contrasts}, draws[b]) for b in range(len(indices))]

    def generate(self, index: int) -> SpadeSample:
        """Sample ``index``: as one item of ``generate_batch``."""
        return self.generate_batch([index])[0]

    def describe(self, index: int, sample: SpadeSample) -> dict[str, Any]:
        """What was asked, what came out, and enough provenance to regenerate the sample."""
        lesions = self.measure.details(sample.label_map)
        requested = dict(zip(self.lesion_names, [round(v, 6) for v in self.conditions[index].tolist()]))
        asked = requested_lesions(self.lesion_names, self.conditions[index].tolist())
        sampler = self.label_generator.sampler
        return {
            "seed": self.seed + index,
            "base_seed": self.seed,
            "index": index,
            "requested_lesions": asked,
            "present_lesions": [name for name, found in lesions.items() if found["present"]],
            "all_requested_present": all(lesions[name]["present"] for name in asked),
            "lesions": {name: {"requested_condition": requested[name], **lesions[name]} for name in self.lesion_names},
            "condition": requested,
            "contrasts": self.contrasts,
            "style": {"source": "image", "path": self.style_image_path}
            if self.style_image is not None
            else {"source": "random", "seed": self.seed + index, "stream": STYLE_STREAM},
            "min_lesion_volume_ml": self.measure.min_lesion_volume_ml,
            "label_draws": sample.label_draws,
            "num_inference_steps": sampler.num_inference_steps,
            "guidance_scale": sampler.guidance_scale,
            "scheduler": type(sampler.scheduler).__name__,
            "scale_factor": sampler.scale_factor,
            **self.metadata,
        }

    def run(self) -> list[Path]:
        """Generate and write every sample; returns the sidecar paths."""
        files = write_samples(self, self.writer, self.output_dir, len(self.conditions), self.batch_size)
        return [self.output_dir / f["sidecar"] for f in files]
