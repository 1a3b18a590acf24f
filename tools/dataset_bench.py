"""``python -m tools dataset-bench``: the cost of the dataset bookkeeping and the generation throughput.

Two measurements, written as one JSON record under the bundle's ``docs/measured``:

* ``manifest``: planning 100,000 samples (``plan.csv`` written and checked again, as a resume
  does), then merging 100,000 manifest rows spread over 4 shard parts, and reading them back.
* ``throughput``: ``generate.json`` on the shipped weights with 1 process, then with 2 torchrun
  processes, at 1 thread each; samples per second come from each process's closing line, so the
  start-up (imports, weights) is left out and reported apart.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bundle_runtime.atomic_io import write_json
from bundle_runtime.dataset import PARTS_DIR, Plan, merge_manifest, read_records
from bundle_runtime.provenance import machine_facts
from bundle_runtime.weights import file_sha256
from tools import BUNDLES_DIR, REPO_ROOT

#: Overrides that keep a brain sample quick; the step count is part of the record.
BRAIN_OVERRIDES = {"num_inference_steps": 10, "progress": False}
OVERRIDES = {"brain_ldm": BRAIN_OVERRIDES, "brain_spade3d": {**BRAIN_OVERRIDES, "contrasts": ["T1w"]}}
#: The sampler settings a throughput depends on, recorded as the run used them (defaults plus overrides).
SAMPLING_KEYS = (
    "solver",
    "num_inference_steps",
    "ddim_eta",
    "x0_clip",
    "guidance_scale",
    "max_label_draws",
    "batch_size",
)
CLOSING_LINE = re.compile(r"shard (\d+)/(\d+): (\d+) samples in ([\d.]+) s")


def measure_manifest(n_samples: int = 100_000, n_parts: int = 4) -> dict:
    """Seconds to plan ``n_samples`` (write, then check as a resume does) and to merge their manifest."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        start = time.perf_counter()
        plan = Plan(0, n_samples, ["sex", "age", "ventricular_vol", "brain_vol"], [[0.0, 0.5, 0.5, 0.5]] * n_samples)
        plan.write_or_check(out)
        planned = time.perf_counter() - start
        start = time.perf_counter()
        plan.write_or_check(out)
        checked = time.perf_counter() - start
        (out / PARTS_DIR).mkdir()
        columns = plan.columns + ["measured_brain_ml", "file_image", "sha256_image", "bundle_version"]
        for part in range(n_parts):
            with (out / PARTS_DIR / f"part_{part:05d}_of_{n_parts:05d}.csv").open("w", newline="") as handle:
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                for index in range(part, n_samples, n_parts):
                    row = plan.row(index)
                    writer.writerow([*row.values(), "1234.5", f"sample_{index:06d}.nii.gz", "0" * 64, "0.1.0"])
        start = time.perf_counter()
        rows = merge_manifest(out, n_samples)
        merged = time.perf_counter() - start
        start = time.perf_counter()
        records = read_records(out)
        read = time.perf_counter() - start
    assert len(rows) == len(records) == n_samples
    return {
        "n_samples": n_samples,
        "plan_write_s": round(planned, 3),
        "plan_check_s": round(checked, 3),
        "merge_s": round(merged, 3),
        "read_back_s": round(read, 3),
        "parts": n_parts,
    }


def _generate(bundle: Path, out: Path, n_samples: int, processes: int) -> dict:
    command = [sys.executable, "-m"]
    if processes > 1:
        command += ["torch.distributed.run", "--nproc_per_node", str(processes), "-m"]
    command += ["monai.bundle", "run", "--config_file", "['configs/inference.json','configs/generate.json']"]
    command += ["--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf"]
    overrides = {"output_dir": str(out), "n_samples": n_samples, **OVERRIDES.get(bundle.name, {"progress": False})}
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=bundle, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    shards = [(int(s), int(k), float(t)) for s, _, k, t in CLOSING_LINE.findall(result.stdout)]
    generating = max(t for _, _, t in shards)
    return {
        "processes": processes,
        "samples": sum(k for _, k, _ in shards),
        "generation_s": round(generating, 2),
        "samples_per_s": round(sum(k for _, k, _ in shards) / generating, 4),
        "wall_s_with_start_up": round(wall, 2),
    }


def _weights(bundle: Path) -> dict:
    sums = bundle / "models" / "SHA256SUMS"
    names = [line.split()[1] for line in sums.read_text().splitlines() if line.strip()]
    record = {}
    for name in names:
        key = Path(name).stem
        record[key] = f"models/{name}"
        record[f"{key}_sha256"] = file_sha256(bundle / "models" / name)
    return record


def _sampling(bundle: Path, overrides: dict) -> dict:
    """The sampler settings of ``inference.json`` with ``overrides``: a record must say how it sampled."""
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    settings = {key: config[key] for key in SAMPLING_KEYS if key in config}
    settings.update({key: value for key, value in overrides.items() if key in SAMPLING_KEYS})
    return settings


def _shown(path: str) -> str:
    """``path`` relative to the repository when it lies inside it, so a record names no machine path."""
    resolved = Path(path).resolve()
    root = REPO_ROOT.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else path


def dataset_bench(bundle: str, out: str, n_samples: int = 8, throughput: bool = True) -> None:
    """Measure the manifest bookkeeping and the 1- and 2-process throughput of ``bundle``; write ``out``.

    ``--throughput False`` measures the bookkeeping only (e.g. on a CPU shared with other work, where
    samples per second would say more about the other work than about the bundle).
    """
    bundle_dir = BUNDLES_DIR / bundle
    metadata = json.loads((bundle_dir / "configs" / "metadata.json").read_text())
    load = list(os.getloadavg())
    runs = []
    if throughput:
        with tempfile.TemporaryDirectory() as folder:
            runs = [_generate(bundle_dir, Path(folder) / f"p{p}", n_samples, p) for p in (1, 2)]
    record = {
        "bundle": bundle,
        "bundle_version": metadata["version"],
        "weights": _weights(bundle_dir),
        "machine": {**machine_facts(torch_threads=1), "load_average_at_start": load},
        "threads_per_process": 1,
        "overrides": OVERRIDES.get(bundle, {}),
        "sampling": _sampling(bundle_dir, OVERRIDES.get(bundle, {})),
        "throughput": runs or "not measured",
        "manifest": measure_manifest(),
        "command": f"python -m tools dataset-bench {bundle} --out {_shown(out)} --n_samples {n_samples} --throughput {throughput}",
    }
    if runs:
        record["speed_up_2_processes"] = round(runs[1]["samples_per_s"] / runs[0]["samples_per_s"], 3)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(record, out)
    print(json.dumps(record, indent=2))
