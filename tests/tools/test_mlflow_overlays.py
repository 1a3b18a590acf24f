"""Every training config of every bundle merges with its MLflow overlay and leaves no reference dangling."""

from __future__ import annotations

import pytest

from tests.helpers import BUNDLES_DIR, unresolved_references

#: (bundle, configs merged in order); the MLflow overlay goes last, after any variant or multi-GPU overlay.
MERGES = [
    ("brain_ldm", ["train_autoencoder.json", "mlflow.json"]),
    ("brain_ldm", ["train_diffusion.json", "mlflow.json"]),
    ("brain_ldm", ["train_autoencoder.json", "multi_gpu_train_autoencoder.json", "mlflow.json"]),
    ("brain_ldm", ["train_diffusion.json", "multi_gpu_train_diffusion.json", "mlflow.json"]),
    ("brain_spade3d", ["train_label_autoencoder.json", "mlflow.json"]),
    ("brain_spade3d", ["train_label_diffusion.json", "mlflow.json"]),
    ("brain_spade3d", ["train_image_generator.json", "mlflow.json"]),
    ("brain_spade3d", ["train_label_autoencoder.json", "multi_gpu_train_label_autoencoder.json", "mlflow.json"]),
    ("brain_spade3d", ["train_label_diffusion.json", "multi_gpu_train_label_diffusion.json", "mlflow.json"]),
    ("brain_spade3d", ["train_image_generator.json", "multi_gpu_train_image_generator.json", "mlflow.json"]),
    ("tof_mra_vessel_gan", ["train.json", "mlflow.json"]),
    ("tof_mra_vessel_gan", ["train.json", "dcgan.json", "mlflow.json"]),
    ("tof_mra_vessel_gan", ["train.json", "wgan_gp.json", "mlflow.json"]),
    ("tof_mra_vessel_gan", ["train.json", "wgan_gp_sn.json", "mlflow.json"]),
    ("tof_mra_vessel_gan", ["train.json", "multi_gpu_train.json", "mlflow.json"]),
    ("tof_mra_vessel_gan", ["train_segmentation.json", "mlflow.json", "mlflow_segmentation.json"]),
]


def test_every_training_config_has_a_merge_here() -> None:
    listed = {(bundle, configs[0]) for bundle, configs in MERGES}
    for bundle in ("brain_ldm", "brain_spade3d", "tof_mra_vessel_gan"):
        for path in (BUNDLES_DIR / bundle / "configs").glob("train*.json"):
            assert (bundle, path.name) in listed, f"{bundle}/configs/{path.name} has no MLflow merge tested"


@pytest.mark.parametrize(("bundle", "configs"), MERGES, ids=[f"{b}:{'+'.join(c)}" for b, c in MERGES])
def test_mlflow_overlay_merges_and_resolves(bundle: str, configs: list[str]) -> None:
    from monai.bundle import ConfigParser

    config_dir = BUNDLES_DIR / bundle / "configs"
    files = [config_dir / name for name in configs]
    assert unresolved_references(files, config_dir / "metadata.json") == []
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    handlers = [parser[f"{part}#handlers"] for part in ("train", "validate") if f"{part}#handlers" in parser]
    trackers = [h for group in handlers for h in group if h.get("_target_") == "MLFlowHandler"]
    has_validator = "validate#evaluator" in parser
    assert len(trackers) == 1 + has_validator  # the trainer, and the evaluator where there is one
    assert all(h["tracking_uri"] == "@tracking_uri" for h in trackers)
