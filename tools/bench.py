"""``python -m tools bench``: the bundles' sampling against the plain MONAI loop, each in a fresh process.

The reference is what a user writes from MONAI alone: the bundle's networks, DDIM, eager fp32,
batch 1, a whole-volume decode. "Ours" is the bundle's configured sampler and decoder (``solver``,
``decode_mode``, ...). Both sides build the same weights (the shipped demo weights for the demo
profile, seeded random weights of the published architecture for ``ukb``) in their own process,
so peak RSS is per side. The first K denoising steps and one decode are timed; the time per sample
is extrapolated to the full step count, and the output says so.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bundle_runtime.atomic_io import write_json
from bundle_runtime.provenance import machine_facts

BUNDLES = ("brain_ldm", "brain_spade3d", "tof_mra_vessel_gan")
PROFILES = ("demo", "ukb")
PARTS = ("sample", "decode")
BUNDLES_DIR = Path(__file__).resolve().parent.parent / "bundles"
WEIGHTS = {
    "brain_ldm": {"autoencoder": "load_autoencoder_path", "diffusion": "load_diffusion_path"},
    "brain_spade3d": {
        "autoencoder": "load_autoencoder_path",
        "diffusion": "load_diffusion_path",
        "generator": "load_generator_path",
    },
    "tof_mra_vessel_gan": {"network": "generator_path"},
}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _parser(bundle: str, profile: str, overrides: dict) -> Any:
    from monai.bundle import ConfigParser

    root = BUNDLES_DIR / bundle
    configs = ["inference.json"] + (["ukb.json"] if profile == "ukb" else [])
    parser = ConfigParser()
    parser.read_config([str(root / "configs" / name) for name in configs])
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(root), "device": "$torch.device('cpu')", "progress": False, **overrides})
    sys.path.insert(0, str(root))
    return parser


def _networks(
    parser: Any, bundle: str, random_weights: bool, decode_only: bool
) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """The bundle's networks with shipped or seeded random weights, and which were used.

    A decode-only run builds the autoencoder alone, so that peak RSS is the decoder's.
    """
    from bundle_runtime.weights import file_sha256, load_state_dict

    networks, used = {}, {}
    for index, (name, path_key) in enumerate(WEIGHTS[bundle].items()):
        if decode_only and name != "autoencoder":
            continue
        torch.manual_seed(index)
        network = parser.get_parsed_content(name)
        path = Path(parser.get_parsed_content(path_key))
        if not random_weights:
            load_state_dict(network, str(path), path_key)
            used[name], used[f"{name}_sha256"] = path.name, file_sha256(str(path))
        else:
            used[name] = f"random (torch seed {index}), architecture of {path.name}"
        networks[name] = network.eval()
    return networks, used


def _condition(parser: Any, bundle: str) -> torch.Tensor:
    length = parser.get_parsed_content("diffusion_def#cross_attention_dim")
    return torch.full((1, int(length)), 0.5)


def _reference_steps(parser: Any, networks: dict, noise: torch.Tensor, condition: torch.Tensor, steps: int):
    """The plain loop: DDIM (eta 0) over the first ``steps`` of the full schedule, guidance as two calls."""
    from monai.networks.schedulers import DDIMScheduler

    scheduler = parser.get_parsed_content("noise_scheduler")
    if not isinstance(scheduler, DDIMScheduler):
        raise ValueError(f"the reference needs a DDIM noise_scheduler; got {type(scheduler).__name__}")
    scheduler.set_timesteps(parser.get_parsed_content("num_inference_steps"))
    sampler = parser.get_parsed_content("inferer", instantiate=False)
    concat = parser.get("inferer#concat_condition", True)
    guidance = float(parser.get_parsed_content("guidance_scale"))
    unet, latent = networks["diffusion"], noise
    null = torch.full_like(condition, float(parser.get_parsed_content("null_condition_value")))
    del sampler
    for t in scheduler.timesteps[:steps]:
        outputs = []
        for vector in [condition] + ([null] if guidance != 1.0 else []):
            x = latent
            if concat:
                x = torch.cat([latent, vector[:, :, None, None, None].expand(-1, -1, *latent.shape[2:])], dim=1)
            outputs.append(unet(x, timesteps=t.reshape(1), context=vector[:, None]))
        prediction = outputs[0] if guidance == 1.0 else outputs[1] + guidance * (outputs[0] - outputs[1])
        latent, _ = scheduler.step(prediction, int(t), latent)
    return latent


def _condition_seconds(parser: Any, latent: torch.Tensor, condition: torch.Tensor, repeats: int = 50) -> float:
    """Median seconds to build one step's UNet inputs from the condition, as both sides do at every step.

    Building them once per sample instead would save at most this much per step (the latent must still be
    concatenated), so it bounds the "conditions rebuilt every step" lever without a second code path.
    """
    from scripts.common.latent_diffusion import condition_inputs

    concat = bool(parser.get("inferer#concat_condition", True))
    vectors = [condition]
    if float(parser.get_parsed_content("guidance_scale")) != 1.0:
        vectors.append(torch.full_like(condition, float(parser.get_parsed_content("null_condition_value"))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for vector in vectors:
            condition_inputs(latent, vector, concat)
        times.append(time.perf_counter() - start)
    return float(sorted(times)[repeats // 2])


def _brain_decode(parser: Any, bundle: str, networks: dict, latent: torch.Tensor, side: str) -> torch.Tensor:
    """Latent -> image: the whole decode (reference) or the configured decoder; SPADE adds the image stage."""
    autoencoder = networks["autoencoder"]
    key = "decoder" if bundle == "brain_ldm" else "label_decoder"
    decode = autoencoder.decode_stage_2_outputs if side == "reference" else parser.get_parsed_content(key)
    image = decode(latent)
    if bundle == "brain_spade3d":
        contrasts = parser.get_parsed_content("contrasts_available")
        code = torch.zeros(image.shape[0], len(contrasts), *image.shape[2:])
        code[:, 0] = 1.0
        style = torch.zeros(image.shape[0], int(parser.get_parsed_content("generator_def#z_dim")))
        image = networks["generator"].decode(torch.cat([torch.softmax(image, dim=1), code], dim=1), style)
    return image


def _run_brain(
    parser: Any, bundle: str, networks: dict, side: str, steps: int, part: str, warmup: bool, batch_size: int = 1
) -> dict:
    """Times the steps and the decode; ours may sample ``batch_size`` latents per call, its first is the compared one."""
    latent_shape = parser.get_parsed_content("latent_shape")
    noise = torch.randn((1, *latent_shape), generator=torch.Generator().manual_seed(0))
    if batch_size > 1:
        others = torch.randn((batch_size - 1, *latent_shape), generator=torch.Generator().manual_seed(1))
        noise = torch.cat([noise, others])
    condition = _condition(parser, bundle).expand(batch_size, -1)
    scale = float(parser.get_parsed_content("scale_factor"))
    result: dict[str, Any] = {
        "full_steps": int(parser.get_parsed_content("num_inference_steps")),
        "batch_size": batch_size,
    }

    def denoise(count: int) -> torch.Tensor:
        if part != "sample":
            return noise
        if side == "reference":
            return _reference_steps(parser, networks, noise, condition, count)
        # ours samples with the configured sampling network (e.g. torch.compile'd), where the bundle has one
        unet = parser.get_parsed_content("sampling_network") if "sampling_network" in parser else networks["diffusion"]
        return parser.get_parsed_content("inferer").sample_latent(unet, condition, noise, max_steps=count)

    if warmup:  # one untimed step and decode first, e.g. to leave torch.compile's compilation out of the timing
        start = time.perf_counter()
        _brain_decode(parser, bundle, networks, denoise(1) / scale, side)
        result["warmup_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    latent = denoise(steps)
    step_time = time.perf_counter() - start
    start = time.perf_counter()
    image = _brain_decode(parser, bundle, networks, latent / scale, side)
    decode_time = time.perf_counter() - start
    timed_steps = steps if part == "sample" else 0
    per_step = step_time / timed_steps / batch_size if timed_steps else 0.0
    if timed_steps:
        result["condition_seconds_per_step"] = _condition_seconds(parser, latent, condition) / batch_size
    result.update(  # per sample: a batch's step and decode times divided by its size
        timed_steps=timed_steps,
        seconds_per_step=per_step,
        decode_seconds=decode_time / batch_size,
        seconds_per_sample=per_step * result["full_steps"] + decode_time / batch_size,
    )
    return result | {"outputs": {"latent": latent[:1], "image": image[:1]}}


def _run_tof(parser: Any, networks: dict, side: str, steps: int) -> dict:
    """Generator throughput: the reference makes patches one by one, ours in the configured batches."""
    from scripts.generation import generate_pairs, sample_latents

    n = max(1, steps) * int(parser.get_parsed_content("batch_size"))
    latent_size = int(parser.get_parsed_content("latent_size"))
    start = time.perf_counter()
    if side == "reference":
        noise = sample_latents(n, latent_size, 0)
        pairs = torch.cat([networks["network"](noise[i : i + 1]) for i in range(n)])
    else:
        batch = int(parser.get_parsed_content("batch_size"))
        pairs = generate_pairs(networks["network"], n, 0, latent_size, batch)
    elapsed = time.perf_counter() - start
    return {"patches": n, "patches_per_second": n / elapsed, "seconds": elapsed, "outputs": {"image": pairs}}


def worker(spec: dict) -> None:
    """One side in this (fresh) process; writes its numbers as JSON and its outputs as a .pt file."""
    torch.set_num_threads(_threads(spec, spec["side"]))
    overrides = {**spec["both"], **(spec["overrides"] if spec["side"] == "ours" else {})}
    parser = _parser(spec["bundle"], spec["profile"], overrides)
    decode_only = spec["part"] == "decode" and spec["bundle"] == "brain_ldm"
    networks, used = _networks(parser, spec["bundle"], spec["random_weights"], decode_only)
    mode = torch.inference_mode() if spec["side"] == "ours" and spec["inference_mode"] else torch.no_grad()
    with mode:
        if spec["bundle"] == "tof_mra_vessel_gan":
            result = _run_tof(parser, networks, spec["side"], spec["steps"])
        else:
            batch_size = spec["batch_size"] if spec["side"] == "ours" else 1
            result = _run_brain(
                parser, spec["bundle"], networks, spec["side"], spec["steps"], spec["part"], spec["warmup"], batch_size
            )
    outputs = {key: value.detach().clone() for key, value in result.pop("outputs").items()}
    torch.save(outputs, spec["outputs_path"])
    result.update(peak_rss_mb=_peak_rss_mb(), weights=used, bundle_version=parser.get_parsed_content("_meta_#version"))
    Path(spec["result_path"]).write_text(json.dumps(result))


def _threads(spec: dict, side: str) -> int:
    return int(spec["ours_threads"] if side == "ours" and spec.get("ours_threads") else spec["threads"])


def _machine(threads: int) -> dict:
    return {**machine_facts(torch_threads=threads), "device": "cpu"}


def _side(spec: dict, side: str, folder: Path) -> tuple[dict, dict]:
    paths = {"result_path": str(folder / f"{side}.json"), "outputs_path": str(folder / f"{side}.pt")}
    env = dict(os.environ, OMP_NUM_THREADS=str(_threads(spec, side)), PYTHONPATH=str(BUNDLES_DIR.parent))
    command = [sys.executable, "-m", "tools.bench", json.dumps({**spec, **paths, "side": side})]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench {side} process failed:\n{done.stderr[-4000:]}")
    return json.loads(Path(paths["result_path"]).read_text()), torch.load(paths["outputs_path"])


def _fastest(runs: list[tuple[dict, dict]]) -> tuple[dict, dict]:
    """The fastest run of one side, with every run's time beside it."""
    key = "seconds_per_sample" if "seconds_per_sample" in runs[0][0] else "seconds"
    best = min(runs, key=lambda run: run[0][key])
    return {**best[0], f"all_runs_{key}": [run[0][key] for run in runs]}, best[1]


