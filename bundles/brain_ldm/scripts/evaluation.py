"""Evaluation of generated brains: diversity, distribution distance and conditioning fidelity.

Conditioning fidelity needs a segmentation of generated images. We use one simple enough to trust
and check it on real images in the same run:

* ventricular volume = voxels inside the MNI ventricle region (``resources/mni_ventricle_roi_4mm.nii.gz``,
  the demo cohort's generous mask around the lateral and third ventricles) darker than
  ``ventricle_threshold`` times the region's ``ventricle_reference_percentile``-th intensity percentile
  (the white matter around the ventricles), times the voxel volume; a relative threshold because an
  image's overall brightness and bias field otherwise move the count;
* brain volume = voxels at least ``csf_threshold`` bright anywhere in the field of view (the images
  are skull-stripped, so only grey and white matter are that bright), times the voxel volume.

The report gives Pearson r between requested (normalised) and measured volumes on generated
samples, and between true and measured volumes on the real reference images.

Two checks catch a model that only looks right on average. Every sample's final latent spread
(its std times ``scale_factor``, which is 1 for the training latents by construction) shows samples
that drifted off the latent distribution into blobs. Samples drawn at one condition are compared
pairwise, by Pearson r inside the brain, with the real subjects: samples that correlate more with
each other than different people do are one brain, not a distribution.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.atomic_io import json_safe, write_json, write_png
from scripts.common.feature_extractors import load_feature_extractor, pooled_features
from scripts.common.image_similarity import four_gradient_region_ssim, pairwise_mean
from scripts.common.latent_diffusion import ConditionalLatentSampler
from scripts.common.previews import axial, captioned, grid, scatter_panel, side_by_side, triplanar
from scripts.common.seeding import seeded_generator
from scripts.measures import (  # noqa: F401  (re-exported: the evaluation's measurements)
    BrainVolumes,
    brain_volume_ml,
    check_percentile,
    describe_ventricle_measure,
    ventricle_volume_ml,
)

__all__ = [
    "GenerativeEvaluation",
    "brain_volume_ml",
    "describe_ventricle_measure",
    "masked_pearson",
    "pearson_r",
    "ventricle_volume_ml",
]

#: Conditions whose fidelity is measured on generated images.
FIDELITY_CONDITIONS = ("ventricular_vol", "brain_vol")
#: A final latent whose spread is further than this from the training latents' (1.0) counts as off-distribution.
LATENT_SPREAD_TOLERANCE = 0.2
#: The brain region for the same-condition comparison: where the real images' mean is at least this bright.
BRAIN_REGION_THRESHOLD = 0.1


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation, or None when either side is constant (r is undefined)."""
    x_arr, y_arr = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x_arr.size < 2 or np.std(x_arr) == 0 or np.std(y_arr) == 0:
        return None
    return float(np.corrcoef(x_arr, y_arr)[0, 1])


