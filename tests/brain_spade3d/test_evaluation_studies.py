"""The evaluation's studies in-process, on stand-in generators whose outputs are known: seeds, sections, checks.

The stand-in stage 1 draws a block of every requested lesion except enhancing tumour, so the presence rates
are known; both stand-ins record the seeds they are given, so each study's seed stream can be checked.
"""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
import torch

from tests.brain_spade3d.spade3d_helpers import LESION_NAMES, bundle_module

LABEL_NAMES = ["background", "csf", "gm", "wm", "deep_gm", "brainstem", "wmh", "tumour", "edema", "enhancing"]
SHAPE = (8, 8, 8)
NEVER_DRAWN = "enhancing"


class StandInLabels:
    """Stage 1: white matter everywhere, a 2-voxel-thick slab per requested lesion but ``NEVER_DRAWN``.

    ``companions`` maps a lesion to one drawn beside it unasked (e.g. edema with every WMH request).
    """

    sampler = SimpleNamespace(num_inference_steps=3, guidance_scale=7.0)

    def __init__(self, companions: dict[str, str] | None = None) -> None:
        self.seeds: list[tuple[list[float], int]] = []  # (condition, seed) of every map drawn
        self.companions = companions or {}

    def __call__(self, condition: torch.Tensor, seeds: list[int], device: object, draw: int = 0) -> torch.Tensor:
        maps = torch.zeros(len(seeds), len(LABEL_NAMES), *SHAPE)
        maps[:, LABEL_NAMES.index("wm")] = 1.0
        for row, (values, seed) in enumerate(zip(condition.tolist(), seeds)):
            self.seeds.append((values, int(seed)))
            drawn = {name for name, value in zip(LESION_NAMES, values) if value > 0 and name != NEVER_DRAWN}
            drawn |= {self.companions[name] for name in drawn if name in self.companions}
            for index, name in enumerate(LESION_NAMES):
                if name in drawn:
                    maps[row, :, 2 * index : 2 * index + 2] = 0.0
                    maps[row, LABEL_NAMES.index(name), 2 * index : 2 * index + 2] = 1.0
        return maps


class StandInImages:
    """Stage 2: the class index scaled to [0, 1]; records the random-style seeds."""

    z_dim = 2

    def __init__(self) -> None:
        self.style_seeds: list[int] = []

    def random_style(self, seeds: list[int], device: object) -> torch.Tensor:
        self.style_seeds += [int(s) for s in seeds]
        return torch.zeros(len(seeds), self.z_dim)

    def style_of(self, image: torch.Tensor) -> torch.Tensor:
        return torch.zeros(image.shape[0], self.z_dim)

    def __call__(self, probabilities: torch.Tensor, contrast: str, style: torch.Tensor) -> torch.Tensor:
        return probabilities.argmax(1, keepdim=True).float() / (len(LABEL_NAMES) - 1)


def _item(lesion: list[float], generator: StandInLabels) -> dict:
    label = generator(torch.tensor([lesion]), [0], "cpu")[0]
    generator.seeds.clear()
    return {"label": label, "image": label.argmax(0, keepdim=True).float() / 9, "lesion": lesion}


HEALTHY, TUMOUR = [0.0] * 4, [0.0, 0.5, 0.5, 0.0]


def _evaluation() -> contextlib.AbstractContextManager[ModuleType]:
    return bundle_module("evaluation")