def _table(record: dict) -> str:
    keys = [
        k
        for k in ("seconds_per_step", "decode_seconds", "seconds_per_sample", "patches_per_second", "peak_rss_mb")
        if k in record["reference"]
    ]
    lines = [f"{'':22}{'reference':>14}{'ours':>14}"]
    lines += [f"{key:22}{record['reference'][key]:14.3f}{record['ours'][key]:14.3f}" for key in keys]
    lines += [f"{'ratio ' + k:22}{v:>28.3f}" for k, v in record["ratios"].items()]
    lines += [f"{'max abs diff ' + k:22}{v:>28.2e}" for k, v in record["max_abs_diff"].items()]
    if "condition_share_of_step" in record:
        lines.append(f"{'condition share/step':22}{record['condition_share_of_step']:>28.2e}")
    return "\n".join(lines + [record["note"]])


def bench(
    bundle: str,
    profile: str = "demo",
    steps: int = 3,
    out: str | None = None,
    part: str = "sample",
    quick: bool = False,
    threads: int | None = None,
    inference_mode: bool = True,
    ours: dict | None = None,
    both: dict | None = None,
    weights: str | None = None,
    repeats: int = 1,
    warmup: bool = False,
    batch_size: int = 1,
    ours_threads: int | None = None,
) -> None:
    """Time the reference and ours, alternately, each in a fresh process, and write the comparison as JSON.

    Args:
        bundle: one of ``brain_ldm``, ``brain_spade3d``, ``tof_mra_vessel_gan``.
        profile: ``demo`` or (brain_ldm) ``ukb``, the published architecture with random weights.
        steps: denoising steps timed (tof: batches); the rest are extrapolated.
        out: JSON file to write (atomically).
        part: ``sample`` (steps and decode) or ``decode`` (the decode of a random latent only).
        quick: 1 step, for a first look in a few minutes.
        threads: torch threads per side (default: ``OMP_NUM_THREADS`` or 1).
        inference_mode: run ours under ``torch.inference_mode`` (the reference uses ``no_grad``).
        ours: config overrides for our side, e.g. ``{'solver': 'dpmpp_2m', 'num_inference_steps': 15}``.
        both: config overrides for both sides (e.g. tiny network sizes).
        weights: ``shipped`` (default for demo) or ``random`` (always for ukb, whose weights are not shipped).
        repeats: reference/ours pairs run alternately; each side keeps its fastest run (the machine is shared).
        warmup: both sides run one step and one decode untimed first (``warmup_seconds`` in the JSON), so that
            one-off work such as ``torch.compile``'s compilation is left out of the timing.
        batch_size: (brain bundles) ours samples this many latents per UNet call and decodes them together; its
            times are per sample and its first sample is the one compared with the reference (batch 1).
        ours_threads: torch threads for ours only (the reference keeps ``threads``), to measure threads as a lever.
    """
    if bundle not in BUNDLES:
        raise ValueError(f"bundle={bundle!r} is not one of {list(BUNDLES)}")
    if profile not in PROFILES or (profile == "ukb" and bundle != "brain_ldm"):
        raise ValueError(f"profile={profile!r}: brain_ldm has 'demo' and 'ukb', the others 'demo' only")
    if part not in PARTS:
        raise ValueError(f"part={part!r} is not one of {list(PARTS)}")
    counts = {"steps": steps, "repeats": repeats, "batch_size": batch_size, "ours_threads": ours_threads}
    for name, value in counts.items():
        if name == "ours_threads" and value is None:  # unset: ours uses ``threads`` like the reference
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    for name, value in (("ours", ours), ("both", both)):
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"{name}={value!r} must be a dict of config overrides")
    weights = weights or ("random" if profile == "ukb" else "shipped")
    if weights not in ("shipped", "random") or (profile == "ukb" and weights == "shipped"):
        raise ValueError(f"weights={weights!r} must be 'shipped' or 'random' (ukb: 'random')")
    threads = int(threads or os.environ.get("OMP_NUM_THREADS", 1))
    if batch_size > 1 and bundle == "tof_mra_vessel_gan":
        raise ValueError("batch_size is for the brain bundles: tof's throughput already uses its config's batch_size")
    spec = {
        "bundle": bundle,
        "profile": profile,
        "steps": 1 if quick else steps,
        "part": part,
        "threads": threads,
        "inference_mode": bool(inference_mode),
        "warmup": bool(warmup),
        "random_weights": weights == "random",
        "batch_size": batch_size,
        "ours_threads": ours_threads,
        "both": dict(both or {}),
        "overrides": {"ddim_eta": 0.0, **(ours or {})},  # deterministic like the reference, so outputs compare
    }
    machine = _machine(threads)
    runs: dict[str, list] = {"reference": [], "ours": []}
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        for _ in range(repeats):
            for side in runs:
                runs[side].append(_side(spec, side, Path(folder)))
    (reference, reference_outputs), (mine, my_outputs) = (_fastest(runs[side]) for side in ("reference", "ours"))
    record = _record(spec, machine, reference, mine, reference_outputs, my_outputs)
    print(_table(record))
    if out is not None:
        write_json(record, out)


