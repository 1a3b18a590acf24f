"""In-process checks of the bundle's small pieces: label statistics, transforms, the SPADE wrapper and losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.brain_spade3d.spade3d_helpers import LESION_NAMES, bundle_module


def test_sampled_pathologies_follow_the_seed_and_the_training_ranges(tmp_path: Path) -> None:
    stats = tmp_path / "label_stats.json"
    patterns = [[0.0, 0.4, 0.5, 0.6], [0.7, 0.0, 0.0, 0.0]]
    ranges = {"wmh": [0.2, 0.3], "tumour": [0.5, 0.6], "edema": [0.0, 0.0], "enhancing": [0.1, 0.9]}
    stats.write_text(
        json.dumps(
            {
                "scale_factor": 1.0,
                "lesion_fraction_max": [1, 1, 1, 1],
                "lesion_ranges": ranges,
                "lesion_patterns": patterns,
            }
        )
    )
    with bundle_module("labels") as labels:
        drawn = labels.resolve_pathologies({"wmh": "sample", "tumour": [0.1, "sample", 0.3]}, LESION_NAMES, 3, 5, stats)
        again = labels.resolve_pathologies({"tumour": [0.1, "sample", 0.3], "wmh": "sample"}, LESION_NAMES, 3, 5, stats)
        alone = labels.resolve_pathologies({"wmh": "sample", "tumour": "sample"}, LESION_NAMES, 1, 6, stats)
        whole = labels.resolve_pathologies("sample", LESION_NAMES, 8, 0, stats)
        healthy = labels.resolve_pathologies({}, LESION_NAMES, 2, 0)
        with pytest.raises(ValueError, match=r"cannot sample \['edema'\]: no training subject had it"):
            labels.resolve_pathologies({"edema": "sample"}, LESION_NAMES, 1, 0, stats)
    assert torch.equal(drawn, again)  # the order of the mapping does not matter
    assert torch.equal(drawn[1], alone[0])  # sample 1 of seed 5 is sample 0 of seed 6
    assert ((drawn[:, 0] >= 0.2) & (drawn[:, 0] <= 0.3)).all() and drawn[:, 2:].eq(0).all()
    assert drawn[:, 1].tolist()[::2] == pytest.approx([0.1, 0.3]) and 0.5 <= drawn[1, 1] <= 0.6
    assert all(row in [pytest.approx(p) for p in patterns] for row in whole.tolist())
    assert torch.equal(healthy, torch.zeros(2, 4))


def test_measure_lesions_counts_argmax_and_partial_volumes() -> None:
    probabilities = np.zeros((10, 4, 4, 4), dtype=np.float32)
    probabilities[3] = 1.0  # white matter everywhere
    probabilities[3, 0, 0, :2], probabilities[6, 0, 0, :2] = 0.2, 0.8  # two WMH voxels
    probabilities[3, 1, 1, 1], probabilities[7, 1, 1, 1] = 0.7, 0.3  # a tumour trace, never the argmax
    with bundle_module("labels") as labels:
        measured = labels.measure_lesions(probabilities, 0.5, [0.1, 0.1, 0.1, 0.1], min_volume_ml=0.6)
    assert measured["wmh"] == {
        "present": True,
        "volume_ml": 1.0,
        "partial_volume_ml": pytest.approx(0.8),
        "measured_condition": pytest.approx(0.8 / 32 / 0.1, abs=1e-4),
    }
    assert measured["tumour"]["present"] is False and measured["tumour"]["partial_volume_ml"] == pytest.approx(0.15)
    assert measured["edema"]["volume_ml"] == 0.0


def test_complete_background_restores_a_partition_of_unity() -> None:
    maps = torch.zeros(10, 3, 3, 3)
    maps[2] = 0.5
    maps[3, 0] = 0.9  # overlapping foreground (sum 1.4) is renormalised
    with bundle_module("transforms") as transforms:
        fixed = transforms.CompleteBackgroundd("label")({"label": maps})["label"]
    torch.testing.assert_close(fixed.sum(0), torch.ones(3, 3, 3))
    assert fixed[0, 1:].eq(0.5).all() and fixed[0, 0].eq(0).all() and (fixed >= 0).all()


def test_contrast_datalist_has_one_item_per_subject_and_contrast() -> None:
    items = [
        {
            "subject": "a",
            "image": "a_T1w",
            "t2": "a_T2w",
            "flair": "a_FLAIR",
            "label": "a_label",
            "lesion": [0, 0, 0, 0],
        }
    ]
    with bundle_module("transforms") as transforms:
        expanded = transforms.contrast_datalist(items, {"T1w": "image", "T2w": "t2", "FLAIR": "flair"})
        with pytest.raises(KeyError, match="no 'flair' path"):
            transforms.contrast_datalist(
                [{"subject": "b", "image": "x", "t2": "y"}], {"T1w": "image", "FLAIR": "flair"}
            )
    assert [(e["image"], e["contrast"], e["contrast_name"]) for e in expanded] == [
        ("a_T1w", [1.0, 0.0, 0.0], "T1w"),
        ("a_T2w", [0.0, 1.0, 0.0], "T2w"),
        ("a_FLAIR", [0.0, 0.0, 1.0], "FLAIR"),
    ]
    assert all("t2" not in e and "flair" not in e and e["label"] == "a_label" for e in expanded)


def test_spade_generator_keeps_its_arguments_and_decodes_like_monai() -> None:
    channels = [4, 8, 8]
    with bundle_module("networks") as networks:
        generator = networks.SPADEGenerator(
            3, 1, 1, 13, [16, 16, 16], channels, z_dim=6, spade_intermediate_channels=4
        ).eval()
        seg = networks.spade_input(torch.rand(2, 10, 16, 16, 16), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
        with pytest.raises(ValueError, match="needs a style code"):
            generator.decode(seg, None)
        with pytest.raises(ValueError, match="is_vae must be True"):
            networks.SPADEGenerator(3, 1, 1, 13, [16, 16, 16], channels, z_dim=6, is_vae=False)
    assert channels == [4, 8, 8]  # MONAI's SPADENet reverses and extends the list it is given
    assert seg.shape == (2, 13, 16, 16, 16) and seg[1, 12].eq(1).all() and seg[1, 10].eq(0).all()
    z = torch.randn(2, 6)
    with torch.no_grad():
        torch.testing.assert_close(generator.decode(seg, z), generator.decoder(seg, z))
        assert generator.encode_mean(torch.rand(2, 1, 16, 16, 16)).shape == (2, 6)


def test_feature_matching_is_zero_for_equal_features_and_detaches_the_target() -> None:
    real = [[torch.ones(1, 2, 3, requires_grad=True)], [torch.zeros(1, 4, requires_grad=True)]]
    fake = [[torch.full((1, 2, 3), 3.0, requires_grad=True)], [torch.zeros(1, 4, requires_grad=True)]]
    with bundle_module("spade_training") as spade_training:
        loss_fn = spade_training.FeatureMatchingLoss()
        assert float(loss_fn(real, real).detach()) == 0.0
        loss = loss_fn(fake, real)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(1.0)  # mean of the per-layer L1 distances (2 and 0)
    assert real[0][0].grad is None and fake[0][0].grad is not None


def test_class_channel_exposes_a_lesion_class_the_mean_dice_hides() -> None:
    from monai.metrics import DiceMetric

    label = torch.zeros(10, 4, 4, 4)
    label[3] = 1.0
    label[3, 0, 0, :2], label[6, 0, 0, :2] = 0.0, 1.0  # two WMH voxels
    prediction = torch.zeros_like(label)
    prediction[3] = 1.0  # every voxel white matter: the WMH class collapsed
    output = {"pred": [prediction], "label": [label]}
    with bundle_module("labels") as labels:
        select_wmh = labels.class_channel(lambda out: (out["pred"], out["label"]), 6)
        select_wm = labels.class_channel(lambda out: (out["pred"], out["label"]), 3)
        wmh_pred, wmh_label = select_wmh(output)
        wm_pred, wm_label = select_wm(output)
    assert wmh_pred[0].shape == (1, 4, 4, 4) and torch.equal(wmh_label[0][0], label[6])
    assert DiceMetric()(torch.stack(wmh_pred), torch.stack(wmh_label)).item() == 0.0
    assert DiceMetric()(torch.stack(wm_pred), torch.stack(wm_label)).item() > 0.98


@pytest.mark.parametrize(
    "make_loss",
    [
        lambda: __import__("monai").losses.DiceCELoss(softmax=True, weight=torch.tensor([1.0, 4.0])),
        lambda: __import__("monai").losses.DiceLoss(softmax=True, weight=[1.0, 4.0]),
        lambda: torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 4.0])),
    ],
    ids=["DiceCELoss", "DiceLoss", "CrossEntropyLoss"],
)
def test_evaluation_report_names_the_class_weights_of_any_segmenter_loss(make_loss) -> None:
    loss = make_loss()
    with bundle_module("evaluation.metrics") as metrics:
        described = metrics.describe_loss(loss)
        unweighted = metrics.describe_loss(torch.nn.MSELoss())
    assert described == {"name": type(loss).__name__, "class_weights": [1.0, 4.0]}
    assert unweighted == {"name": "MSELoss", "class_weights": None}
