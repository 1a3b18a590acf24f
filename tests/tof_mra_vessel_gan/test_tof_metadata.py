"""metadata.json against the model-zoo schema, and every config (with its overlays) parsing."""

from __future__ import annotations

import json
from collections.abc import Iterator

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
    ["train.json", "wgan_gp_sn.json"],
    ["train.json", "multi_gpu_train.json"],
    ["inference.json"],
    ["inference.json", "inference_trt.json"],
    ["inference.json", "export.json"],
    ["inference.json", "evaluate.json"],
    ["inference.json", "privacy.json"],
    ["inference.json", "generate.json"],
    ["inference.json", "calibrate.json"],
    ["train_segmentation.json"],
]
#: Overlays merged over inference.json: they add keys or change them, never repeat one.
INFERENCE_OVERLAYS = [
    "inference_trt.json",
    "export.json",
    "evaluate.json",
    "privacy.json",
    "generate.json",
    "calibrate.json",
]
VARIANTS = ["dcgan.json", "wgan_gp.json", "wgan_gp_sn.json"]
#: Each network's config id and, per config that defines it, the merged configs that build it. inference.json holds
#: the one generator its overlays use; the standalone training bases keep their own definitions, which must build
#: the same network (or trained weights would not load).
NETWORKS = {
    "scripts.networks.PairGenerator": (
        "generator_def",
        {
            "inference.json": [["inference.json"]],
            "train.json": [["train.json", variant] for variant in VARIANTS],
            "train_segmentation.json": [["train_segmentation.json"]],
        },
    ),
    "scripts.networks.PairCritic": ("critic_def", {"train.json": [["train.json"]]}),  # variants change the critic
    "scripts.segmentation.Standardized": (
        "segmenter_def",
        {
            "evaluate.json": [["inference.json", "evaluate.json"]],
            "train_segmentation.json": [["train_segmentation.json"]],
        },
    ),
}


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


def test_overlays_of_inference_hold_only_what_differs():
    inference = json.loads((CONFIGS / "inference.json").read_text())
    for name in INFERENCE_OVERLAYS:
        overlay = json.loads((CONFIGS / name).read_text())
        assert "imports" not in overlay, f"{name}: extends the imports with '+imports', never replaces them"
        repeated = sorted(key for key, value in overlay.items() if key in inference and inference[key] == value)
        assert repeated == [], f"{name} repeats inference.json's {repeated}"


def _network_targets(node: object, at: str = "") -> Iterator[tuple[str, str]]:
    """(config id, _target_) of every component of a config that builds one of NETWORKS."""
    if isinstance(node, dict):
        if node.get("_target_") in NETWORKS:
            yield at, node["_target_"]
        for key, value in node.items():
            yield from _network_targets(value, f"{at}#{key}" if at else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _network_targets(value, f"{at}#{index}" if at else str(index))


def test_each_network_has_one_definition_per_standalone_config():
    found: dict[str, dict[str, set[str]]] = {}
    for path in sorted(CONFIGS.glob("*.json")):
        for config_id, target in _network_targets(json.loads(path.read_text())):
            found.setdefault(target, {}).setdefault(config_id, set()).add(path.name)
    assert found == {target: {config_id: set(defined)} for target, (config_id, defined) in NETWORKS.items()}


def _constructor(parser: ConfigParser, config_id: str) -> dict:
    """A network definition with every argument resolved (references and expressions); nested networks too."""
    resolved = {}
    for key, value in parser.get(config_id).items():
        child = f"{config_id}#{key}"
        if isinstance(value, dict) and "_target_" in value:
            resolved[key] = _constructor(parser, child)
        else:
            resolved[key] = value if key == "_target_" else parser.get_parsed_content(child)
    return resolved


@pytest.mark.parametrize("target", list(NETWORKS))
def test_every_definition_of_a_network_builds_the_same_one(target):
    config_id, defined = NETWORKS[target]
    built = {}
    for files in [merge for merges in defined.values() for merge in merges]:
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / f) for f in files])
        built["+".join(files)] = _constructor(parser, config_id)
    first = next(iter(built.values()))
    assert all(arguments == first for arguments in built.values()), built


def test_python_default_label_threshold_is_the_configs():
    """A Python caller of scripts.generation gets the labels a config user gets."""
    from tests.helpers import bundle_scripts_modules

    with bundle_scripts_modules(BUNDLE, "generation") as (generation,):
        default = generation.DEFAULT_LABEL_THRESHOLD
    for name in ("inference.json", "train.json", "train_segmentation.json"):
        assert json.loads((CONFIGS / name).read_text())["label_threshold"] == default, name
