"""Static checks of the bundle's configs and metadata (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch
from monai.bundle import ConfigParser

from tests.brain_ldm.ldm_helpers import BUNDLE
from tests.helpers import unresolved_references

CONFIGS = BUNDLE / "configs"
#: Config ids other configs and overlays (ukb, export, ONNX sampling) rely on.
INFERENCE_IDS = [
    "imports", "bundle_root", "device", "output_dir", "dataset_dir", "spatial_shape", "latent_channels",
    "condition_names", "autoencoder_def", "autoencoder", "diffusion_def", "diffusion", "load_autoencoder_path",
    "load_diffusion_path", "scale_factor", "noise_scheduler", "num_inference_steps", "inferer", "n_samples", "seed",
    "sex", "age", "ventricular_vol", "brain_vol", "conditions_csv", "profile", "load_weights", "decoder",
    "initialize", "run",
]  # fmt: skip


def _json(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


def test_metadata_validates_against_the_model_zoo_schema(schema_path: Path) -> None:
    metadata = _json("metadata.json")
    schema = json.loads(schema_path.read_text())
    jsonschema.validators.validator_for(schema)(schema).validate(metadata)
    assert metadata["version"] in metadata["changelog"]
    assert {"autoencoder_data_format", "diffusion_data_format", "network_data_format"} <= set(metadata)


def test_inference_defines_the_shared_ids() -> None:
    config = _json("inference.json")
    assert [i for i in INFERENCE_IDS if i not in config] == []
    assert config["profile"] == "demo" and config["spatial_shape"] == [40, 56, 40]
    assert config["condition_names"] == ["sex", "age", "ventricular_vol", "brain_vol"]


@pytest.mark.parametrize(
    ("config", "ids"),
    [
        ("train_autoencoder.json", ["autoencoder_def", "spatial_shape", "latent_channels"]),
        ("train_diffusion.json", ["autoencoder_def", "diffusion_def", "noise_scheduler", "condition_names"]),
    ],
)
def test_training_configs_build_the_inference_networks(config: str, ids: list[str]) -> None:
    inference, training = _json("inference.json"), _json(config)
    for config_id in ids:
        assert training[config_id] == inference[config_id], f"{config}: {config_id} drifted from inference.json"


def test_demo_networks_fit_the_mni_crop() -> None:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser["device"] = "$torch.device('cpu')"
    autoencoder = parser.get_parsed_content("autoencoder_def")
    diffusion = parser.get_parsed_content("diffusion_def")
    latent_shape = parser.get_parsed_content("latent_shape")
    assert latent_shape == [3, 10, 14, 10]
    with torch.no_grad():
        latent = autoencoder.encode_stage_2_inputs(torch.zeros(1, 1, 40, 56, 40))
        assert list(latent.shape[1:]) == latent_shape
        noise = diffusion(
            torch.zeros(1, 7, *latent_shape[1:]), timesteps=torch.tensor([999]), context=torch.zeros(1, 1, 4)
        )
        assert noise.shape == latent.shape
        assert autoencoder.decode_stage_2_outputs(latent).shape == (1, 1, 40, 56, 40)


@pytest.mark.parametrize(
    "configs",
    [
        ["train_autoencoder.json", "multi_gpu_train_autoencoder.json"],
        ["train_diffusion.json", "multi_gpu_train_diffusion.json"],
        ["inference.json", "inference_trt.json"],
        ["inference.json", "evaluate.json"],
        ["inference.json", "solver_study.json"],
        ["inference.json", "ukb.json"],
        ["inference.json", "export.json"],
        ["inference.json", "inference_onnx.json"],
    ],
)
def test_overlays_merge_and_every_reference_resolves(configs: list[str]) -> None:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / name) for name in configs])
    base = _json(configs[0])
    assert set(base) <= set(parser.config)  # an overlay adds or replaces keys, never drops the base
    # what merging cannot tell: every @id of the merged pair names an id that exists
    assert unresolved_references([CONFIGS / name for name in configs], CONFIGS / "metadata.json") == []


def test_every_declared_network_runs_on_its_declared_shape() -> None:
    """`tools verify`'s network check at the real demo size (small enough to run here)."""
    from tools.verify import check_networks

    assert check_networks(BUNDLE) == []
