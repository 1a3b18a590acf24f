"""Steps x solver study: which cheaper samplers still give DDIM-50's brains, and at what time.

Fewer steps, or DPM-Solver++(2M) instead of DDIM, only help if the samples stay the same brains (distance to the
reference sample of the same seed and condition), still follow the requested volumes (conditioning fidelity r),
stay as diverse (mean pairwise MS-SSIM) and stay on the latent distribution (final latent spread). One run measures
all of these and the time for every setting on identical starting noise and conditions, so settings differ only by
solver and step count; settings take turns sample by sample, so a change of machine load skews no time ratio.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scripts.common.atomic_io import json_safe, write_json, write_png
from scripts.common.checks import check_choice, check_non_negative_int, check_positive_int
from scripts.common.image_similarity import pairwise_mean
from scripts.common.latent_diffusion import ConditionalLatentSampler
from scripts.common.previews import axial, captioned, grid, side_by_side
from scripts.common.seeding import seeded_generator
from scripts.common.solvers import SOLVERS
from scripts.evaluation import LATENT_SPREAD_TOLERANCE, pearson_r
from scripts.measures import BrainVolumes

__all__ = [
    "SolverStudy",
    "check_study",
    "distance_to_reference",
    "format_table",
    "spread_summary",
    "study_conditions",
    "time_summary",
]

Setting = tuple[str, int]
#: What each measure of a row is, written into the record.
DEFINITIONS = {
    "distance_to_reference": "mean per-sample MSE and 3D SSIM to the reference setting's sample of the same seed",
    "fidelity_r": "Pearson r between requested and measured volume over the samples",
    "diversity_ms_ssim": "mean MS-SSIM over pairs of samples (lower = more diverse)",
    "latent_spread": f"std of each final latent (training latents: 1.0); outside = further than {LATENT_SPREAD_TOLERANCE}",
    "time_ratio_to_reference": "median over samples of the sample's seconds (sampling + decode) over the reference's",
    "seconds_per_sample": "medians over the samples, and every sample's total, in this run",
}
Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def study_conditions(n_samples: int, condition_names: Sequence[str]) -> torch.Tensor:
    """(N, K) conditions: ventricular volume evenly over 0.1..0.9, brain volume over the same range in golden-ratio
    order (so the two are nearly uncorrelated and each r has its own spread), sex alternating, age 0.5."""
    n = check_positive_int("study_samples", n_samples)
    values = {
        "sex": [float(i % 2) for i in range(n)],
        "age": [0.5] * n,
        "ventricular_vol": [0.1 + 0.8 * i / max(n - 1, 1) for i in range(n)],
        "brain_vol": [0.1 + 0.8 * ((0.5 + i * 0.6180339887) % 1.0) for i in range(n)],
    }
    return torch.tensor([[values[name][i] for name in condition_names] for i in range(n)], dtype=torch.float32)


def check_study(
    solvers: Sequence[str],
    steps: Sequence[int],
    reference: Mapping[str, Any],
    n_samples: int,
    seed: int,
    max_pairs: int,
    num_train_timesteps: int,
) -> list[Setting]:
    """The settings to run, reference first, or a ValueError naming the key (before any sampling)."""

    def checked_steps(key: str, value: Any) -> int:
        if check_positive_int(key, value) > num_train_timesteps:
            raise ValueError(f"{key}={value!r} is more than the {num_train_timesteps} training timesteps")
        return int(value)

    for key, values in (("study_solvers", solvers), ("study_steps", steps)):
        if isinstance(values, (str, Mapping)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"{key}={values!r} must be a non-empty list")
    solvers = [check_choice("study_solvers", solver, SOLVERS) for solver in solvers]
    steps = [checked_steps("study_steps", count) for count in steps]
    for key, values in (("study_solvers", solvers), ("study_steps", steps)):
        if len(set(values)) < len(values):
            raise ValueError(f"{key}={values!r} repeats a value")
    if not isinstance(reference, Mapping) or set(reference) != {"solver", "steps"}:
        raise ValueError(f"study_reference={reference!r} must be {{'solver': ..., 'steps': ...}}")
    ref_solver = check_choice("study_reference#solver", reference["solver"], SOLVERS)
    ref = (ref_solver, checked_steps("study_reference#steps", reference["steps"]))
    if check_positive_int("study_samples", n_samples) < 2:
        raise ValueError(f"study_samples={n_samples!r} must be at least 2 (diversity needs pairs)")
    check_non_negative_int("study_seed", seed)
    check_positive_int("study_max_pairs", max_pairs)
    return [ref] + [(solver, count) for solver in solvers for count in steps if (solver, count) != ref]


def distance_to_reference(images: torch.Tensor, reference: torch.Tensor, ssim: Similarity) -> dict[str, float]:
    """Mean per-sample MSE and SSIM of (N, 1, *S) images against the reference setting's images."""
    mse = ((images.double() - reference.double()) ** 2).flatten(1).mean(1)
    return {"mse": float(mse.mean()), "ssim": float(torch.as_tensor(ssim(images, reference)).double().mean())}


