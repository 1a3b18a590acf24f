"""The bundle passes the model-zoo checks: metadata against the real schema, configs, and every network
described by a ``<net>_data_format`` runs on its declared inputs (demo sizes, narrow channels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.brain_spade3d.spade3d_helpers import BUNDLE
from tests.helpers import unresolved_references
from tools.sync_common import drift
from tools.verify import verify_bundle

NARROW = {
    "autoencoder_def#channels": [8, 8, 8],
    "autoencoder_def#norm_num_groups": 4,
    "diffusion_def#channels": [16, 32],
    "diffusion_def#num_head_channels": [0, 16],
    "diffusion_def#norm_num_groups": 8,
    "generator_def#channels": [8, 8, 8],
    "generator_def#spade_intermediate_channels": 8,
}


def test_bundle_verifies_against_the_model_zoo_schema(schema_path: Path) -> None:
    assert verify_bundle(BUNDLE, schema=schema_path, override=NARROW) == []


def test_one_data_format_per_network() -> None:
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    formats = sorted(key for key in metadata if key.endswith("_data_format"))
    assert formats == [
        "autoencoder_data_format",
        "diffusion_data_format",
        "generator_data_format",
        "network_data_format",
    ]
    inference = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    assert all(f"{key.removesuffix('_data_format')}_def" in inference for key in formats)


def test_shared_code_copy_is_current() -> None:
    assert drift(BUNDLE) == []


def test_network_definitions_agree_across_configs() -> None:
    """Training and inference must build the same networks, or trained weights would not load."""
    configs = {p.name: json.loads(p.read_text()) for p in (BUNDLE / "configs").glob("*.json")}
    for key in ("autoencoder_def", "diffusion_def", "generator_def", "spatial_shape", "latent_channels", "label_names"):
        definitions = [json.dumps(c[key], sort_keys=True) for c in configs.values() if key in c]
        assert len(definitions) >= 2 and len(set(definitions)) == 1, key


def test_reconstruction_class_weights_cover_every_label_and_favour_the_lesions() -> None:
    """One weight per label channel; the rare lesion classes weigh more, or the autoencoder drops WMH (measured)."""
    config = json.loads((BUNDLE / "configs" / "train_label_autoencoder.json").read_text())
    weights = dict(zip(config["label_names"], config["reconstruction_class_weights"], strict=True))
    assert len(weights) == len(config["reconstruction_class_weights"]) == 10
    assert min(weights[lesion] for lesion in ("wmh", "tumour", "edema", "enhancing")) > weights["wm"] == 1.0


OVERLAY_SETS = [
    ["train_label_autoencoder.json", "multi_gpu_train_label_autoencoder.json"],
    ["train_label_diffusion.json", "multi_gpu_train_label_diffusion.json"],
    ["train_image_generator.json", "multi_gpu_train_image_generator.json"],
    ["inference.json", "inference_trt.json"],
    ["inference.json", "evaluate.json"],
    ["inference.json", "export.json"],
]


@pytest.mark.parametrize("files", OVERLAY_SETS, ids=["+".join(f) for f in OVERLAY_SETS])
def test_overlays_resolve_every_reference(files: list[str]) -> None:
    configs = BUNDLE / "configs"
    assert unresolved_references([configs / f for f in files], configs / "metadata.json") == []
