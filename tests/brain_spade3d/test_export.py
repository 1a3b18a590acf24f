"""export.json writes TorchScript and ONNX files of the three networks that match PyTorch.

The export's own parity report is checked, then the files are run again here, in-process, on inputs
of a batch size (and, where the network allows it, a spatial size) that the export never saw.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from bundle_runtime.onnx_runtime import OnnxModule
from bundle_runtime.weights import file_sha256
from tests.brain_spade3d.spade3d_helpers import BUNDLE, bundle_module, run_bundle

pytestmark = pytest.mark.slow

NETWORKS = ("label_decoder", "label_diffusion", "image_generator")
PARITY = 1e-4


@pytest.fixture(scope="module")
def exported(sampling_overrides: dict, spade_trained: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("export") / "models"
    shutil.copytree(spade_trained["models"], models)
    run_bundle(BUNDLE, ["inference.json", "export.json"], {**sampling_overrides, "models_dir": str(models)})
    return models


def test_export_report_records_parity_and_hashes(exported: Path) -> None:
    report = json.loads((exported / "export_report.json").read_text())
    assert set(report["networks"]) == set(NETWORKS)
    for name in NETWORKS:
        entry = report["networks"][name]
        assert set(entry["files"]) == {f"{name}.ts", f"{name}.onnx"}
        for file_name, digest in entry["files"].items():
            assert file_sha256(exported / file_name) == digest
        assert len(entry["checks"]) == 2  # the traced inputs and a second batch (and spatial) size
        for check in entry["checks"]:
            assert check["onnxruntime_max_abs_error"] <= PARITY and check["torchscript_max_abs_error"] <= PARITY
    assert report["source_weights"]["image_generator_sha256"] == file_sha256(exported / "image_generator.pt")


def _networks(overrides: dict, models: Path) -> dict[str, torch.nn.Module]:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser.update(
        {"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')", **overrides, "models_dir": str(models)}
    )
    networks = {}
    for key, weights in (
        ("autoencoder", "label_autoencoder.pt"),
        ("diffusion", "model.pt"),
        ("generator", "image_generator.pt"),
    ):
        network = parser.get_parsed_content(f"{key}_def")
        network.load_state_dict(torch.load(models / weights, weights_only=True))
        networks[key] = network.eval()
    return networks


def test_exported_files_match_pytorch_on_new_inputs(exported: Path, sampling_overrides: dict) -> None:
    generator = torch.Generator().manual_seed(1)
    with bundle_module("networks"):
        networks = _networks(sampling_overrides, exported)
    latent = torch.randn(3, 4, 6, 8, 6, generator=generator)  # batch 3 and a larger latent than exported
    seg = torch.softmax(torch.randn(3, 13, 16, 24, 16, generator=generator), dim=1)
    z = torch.randn(3, 8, generator=generator)
    context = torch.tensor([[[0.5, 0.2, 0.3, 0.1]], [[0.0, 0.0, 0.0, 0.0]], [[-1.0, -1.0, -1.0, -1.0]]])
    timesteps = torch.tensor([10, 400, 900])
    with torch.no_grad():
        expected = {
            "label_decoder": networks["autoencoder"].decode_stage_2_outputs(latent),
            "label_diffusion": networks["diffusion"](latent, timesteps=timesteps, context=context),
            "image_generator": networks["generator"].decode(seg, z),
        }
        inputs = {
            "label_decoder": (latent,),
            "label_diffusion": (latent, timesteps, context),
            "image_generator": (seg, z),
        }
        for name in NETWORKS:
            scripted = torch.jit.load(str(exported / f"{name}.ts"))(*inputs[name])
            onnx = OnnxModule(exported / f"{name}.onnx")(*inputs[name])
            assert (scripted - expected[name]).abs().max() <= PARITY, name
            assert (onnx - expected[name]).abs().max() <= PARITY, name
