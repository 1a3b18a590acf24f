"""Dataset-generation checks shared by the three bundles' ``test_generate.py`` (generate.json overlay).

Each bundle test passes its folder, tiny overrides and file prefix; the checks run real
``monai.bundle run`` subprocesses: torchrun with 2 gloo ranks, ``--shard_index/--num_shards``, a
real SIGKILL then a re-run, plan mismatch and refusals before any sample.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import REPO_ROOT, bundle_command, bundle_env, run_bundle

GENERATE = ["inference.json", "generate.json"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"]
#: Files a dataset run writes besides the samples; the part files depend on how the work was split.
SHARD_DEPENDENT = "manifest.parts"


def dataset_digests(output_dir: Path) -> dict[str, str]:
    """sha256 of every file of a dataset folder, by relative path, except the per-shard manifest parts."""
    return {
        str(path.relative_to(output_dir)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(output_dir.rglob("*"))
        if path.is_file() and SHARD_DEPENDENT not in path.parts
    }


def manifest_rows(output_dir: Path) -> list[dict[str, str]]:
    with (output_dir / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _part_rows(part: Path) -> int:
    return max(0, part.read_text().count("\n") - 1) if part.is_file() else 0


def run_and_kill(bundle: Path, overrides: dict, part: Path, rows_before_kill: int = 1, timeout: float = 300) -> None:
    """Start a real ``monai.bundle run`` and SIGKILL it once ``part`` holds ``rows_before_kill`` rows."""
    command = bundle_command(bundle, GENERATE, overrides)
    process = subprocess.Popen(command, cwd=bundle, env=bundle_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while _part_rows(part) < rows_before_kill and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    _, stderr = process.communicate()
    assert process.returncode == -signal.SIGKILL, f"the run ended before it could be killed:\n{stderr.decode()[-3000:]}"


def check_torchrun_shards_kill_and_resume(
    bundle: Path, overrides: dict, tmp_path: Path, n_samples: int, other_plan: dict, difference: str
) -> None:
    """torchrun (2 ranks) == shard 1 of 2 + shard 0 of 2 killed mid-run, left with debris, then re-run.

    Then a run with ``other_plan`` overrides in the finished folder is refused, naming ``difference``.
    """
    reference, resumed = tmp_path / "torchrun", tmp_path / "sharded"
    common = {**overrides, "n_samples": n_samples, "batch_size": 1}
    result = run_bundle(bundle, GENERATE, {**common, "output_dir": str(reference)}, runner=TORCHRUN)
    for rank in (0, 1):
        assert f"shard {rank}/2:" in result.stdout, result.stdout[-3000:]  # each rank ran its share
    rows = manifest_rows(reference)
    assert [int(r["index"]) for r in rows] == list(range(n_samples))
    assert (reference / "dataset_card.md").is_file() and (reference / "overview.png").is_file()

    run_bundle(bundle, GENERATE, {**common, "output_dir": str(resumed), "shard_index": 1, "num_shards": 2})
    assert [int(r["index"]) for r in manifest_rows(resumed)] == list(range(1, n_samples, 2))
    assert not (resumed / "dataset_card.md").exists()  # the dataset is not complete yet

    part = resumed / "manifest.parts" / "part_00000_of_00002.csv"
    run_and_kill(bundle, {**common, "output_dir": str(resumed), "shard_index": 0, "num_shards": 2}, part)
    first_file = Path(next(v for k, v in rows[n_samples - 2].items() if k.startswith("file_")))  # a shard-0 sample
    stale = resumed / first_file.parent / f".tmp-999999-{first_file.name}"
    stale.write_bytes(b"a killed writer's temporary file")
    with part.open("a") as handle:
        handle.write("2,2,half a row")  # a kill in the middle of an append
    result = run_bundle(bundle, GENERATE, {**common, "output_dir": str(resumed), "shard_index": 0, "num_shards": 2})
    assert re.search(r"[1-9]\d* already complete", result.stdout), result.stdout[-3000:]  # resumed, not redone
    assert not stale.exists()
    assert dataset_digests(resumed) == dataset_digests(reference)  # every sample once, byte-identical
    check_plan_mismatch_is_refused(bundle, common, reference, other_plan, difference)


def check_plan_mismatch_is_refused(bundle: Path, overrides: dict, output_dir: Path, changed: dict, named: str) -> None:
    """A run with another plan in a finished dataset folder is refused, naming the difference; nothing changes."""
    before = dataset_digests(output_dir)
    result = run_bundle(bundle, GENERATE, {**overrides, "output_dir": str(output_dir), **changed}, check=False)
    assert result.returncode != 0
    assert "describes another dataset" in result.stderr and named in result.stderr, result.stderr[-3000:]
    assert dataset_digests(output_dir) == before


def check_refused_before_any_sample(bundle: Path, overrides: dict, tmp_path: Path, bad: dict, named: str) -> None:
    """A bad input stops the run before the first sample, with an error naming it, and leaves nothing."""
    output_dir = tmp_path / "refused"
    result = run_bundle(bundle, GENERATE, {**overrides, "output_dir": str(output_dir), **bad}, check=False)
    assert result.returncode != 0
    assert named in result.stderr, result.stderr[-3000:]
    assert not output_dir.exists()


def check_readme_python_example(bundle: Path, replacements: dict[str, str], checks: str) -> None:
    """Run the README's in-memory Python example (with quicker settings) followed by ``checks``."""
    readme = (bundle / "docs" / "README.md").read_text()
    assert "<!-- python-example" in readme, f"{bundle.name} README has no Python example"
    block = readme.split("<!-- python-example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    for old, new in replacements.items():
        assert old in block, f"the README example no longer contains {old!r}"
        block = block.replace(old, new)
    script = block + "\n" + checks
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=bundle_env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"README example failed:\n{script}\n{result.stderr[-4000:]}"


def check_inference_refuses_an_unusable_output_dir(bundle: Path, overrides: dict, tmp_path: Path, weights: str) -> None:
    """inference.json checks ``output_dir`` before any work: before the weights are even opened."""
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    bad = {**overrides, "output_dir": str(blocker / "out"), weights: str(tmp_path / "missing_weights")}
    result = run_bundle(bundle, "inference.json", bad, check=False)
    assert result.returncode != 0
    assert f"output_dir {blocker / 'out'} is below {blocker}, which is a file" in result.stderr, result.stderr[-3000:]
    assert "missing_weights" not in result.stderr  # refused before the weights were looked at


def check_conditions_csv_is_refused(bundle: Path, overrides: dict, tmp_path: Path, text: str, named: str) -> None:
    """A 2-row conditions CSV with a bad cell is refused before any sample; the error names file, line, column."""
    table = tmp_path / "conditions.csv"
    table.write_text(text)
    bad = {"n_samples": 2, "conditions_csv": str(table)}
    check_refused_before_any_sample(bundle, overrides, tmp_path, bad, f"{table}, line 3: {named}")
