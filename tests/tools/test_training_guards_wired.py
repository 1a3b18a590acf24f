"""Every training config of every bundle uses the training guards (issue 11): checked data, finite losses, safe checkpoints."""

from __future__ import annotations

import json

import pytest
from monai.bundle import ConfigParser

from tests.helpers import BUNDLES_DIR

#: (bundle, config, where its checkpoint objects and saver live, the datalist check's condition (key, length) or None)
TRAINING = [
    ("brain_ldm", "train_autoencoder.json", ("checkpoint_objects", "checkpoint_saver"), None),
    ("brain_ldm", "train_diffusion.json", ("checkpoint_objects", "checkpoint_saver"), ("condition", 4)),
    ("brain_spade3d", "train_label_autoencoder.json", ("checkpoint_objects", "checkpoint_saver"), None),
    ("brain_spade3d", "train_label_diffusion.json", ("checkpoint_objects", "checkpoint_saver"), ("lesion", 4)),
    ("brain_spade3d", "train_image_generator.json", ("checkpoint_objects", "checkpoint_saver"), None),
    ("tof_mra_vessel_gan", "train.json", ("train#checkpoint_objects", "train#checkpoint_handlers#1"), None),
]


def _parser(bundle: str, config: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / bundle / "configs" / config))
    return parser


@pytest.mark.parametrize(("bundle", "config", "checkpointing", "condition"), TRAINING)
def test_training_configs_check_data_stop_on_nan_and_checkpoint_safely(
    bundle, config, checkpointing, condition
) -> None:
    parser = _parser(bundle, config)
    handlers = [h["_target_"] for h in parser["train"]["handlers"]]
    assert "scripts.common.stopping.StopOnNonFiniteLoss" in handlers
    objects, saver = checkpointing
    assert parser[objects]["random_states"]["_target_"] == "scripts.common.checkpoints.RandomStates"
    assert parser[saver]["_target_"] == "scripts.common.checkpoints.AtomicCheckpointSaver"
    if bundle == "tof_mra_vessel_gan":  # the patch files are checked by scripts.data when the data is read
        assert "scripts.data.load_patch_pairs" in parser["train"]["data"]
        return
    assert parser["initialize"].index("$@data_check()") < parser["initialize"].index(
        "$@checkpoint_loader.attach(@train#trainer)"
    )
    check = parser["data_check"]
    assert check["_target_"] == "scripts.common.datalist.DatalistCheck" and check["image_shape"] == "@data_shape"
    assert parser.get_parsed_content("data_shape") == parser.get_parsed_content("spatial_shape")
    assert parser.get_parsed_content("data_spacing_mm") == 4.0
    if condition is None:
        assert "condition_key" not in check
    else:
        assert check["condition_key"] == condition[0]
        assert parser.get_parsed_content("data_check#condition_length") == condition[1]
        assert check["condition_range"] == [0.0, 1.0]  # what scripts/conditions.py and scripts/labels.py accept
    overlay = json.loads((BUNDLES_DIR / bundle / "configs" / f"multi_gpu_{config}").read_text())
    assert "$@data_check()" in overlay["initialize"]


def test_segmentation_training_stops_on_nan_and_writes_its_best_weights_atomically() -> None:
    parser = _parser("tof_mra_vessel_gan", "train_segmentation.json")
    handlers = {h["_target_"]: h for h in parser["train"]["handlers"]}
    assert "scripts.common.stopping.StopOnNonFiniteLoss" in handlers
    # the best validated weights are saved in the run folder and reach segmenter_path only on a finish
    assert handlers["scripts.common.weights.PromoteBestWeights"]["path"] == "@segmenter_path"
    assert "@output_dir" in parser["ckpt_dir"]
    savers = [h for h in parser["validate"]["handlers"] if "CheckpointSaver" in h["_target_"]]
    assert [h["_target_"] for h in savers] == ["scripts.common.checkpoints.AtomicCheckpointSaver"]