def masked_pearson(mask: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-pair Pearson r over the voxels of ``mask`` (X, Y, Z): likeness where there is brain, not background."""
    selected = mask.reshape(-1).bool()

    def similarity(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        a = first.reshape(first.shape[0], -1)[:, selected].double()
        b = second.reshape(second.shape[0], -1)[:, selected].double()
        a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
        return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)

    return similarity


class GenerativeEvaluation:
    """Generates the evaluation samples, computes every metric and writes ``metrics.json`` + PNGs.

    Args:
        sampler: conditioned latent sampler.
        diffusion: the UNet (or a compatible callable).
        decode: latent -> image callable.
        reference_images: callable returning the real reference set as a list of dicts with
            ``image`` (1, X, Y, Z) and ``condition`` (4,).
        ventricle_roi: (X, Y, Z) mask on the sample grid.
        condition_names: names of the four conditions.
        output_dir: destination of ``metrics.json``, ``conditioning_fidelity.png``, ``samples.png``.
        seed: base seed; every generated sample has its own derived seed.
        voxel_mm: voxel side in millimetres.
        csf_threshold: intensity separating CSF from tissue (brain volume; ventricles unless set below).
        ventricle_threshold, ventricle_reference_percentile: the ventricle measurement's threshold, relative to
            that percentile of the ventricle region's intensities (see :func:`ventricle_volume_ml`); None each
            falls back to ``csf_threshold`` on absolute intensities.
        ms_ssim: callable(x, y) -> per-pair MS-SSIM (MONAI ``MultiScaleSSIMMetric``).
        mmd: callable(y, y_pred) -> MMD (MONAI ``MMDMetric``).
        fid_feature_extractor_path: TorchScript 3D feature extractor; None skips FID (and says so).
        fid_metric: callable(generated_features, real_features) -> FID (MONAI ``FIDMetric``).
        feature_distance: callable(generated, real) -> report of an offline distribution distance
            (``FrechetFeatureDistance``: radiomics-style features, with its real split-half scale); None skips it.
        distance_real_images: callable returning the real set of that distance (default: the reference set).
        fidelity_values: requested normalised values for the conditioning sweeps.
        fidelity_base_condition: the condition vector the sweeps start from.
        fidelity_samples_per_value: samples per requested value.
        samples_per_reference: generated samples per reference condition (diversity, MMD, FID set).
        same_condition_samples: samples at ``fidelity_base_condition`` compared pairwise with the
            real subjects (0 skips the comparison).
        max_pairs: cap on the pairs used for the diversity indices.
        device: where sampling runs.
        metadata: extra provenance written into the report.
        progress: show tqdm bars.
        reconstruct: image -> autoencoder reconstruction (from the posterior mean, so it is repeatable); when
            given, the volumes are also measured on the real images' reconstructions: the ceiling the
            autoencoder sets on any sample's fidelity. None skips it.
    """

    def __init__(
        self,
        sampler: ConditionalLatentSampler,
        diffusion: Callable[..., torch.Tensor],
        decode: Callable[[torch.Tensor], torch.Tensor],
        reference_images: Callable[[], list[Mapping[str, Any]]],
        ventricle_roi: np.ndarray,
        condition_names: Sequence[str],
        output_dir: str | os.PathLike,
        seed: int = 0,
        voxel_mm: float = 4.0,
        csf_threshold: float = 0.5,
        ventricle_threshold: float | None = None,
        ventricle_reference_percentile: float | None = None,
        ms_ssim: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        mmd: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        fid_feature_extractor_path: str | None = None,
        fid_metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        feature_distance: Callable[[torch.Tensor, torch.Tensor], dict[str, Any]] | None = None,
        distance_real_images: Callable[[], list[Mapping[str, Any]]] | None = None,
        fidelity_values: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        fidelity_base_condition: Sequence[float] = (0.0, 0.5, 0.5, 0.5),
        fidelity_samples_per_value: int = 2,
        samples_per_reference: int = 1,
        same_condition_samples: int = 8,
        max_pairs: int = 100,
        device: str | torch.device = "cpu",
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
        reconstruct: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        names = list(condition_names)
        for required in FIDELITY_CONDITIONS:
            if required not in names:
                raise ValueError(f"condition_names {names} lacks {required!r}, needed for conditioning fidelity")
        if len(fidelity_base_condition) != len(names):
            raise ValueError(f"fidelity_base_condition needs {len(names)} values, got {len(fidelity_base_condition)}")
        for value in [*fidelity_values, *fidelity_base_condition]:
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"fidelity value {value!r} is outside [0, 1]")
        if fid_feature_extractor_path is not None and not Path(fid_feature_extractor_path).is_file():
            raise FileNotFoundError(f"fid_feature_extractor_path: {fid_feature_extractor_path} does not exist")
        self.sampler = sampler
        self.diffusion = diffusion
        self.decode = decode
        self.reference_images = reference_images
        self.condition_names = names
        self.output_dir = Path(output_dir)
        self.seed = int(seed)
        self.volumes = BrainVolumes(
            ventricle_roi,
            csf_threshold,
            float(voxel_mm) ** 3 / 1000.0,
            ventricle_threshold,
            ventricle_reference_percentile,
        )
        self.ms_ssim = ms_ssim
        self.mmd = mmd
        self.fid_feature_extractor_path = fid_feature_extractor_path
        self.fid_metric = fid_metric
        self.feature_distance = feature_distance
        self.distance_real_images = distance_real_images
        self.fidelity_values = [float(v) for v in fidelity_values]
        self.fidelity_base_condition = [float(v) for v in fidelity_base_condition]
        self.fidelity_samples_per_value = int(fidelity_samples_per_value)
        self.samples_per_reference = int(samples_per_reference)
        self.same_condition_samples = int(same_condition_samples)
        self.max_pairs = int(max_pairs)
        self.device = torch.device(device)
        self.metadata = dict(metadata or {})
        self.progress = progress
        self.reconstruct = reconstruct
        self._next_seed = self.seed
        self._latent_spreads: dict[str, list[float]] = {}

    def generate(self, conditions: torch.Tensor, description: str) -> torch.Tensor:
        """(N, 1, X, Y, Z) samples in [0, 1], one fresh seed each."""
        from tqdm.auto import tqdm

        images = []
        for condition in tqdm(conditions, desc=description, disable=not self.progress):
            generator = seeded_generator(self._next_seed)
            self._next_seed += 1
            noise = self.sampler.initial_noise(1, generator, self.device)
            decode = self._recording_decode(description)
            image = self.sampler(self.diffusion, decode, condition[None].to(self.device), noise, description)
            images.append(torch.as_tensor(image).float().clamp(0, 1).cpu())
        return torch.cat(images)

    def _recording_decode(self, description: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """``decode`` that first notes the final latent's spread on the training scale."""
        spreads = self._latent_spreads.setdefault(description, [])
        scale_factor = getattr(self.sampler, "scale_factor", None)

        def decode(latent: torch.Tensor) -> torch.Tensor:
            if scale_factor is not None:
                spreads.append(float(latent.float().std()) * float(scale_factor))
            return self.decode(latent)

        return decode

    def latent_spread(self) -> dict[str, Any]:
        """Each sample's final latent std times scale_factor (training latents: 1.0), and how many drifted."""
        spreads = [value for values in self._latent_spreads.values() for value in values]
        if not spreads:
            return {"note": "not measured: the sampler has no scale_factor"}
        drifted = [value for value in spreads if abs(value - 1.0) > LATENT_SPREAD_TOLERANCE]
        return {
            "definition": "std of each sample's final latent times scale_factor; the training latents give 1.0",
            "n_samples": len(spreads),
            "min": min(spreads),
            "max": max(spreads),
            "mean": float(np.mean(spreads)),
            "tolerance": LATENT_SPREAD_TOLERANCE,
            "n_outside_tolerance": len(drifted),
            "per_study": {name: values for name, values in self._latent_spreads.items()},
        }

    def same_condition(self, real: torch.Tensor) -> tuple[dict[str, Any], torch.Tensor | None]:
        """Samples at one condition against the real subjects: pairwise Pearson r inside the brain."""
        if self.same_condition_samples < 2:
            return {"note": "skipped: same_condition_samples < 2"}, None
        region = real.mean(0)[0] >= BRAIN_REGION_THRESHOLD
        conditions = torch.tensor([self.fidelity_base_condition] * self.same_condition_samples, dtype=torch.float32)
        images = self.generate(conditions, "same condition")
        similarity = masked_pearson(region)
        generated_r, pairs = pairwise_mean(images, similarity, self.max_pairs)
        real_r, real_pairs = pairwise_mean(real, similarity, self.max_pairs)
        report = {
            "condition": self.fidelity_base_condition,
            "n_samples": len(images),
            "mean_pairwise_r_generated": generated_r,
            "pairs": pairs,
            "mean_pairwise_r_real": real_r,
            "real_pairs": real_pairs,
            "excess_over_real": generated_r - real_r,
            "region": f"voxels where the reference images' mean is at least {BRAIN_REGION_THRESHOLD}",
            "n_region_voxels": int(region.sum()),
        }
        return report, images

    def check_shape(self, images: torch.Tensor) -> None:
        if tuple(images.shape[2:]) != self.volumes.ventricle_roi.shape:
            raise ValueError(
                f"ventricle_roi shape {self.volumes.ventricle_roi.shape} differs from the sample shape {tuple(images.shape[2:])}"
            )

    def diversity(self, images: torch.Tensor) -> dict[str, Any]:
        """Mean MS-SSIM and 4-G-R-SSIM over pairs (lower = more diverse)."""
        result: dict[str, Any] = {}
        if self.ms_ssim is not None:
            result["ms_ssim"], result["pairs"] = pairwise_mean(images, self.ms_ssim, self.max_pairs)
        result["four_g_r_ssim"], result["pairs"] = pairwise_mean(images, four_gradient_region_ssim, self.max_pairs)
        return result

    def fid(self, generated: torch.Tensor, real: torch.Tensor) -> dict[str, Any]:
        """FID from the user's feature extractor, or a statement that it was not computed."""
        if self.fid_feature_extractor_path is None or self.fid_metric is None:
            return {"value": None, "note": "not computed: no fid_feature_extractor_path given (no 3D weights offline)"}
        extractor = load_feature_extractor(self.fid_feature_extractor_path, self.device)
        generated_features = pooled_features(extractor, generated.to(self.device)).cpu()
        real_features = pooled_features(extractor, real.to(self.device)).cpu()
        value = float(self.fid_metric(generated_features.double(), real_features.double()))
        return {"value": value, "feature_extractor": os.path.basename(self.fid_feature_extractor_path)}

    def measure(self, name: str, volume: np.ndarray) -> float:
        """Measured volume (ml) of condition ``name`` in an (X, Y, Z) image."""
        return self.volumes.ventricles(volume) if name == "ventricular_vol" else self.volumes.brain(volume)

    def fidelity(self) -> tuple[dict[str, Any], dict[str, list[torch.Tensor]]]:
        """Sweeps of requested ventricular and brain volume, with measured volumes and Pearson r; and each
        sweep's first sample per requested value, for the picture."""
        report: dict[str, Any] = {}
        firsts: dict[str, list[torch.Tensor]] = {}
        for name in FIDELITY_CONDITIONS:
            column = self.condition_names.index(name)
            requested = [v for v in self.fidelity_values for _ in range(self.fidelity_samples_per_value)]
            conditions = torch.tensor([self.fidelity_base_condition] * len(requested), dtype=torch.float32)
            conditions[:, column] = torch.tensor(requested)
            images = self.generate(conditions, f"fidelity {name}")
            self.check_shape(images)
            firsts[name] = [images[requested.index(v)] for v in self.fidelity_values]
            report[name] = self.requested_against_measured(name, requested, images)
        return report, firsts

    def requested_against_measured(self, name: str, requested: list[float], images: torch.Tensor) -> dict[str, Any]:
        measured = [self.measure(name, image[0].numpy()) for image in images]
        return {"requested": requested, "measured_ml": measured, "pearson_r": pearson_r(requested, measured)}

    def fidelity_at(self, images: torch.Tensor, conditions: torch.Tensor) -> dict[str, Any]:
        """Requested against measured volumes of samples drawn at real subjects' whole condition vectors.

        The sweeps move one condition with the others held, which a model trained on correlated conditions
        (older subjects have larger ventricles) may never have seen; this asks for real combinations instead.
        """
        return {
            name: self.requested_against_measured(
                name, conditions[:, self.condition_names.index(name)].tolist(), images
            )
            for name in FIDELITY_CONDITIONS
        }

    def reconstructed(self, reference: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The real images through the autoencoder alone: what the decoder can give back of a known volume."""
        items = []
        with torch.no_grad():
            for item in reference:
                image = torch.as_tensor(item["image"]).float()[None].to(self.device)
                output = torch.as_tensor(self.reconstruct(image)).float().clamp(0, 1).cpu()[0]
                items.append({**item, "image": output})
        return items

    def measurement_check(self, reference: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The same measurements on real images against their known (normalised) volumes."""
        check: dict[str, Any] = {}
        for name in FIDELITY_CONDITIONS:
            column = self.condition_names.index(name)
            truth = [float(torch.as_tensor(item["condition"]).reshape(-1)[column]) for item in reference]
            measured = [self.measure(name, torch.as_tensor(item["image"])[0].numpy()) for item in reference]
            check[name] = {"normalised_truth": truth, "measured_ml": measured, "pearson_r": pearson_r(truth, measured)}
        return check

    def fidelity_plot(self, fidelity: Mapping[str, Any]) -> Any:
        panels = []
        for name, label in (("ventricular_vol", "ventricular volume"), ("brain_vol", "brain volume")):
            entry = fidelity[name]
            r = entry["pearson_r"]
            title = f"{label}: Pearson r = {r:.3f}" if r is not None else f"{label}: r undefined"
            panels.append(
                scatter_panel(entry["requested"], entry["measured_ml"], title, f"requested {name}", "measured ml")
            )
        return side_by_side(panels, gap=8, background=255)

    def ventricle_sweep_picture(self, sweep: Sequence[torch.Tensor], reference: Sequence[Mapping[str, Any]]) -> Any:
        """Axial slices through the ventricles: the first sample of each requested ventricular volume, above real
        subjects at the same quantiles of their known volume. Whether the ventricles grow is plain to see, which
        no single correlation shows (a sample that only darkens can fool a threshold)."""
        z = int(np.argmax((self.volumes.ventricle_roi > 0).sum(axis=(0, 1))))
        column = self.condition_names.index("ventricular_vol")
        known = sorted(reference, key=lambda item: float(torch.as_tensor(item["condition"]).reshape(-1)[column]))
        picks = [known[round(q * (len(known) - 1))] for q in self.fidelity_values]
        rows = [
            side_by_side(
                [captioned(axial(i[0].numpy(), z=z), f"asked {v:.1f}") for i, v in zip(sweep, self.fidelity_values)]
            ),
            side_by_side(
                [
                    captioned(
                        axial(torch.as_tensor(item["image"])[0].numpy(), z=z),
                        f"real {float(torch.as_tensor(item['condition']).reshape(-1)[column]):.2f}",
                    )
                    for item in picks
                ]
            ),
        ]
        return captioned(grid(rows), "ventricular volume: generated (top) and real subjects (bottom)")

    def run(self) -> dict[str, Any]:
        reference = self.reference_images()
        if len(reference) < 2:
            raise ValueError(f"the reference set has {len(reference)} image(s); diversity and MMD need at least 2")
        real = torch.stack([torch.as_tensor(item["image"]).float() for item in reference])
        self.check_shape(real)
        conditions = torch.stack([torch.as_tensor(item["condition"]).float().reshape(-1) for item in reference])
        conditions = conditions.repeat_interleave(self.samples_per_reference, dim=0)
        generated = self.generate(conditions, "reference-conditioned samples")

        report: dict[str, Any] = {**self.metadata, "n_reference": len(reference), "n_generated": len(generated)}
        report["diversity_generated"] = self.diversity(generated)
        report["diversity_real"] = self.diversity(real)
        if self.mmd is not None:
            count = min(len(real), len(generated))
            report["mmd"] = float(torch.as_tensor(self.mmd(real[:count], generated[:count])).mean())
        report["fid"] = self.fid(generated, real)
        if self.feature_distance is not None:
            distance_real = self.distance_real_images() if self.distance_real_images is not None else reference
            real_images = [torch.as_tensor(item["image"]).float() for item in distance_real]
            report["feature_distance"] = self.feature_distance(generated, real_images)
        fidelity, sweep_firsts = self.fidelity()
        report["conditioning_fidelity"] = fidelity
        report["conditioning_fidelity_at_reference_conditions"] = self.fidelity_at(generated, conditions)
        report["measurement_check_on_real_images"] = self.measurement_check(reference)
        if self.reconstruct is not None:
            report["measurement_check_on_reconstructions"] = self.measurement_check(self.reconstructed(reference))
        report["same_condition_diversity"], same_condition_images = self.same_condition(real)
        report["latent_spread"] = self.latent_spread()
        report["measurement"] = self.volumes.describe()
        report = json_safe(report)

        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_png(self.fidelity_plot(fidelity), self.output_dir / "conditioning_fidelity.png")
        write_png(
            self.ventricle_sweep_picture(sweep_firsts["ventricular_vol"], reference),
            self.output_dir / "ventricle_sweep.png",
        )
        rows = [
            captioned(triplanar(image[0].numpy()), "condition " + ", ".join(f"{v:.2f}" for v in c.tolist()))
            for image, c in zip(generated[:4], conditions[:4])
        ]
        write_png(grid(rows), self.output_dir / "samples.png")
        if same_condition_images is not None:
            rows = [
                captioned(triplanar(image[0].numpy()), f"same condition, sample {i}")
                for i, image in enumerate(same_condition_images)
            ]
            write_png(grid(rows), self.output_dir / "same_condition.png")
        write_json(report, self.output_dir / "metrics.json")
        return report