def _pieces(evaluation: ModuleType) -> SimpleNamespace:
    """Stand-in generators, a 3-split cohort (2 healthy + 1 tumour to train on, 1 tumour case per test split)."""
    from monai.engines import SupervisedTrainer
    from monai.losses import DiceCELoss

    labels, images = StandInLabels(), StandInImages()
    cohort = {
        "training": [_item(HEALTHY, labels), _item(HEALTHY, labels), _item(TUMOUR, labels)],
        "validation": [_item(TUMOUR, labels)],
        "test": [_item(TUMOUR, labels)],
    }
    splits = evaluation.EvaluationSplits({name: (lambda items=items: items) for name, items in cohort.items()})
    pairs = evaluation.SegmentationPairs(splits, {"T1w": "image"}, "T1w", labels, images)
    trainer = functools.partial(
        SupervisedTrainer,
        device=torch.device("cpu"),
        max_epochs=1,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        decollate=False,
    )
    optimizer = functools.partial(torch.optim.Adam, lr=1e-2)
    network = functools.partial(torch.nn.Conv3d, 1, len(LABEL_NAMES), 3, padding=1)
    training = evaluation.SegmenterTraining(network, trainer, optimizer, 2, LABEL_NAMES)
    measure = evaluation.presence.LesionMeasure(1.0, [1.0] * 4, 0.5, LABEL_NAMES, LESION_NAMES)
    return SimpleNamespace(
        labels=labels, images=images, splits=splits, pairs=pairs, training=training, measure=measure, trainer=trainer
    )


def _presence(evaluation: ModuleType, pieces: SimpleNamespace, conditions: dict, **settings: object) -> object:
    return evaluation.LesionPresenceStudy(pieces.labels, conditions, pieces.measure, **settings)


def test_seed_streams_are_reproducible_distinct_and_prefix_stable() -> None:
    with _evaluation() as evaluation:
        first = evaluation.stream_seeds(0, "lesion_presence/wmh", 5)
        assert first == evaluation.stream_seeds(0, "lesion_presence/wmh", 5)
        assert evaluation.stream_seeds(0, "lesion_presence/wmh", 3) == first[:3]  # sample i keeps its seed
        assert len(set(first)) == 5 and all(0 <= s < 2**32 for s in first)
        assert set(first).isdisjoint(evaluation.stream_seeds(0, "lesion_presence/tumour", 5))
        assert set(first).isdisjoint(evaluation.stream_seeds(1, "lesion_presence/wmh", 5))
        with pytest.raises(ValueError, match="seed=-1 must be a non-negative integer"):
            evaluation.stream_seeds(-1, "lesion_presence/wmh", 1)


def test_adding_a_presence_setting_keeps_every_other_settings_seeds() -> None:
    with _evaluation() as evaluation:
        pieces = _pieces(evaluation)
        alone = _presence(evaluation, pieces, {"wmh": [0.5, 0, 0, 0]}, samples=5, batch_size=2)
        alone.run()
        wmh_alone = [seed for _, seed in pieces.labels.seeds]
        pieces.labels.seeds.clear()
        conditions = {"healthy": HEALTHY, "wmh": [0.5, 0, 0, 0], "tumour": [0, 0.5, 0.5, 0.5]}
        _presence(evaluation, pieces, conditions, samples=5, batch_size=3).run()  # another batch size too
        by_setting = {name: [s for c, s in pieces.labels.seeds if c == value] for name, value in conditions.items()}
        expected = evaluation.stream_seeds(0, "lesion_presence/wmh", 5)
    assert wmh_alone == by_setting["wmh"] == expected
    assert set(by_setting["healthy"]).isdisjoint(by_setting["wmh"]) and len(by_setting["tumour"]) == 5


