"""The evaluations of brainSPADE3D, on demo data: lesion presence, then three against held-out subjects.

0. Lesion presence: label maps sampled for fixed lesion conditions (healthy, each pathology alone,
   combined); the share of samples in which every requested lesion appears, with volumes.
1. Label -> image similarity: each held-out label map goes through the image generator for every
   contrast; SSIM and MSE against the real image, on the whole volume and inside each tissue class.
2. Downstream segmentation: the same small MONAI segmenter trained on real pairs and on synthetic
   pairs (labels from stage 1, images from stage 2), Dice per class on held-out real pairs.
3. Unexpected pathology: a segmenter trained on healthy subjects only, tested on held-out tumour
   cases, against the same segmenter trained on the healthy subjects plus synthetic tumour cases.

Everything is configurable (sizes, epochs, splits), so tests run the full protocol on toy data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.atomic_io import write_json
from scripts.common.checks import check_positive_int
from scripts.labels import LABEL_NAMES, LESION_NAMES, measure_lesions
from scripts.synthesis import ImageGenerator, LabelGenerator

__all__ = [
    "SPADEEvaluation",
    "default_segmenter_loss",
    "dice_per_class",
    "similarity_metrics",
    "split_loaders",
    "train_segmenter",
]


def split_loaders(
    datalist_path: str | os.PathLike, base_dir: str | os.PathLike, transform: Callable, splits: Sequence[str]
) -> dict[str, Callable[[], list[Mapping[str, Any]]]]:
    """Per split, a function loading its transformed items; a split is read only if an evaluation needs it."""
    from monai.data import load_decathlon_datalist

    def loader(split: str) -> Callable[[], list[Mapping[str, Any]]]:
        return lambda: [transform(item) for item in load_decathlon_datalist(datalist_path, True, split, base_dir)]

    return {split: loader(split) for split in splits}


def default_segmenter_loss() -> torch.nn.Module:
    """Unweighted Dice + cross-entropy on logits against class-index labels."""
    from monai.losses import DiceCELoss

    return DiceCELoss(to_onehot_y=True, softmax=True)


def _describe_loss(loss: torch.nn.Module) -> dict[str, Any]:
    """Name and class weights of a segmenter loss, for the report's protocol.

    MONAI keeps the weights as ``class_weight`` (DiceLoss, FocalLoss, the Dice half of DiceCELoss) and
    torch as ``weight`` (CrossEntropyLoss), so both are looked for in the loss and its parts.
    """
    for part in loss.modules():
        for attribute in ("class_weight", "weight"):
            weight = getattr(part, attribute, None)
            if isinstance(weight, torch.Tensor):
                return {"name": type(loss).__name__, "class_weights": weight.detach().cpu().flatten().tolist()}
    return {"name": type(loss).__name__, "class_weights": None}


def _mean(values: Sequence[float | None]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def similarity_metrics(
    fake: torch.Tensor,
    real: torch.Tensor,
    classes: torch.Tensor,
    class_names: Sequence[str],
    kernel_size: int = 7,
    kernel_sigma: float = 1.5,
) -> dict[str, Any]:
    """SSIM and MSE of one (1, 1, *S) image pair, on the whole volume and per class of the (*S) class map.

    SSIM uses a Gaussian window without padding, so its map is smaller than the volume by
    ``kernel_size - 1``; the class masks are cropped to match. A class absent from the map gets None.
    """
    from monai.metrics.regression import compute_ssim_and_cs

    if any(side <= kernel_size for side in real.shape[2:]):
        raise ValueError(f"ssim kernel_size={kernel_size} must be smaller than every side of {tuple(real.shape[2:])}")
    spatial_dims = real.ndim - 2
    ssim_map, _ = compute_ssim_and_cs(
        fake.float(), real.float(), spatial_dims, [kernel_size] * spatial_dims, [kernel_sigma] * spatial_dims, 1.0
    )
    ssim_map = ssim_map[0, 0]
    error = (fake.float() - real.float())[0, 0] ** 2
    border = (kernel_size - 1) // 2
    inner = tuple(slice(border, border + size) for size in ssim_map.shape)
    per_class = {}
    for index, name in enumerate(class_names):
        mask = classes == index
        if not bool(mask.any()):
            per_class[name] = {"ssim": None, "mse": None, "voxels": 0}
            continue
        inner_mask = mask[inner]
        ssim = float(ssim_map[inner_mask].mean()) if bool(inner_mask.any()) else None
        per_class[name] = {"ssim": ssim, "mse": float(error[mask].mean()), "voxels": int(mask.sum())}
    return {"ssim": float(ssim_map.mean()), "mse": float(error.mean()), "per_class": per_class}


def train_segmenter(
    network: torch.nn.Module,
    pairs: Sequence[Mapping[str, torch.Tensor]],
    epochs: int,
    batch_size: int,
    learning_rate: float,
    device: str | torch.device,
    seed: int = 0,
    loss_function: torch.nn.Module | None = None,
) -> torch.nn.Module:
    """Train ``network`` on ``pairs`` ({"image": (1, *S), "label": (1, *S) class indices}) with MONAI's trainer.

    ``loss_function`` takes logits and class-index labels; None is ``default_segmenter_loss()``.
    """
    from monai.engines import SupervisedTrainer

    if not pairs:
        raise ValueError("train_segmenter: no training pairs")
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(list(pairs), batch_size=batch_size, shuffle=True, generator=generator)
    torch.manual_seed(seed)
    network = network.to(device)
    trainer = SupervisedTrainer(
        device=torch.device(device),
        max_epochs=int(epochs),
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), lr=learning_rate),
        loss_function=loss_function if loss_function is not None else default_segmenter_loss(),
        decollate=False,
    )
    trainer.run()
    return network.eval()


@torch.no_grad()
def dice_per_class(
    network: torch.nn.Module,
    pairs: Sequence[Mapping[str, torch.Tensor]],
    class_names: Sequence[str],
    device: str | torch.device,
) -> dict[str, float | None]:
    """Dice of each foreground class over ``pairs``; None for a class absent from every reference label."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    # not_nans counts the items where a class is in the reference: 0 means its Dice is undefined
    # (MONAI's aggregate would report 0.0 for such a class, as if it had been missed)
    metric = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True, get_not_nans=True)
    network = network.to(device).eval()
    for pair in pairs:
        logits = network(pair["image"][None].to(device))
        prediction = one_hot(logits.argmax(1, keepdim=True), len(class_names))
        reference = one_hot(pair["label"][None].long().to(device), len(class_names))
        metric(y_pred=prediction, y=reference)
    values, counts = (t.cpu().tolist() for t in metric.aggregate())
    return {name: (float(v) if n > 0 else None) for name, v, n in zip(class_names[1:], values, counts)}


