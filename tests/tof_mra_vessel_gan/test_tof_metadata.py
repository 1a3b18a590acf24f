"""metadata.json against the model-zoo schema, and every config (with its overlays) parsing."""

from __future__ import annotations

import json

import jsonschema
import pytest
from monai.bundle import ConfigParser

from tests.helpers import unresolved_references
from tests.tof_mra_vessel_gan.tof_helpers import BUNDLE

CONFIGS = BUNDLE / "configs"
OVERLAY_SETS = [
    ["train.json"],
    ["train.json", "dcgan.json"],
    ["train.json", "wgan_gp.json"],
    ["train.json", "wgan_gp_sn.json", "tiny.json"],
    ["train.json", "multi_gpu_train.json"],
    ["inference.json"],
    ["inference.json", "inference_trt.json"],
    ["export.json"],
    ["train_segmentation.json"],
    ["evaluate.json"],
]


def test_metadata_validates_against_the_model_zoo_schema(schema_path):
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    jsonschema.validate(metadata, json.loads(schema_path.read_text()))
    assert metadata["version"] in metadata["changelog"]
    for key in ("network_data_format", "generator_data_format", "critic_data_format", "segmenter_data_format"):
        assert key in metadata


@pytest.mark.parametrize("files", OVERLAY_SETS, ids=["+".join(f) for f in OVERLAY_SETS])
def test_configs_merge_keep_the_standard_keys_and_resolve_every_reference(files):
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    for key in ("imports", "bundle_root", "device", "network_def", "initialize", "run"):
        assert key in parser, f"{files}: no {key!r}"
    assert unresolved_references([CONFIGS / f for f in files], CONFIGS / "metadata.json") == []


def test_variant_overlays_set_the_same_keys():
    keys = [set(json.loads((CONFIGS / name).read_text())) for name in ("dcgan.json", "wgan_gp.json", "wgan_gp_sn.json")]
    assert keys[0] == keys[1] == keys[2]
    train = json.loads((CONFIGS / "train.json").read_text())
    assert keys[0] <= set(train)  # an overlay only re-sets keys train.json defines
