"""The downstream proof at tiny size: segmenters trained on synthetic pairs, on real patches and fine-tuned, then scored."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tof_mra_vessel_gan.tof_helpers import BUNDLE, run_tiny


def _train(datalist, tmp_path, **overrides):
    overrides = {
        "dataset_dir": str(datalist.parent),
        "output_dir": str(tmp_path / "logs"),
        "max_epochs": 1,
        **overrides,
    }
    return run_tiny("train_segmentation.json", overrides)


@pytest.fixture(scope="module")
def segmenters(tof_datalist, vivid_generator, tmp_path_factory):
    """Weights trained the three ways of the paper: synthetic only, real only, synthetic then 1 real patient."""
    root = tmp_path_factory.mktemp("segmenters")
    paths = {name: root / f"segmenter_{name}.pt" for name in ("synthetic", "real", "finetuned")}
    logs = {
        "synthetic": _train(
            tof_datalist,
            root,
            train_source="synthetic",
            generator_path=str(vivid_generator),
            segmenter_path=str(paths["synthetic"]),
        ),
        "real": _train(tof_datalist, root, train_source="real", real_patients=2, segmenter_path=str(paths["real"])),
        # learning rate 0 keeps the parameters where init_weights put them, which the test checks
        "finetuned": _train(
            tof_datalist,
            root,
            train_source="real",
            real_patients=1,
            init_weights=str(paths["synthetic"]),
            segmenter_path=str(paths["finetuned"]),
            learning_rate=0.0,
        ),
    }
    return paths, {name: result.stdout + result.stderr for name, result in logs.items()}


def test_segmenters_train_from_synthetic_or_real_pairs(segmenters):
    paths, logs = segmenters
    for name, path in paths.items():
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert any(key.startswith("network.") for key in state), name  # BasicUNet inside the z-scoring wrapper
        assert "val_pooled_dice" in logs[name] and "val_mean_dice" in logs[name]
    assert "generating pairs" in logs["synthetic"] and "generating pairs" not in logs["real"]
    # fine-tuning is validated before its first step, so a run that only loses keeps the pre-trained
    # weights; random initial weights are never a candidate
    assert "Epoch[0] Metrics" in logs["finetuned"] and "Epoch[0] Metrics" not in logs["real"]
    synthetic, real, finetuned = (torch.load(paths[n], map_location="cpu", weights_only=True) for n in paths)
    assert any(not torch.equal(synthetic[key], real[key]) for key in synthetic)
    # fine-tuning started from the synthetic-trained weights (batch-norm statistics still move)
    parameters = [key for key in synthetic if "running_" not in key and "num_batches" not in key]
    assert parameters and all(torch.equal(synthetic[key], finetuned[key]) for key in parameters)


def test_evaluate_reports_dice_and_hd95_per_held_out_patient(segmenters, tof_datalist, tmp_path):
    paths, _ = segmenters
    overrides = {
        "dataset_dir": str(tof_datalist.parent),
        "output_dir": str(tmp_path),
        "segmenters": {name: str(path) for name, path in paths.items()},
    }
    run_tiny(["inference.json", "evaluate.json"], overrides)
    report = json.loads((tmp_path / "segmentation_metrics.json").read_text())
    test_patients = [item["patient"] for item in json.loads(tof_datalist.read_text())["test"]]
    assert report["patients"] == test_patients and report["threshold"] == 0.5
    assert list(report["segmenters"]) == ["synthetic", "real", "finetuned"]
    # provenance: the shipped version and generator, the machine, and weights named without this machine's paths
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert report["bundle_version"] == metadata["version"] and report["machine"]
    assert report["generator"] == "models/model.pt"
    assert report["generator_sha256"] == hashlib.sha256((BUNDLE / "models" / "model.pt").read_bytes()).hexdigest()
    assert {result["weights"] for result in report["segmenters"].values()} == {path.name for path in paths.values()}
    for result in report["segmenters"].values():
        assert [p["patient"] for p in result["patients"]] == test_patients
        for patient in result["patients"]:
            assert 0.0 <= patient["dice"] <= 1.0
            assert patient["label_voxels"] > 0
            # the 95HD is undefined (null) only when nothing was predicted
            assert (patient["hd95_mm"] is None) == (patient["predicted_voxels"] == 0)
            assert patient["hd95_mm"] is None or patient["hd95_mm"] >= 0.0
        assert result["dice"]["n"] == len(test_patients)
    table = (tmp_path / "segmentation_metrics.md").read_text()
    assert "| segmenter | DSC (mean ± sd) | 95HD mm (mean ± sd) | patients |" in table
    assert all(f"| {name} |" in table for name in paths)
    # the picture: first patient's image and label, then one tile per segmenter, side by side
    x, y, _ = json.loads(tof_datalist.read_text())["spatial_shape"]
    with Image.open(tmp_path / "segmentation_metrics.png") as picture:
        assert picture.mode == "RGB"
        assert picture.width == (2 + len(paths)) * x + (1 + len(paths)) * 4 and picture.height > y
    assert not list(tmp_path.glob(".tmp-*"))


def test_error_projection_colours_found_false_and_missed_vessels(bundle_scripts):
    label = np.zeros((4, 5, 3))
    label[0, 0, 1] = label[1, 1, 2] = 1  # two vessels
    prediction = np.zeros_like(label)
    prediction[0, 0, 0] = 1  # found (projection along the last, axial axis)
    prediction[2, 2, 1] = 1  # false positive; vessel (1, 1) missed
    rgb = np.asarray(bundle_scripts.segmentation.overlap_mip(prediction, label))
    # rows run anterior to posterior (y reversed), columns left to right (x)
    assert rgb.shape == (5, 4, 3)
    assert tuple(rgb[4, 0]) == (255, 255, 255)
    assert tuple(rgb[2, 2]) == (255, 38, 38)
    assert tuple(rgb[3, 1]) == (51, 115, 255)
    assert rgb[0, 3].max() == 0


def test_evaluate_names_missing_segmenter_weights(tof_datalist, tmp_path):
    missing = tmp_path / "nothing.pt"
    overrides = {
        "dataset_dir": str(tof_datalist.parent),
        "output_dir": str(tmp_path / "eval"),
        "segmenters": {"real": str(missing)},
    }
    result = run_tiny(["inference.json", "evaluate.json"], overrides, check=False)
    assert result.returncode != 0 and "segmenter weights not found" in result.stderr and str(missing) in result.stderr
    assert not (tmp_path / "eval").exists()


def test_segmentation_loss_penalises_false_positives_in_vessel_free_patches():
    """Half of the training patches hold few or no vessels; the configured loss must push their false
    positives down (a per-patch soft Dice gives an empty patch almost no gradient: measured 156x
    over-segmentation on such patches of a held-out phantom)."""
    from monai.bundle import ConfigParser
    from monai.losses import DiceLoss

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train_segmentation.json"))
    configured = parser.get_parsed_content("loss", instantiate=True)

    def false_positive_gradient(loss_function: torch.nn.Module) -> float:
        logits = torch.zeros(2, 1, 8, 8)
        logits[1] = 3.0  # sample 1 predicts vessel everywhere
        logits.requires_grad_(True)
        labels = torch.zeros(2, 1, 8, 8)
        labels[0, 0, 2:4, 2:4] = 1.0  # sample 0 has a small vessel, sample 1 none
        loss_function(logits, labels).backward()
        return logits.grad[1].mean().item()  # > 0: gradient descent lowers the false-positive logits

    per_patch = false_positive_gradient(DiceLoss(sigmoid=True))
    assert false_positive_gradient(configured) > max(1000 * abs(per_patch), 1e-6)


def test_saved_weights_are_chosen_by_the_dice_over_all_validation_pixels():
    """The checkpoint kept is the one the whole-volume DSC would prefer: a per-patch mean lets a patch with
    four vessel pixels weigh as much as one with sixty (measured: it picked epoch 1 of a fine-tuning run)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train_segmentation.json"))
    key_metric = parser.get_parsed_content("validate#key_metric", instantiate=True)
    assert list(key_metric) == ["val_pooled_dice"]
    metric = key_metric["val_pooled_dice"].metric_fn

    labels = torch.zeros(2, 1, 10, 10)
    labels[0, 0, :2, :2] = 1.0  # 4 vessel pixels, all found
    labels[1, 0, :6, :] = 1.0  # 60 vessel pixels, 20 found
    predictions = labels.clone()
    predictions[1, 0, 2:6, :] = 0.0
    metric(y_pred=predictions[:1], y=labels[:1])  # two batches, as the evaluator feeds them
    metric(y_pred=predictions[1:], y=labels[1:])
    pooled = 2 * 24 / (24 + 64)  # per-patch mean would be (1.0 + 0.5) / 2
    assert float(metric.aggregate()[0]) == pytest.approx(pooled)