class SPADEEvaluation:
    """Runs the evaluations and writes ``evaluation.json`` (all numbers and the protocol) to ``output_dir``.

    Args:
        label_generator: stage 1 (lesion condition -> label map).
        image_generator: stage 2 (label map + contrast + style -> image).
        datasets: split name -> loaded items {"label": (C, *S) partial volumes, contrast key: (1, *S), "lesion": 4 values}.
        contrast_keys: contrast name -> item key of its image.
        segmenter: zero-argument factory of a fresh segmenter (1 input channel, C output channels).
        output_dir: destination of the report.
        seed: base seed of the synthetic samples and of the segmenter trainings.
        device: where everything runs.
        similarity_split: held-out split of the similarity evaluation.
        similarity_style: "image" (style code of the real image itself) or "random" (seeded random codes).
        ssim_kernel_size: Gaussian window of SSIM.
        segmentation_contrast: the contrast the segmenters read.
        segmentation_train_split: real training pairs.
        segmentation_test_split: held-out pairs for the segmentation Dice.
        n_synthetic: synthetic pairs for the synthetic-only segmenter; their conditions cycle through the
            lesion vectors of the training split, so the synthetic set mirrors the real one.
        pathology_test_splits: splits whose tumour cases test the healthy-trained segmenters.
        n_synthetic_tumour: synthetic tumour pairs added to the healthy training set.
        segmenter_epochs: epochs of every segmenter training.
        segmenter_batch_size: batch size of the segmenter trainings.
        segmenter_learning_rate: Adam learning rate of the segmenters.
        segmenter_loss: loss of the segmenter trainings (logits, class-index labels); None: unweighted
            ``DiceCELoss``. A class-weighted loss lets lesions of a few dozen voxels be learned at all.
        presence_conditions: setting name -> lesion condition sampled for the lesion-presence rates.
        presence_samples: label maps sampled per setting.
        presence_batch_size: label maps sampled together.
        voxel_ml: volume of a voxel, for the lesion volumes.
        lesion_fraction_max: training maxima the conditions are relative to.
        min_lesion_volume_ml: argmax volume from which a lesion counts as present.
        label_names: label classes.
        lesion_names: condition entries; "tumour" must be one of them.
        feature_distance: callable(generated, real) -> report of an offline distribution distance
            (``FrechetFeatureDistance``), applied to the synthetic images of evaluation 2 against the real
            images of ``segmentation_train_split`` in the segmentation contrast; None skips it.
        metadata: provenance copied into the report.
        progress: show progress bars.
    """

    def __init__(
        self,
        label_generator: LabelGenerator,
        image_generator: ImageGenerator,
        datasets: Mapping[str, Callable[[], Sequence[Mapping[str, Any]]]],
        contrast_keys: Mapping[str, str],
        segmenter: Callable[[], torch.nn.Module],
        output_dir: str | os.PathLike,
        seed: int = 0,
        device: str | torch.device = "cpu",
        similarity_split: str = "test",
        similarity_style: str = "image",
        ssim_kernel_size: int = 7,
        segmentation_contrast: str = "T1w",
        segmentation_train_split: str = "training",
        segmentation_test_split: str = "test",
        n_synthetic: int = 32,
        pathology_test_splits: Sequence[str] = ("validation", "test"),
        n_synthetic_tumour: int = 16,
        segmenter_epochs: int = 20,
        segmenter_batch_size: int = 4,
        segmenter_learning_rate: float = 1e-3,
        segmenter_loss: torch.nn.Module | None = None,
        presence_conditions: Mapping[str, Sequence[float]] | None = None,
        presence_samples: int = 20,
        presence_batch_size: int = 4,
        voxel_ml: float = 0.064,
        lesion_fraction_max: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        min_lesion_volume_ml: float = 0.1,
        label_names: Sequence[str] = LABEL_NAMES,
        lesion_names: Sequence[str] = LESION_NAMES,
        feature_distance: Callable[[Sequence[torch.Tensor], Sequence[torch.Tensor]], dict[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        if similarity_style not in ("image", "random"):
            raise ValueError(f"similarity_style={similarity_style!r} must be 'image' or 'random'")
        if segmentation_contrast not in contrast_keys:
            raise ValueError(f"segmentation_contrast={segmentation_contrast!r} is not one of {list(contrast_keys)}")
        if "tumour" not in lesion_names:
            raise ValueError(
                f"lesion_names {list(lesion_names)} has no 'tumour' for the unexpected-pathology experiment"
            )
        counts = (
            ("n_synthetic", n_synthetic),
            ("n_synthetic_tumour", n_synthetic_tumour),
            ("presence_samples", presence_samples),
            ("presence_batch_size", presence_batch_size),
        )
        for name, value in counts:
            check_positive_int(name, value)
        self.label_generator = label_generator
        self.image_generator = image_generator
        self._datasets = dict(datasets)
        self._loaded: dict[str, list[Mapping[str, Any]]] = {}
        self.contrast_keys = dict(contrast_keys)
        self.segmenter = segmenter
        self.output_dir = Path(output_dir)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.similarity_split = similarity_split
        self.similarity_style = similarity_style
        self.ssim_kernel_size = int(ssim_kernel_size)
        self.segmentation_contrast = segmentation_contrast
        self.segmentation_train_split = segmentation_train_split
        self.segmentation_test_split = segmentation_test_split
        self.n_synthetic = n_synthetic
        self.pathology_test_splits = list(pathology_test_splits)
        self.n_synthetic_tumour = n_synthetic_tumour
        self.segmenter_epochs = int(segmenter_epochs)
        self.segmenter_batch_size = int(segmenter_batch_size)
        self.segmenter_learning_rate = float(segmenter_learning_rate)
        self.segmenter_loss = segmenter_loss if segmenter_loss is not None else default_segmenter_loss()
        self.label_names = list(label_names)
        self.lesion_names = list(lesion_names)
        self.presence_conditions = {
            name: self._condition(f"presence_conditions[{name!r}]", value)
            for name, value in (presence_conditions or {}).items()
        }
        self.presence_samples = presence_samples
        self.presence_batch_size = presence_batch_size
        self.voxel_ml = float(voxel_ml)
        self.lesion_fraction_max = [float(v) for v in lesion_fraction_max]
        self.min_lesion_volume_ml = float(min_lesion_volume_ml)
        self.feature_distance = feature_distance
        self.metadata = dict(metadata or {})
        self.progress = progress

    def _condition(self, source: str, value: Sequence[float]) -> list[float]:
        values = [float(v) for v in value]
        if len(values) != len(self.lesion_names) or not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"{source}={list(value)!r} must hold {len(self.lesion_names)} fractions in [0, 1]")
        return values

    def split(self, name: str) -> list[Mapping[str, Any]]:
        """The loaded items of a split (loaded once)."""
        if name not in self._datasets:
            raise ValueError(f"split {name!r} is not one of {list(self._datasets)}")
        if name not in self._loaded:
            self._loaded[name] = list(self._datasets[name]())
        return self._loaded[name]

    def _tumour_index(self) -> int:
        return self.lesion_names.index("tumour")

    def real_pair(self, item: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """(image of the segmentation contrast, argmax label) of a real item."""
        image = torch.as_tensor(item[self.contrast_keys[self.segmentation_contrast]]).float()
        label = torch.as_tensor(item["label"]).float().argmax(0, keepdim=True)
        return {"image": image, "label": label}

    def synthetic_pairs(self, conditions: torch.Tensor, seed: int, description: str) -> list[dict[str, torch.Tensor]]:
        """One synthetic (image, argmax label) pair per condition row; row ``i`` is seeded with ``seed + i``."""
        from tqdm.auto import tqdm

        pairs = []
        for index in tqdm(range(len(conditions)), desc=description, disable=not self.progress):
            sample_seed = seed + index
            probabilities = self.label_generator(conditions[index : index + 1], [sample_seed], self.device)
            style = self.image_generator.random_style([sample_seed], self.device)
            image = self.image_generator(probabilities, self.segmentation_contrast, style)
            pairs.append({"image": image[0].cpu(), "label": probabilities[0].argmax(0, keepdim=True).cpu().float()})
        return pairs

    def lesion_presence(self) -> dict[str, Any]:
        """Evaluation 0: how often the requested lesions appear in sampled label maps, and how large they are."""
        report: dict[str, Any] = {}
        hits, requested_samples = 0, 0
        for offset, (setting, condition) in enumerate(self.presence_conditions.items()):
            requested = [name for name, value in zip(self.lesion_names, condition) if value > 0]
            measured = []
            for start in range(0, self.presence_samples, self.presence_batch_size):
                count = min(self.presence_batch_size, self.presence_samples - start)
                seeds = [self.seed + 200_000 + 10_000 * offset + start + k for k in range(count)]
                batch = torch.tensor([condition] * count, dtype=torch.float32)
                for probabilities in self.label_generator(batch, seeds, self.device):
                    measured.append(
                        measure_lesions(
                            probabilities.cpu().numpy(),
                            self.voxel_ml,
                            self.lesion_fraction_max,
                            self.min_lesion_volume_ml,
                            self.label_names,
                            self.lesion_names,
                        )
                    )
            all_present = [all(m[name]["present"] for name in requested) for m in measured]
            if requested:
                hits += sum(all_present)
                requested_samples += len(measured)
            report[setting] = {
                "condition": dict(zip(self.lesion_names, condition)),
                "n_samples": len(measured),
                "all_requested_present_rate": float(np.mean(all_present)) if requested else None,
                "any_lesion_rate": float(np.mean([any(m[n]["present"] for n in self.lesion_names) for m in measured])),
                "per_lesion": {
                    name: {
                        "present_rate": float(np.mean([m[name]["present"] for m in measured])),
                        "mean_volume_ml": float(np.mean([m[name]["volume_ml"] for m in measured])),
                        "mean_measured_condition": float(np.mean([m[name]["measured_condition"] for m in measured])),
                    }
                    for name in self.lesion_names
                },
            }
        report["all_requested_present_rate"] = hits / requested_samples if requested_samples else None
        return report

    def similarity(self) -> dict[str, Any]:
        """Evaluation 1: SSIM / MSE of label -> image against the real images, per contrast and tissue."""
        items = self.split(self.similarity_split)
        if not items:
            raise ValueError(f"similarity_split {self.similarity_split!r} is empty")
        report: dict[str, Any] = {}
        for contrast, key in self.contrast_keys.items():
            results = []
            for index, item in enumerate(items):
                labels = torch.as_tensor(item["label"]).float()[None].to(self.device)
                real = torch.as_tensor(item[key]).float()[None].to(self.device)
                if self.similarity_style == "image":
                    style = self.image_generator.style_of(real)
                else:
                    style = self.image_generator.random_style([self.seed + index], self.device)
                fake = self.image_generator(labels, contrast, style)
                classes = labels[0].argmax(0)
                results.append(
                    similarity_metrics(fake.cpu(), real.cpu(), classes.cpu(), self.label_names, self.ssim_kernel_size)
                )
            report[contrast] = {
                "n_images": len(results),
                "ssim": _mean([r["ssim"] for r in results]),
                "mse": _mean([r["mse"] for r in results]),
                "per_class": {
                    name: {
                        "ssim": _mean([r["per_class"][name]["ssim"] for r in results]),
                        "mse": _mean([r["per_class"][name]["mse"] for r in results]),
                        "n_images": sum(r["per_class"][name]["voxels"] > 0 for r in results),
                    }
                    for name in self.label_names
                },
            }
        return report

    def _train_and_test(
        self, pairs: Sequence[Mapping[str, torch.Tensor]], tests: Sequence[Mapping[str, torch.Tensor]], seed: int
    ) -> dict:
        network = train_segmenter(
            self.segmenter(),
            pairs,
            self.segmenter_epochs,
            self.segmenter_batch_size,
            self.segmenter_learning_rate,
            self.device,
            seed,
            self.segmenter_loss,
        )
        dice = dice_per_class(network, tests, self.label_names, self.device)
        return {"n_training_pairs": len(pairs), "dice": dice, "mean_dice": _mean(list(dice.values()))}

    def segmentation(self) -> dict[str, Any]:
        """Evaluation 2: segmenters trained on real vs synthetic pairs, Dice on held-out real pairs."""
        training = self.split(self.segmentation_train_split)
        tests = [self.real_pair(item) for item in self.split(self.segmentation_test_split)]
        if not training or not tests:
            raise ValueError("segmentation: the training and test splits must both hold subjects")
        lesion_vectors = torch.as_tensor([list(item["lesion"]) for item in training], dtype=torch.float32)
        conditions = lesion_vectors[torch.arange(self.n_synthetic) % len(lesion_vectors)]
        synthetic = self.synthetic_pairs(conditions, self.seed, "synthetic pairs")
        distance = None
        if self.feature_distance is not None:
            real_images = [self.real_pair(item)["image"] for item in training]
            distance = self.feature_distance([pair["image"] for pair in synthetic], real_images)
        return {
            "feature_distance": distance,
            "test_split": self.segmentation_test_split,
            "n_test_pairs": len(tests),
            "real": self._train_and_test([self.real_pair(item) for item in training], tests, self.seed),
            "synthetic": self._train_and_test(synthetic, tests, self.seed),
        }

    def unexpected_pathology(self) -> dict[str, Any]:
        """Evaluation 3: healthy-only training vs healthy + synthetic tumours, tested on real tumour cases."""
        tumour = self._tumour_index()
        training = self.split(self.segmentation_train_split)
        healthy = [self.real_pair(item) for item in training if not any(float(v) > 0 for v in item["lesion"])]
        lesioned = [item for item in training if float(item["lesion"][tumour]) > 0]
        cases = [
            self.real_pair(item)
            for split in self.pathology_test_splits
            for item in self.split(split)
            if float(item["lesion"][tumour]) > 0
        ]
        if not healthy:
            raise ValueError(f"unexpected pathology: split {self.segmentation_train_split!r} has no healthy subject")
        if not cases:
            raise ValueError(f"unexpected pathology: no tumour case in splits {self.pathology_test_splits}")
        if not lesioned:
            raise ValueError(
                f"unexpected pathology: no tumour pattern in {self.segmentation_train_split!r} to condition on"
            )
        patterns = torch.as_tensor([list(item["lesion"]) for item in lesioned], dtype=torch.float32)
        conditions = patterns[torch.arange(self.n_synthetic_tumour) % len(patterns)]
        synthetic = self.synthetic_pairs(conditions, self.seed + 100_000, "synthetic tumour pairs")
        return {
            "test_splits": self.pathology_test_splits,
            "n_tumour_cases": len(cases),
            "healthy_only": self._train_and_test(healthy, cases, self.seed),
            "healthy_plus_synthetic_tumours": self._train_and_test(healthy + synthetic, cases, self.seed),
        }

    def protocol(self) -> dict[str, Any]:
        """The settings the numbers depend on, recorded beside them."""
        return {
            "similarity_split": self.similarity_split,
            "similarity_style": self.similarity_style,
            "ssim_kernel_size": self.ssim_kernel_size,
            "segmentation_contrast": self.segmentation_contrast,
            "segmentation_train_split": self.segmentation_train_split,
            "segmentation_test_split": self.segmentation_test_split,
            "n_synthetic": self.n_synthetic,
            "pathology_test_splits": self.pathology_test_splits,
            "n_synthetic_tumour": self.n_synthetic_tumour,
            "segmenter": type(self.segmenter()).__name__,
            "segmenter_epochs": self.segmenter_epochs,
            "segmenter_batch_size": self.segmenter_batch_size,
            "segmenter_learning_rate": self.segmenter_learning_rate,
            "segmenter_loss": _describe_loss(self.segmenter_loss),
            "presence_samples": self.presence_samples,
            "min_lesion_volume_ml": self.min_lesion_volume_ml,
            "seed": self.seed,
            "num_inference_steps": self.label_generator.sampler.num_inference_steps,
            "guidance_scale": self.label_generator.sampler.guidance_scale,
        }

    def run(self) -> dict[str, Any]:
        """Every evaluation; the report is written once, at the end."""
        segmentation = self.segmentation()
        report = {
            "data": "demo data (synthetic phantoms); not a clinical benchmark",
            "protocol": self.protocol(),
            "lesion_presence": self.lesion_presence(),
            "similarity": self.similarity(),
            "segmentation": segmentation,
            "feature_distance": segmentation.pop("feature_distance"),
            "unexpected_pathology": self.unexpected_pathology(),
            **self.metadata,
        }
        path = write_json(report, self.output_dir / "evaluation.json")
        print(f"evaluation written to {path}")
        return report