def test_lesion_presence_rates_of_a_generator_that_never_draws_enhancing_tumour() -> None:
    conditions = {"healthy": HEALTHY, "wmh": [0.5, 0, 0, 0], "tumour": [0, 0.5, 0.5, 0.5]}
    with _evaluation() as evaluation:
        study = _presence(evaluation, _pieces(evaluation), conditions, samples=4, batch_size=3)
        report, protocol = study.run(), study.protocol()
    assert report["healthy"]["all_requested_present_rate"] is None and report["healthy"]["any_lesion_rate"] == 0.0
    assert report["wmh"]["all_requested_present_rate"] == 1.0 and report["wmh"]["n_samples"] == 4
    assert report["wmh"]["per_lesion"]["wmh"]["mean_volume_ml"] == 128.0  # a 2 x 8 x 8 slab of 1 ml voxels
    tumour = report["tumour"]["per_lesion"]
    assert report["tumour"]["all_requested_present_rate"] == 0.0  # enhancing asked for, never drawn
    assert tumour["tumour"]["present_rate"] == tumour["edema"]["present_rate"] == 1.0
    assert tumour["enhancing"]["present_rate"] == 0.0
    assert report["all_requested_present_rate"] == 0.5  # 4 of the 8 samples that request a lesion
    assert protocol["presence_samples"] == 4 and protocol["min_lesion_volume_ml"] == 0.5
    assert all(report[setting]["unrequested_lesion_rate"] == 0.0 for setting in conditions)


def test_lesions_drawn_unasked_count_as_unrequested_for_that_setting_only() -> None:
    conditions = {"healthy": HEALTHY, "wmh": [0.5, 0, 0, 0], "tumour": [0, 0.5, 0.5, 0.5]}
    with _evaluation() as evaluation:
        pieces = _pieces(evaluation)
        pieces.labels.companions = {"wmh": "edema", "tumour": "edema"}  # edema comes with WMH and with tumour
        report = _presence(evaluation, pieces, conditions, samples=3, batch_size=2).run()
    assert report["wmh"]["unrequested_lesion_rate"] == 1.0
    assert report["wmh"]["per_lesion"]["edema"]["present_rate"] == 1.0
    assert report["wmh"]["all_requested_present_rate"] == 1.0  # the extra lesion does not hide the asked one
    assert report["tumour"]["unrequested_lesion_rate"] == 0.0  # edema was asked for there
    assert report["healthy"]["unrequested_lesion_rate"] == report["healthy"]["any_lesion_rate"] == 0.0


def test_segmentation_studies_sample_from_their_own_streams_and_report_every_arm(tmp_path: Path) -> None:
    distances = []

    def distance(generated: list, real: list) -> dict:
        distances.append((len(generated), len(real)))
        return {"value": 1.0}

    with _evaluation() as evaluation:
        pieces = _pieces(evaluation)
        segmentation = evaluation.SegmentationStudy(pieces.pairs, pieces.training, "training", "test", 3, distance)
        pathology = evaluation.UnexpectedPathologyStudy(
            pieces.pairs, pieces.training, "training", ["validation", "test"], LESION_NAMES, 2
        )
        studies = {"segmentation": segmentation, "unexpected_pathology": pathology}
        report = evaluation.EvaluationReport(studies, tmp_path, metadata={"machine": "test"}).run()
        label_seeds = [seed for _, seed in pieces.labels.seeds]
        expected = evaluation.stream_seeds(0, "segmentation/synthetic_pairs", 3)
        expected += evaluation.stream_seeds(0, "unexpected_pathology/synthetic_tumour_pairs", 2)
    assert label_seeds == pieces.images.style_seeds == expected and len(set(expected)) == 5
    assert [c for c, _ in pieces.labels.seeds[3:]] == [TUMOUR, TUMOUR]  # conditioned on the training tumour
    assert list(report) == ["data", "protocol", "segmentation", "feature_distance", "unexpected_pathology", "machine"]
    assert json.loads((tmp_path / "evaluation.json").read_text()) == report
    assert distances == [(3, 3)] and report["feature_distance"] == {"value": 1.0}
    assert report["segmentation"]["real"]["n_training_pairs"] == 3 and report["segmentation"]["n_test_pairs"] == 1
    assert report["segmentation"]["synthetic"]["n_training_pairs"] == 3
    assert list(report["segmentation"]["real"]["dice"]) == LABEL_NAMES[1:]
    assert report["unexpected_pathology"]["n_tumour_cases"] == 2
    assert report["unexpected_pathology"]["healthy_only"]["n_training_pairs"] == 2
    assert report["unexpected_pathology"]["healthy_plus_synthetic_tumours"]["n_training_pairs"] == 4
    protocol = report["protocol"]
    assert protocol["studies"] == ["segmentation", "unexpected_pathology"]
    assert protocol["segmenter_trainer"] == "SupervisedTrainer" and protocol["segmenter_optimizer"] == "Adam"
    assert protocol["segmenter_epochs"] == 1 and protocol["segmenter_learning_rate"] == 0.01


