"""Export of the decoder and the UNet (TorchScript + ONNX), its parity, and sampling on the ONNX files.

The bundle runs use the shipped demo architecture at a tiny spatial size with random weights; the
shared export code is also tested directly on toy modules (multiple inputs and outputs, a trace
that does not generalise, weights stored outside the ONNX file).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from bundle_runtime.export import _merge_external_data, export_networks, export_onnx
from bundle_runtime.latent_diffusion import write_latent_stats
from bundle_runtime.onnx_runtime import OnnxModule
from bundle_runtime.weights import file_sha256
from tests.brain_ldm.ldm_helpers import BUNDLE, bundle_module, run_bundle

TINY = {"spatial_shape": [16, 24, 16]}  # demo architecture; latent 3x4x6x4
PARITY = 1e-4


def inference_parser(overrides: dict) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "inference.json"))
    parser.update({"bundle_root": str(BUNDLE), "device": "$torch.device('cpu')", **overrides})
    return parser


def randomise(network: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Perturb every parameter, including the UNet's zero-initialised output convolution."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return network.eval()


def max_error(expected: torch.Tensor, got: torch.Tensor) -> float:
    assert expected.shape == got.shape
    return float((expected - got).abs().max())


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    """Random weights of the demo architecture, saved where inference.json expects them."""
    folder = tmp_path_factory.mktemp("brain_ldm_export") / "models"
    paths = {
        "load_autoencoder_path": str(folder / "autoencoder.pt"),
        "load_diffusion_path": str(folder / "model.pt"),
    }
    with bundle_module("common.export"):
        parser = inference_parser(TINY)
        autoencoder = randomise(parser.get_parsed_content("autoencoder_def"), 0)
        diffusion = randomise(parser.get_parsed_content("diffusion_def"), 1)
    folder.mkdir(parents=True)
    torch.save(autoencoder.state_dict(), paths["load_autoencoder_path"])
    torch.save(diffusion.state_dict(), paths["load_diffusion_path"])
    write_latent_stats(folder / "latent_stats.json", 0.7)
    return paths


@pytest.fixture(scope="module")
def networks(weights) -> dict[str, torch.nn.Module]:
    with bundle_module("common.export"):
        parser = inference_parser({**TINY, **weights})
        parser.get_parsed_content("load_weights")
        return {
            "autoencoder": parser.get_parsed_content("autoencoder").eval(),
            "diffusion": parser.get_parsed_content("diffusion").eval(),
        }


@pytest.fixture(scope="module")
def exported(weights) -> Path:
    """The export as a user runs it; files land beside the weights (the default export_dir)."""
    run_bundle(BUNDLE, ["inference.json", "export.json"], {**TINY, **weights})
    return Path(weights["load_diffusion_path"]).parent


@pytest.mark.slow
def test_export_writes_checked_files(exported, weights):
    names = {p.name for p in exported.iterdir()}
    assert {"decoder.ts", "decoder.onnx", "diffusion.ts", "diffusion.onnx", "export_report.json"} <= names
    assert not [n for n in names if n.startswith(".")], "scratch files left behind"
    report = json.loads((exported / "export_report.json").read_text())
    assert report["profile"] == "demo" and report["onnx_opset"] == 17
    assert report["source_weights"]["diffusion_sha256"] == file_sha256(weights["load_diffusion_path"])
    decoder, diffusion = report["networks"]["decoder"], report["networks"]["diffusion"]
    assert decoder["onnx_inputs"]["latent"] == ["latent_batch", 3, "latent_dim2", "latent_dim3", "latent_dim4"]
    assert diffusion["onnx_inputs"]["x"] == ["x_batch", 7, "x_dim2", "x_dim3", "x_dim4"]
    assert diffusion["onnx_inputs"]["timesteps"] == ["timesteps_batch"]
    assert diffusion["onnx_inputs"]["context"] == ["context_batch", 1, 4]
    for name, network in (("decoder", decoder), ("diffusion", diffusion)):
        assert set(network["files"]) == {f"{name}.ts", f"{name}.onnx"}
        assert network["files"][f"{name}.onnx"] == file_sha256(exported / f"{name}.onnx")
        shapes = [check["input_shapes"] for check in network["checks"]]
        assert len({json.dumps(s) for s in shapes}) == 2, "parity must be checked at a second batch and size"
        for check in network["checks"]:
            allowed = PARITY * max(1.0, check["output_max_abs"])
            assert check["onnxruntime_max_abs_error"] < allowed and check["torchscript_max_abs_error"] < allowed


@pytest.mark.slow
def test_exports_run_at_unseen_batch_and_spatial_sizes(exported, networks):
    generator = torch.Generator().manual_seed(5)
    latent = torch.randn(3, 3, 5, 7, 3, generator=generator)  # the decoder takes any latent size
    x = torch.randn(3, 7, 8, 2, 6, generator=generator)  # the 2-level UNet needs even sizes
    timesteps = torch.tensor([999, 10, 400])
    context = torch.rand(3, 1, 4, generator=generator)
    with torch.no_grad():
        expected_image = networks["autoencoder"].decode_stage_2_outputs(latent)
        expected_noise = networks["diffusion"](x, timesteps=timesteps, context=context)
        traced_decoder = torch.jit.load(str(exported / "decoder.ts"))
        traced_diffusion = torch.jit.load(str(exported / "diffusion.ts"))
        assert max_error(expected_image, traced_decoder(latent)) < PARITY
        assert max_error(expected_noise, traced_diffusion(x, timesteps, context)) < PARITY
    onnx_decoder = OnnxModule(exported / "decoder.onnx")
    onnx_diffusion = OnnxModule(exported / "diffusion.onnx")
    assert max_error(expected_image, onnx_decoder(latent)) < PARITY
    # the keyword call of the sampler, with float timesteps as MONAI's inferers pass them
    assert max_error(expected_noise, onnx_diffusion(x, timesteps=timesteps.float(), context=context)) < PARITY


@pytest.mark.slow
def test_sampling_on_onnx_matches_pytorch(exported, weights, tmp_path):
    common = {**TINY, **weights, "n_samples": 2, "num_inference_steps": 3, "seed": 11, "progress": False}
    run_bundle(BUNDLE, "inference.json", {**common, "output_dir": str(tmp_path / "torch")})
    run_bundle(BUNDLE, ["inference.json", "inference_onnx.json"], {**common, "output_dir": str(tmp_path / "onnx")})
    for index in range(2):
        stem = f"sample_{index:06d}"
        reference = nib.load(tmp_path / "torch" / f"{stem}.nii.gz").get_fdata(dtype=np.float32)
        onnx = nib.load(tmp_path / "onnx" / f"{stem}.nii.gz").get_fdata(dtype=np.float32)
        assert 0.01 < float(((reference > 0) & (reference < 1)).mean()), "output fully clipped: nothing compared"
        assert float(np.abs(reference - onnx).max()) < PARITY
        sidecar = json.loads((tmp_path / "onnx" / f"{stem}.json").read_text())
        assert sidecar["runtime"] == "onnxruntime" and sidecar["weights"]["diffusion"] == "diffusion.onnx"


class _SignFlip(torch.nn.Module):
    """A branch on a tensor value: the trace keeps only the branch taken by the example input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if float(x.sum()) > 0 else -x


