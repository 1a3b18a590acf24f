"""bundle_runtime/export.py on small modules: several named inputs, symbolic axes, the second-shape check, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bundle_runtime.export import dynamic_axes_for, export_networks
from bundle_runtime.onnx_runtime import MethodModule, OnnxModule


class TwoInputs(torch.nn.Module):
    """A conditioned 3D layer: a volume and a (B, 1, K) context, like the diffusion UNet's inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(2, 3, 3, padding=1)
        self.project = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.project(context[:, 0])[:, :, None, None, None]


class ShapeFrozenByTrace(torch.nn.Module):
    """Python control flow on the input size: a trace keeps the branch of the example input only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.shape[-1] == 4 else x * 3


def test_every_axis_gets_its_own_symbol() -> None:
    axes = dynamic_axes_for({"x": torch.zeros(1, 2, 4, 5, 6), "context": torch.zeros(1, 1, 4)})
    assert axes == {"x": {0: "x_batch", 2: "x_dim2", 3: "x_dim3", 4: "x_dim4"}, "context": {0: "context_batch"}}
    with pytest.raises(ValueError, match="spatial_names"):
        dynamic_axes_for({"x": torch.zeros(1, 2, 4, 4)}, spatial_names=["y"])


def test_export_runs_on_another_batch_and_size_than_traced(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TwoInputs().eval()
    inputs = {"x": torch.rand(1, 2, 4, 4, 4), "context": torch.rand(1, 1, 4)}
    other = {"x": torch.rand(2, 2, 6, 4, 8), "context": torch.rand(2, 1, 4)}
    report = export_networks(
        {"net": {"module": module, "inputs": inputs, "check_inputs": [other]}}, tmp_path, metadata={"profile": "t"}
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export_report.json", "net.onnx", "net.ts"]
    saved = json.loads((tmp_path / "export_report.json").read_text())
    assert saved == report and saved["profile"] == "t" and len(saved["networks"]["net"]["checks"]) == 2
    with torch.no_grad():
        expected = module(**other)
        onnx_output = OnnxModule(tmp_path / "net.onnx")(other["x"], context=other["context"])
        traced_output = torch.jit.load(str(tmp_path / "net.ts"))(other["x"], other["context"])
    torch.testing.assert_close(onnx_output, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(traced_output, expected)


def test_a_trace_that_only_holds_for_its_example_shape_is_refused_and_nothing_written(tmp_path: Path) -> None:
    spec = {"module": ShapeFrozenByTrace(), "inputs": {"x": torch.rand(1, 1, 4, 4)}}
    spec["check_inputs"] = [{"x": torch.rand(1, 1, 4, 6)}]
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        export_networks({"frozen": spec}, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # the scratch folder is gone too


def test_bad_network_specs_are_named() -> None:
    with pytest.raises(ValueError, match="plain file stem"):
        export_networks({"../evil": {"module": TwoInputs(), "inputs": {}}}, "unused")
    with pytest.raises(ValueError, match="unknown keys"):
        export_networks({"net": {"module": TwoInputs(), "inputs": {}, "shapes": 1}}, "unused")


def test_method_module_exposes_one_method_as_forward() -> None:
    network = torch.nn.Linear(3, 2)
    wrapped = MethodModule(network, "forward")
    x = torch.rand(4, 3)
    torch.testing.assert_close(wrapped(x), network(x))
    with pytest.raises(ValueError, match="no method 'decode'"):
        MethodModule(network, "decode")