def _record(spec: dict, machine: dict, reference: dict, mine: dict, reference_outputs: dict, my_outputs: dict) -> dict:
    weights = reference.pop("weights")
    mine.pop("weights")
    version = reference.pop("bundle_version")
    mine.pop("bundle_version")
    if "patches_per_second" in reference:
        time_ratio = reference["patches_per_second"] / mine["patches_per_second"]
        note = "tof: time ratio is the reference's patches per second over ours (lower is faster for ours)"
    else:
        time_ratio = mine["seconds_per_sample"] / reference["seconds_per_sample"]
        note = (
            f"seconds_per_sample = full steps x seconds_per_step + decode_seconds, extrapolated from the first "
            f"{spec['steps']} step(s) of each side's schedule; latent differences compare those step(s) only"
        )
    diffs = {
        key: float((my_outputs[key].float() - reference_outputs[key].float()).abs().max())
        for key in reference_outputs
        if key in my_outputs and my_outputs[key].shape == reference_outputs[key].shape
    }
    return {
        "bundle": spec["bundle"],
        "bundle_version": version,
        "profile": spec["profile"],
        "part": spec["part"],
        "weights": weights,
        "random_weights": spec["random_weights"],
        "ours_overrides": spec["overrides"],
        "ours_inference_mode": spec["inference_mode"],
        "warmup": spec["warmup"],
        "ours_batch_size": spec["batch_size"],
        "ours_threads": _threads(spec, "ours"),
        "reference": reference,
        "ours": mine,
        "ratios": {"time": time_ratio, "peak_rss": mine["peak_rss_mb"] / reference["peak_rss_mb"]},
        **_condition_share(reference),
        "max_abs_diff": diffs,
        "machine": machine,
        "note": note,
    }


def _condition_share(reference: dict) -> dict:
    """The reference step's share spent building condition inputs: the most that building them once could save."""
    if not reference.get("condition_seconds_per_step") or not reference.get("seconds_per_step"):
        return {}
    return {"condition_share_of_step": reference["condition_seconds_per_step"] / reference["seconds_per_step"]}


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