def spread_summary(spreads: Sequence[float]) -> dict[str, float | int]:
    """Mean, range and count of final latent spreads further than the tolerance from the training latents' 1.0."""
    outside = sum(abs(value - 1.0) > LATENT_SPREAD_TOLERANCE for value in spreads)
    return {"mean": float(np.mean(spreads)), "min": min(spreads), "max": max(spreads), "n_outside_tolerance": outside}


def time_summary(seconds: Sequence[tuple[float, float]], reference: Sequence[tuple[float, float]]) -> dict[str, Any]:
    """Median seconds per sample, and the median over samples of a sample's time over the reference's for that sample.

    The settings take turns sample by sample, so a burst of load on a shared machine skews a few pairs of one sample,
    which the median ignores, where a ratio of total times would carry it.
    """
    totals, reference_totals = [a + b for a, b in seconds], [a + b for a, b in reference]
    return {
        "seconds_per_sample": {
            "sampling": float(np.median([a for a, _ in seconds])),
            "decode": float(np.median([b for _, b in seconds])),
            "total": float(np.median(totals)),
            "per_sample_total": totals,
        },
        "time_ratio_to_reference": float(np.median([t / r for t, r in zip(totals, reference_totals)])),
    }


class SolverStudy:
    """Samples every (solver, steps) setting and writes ``solver_study.json`` and ``solver_study.png``.

    Args:
        make_sampler: ``(solver, steps) -> ConditionalLatentSampler`` at eta 0, built by the config.
        diffusion, decode: the UNet (weights loaded) and the latent -> image callable.
        conditions: (N, K); sample ``i`` has condition ``i`` and noise seed ``seed + i`` in every setting.
        condition_names, ventricle_roi: the K column names; the (X, Y, Z) ventricle region on the sample grid.
        settings: what :func:`check_study` returns, the reference first.
        ssim: callable(images, reference) -> per-sample SSIM; ms_ssim: callable(x, y) -> per-pair MS-SSIM.
        output_dir: destination, created only when the results are written.
        max_pairs, voxel_mm, csf_threshold, ventricle_threshold, ventricle_reference_percentile: diversity pairs
            and the volume measurement, as in ``evaluate.json``.
        metadata: provenance written into the record.
    """

    def __init__(
        self,
        make_sampler: Callable[[str, int], ConditionalLatentSampler],
        diffusion: Callable[..., torch.Tensor],
        decode: Callable[[torch.Tensor], torch.Tensor],
        conditions: torch.Tensor,
        condition_names: Sequence[str],
        ventricle_roi: np.ndarray,
        settings: Sequence[Setting],
        ssim: Similarity,
        ms_ssim: Similarity,
        output_dir: str | os.PathLike,
        seed: int = 0,
        max_pairs: int = 100,
        voxel_mm: float = 4.0,
        csf_threshold: float = 0.5,
        ventricle_threshold: float | None = None,
        ventricle_reference_percentile: float | None = None,
        device: str | torch.device = "cpu",
        metadata: Mapping[str, Any] | None = None,
        progress: bool = True,
    ) -> None:
        self.make_sampler, self.diffusion, self.decode = make_sampler, diffusion, decode
        self.conditions, self.condition_names = torch.as_tensor(conditions).float(), list(condition_names)
        self.settings = [(str(s), int(n)) for s, n in settings]
        self.ssim, self.ms_ssim, self.output_dir = ssim, ms_ssim, Path(output_dir)
        self.seed, self.max_pairs = int(seed), int(max_pairs)
        self.volumes = BrainVolumes(
            ventricle_roi,
            csf_threshold,
            float(voxel_mm) ** 3 / 1000.0,
            ventricle_threshold,
            ventricle_reference_percentile,
        )
        self.device, self.metadata, self.progress = torch.device(device), dict(metadata or {}), progress

    def sample(self, sampler: ConditionalLatentSampler, index: int) -> tuple[torch.Tensor, float, float, float]:
        """Sample ``index`` in [0, 1], its final latent spread, and the seconds of sampling and of decoding."""
        noise = sampler.initial_noise(1, seeded_generator(self.seed + index), self.device)
        start = time.perf_counter()
        latent = sampler.sample_latent(self.diffusion, self.conditions[index : index + 1].to(self.device), noise)
        middle = time.perf_counter()
        image = torch.as_tensor(self.decode(latent / sampler.scale_factor)).float().clamp(0, 1).cpu()
        # the sampled latent is on the training scale, where the training latents' std is 1
        return image, float(latent.float().std()), middle - start, time.perf_counter() - middle

    def row(self, setting: Setting, images: torch.Tensor, reference: torch.Tensor, spreads: list[float]) -> dict:
        """Every measure of one setting but time: distance to the reference, fidelity r, diversity, latent spread."""
        measured = {
            "ventricular_vol": [self.volumes.ventricles(v[0].numpy()) for v in images],
            "brain_vol": [self.volumes.brain(v[0].numpy()) for v in images],
        }
        requested = {name: self.conditions[:, self.condition_names.index(name)].tolist() for name in measured}
        diversity, pairs = pairwise_mean(images, self.ms_ssim, self.max_pairs)
        return {
            "solver": setting[0],
            "steps": setting[1],
            "distance_to_reference": distance_to_reference(images, reference, self.ssim),
            "fidelity_r": {name: pearson_r(requested[name], measured[name]) for name in measured},
            "diversity_ms_ssim": diversity,
            "diversity_pairs": pairs,
            "latent_spread": {**spread_summary(spreads), "per_sample": spreads},
            "measured_ml": measured,
        }

    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        samplers = {setting: self.make_sampler(*setting) for setting in self.settings}
        images: dict[Setting, list] = {setting: [] for setting in self.settings}
        spreads: dict[Setting, list] = {setting: [] for setting in self.settings}
        seconds: dict[Setting, list] = {setting: [] for setting in self.settings}
        total = len(self.settings) * len(self.conditions)
        with torch.no_grad(), tqdm(total=total, desc="solver study", disable=not self.progress) as bar:
            self.sample(samplers[min(samplers, key=lambda s: s[1])], 0)  # first-call set-up counts against none
            for index in range(len(self.conditions)):  # settings inside samples: a load change hits all alike
                for setting, sampler in samplers.items():
                    image, spread, sampling_s, decode_s = self.sample(sampler, index)
                    images[setting].append(image)
                    spreads[setting].append(spread)
                    seconds[setting].append((sampling_s, decode_s))
                    bar.update()
        reference = torch.cat(images[self.settings[0]])
        rows = [self.row(setting, torch.cat(images[setting]), reference, spreads[setting]) for setting in self.settings]
        for row, setting in zip(rows, self.settings):
            row.update(time_summary(seconds[setting], seconds[self.settings[0]]))
        record = {
            **self.metadata,
            "reference": dict(zip(("solver", "steps"), self.settings[0])),
            "eta": 0.0,
            "n_samples": len(self.conditions),
            "seed": self.seed,
            "condition_names": self.condition_names,
            "conditions": self.conditions.tolist(),
            "settings": [{"solver": solver, "steps": steps} for solver, steps in self.settings],
            "definitions": DEFINITIONS,
            "ventricle_measure": self.volumes.describe()["ventricles"],
            "rows": rows,
            "table": format_table(rows),
        }
        record = json_safe(record)  # a diverged setting gives NaN, which JSON cannot hold
        tiles = {s: captioned(axial(images[s][0][0, 0].numpy()), f"{s[0]} {s[1]}") for s in sorted(self.settings)}
        solvers = dict.fromkeys(solver for solver, _ in self.settings)  # one picture row per solver, steps ascending
        picture = grid([side_by_side([tile for s, tile in tiles.items() if s[0] == solver]) for solver in solvers])
        write_png(captioned(picture, "sample 0, mid axial slice"), self.output_dir / "solver_study.png")
        write_json(record, self.output_dir / "solver_study.json")
        print(record["table"])
        return record


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of the rows (time as a ratio to the reference; the seconds stay in the record)."""

    def number(value: float | None, digits: int = 3) -> str:
        return "undefined" if value is None else f"{value:.{digits}f}"

    lines = [
        "| solver | steps | time ratio | MSE to ref | SSIM to ref | r ventricles | r brain | MS-SSIM | latent spread (outside ±20 %) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        distance, r, spread = row["distance_to_reference"], row["fidelity_r"], row["latent_spread"]
        lines.append(
            f"| {row['solver']} | {row['steps']} | {number(row['time_ratio_to_reference'], 2)} | {distance['mse']:.2e} "
            f"| {number(distance['ssim'])} | {number(r['ventricular_vol'])} | {number(r['brain_vol'])} "
            f"| {number(row['diversity_ms_ssim'])} | {spread['mean']:.2f} ({spread['n_outside_tolerance']}) |"
        )
    return "\n".join(lines)