def test_a_segmenter_training_is_reproduced_by_its_streams() -> None:
    with _evaluation() as evaluation:
        pieces = _pieces(evaluation)
        real = [pieces.pairs.real(item) for item in pieces.splits["training"]]
        flipped = [{key: value.flip(-1) for key, value in pair.items()} for pair in real]
        train = real + flipped  # 6 distinct pairs, one per step: another shuffle is another sequence of updates
        training = evaluation.SegmenterTraining(
            pieces.training.network, pieces.trainer, pieces.training.optimizer, 1, LABEL_NAMES
        )

        def weights(init: str, run: str) -> torch.Tensor:
            network = training.fit(train, evaluation.seed_stream(0, init), evaluation.seed_stream(0, run))
            return torch.cat([p.detach().flatten() for p in network.parameters()])

        first, again = weights("init", "run"), weights("init", "run")
        other_init, other_run = weights("other init", "run"), weights("init", "other run")
    assert torch.equal(first, again)
    assert not torch.equal(first, other_init) and not torch.equal(first, other_run)


def test_the_report_runs_the_selected_studies_only_in_its_own_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with _evaluation() as evaluation:
        pieces = _pieces(evaluation)
        presence = _presence(evaluation, pieces, {"wmh": [0.5, 0, 0, 0]}, samples=2)
        similarity = evaluation.SimilarityStudy(pieces.images, pieces.splits, "test", {"T1w": "image"}, LABEL_NAMES)
        studies = {"lesion_presence": presence, "similarity": similarity}
        both = evaluation.EvaluationReport(studies, tmp_path / "both", ["similarity", "lesion_presence"]).run()
        progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("evaluation study")]
        alone = evaluation.EvaluationReport(studies, tmp_path / "alone", "lesion_presence").run()
        with pytest.raises(ValueError, match=r"studies=\['lesion_presence', 'typo'\] must name one or more of"):
            evaluation.EvaluationReport(studies, tmp_path / "typo", ["lesion_presence", "typo"])
    assert list(both) == ["data", "protocol", "lesion_presence", "similarity"]
    assert progress == ["evaluation study 1/2: lesion_presence", "evaluation study 2/2: similarity"]
    assert (
        list(alone) == ["data", "protocol", "lesion_presence"] and alone["lesion_presence"] == both["lesion_presence"]
    )
    assert "similarity_style" in both["protocol"] and "similarity_style" not in alone["protocol"]
    assert both["similarity"]["T1w"]["mse"] == 0.0 and not (tmp_path / "typo").exists()


def test_a_setting_two_studies_record_differently_is_refused_before_any_run(tmp_path: Path) -> None:
    with _evaluation() as evaluation:
        pieces = _pieces(evaluation)
        first = _presence(evaluation, pieces, {"wmh": [0.5, 0, 0, 0]}, samples=2)
        second = _presence(evaluation, pieces, {"wmh": [0.5, 0, 0, 0]}, samples=3)
        with pytest.raises(ValueError, match="protocol entry 'presence_samples' is 2 in study 'a' but 3 in 'b'"):
            evaluation.EvaluationReport({"a": first, "b": second}, tmp_path)
    assert pieces.labels.seeds == []


