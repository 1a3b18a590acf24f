"""Fixtures for the verify / package / download tests: a tiny valid bundle, a loopback HTTP server, a closed port."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import monai
import numpy
import pytest
import torch

SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
TINY_SHAPE = [16, 16, 16]

LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=console

[formatters]
keys=plain

[logger_root]
level=INFO
handlers=console

[handler_console]
class=StreamHandler
level=INFO
formatter=plain
args=(sys.stdout,)

[formatter_plain]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

WRITER_MODULE = '''"""Writes what the tiny bundle computed, so a test can see that `monai.bundle run` really ran it."""

import json
from pathlib import Path

import torch


class ShapeWriter:
    """Save the shape of a prediction as JSON under ``output_dir``."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def __call__(self, prediction: torch.Tensor) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "prediction.json"
        path.write_text(json.dumps({"shape": list(prediction.shape)}))
        return path


def count_parameters(network: torch.nn.Module) -> int:
    """Number of trainable parameters, logged by the tiny bundle's run list."""
    return sum(p.numel() for p in network.parameters())
'''


def _tensor(fmt: str, channels: int, spatial: list, dtype: str = "float32", value_range: list | None = None) -> dict:
    return {
        "type": "image" if spatial else "tensor",
        "format": fmt,
        "num_channels": channels,
        "spatial_shape": spatial,
        "dtype": dtype,
        "value_range": [0, 1] if value_range is None else value_range,
    }


def _metadata(with_diffusion: bool) -> dict:
    metadata = {
        "schema": SCHEMA_URL,
        "version": "0.1.0",
        "changelog": {"0.1.0": "tiny bundle written by the tests"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {},
        "task": "Tiny segmentation network for testing the tools",
        "description": "A 3D UNet at 16^3 that exists only to exercise verify, package and download.",
        "authors": "synthbrain-zoo tests",
        "copyright": "Copyright (c) synthbrain-zoo contributors",
        "network_data_format": {
            "inputs": {"image": _tensor("magnitude", 1, TINY_SHAPE)},
            "outputs": {"pred": _tensor("segmentation", 2, TINY_SHAPE)},
        },
    }
    if with_diffusion:
        metadata["diffusion_data_format"] = {
            "inputs": {
                "x": _tensor("latent", 1, [16, 16], value_range=[-1, 1]),
                "timesteps": _tensor("timesteps", 0, [], dtype="int64", value_range=[0, 999]),
                "context": _tensor("conditioning", 1, [4]),
            },
            "outputs": {"pred": _tensor("noise", 1, [16, 16], value_range=[-1, 1])},
        }
    return metadata


def _inference(with_diffusion: bool) -> dict:
    config = {
        "imports": ["$import json", "$import scripts", "$import scripts.writer"],
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "output_dir": "$@bundle_root + '/outputs'",
        "network_def": {
            "_target_": "UNet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "channels": [4, 8],
            "strides": [2],
            "num_res_units": 0,
        },
        "network": "$@network_def.to(@device)",
        "writer": {"_target_": "scripts.writer.ShapeWriter", "output_dir": "@output_dir"},
        "run": [
            "$torch.manual_seed(0)",
            "$print('parameters', scripts.writer.count_parameters(@network))",
            "$@writer(@network(torch.rand(1, 1, 16, 16, 16, device=@device)))",
        ],
    }
    if with_diffusion:
        config["diffusion_def"] = {
            "_target_": "monai.networks.nets.DiffusionModelUNet",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 1,
            "channels": [8, 8],
            "attention_levels": [False, True],
            "num_res_blocks": 1,
            "norm_num_groups": 8,
            "num_head_channels": 8,
            "with_conditioning": True,
            "cross_attention_dim": 4,
        }
    return config


def write_tiny_bundle(bundles_dir: Path, name: str = "tiny_bundle", with_diffusion: bool = False) -> Path:
    """Write a small bundle that meets every model-zoo rule and whose inference run writes outputs/prediction.json."""
    bundle = bundles_dir / name
    (bundle / "configs").mkdir(parents=True)
    (bundle / "docs").mkdir()
    (bundle / "scripts").mkdir()
    (bundle / "configs" / "metadata.json").write_text(json.dumps(_metadata(with_diffusion), indent=4) + "\n")
    (bundle / "configs" / "inference.json").write_text(json.dumps(_inference(with_diffusion), indent=4) + "\n")
    (bundle / "configs" / "logging.conf").write_text(LOGGING_CONF)
    (bundle / "LICENSE").write_text("Apache License 2.0 (test bundle)\n")
    (bundle / "docs" / "README.md").write_text(f"# {name}\n\nA tiny bundle for the tools tests.\n")
    (bundle / "docs" / "data_license.txt").write_text("No data: inputs are random tensors.\n")
    (bundle / "scripts" / "__init__.py").write_text("")
    (bundle / "scripts" / "writer.py").write_text(WRITER_MODULE)
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"tiny weights")  # model-zoo's name; the runs use random weights
    digest = hashlib.sha256(b"tiny weights").hexdigest()
    (bundle / "models" / "SHA256SUMS").write_text(f"{digest}  model.pt\n")
    return bundle


@pytest.fixture
def make_bundle(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_bundle(name="tiny_bundle", with_diffusion=False)`` -> a fresh valid bundle under tmp_path."""
    return functools.partial(write_tiny_bundle, tmp_path / "bundles")


@pytest.fixture
def tiny_bundle(make_bundle: Callable[..., Path]) -> Path:
    """A valid tiny bundle: one 3D UNet at 16^3."""
    return make_bundle()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class names it so
        pass


@pytest.fixture
def serve_directory() -> Iterator[Callable[[Path], str]]:
    """Factory: serve a folder over http on 127.0.0.1 (a free port) and return its base URL; stopped at teardown."""
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def serve(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def offline_schema(schema_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point verify (run by ``tools package``) at the stored metadata schema, so nothing is downloaded."""
    monkeypatch.setenv("SYNTHBRAIN_SCHEMA_DIR", str(schema_path.parent))
    return schema_path


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening, for 'unreachable URL' errors."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
