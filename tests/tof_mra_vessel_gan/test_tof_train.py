"""GAN training through monai.bundle: the three variants, resume, the multi-GPU overlay and bad training data."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import bundle_scripts_modules
from tests.tof_mra_vessel_gan.tof_helpers import (
    BUNDLE,
    N_TRAINING_PATIENTS,
    PATCHES_PER_PATIENT,
    TINY,
    run_tiny,
    workspace_overrides,
)

TINY_BATCH = TINY["batch_size"]
ITERATIONS_PER_EPOCH = N_TRAINING_PATIENTS * PATCHES_PER_PATIENT // TINY_BATCH


def _generator_keys(path: Path) -> list[str]:
    return list(torch.load(path, map_location="cpu", weights_only=True))


def _checkpoint_state(ckpt_dir: Path, epoch: int) -> dict:
    return torch.load(ckpt_dir / f"checkpoint_epoch={epoch}.pt", map_location="cpu", weights_only=True)


def test_wgan_gp_sn_trains_and_exports_a_plain_generator(trained_gan):
    assert sorted(p.name for p in trained_gan.ckpt_dir.iterdir()) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    state = _checkpoint_state(trained_gan.ckpt_dir, 2)
    assert set(state) == {"generator", "critic", "generator_optimizer", "critic_optimizer", "trainer", "random_states"}
    assert state["trainer"]["iteration"] == 2 * ITERATIONS_PER_EPOCH
    # the critic carries spectral norm, the exported generator has it folded away
    assert any(".parametrizations.weight" in key for key in state["critic"])
    keys = _generator_keys(trained_gan.generator_path)
    assert keys and not any("parametrizations" in key for key in keys)
    # one generator step per n_critic = 5 critic steps: Adam counts the updates each optimiser made
    critic_steps = {int(s["step"]) for s in state["critic_optimizer"]["state"].values()}
    generator_steps = {int(s["step"]) for s in state["generator_optimizer"]["state"].values()}
    assert critic_steps == {2 * ITERATIONS_PER_EPOCH} and generator_steps == {2 * ITERATIONS_PER_EPOCH // 5}
    assert "generator_loss" in trained_gan.log and "gradient_penalty" in trained_gan.log
    assert list(trained_gan.output_dir.glob("events.out.tfevents.*"))
    assert list(trained_gan.output_dir.glob("preview_iteration_*.png"))


def test_previews_log_the_label_statistics(trained_gan):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (trained_gan.output_dir / "label_statistics").glob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"label/label_vessel_fraction"} <= tags
    assert "label vessel fraction" in trained_gan.log


def test_label_statistics_known_answer():
    with bundle_scripts_modules(BUNDLE, "generation") as (generation,):
        pairs = -np.ones((2, 2, 4, 4), dtype=np.float32)
        pairs[0, 1, :2, :2] = 1.0  # 4 of 32 label pixels pass the threshold
        pairs[0, 0, :2, :2] = 0.5  # and the image is brighter there: 0.5 against -1
        statistics = generation.label_statistics(pairs, 0.8)
        assert statistics == {"label_vessel_fraction": 4 / 32, "vessel_contrast": 1.5}
        assert generation.label_statistics(-np.ones((1, 2, 4, 4)), 0.8)["vessel_contrast"] is None


@pytest.mark.parametrize(
    "variant, extra, logged, absent",
    [
        ("dcgan.json", {}, ["critic_loss", "generator_loss"], ["gradient_penalty", "wasserstein_distance"]),
        ("wgan_gp.json", {"gp_mode": "batch"}, ["gradient_penalty", "wasserstein_distance", "generator_loss"], []),
    ],
)
def test_other_variants_train_a_few_iterations(tof_datalist, tmp_path, variant, extra, logged, absent):
    overrides = {"dataset_dir": str(tof_datalist.parent), "max_epochs": 1, **workspace_overrides(tmp_path), **extra}
    result = run_tiny(["train.json", variant], overrides)
    log = result.stdout + result.stderr
    assert all(term in log for term in logged) and not any(term in log for term in absent)
    state = _checkpoint_state(tmp_path / "checkpoints", 1)
    assert state["trainer"]["iteration"] == ITERATIONS_PER_EPOCH
    if variant == "dcgan.json":
        assert any(key.startswith("minibatch.") for key in state["critic"])
        assert any("adn.N.running_mean" in key for key in state["critic"])  # batch norm
    else:
        assert not any("running_mean" in key for key in state["critic"])  # instance norm, no running stats
    assert _generator_keys(tmp_path / "models" / "model.pt")


def test_wall_clock_limit_stops_early_and_still_exports(tof_datalist, tmp_path):
    overrides = {
        "dataset_dir": str(tof_datalist.parent),
        "max_epochs": 50,
        "max_train_seconds": 1e-6,
        **workspace_overrides(tmp_path),
    }
    result = run_tiny(["train.json", "wgan_gp_sn.json"], overrides)
    assert "max_train_seconds=1e-06 reached at epoch 1, iteration 1" in result.stdout + result.stderr
    assert _generator_keys(tmp_path / "models" / "model.pt")
    assert not list((tmp_path / "checkpoints").glob("checkpoint_epoch=*.pt"))  # the partial epoch is not a checkpoint


def test_training_resumes_from_the_latest_checkpoint(trained_gan, tof_datalist, tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    shutil.copytree(trained_gan.ckpt_dir, ckpt_dir)
    overrides = {"dataset_dir": str(tof_datalist.parent), "max_epochs": 3, **workspace_overrides(tmp_path)}
    result = run_tiny(["train.json", "wgan_gp_sn.json"], overrides)
    log = result.stdout + result.stderr
    assert f"resumed at epoch 2, iteration {2 * ITERATIONS_PER_EPOCH}" in log
    assert "Epoch: 1/3" not in log and "Epoch: 2/3" not in log and "Epoch: 3/3" in log
    resumed = _checkpoint_state(ckpt_dir, 3)
    assert resumed["trainer"]["iteration"] == 3 * ITERATIONS_PER_EPOCH
    # the optimiser continued from the checkpoint: Adam's step count went on from epoch 2's
    before = _checkpoint_state(ckpt_dir, 2)["critic_optimizer"]["state"][0]["step"]
    assert float(resumed["critic_optimizer"]["state"][0]["step"]) == float(before) + ITERATIONS_PER_EPOCH


def test_multi_gpu_overlay_under_torchrun(tof_datalist, tmp_path):
    runner = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"]
    overrides = {
        "dataset_dir": str(tof_datalist.parent),
        "max_epochs": 1,
        "batch_size": 2,
        **workspace_overrides(tmp_path),
    }
    result = run_tiny(["train.json", "multi_gpu_train.json", "wgan_gp_sn.json"], overrides, runner=runner)
    log = result.stdout + result.stderr
    # each of the 2 processes sees half of the patches: 24 / 2 / batch 2 = 6 iterations per epoch
    per_process = N_TRAINING_PATIENTS * PATCHES_PER_PATIENT // 2 // 2
    assert _checkpoint_state(tmp_path / "checkpoints", 1)["trainer"]["iteration"] == per_process
    assert len(list((tmp_path / "logs").glob("events.out.tfevents.*"))) == 1  # TensorBoard on rank 0 only
    assert log.count("exported generator weights") == 1
    assert _generator_keys(tmp_path / "models" / "model.pt")


def _damage_first_training_patch(datalist: Path, how: str) -> Path:
    item = json.loads(datalist.read_text())["training"][0]
    path = datalist.parent / item["patches"]
    if how == "missing":
        path.unlink()
    elif how == "corrupt":
        path.write_bytes(path.read_bytes()[:100])
    elif how == "patch_size":
        rng = np.random.default_rng(0)
        np.savez(path, image=rng.uniform(-1, 1, (4, 64, 64)).astype(np.float32), label=np.zeros((4, 64, 64), np.uint8))
    return path


@pytest.mark.parametrize(
    "how, message",
    [
        ("missing", "does not exist"),
        ("corrupt", "is corrupt or not an .npz archive"),
        ("patch_size", "is not supported"),
    ],
)
def test_bad_patch_files_fail_clearly_and_write_nothing(copied_datalist, tmp_path, how, message):
    damaged = _damage_first_training_patch(copied_datalist, how)
    workspace = tmp_path / "workspace"
    overrides = {"dataset_dir": str(copied_datalist.parent), **workspace_overrides(workspace)}
    result = run_tiny(["train.json", "wgan_gp_sn.json"], overrides, check=False)
    assert result.returncode != 0
    assert message in result.stderr and str(damaged) in result.stderr
    assert not workspace.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ({"n_critic": 2.5}, "n_critic=2.5 must be a positive integer"),
        ({"batch_size": 0}, "batch_size=0 must be a positive integer"),
        ({"preview_interval": True}, "preview_interval=True must be a positive integer"),
    ],
)
def test_bad_training_settings_are_named_and_write_nothing(tof_datalist, tmp_path, override, message):
    workspace = tmp_path / "workspace"
    overrides = {"dataset_dir": str(tof_datalist.parent), **workspace_overrides(workspace), **override}
    result = run_tiny(["train.json", "wgan_gp_sn.json"], overrides, check=False)
    assert result.returncode != 0 and message in result.stderr
    assert not workspace.exists()


def test_a_non_finite_loss_stops_training_and_keeps_the_shipped_generator(tof_datalist, tmp_path):
    overrides = {"dataset_dir": str(tof_datalist.parent), "max_epochs": 1, **workspace_overrides(tmp_path)}
    shipped = Path(overrides["generator_path"])
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"shipped generator")
    overrides["train#deterministic_transforms#0#maxv"] = "$float('nan')"  # patches scaled to NaN after their check
    result = run_tiny(["train.json", "wgan_gp_sn.json"], overrides, check=False)
    assert result.returncode != 0
    log = result.stdout + result.stderr
    assert "non-finite loss" in log and "'critic_loss': nan" in log and "at epoch 1, iteration 1; batch items: [" in log
    assert shipped.read_bytes() == b"shipped generator"
    assert not list((tmp_path / "checkpoints").glob("*.pt"))


def test_unknown_variant_is_refused_before_any_data_is_read(tmp_path):
    """The dataset folder does not exist: the variant error must come first, so no work was started."""
    workspace = tmp_path / "workspace"
    overrides = {"dataset_dir": str(tmp_path / "no_data"), **workspace_overrides(workspace), "variant": "wgan"}
    result = run_tiny(["train.json"], overrides, check=False)
    assert result.returncode != 0
    assert "variant='wgan' is not one of ['dcgan', 'wgan_gp', 'wgan_gp_sn']" in result.stderr
    assert "no_data" not in result.stderr
    assert not workspace.exists()
