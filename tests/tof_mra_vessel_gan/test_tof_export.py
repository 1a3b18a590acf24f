"""export.json (merged over inference.json): the generator as TorchScript and ONNX, matching PyTorch on fresh noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.tof_mra_vessel_gan.tof_helpers import TINY, run_tiny


def test_export_matches_pytorch(vivid_generator, bundle_scripts, tmp_path):
    run_tiny(["inference.json", "export.json"], {"generator_path": str(vivid_generator), "export_dir": str(tmp_path)})
    report = json.loads((tmp_path / "export_report.json").read_text())
    checks = report["networks"]["generator"]["checks"]
    assert [c["input_shapes"]["z"][0] for c in checks] == [2, 5]  # traced at batch 2, checked at 5 too
    assert report["networks"]["generator"]["onnx_inputs"]["z"][0] == "z_batch"

    # independent check on noise the export never saw
    generator = bundle_scripts.networks.PairGenerator(ngf=TINY["ngf"])
    generator.load_state_dict(torch.load(vivid_generator, map_location="cpu", weights_only=True))
    generator.eval()
    noise = torch.randn(3, 128, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = generator(noise)
        scripted = torch.jit.load(str(tmp_path / "generator.ts"))(noise)
    assert expected.abs().max() > 0.5  # outputs with contrast, so the comparison means something
    torch.testing.assert_close(scripted, expected, atol=1e-5, rtol=0)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(tmp_path / "generator.onnx"), providers=["CPUExecutionProvider"])
    (onnx_output,) = session.run(None, {"z": noise.numpy()})
    np.testing.assert_allclose(onnx_output, expected.numpy(), atol=1e-4, rtol=0)
