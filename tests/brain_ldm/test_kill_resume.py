"""A training run killed mid-epoch (a real SIGKILL) and re-run ends exactly where an uninterrupted run ends.

One tiny autoencoder training (2 iterations per epoch, random affine augmentation, adversarial term
from epoch 2) runs 4 epochs uninterrupted; the same command is killed during epoch 3, a checkpoint
cut short by hand stands in for a kill during the epoch-3 checkpoint write, and the command is re-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from tests.brain_ldm.ldm_helpers import BUNDLE, run_bundle, tiny_autoencoder_training
from tests.helpers import bundle_command, bundle_env

pytestmark = pytest.mark.slow

MAX_EPOCHS = 4
KILL_AT = f"Epoch: 3/{MAX_EPOCHS}, Iter: 1/2"


def _overrides(cohort: Path, root: Path) -> dict:
    return {**tiny_autoencoder_training(cohort, root / "run", root / "models", max_epochs=MAX_EPOCHS), "batch_size": 1}


def _run_until_killed(overrides: dict) -> tuple[int, list[str]]:
    """Start the real bundle command, SIGKILL it once it logs ``KILL_AT``; its return code and log lines."""
    process = subprocess.Popen(
        bundle_command(BUNDLE, "train_autoencoder.json", overrides),
        cwd=BUNDLE,
        env={**bundle_env(), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if KILL_AT in line:
                os.kill(process.pid, signal.SIGKILL)
                break
        return process.wait(timeout=120), lines
    finally:
        process.kill()
        process.stdout.close()


@pytest.fixture(scope="module")
def runs(brain_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("kill_resume")
    run_bundle(BUNDLE, "train_autoencoder.json", _overrides(brain_cohort, root / "uninterrupted"))
    overrides = _overrides(brain_cohort, root / "killed")
    code, killed_log = _run_until_killed(overrides)
    checkpoints = root / "killed" / "run" / "checkpoints"
    after_kill = sorted(p.name for p in checkpoints.iterdir())
    exported_by_killed_run = (root / "killed" / "models" / "autoencoder.pt").exists()
    # stands in for a kill while checkpoint_epoch=3.pt was written, and a temporary file of such a write
    (checkpoints / "checkpoint_epoch=3.pt").write_bytes((checkpoints / "checkpoint_epoch=2.pt").read_bytes()[:4096])
    (checkpoints / ".tmp-123-checkpoint_epoch=3.pt").write_bytes(b"partial")
    resumed = run_bundle(BUNDLE, "train_autoencoder.json", overrides)
    return {
        "root": root,
        "code": code,
        "killed_log": "".join(killed_log),
        "after_kill": after_kill,
        "exported_by_killed_run": exported_by_killed_run,
        "resumed": resumed.stdout + resumed.stderr,
        "checkpoints": checkpoints,
    }


def test_the_kill_was_real_and_mid_epoch(runs: dict) -> None:
    assert runs["code"] == -signal.SIGKILL
    assert (
        "Saved checkpoint at epoch: 2" in runs["killed_log"]
        and "Saved checkpoint at epoch: 3" not in runs["killed_log"]
    )
    assert runs["after_kill"] == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    assert not runs["exported_by_killed_run"]


def test_resume_skips_the_cut_checkpoint_and_says_why(runs: dict) -> None:
    log = runs["resumed"]
    assert "skipped checkpoint" in log and "checkpoint_epoch=3.pt: it is truncated or not a PyTorch checkpoint" in log
    assert "resumed at epoch 2, iteration 4 from" in log and "checkpoint_epoch=2.pt" in log
    assert not list(runs["checkpoints"].glob(".tmp-*"))


def test_n_saved_holds_across_the_resume(runs: dict) -> None:
    assert sorted(p.name for p in runs["checkpoints"].iterdir()) == ["checkpoint_epoch=3.pt", "checkpoint_epoch=4.pt"]


def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(runs: dict) -> None:
    reference = torch.load(runs["root"] / "uninterrupted" / "models" / "autoencoder.pt", weights_only=True)
    resumed = torch.load(runs["root"] / "killed" / "models" / "autoencoder.pt", weights_only=True)
    assert reference.keys() == resumed.keys()
    worst = max(float((reference[k].float() - resumed[k].float()).abs().max()) for k in reference)
    assert worst <= 1e-6, f"resumed weights differ from the uninterrupted run's by {worst}"
    checkpoint = torch.load(runs["checkpoints"] / "checkpoint_epoch=4.pt", weights_only=True)
    assert {"torch", "numpy", "python", "transforms"} <= set(checkpoint["random_states"])
    assert len(checkpoint["random_states"]["transforms"]) >= 1  # the random affine's own generator
