"""bundle_runtime/onnx_runtime.py: runs an ONNX file like the network it came from, without the export code."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bundle_runtime.export import export_onnx
from bundle_runtime.onnx_runtime import OnnxModule
from tools import REPO_ROOT


class ScaledByStep(torch.nn.Module):
    """A diffusion-like signature: an image and integer timesteps, which the graph takes as int64."""

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return x * (timesteps.to(x.dtype)[:, None, None, None] + 1.0)


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> OnnxModule:
    inputs = {"x": torch.rand(1, 1, 4, 4), "timesteps": torch.tensor([3], dtype=torch.int64)}
    return OnnxModule(export_onnx(ScaledByStep(), inputs, tmp_path_factory.mktemp("onnx") / "step.onnx"))


def test_float_timesteps_are_cast_to_the_graphs_int64(runner: OnnxModule) -> None:
    x = torch.rand(2, 1, 6, 4)
    got = runner(x, torch.tensor([2.0, 5.0]))
    torch.testing.assert_close(got, ScaledByStep()(x, torch.tensor([2, 5])))
    assert got.dtype == torch.float32 and got.device == x.device


def test_inputs_given_twice_or_too_many_are_named(runner: OnnxModule) -> None:
    x, steps = torch.rand(1, 1, 4, 4), torch.tensor([1])
    with pytest.raises(TypeError, match="'x' given both by position and by keyword"):
        runner(x, x=x, timesteps=steps)
    with pytest.raises(TypeError, match=r"takes 2 inputs \['x', 'timesteps'\], got 3"):
        runner(x, steps, steps)
    with pytest.raises(TypeError, match=r"needs inputs \['timesteps'\]"):
        runner(x, None)


def test_inference_does_not_load_the_export_code() -> None:
    probe = "import sys, bundle_runtime.onnx_runtime; print(sorted(m for m in sys.modules if m.startswith(('bundle_runtime.', 'monai'))))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "['bundle_runtime.onnx_runtime']"
