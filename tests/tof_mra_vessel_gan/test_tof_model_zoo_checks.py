"""The two network checks model-zoo's CI runs on a bundle, run here the way it runs them: MONAI's own commands.

model-zoo's ``verify_bundle.py`` calls ``verify_net_in_out`` on ``network_def`` with the ``image`` input of
``network_data_format``, then ``ckpt_export`` of ``models/model.pt`` into TorchScript. The generator has one
input, so it must pass both without the exclusions model-zoo grants its own generative bundles.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from tests.tof_mra_vessel_gan.tof_helpers import BUNDLE


def _monai_bundle(command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "monai.bundle", command, *args],
        cwd=BUNDLE,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_verify_net_in_out_passes_on_the_generator():
    run = _monai_bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
        "--device",
        "cpu",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "data shape of network is verified with no error" in run.stdout + run.stderr


def test_ckpt_export_turns_model_pt_into_torchscript_equal_to_the_generator(bundle_scripts, tmp_path: Path):
    exported = tmp_path / "model.ts"
    run = _monai_bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        str(exported),
        "--ckpt_file",
        "models/model.pt",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    module = torch.jit.load(str(exported))
    noise = torch.randn(3, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pairs = module(noise)
    config = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    eager = bundle_scripts.networks.PairGenerator(
        latent_size=config["latent_size"], ngf=config["ngf"], out_channels=2, patch_size=config["patch_size"]
    )
    eager.load_state_dict(torch.load(BUNDLE / "models" / "model.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        expected = eager.eval()(noise)
    assert pairs.shape == (3, 2, 96, 96)
    assert torch.allclose(pairs, expected, atol=1e-5), float((pairs - expected).abs().max())