def test_export_that_does_not_generalise_is_refused(tmp_path):
    export_dir = tmp_path / "exports"
    spec = {
        "module": _SignFlip(),
        "inputs": {"x": torch.ones(1, 1, 4, 4)},
        "check_inputs": [{"x": -torch.ones(2, 1, 6, 4)}],
    }
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        export_networks({"sign": spec}, export_dir)
    assert list(export_dir.iterdir()) == [], "a refused export must leave nothing behind"


class _TwoInTwoOut(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 32, 3, padding=1)  # 2.3 kB of weights: above the inline limit

    def forward(self, image: torch.Tensor, gain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.conv(image) * gain[:, None, None, None]
        return features, features.mean(dim=(2, 3))


def test_multi_input_multi_output_2d(tmp_path):
    module = _TwoInTwoOut().eval()
    path = export_onnx(module, {"image": torch.randn(1, 2, 8, 8), "gain": torch.ones(1)}, tmp_path / "toy.onnx")
    runner = OnnxModule(path)
    assert runner.input_names == ["image", "gain"] and runner.output_names == ["output0", "output1"]
    image, gain = torch.randn(4, 2, 5, 11), torch.rand(4)
    with torch.no_grad():
        expected = module(image, gain)
    got = runner(image, gain=gain)
    assert isinstance(got, tuple) and len(got) == 2
    assert max(max_error(e, g) for e, g in zip(expected, got, strict=True)) < 1e-5
    with pytest.raises(TypeError, match="no input 'scale'"):
        runner(image, scale=gain)
    with pytest.raises(TypeError, match=r"needs inputs \['gain'\]"):
        runner(image)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxModule(tmp_path / "missing.onnx")


def test_weights_outside_the_onnx_file_are_gathered_in_one_data_file(tmp_path):
    import onnx

    module = _TwoInTwoOut().eval()
    path = export_onnx(module, {"image": torch.randn(1, 2, 8, 8), "gain": torch.ones(1)}, tmp_path / "toy.onnx")
    spilled = tmp_path / "spilled"
    spilled.mkdir()
    # what the exporter writes for a model over 2 GB: one file per tensor beside the model
    onnx.save_model(
        onnx.load(str(path)),
        str(spilled / "toy.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=False,
        size_threshold=0,
    )
    assert len(list(spilled.iterdir())) > 2
    _merge_external_data(spilled / "toy.onnx")
    assert sorted(p.name for p in spilled.iterdir()) == ["toy.onnx", "toy.onnx.data"]
    image, gain = torch.randn(2, 2, 6, 6), torch.rand(2)
    expected = OnnxModule(path)(image, gain)
    got = OnnxModule(spilled / "toy.onnx")(image, gain)
    assert max(max_error(e, g) for e, g in zip(expected, got, strict=True)) == 0.0


@pytest.mark.slow
def test_onnx_inference_without_exported_files_names_them(weights, tmp_path):
    empty = tmp_path / "no_exports"
    empty.mkdir()
    output_dir = tmp_path / "out"
    overrides = {**TINY, **weights, "onnx_dir": str(empty), "output_dir": str(output_dir), "num_inference_steps": 2}
    result = run_bundle(BUNDLE, ["inference.json", "inference_onnx.json"], overrides, check=False)
    assert result.returncode != 0
    assert f"ONNX model {empty / 'diffusion.onnx'} not found" in result.stderr
    assert not output_dir.exists() or not any(output_dir.iterdir()), "no partial output"