def _bad_settings() -> list:
    """(what to build, its bad setting, the error): every check a study makes on its settings, before any work."""
    cases = [
        ("presence", {"samples": 0}, "presence_samples=0 must be a positive integer"),
        ("presence", {"batch_size": True}, "presence_batch_size=True must be a positive integer"),
        ("presence", {"conditions": {"wmh": [1.5, 0, 0, 0]}}, "presence_conditions['wmh']=[1.5, 0, 0, 0] must hold 4"),
        ("presence", {"conditions": {"wmh": [0.5]}}, "presence_conditions['wmh']=[0.5] must hold 4 fractions"),
        ("presence", {"seed": -1}, "seed=-1 must be a non-negative integer"),
        ("similarity", {"style": "mean"}, "similarity_style='mean' is not one of ['image', 'random']"),
        ("similarity", {"kernel_size": 0}, "ssim_kernel_size=0 must be a positive integer"),
        ("similarity", {"split": "tset"}, "similarity_split='tset' is not one of the splits"),
        ("pairs", {"contrast": "PD"}, "segmentation_contrast='PD' is not one of ['T1w']"),
        ("segmentation", {"n_synthetic": 0}, "n_synthetic=0 must be a positive integer"),
        ("segmentation", {"train_split": "train"}, "segmentation_train_split='train' is not one of the splits"),
        ("segmentation", {"test_split": "held-out"}, "segmentation_test_split='held-out' is not one of the splits"),
        ("pathology", {"n_synthetic_tumour": -1}, "n_synthetic_tumour=-1 must be a positive integer"),
        ("pathology", {"test_splits": ["test", "val"]}, "pathology_test_splits='val' is not one of the splits"),
        ("pathology", {"test_splits": []}, "pathology_test_splits is empty"),
        ("pathology", {"lesion_names": ["wmh", "glioma"]}, "lesion_names ['wmh', 'glioma'] has no 'tumour'"),
        ("training", {"batch_size": 0}, "segmenter_batch_size=0 must be a positive integer"),
        ("training", {"bind": {"network": None}}, "segmenter_trainer binds ['network']: each training sets"),
        ("training", {"bind": {"max_epochs": 0}}, "segmenter_trainer#max_epochs=0 must be a positive integer"),
        ("training", {"trainer": "not a partial"}, 'segmenter_trainer must be a component with "_mode_": "callable"'),
    ]
    return [pytest.param(*case, id=f"{case[0]}-{next(iter(case[1]))}-{i}") for i, case in enumerate(cases)]


@pytest.mark.parametrize(("kind", "settings", "message"), _bad_settings())
def test_a_bad_setting_is_refused_naming_its_key(kind: str, settings: dict, message: str) -> None:
    with _evaluation() as evaluation:
        pieces = _pieces(evaluation)
        builders = {
            "presence": lambda conditions={"wmh": [0.5, 0, 0, 0]}, **s: _presence(evaluation, pieces, conditions, **s),
            "similarity": lambda split="test", **s: evaluation.SimilarityStudy(
                pieces.images, pieces.splits, split, {"T1w": "image"}, LABEL_NAMES, **s
            ),
            "pairs": lambda contrast: evaluation.SegmentationPairs(
                pieces.splits, {"T1w": "image"}, contrast, pieces.labels, pieces.images
            ),
            "segmentation": lambda train_split="training", test_split="test", **s: evaluation.SegmentationStudy(
                pieces.pairs, pieces.training, train_split, test_split, **s
            ),
            "pathology": lambda test_splits=("test",), lesion_names=LESION_NAMES, **s: (
                evaluation.UnexpectedPathologyStudy(
                    pieces.pairs, pieces.training, "training", test_splits, lesion_names, **s
                )
            ),
            "training": lambda batch_size=2, bind=None, trainer=None: evaluation.SegmenterTraining(
                pieces.training.network,
                trainer if trainer is not None else functools.partial(pieces.trainer, **(bind or {})),
                pieces.training.optimizer,
                batch_size,
                LABEL_NAMES,
            ),
        }
        with pytest.raises(ValueError) as error:
            builders[kind](**settings)
    assert message in str(error.value)
