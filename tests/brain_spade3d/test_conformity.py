"""Label redraws in-process, on a stand-in stage 1 whose mismatches are known from the seed it is given.

The stand-in draws every requested lesion; a first draw (a seed that is no earlier sample's redraw seed) also carries the
companion lesions of ``FirstDrawCompanions``, a redraw does not, unless told to mismatch always.
"""

from __future__ import annotations

import pytest
import torch

from tests.brain_spade3d.spade3d_helpers import LESION_NAMES, bundle_module
from tests.brain_spade3d.test_evaluation_studies import LABEL_NAMES, StandInLabels

WMH, HEALTHY = [0.5, 0.0, 0.0, 0.0], [0.0] * 4


class FirstDrawCompanions(StandInLabels):
    """Edema beside every WMH request on a first draw; on redraws too when ``always`` is set."""

    def __init__(self, draw_seed: object, always: bool = False) -> None:
        super().__init__(companions={"wmh": "edema"})
        self.always = always
        self.calls: list[list[int]] = []
        self.redraw_seeds: set[int] = set()  # the seeds of later draws of every sample seen so far
        self.draw_seed = draw_seed

    def __call__(self, condition: torch.Tensor, seeds: list[int], device: object) -> torch.Tensor:
        self.calls.append([int(s) for s in seeds])
        first = [s for s in seeds if int(s) not in self.redraw_seeds or self.always]
        self.redraw_seeds |= {self.draw_seed(int(s), k) for s in first for k in range(1, 9)}
        self.companions = {"wmh": "edema"}
        with_companion = super().__call__(condition, seeds, device)
        self.companions = {}
        plain = super().__call__(condition, seeds, device)
        self.seeds = self.seeds[: len(self.seeds) - 2 * len(seeds)]
        return torch.stack([with_companion[b] if seeds[b] in first else plain[b] for b in range(len(seeds))])


def _redraw(max_draws: int) -> object:
    with bundle_module("conformity") as conformity, bundle_module("measures") as measures:
        measure = measures.LesionMeasure(1.0, [1.0] * 4, 0.5, LABEL_NAMES, LESION_NAMES)
        return conformity.LabelRedraw(measure, max_draws), conformity.draw_seed


def test_a_map_with_an_unrequested_lesion_is_redrawn_and_a_conforming_one_kept() -> None:
    redraw, draw_seed = _redraw(4)
    labels = FirstDrawCompanions(draw_seed)
    maps, records = redraw(labels, torch.tensor([WMH, HEALTHY]), [3, 4], "cpu")
    assert labels.calls == [[3, 4], [draw_seed(3, 1)]]  # only the mismatched sample is drawn again
    assert records[0] == {
        "draws": 2,
        "max_draws": 4,
        "kept_draw": 1,
        "seed": draw_seed(3, 1),
        "conforms": True,
        "missing": [],
        "unrequested": [],
        "unrequested_ml": 0.0,
    }
    assert records[1]["draws"] == 1 and records[1]["kept_draw"] == 0 and records[1]["seed"] == 4
    assert maps[0, LABEL_NAMES.index("edema")].sum() == 0 and maps[0, LABEL_NAMES.index("wmh")].sum() > 0


def test_when_no_draw_conforms_the_best_draw_is_kept_and_flagged() -> None:
    redraw, draw_seed = _redraw(3)
    maps, records = redraw(FirstDrawCompanions(draw_seed, always=True), torch.tensor([WMH]), [0], "cpu")
    assert records[0]["draws"] == 3 and records[0]["conforms"] is False
    assert records[0]["unrequested"] == ["edema"] and records[0]["unrequested_ml"] == 128.0  # a 2 x 8 x 8 slab
    assert records[0]["kept_draw"] == 0  # later draws were no better: the first one stays


def test_a_missing_requested_lesion_counts_as_a_mismatch() -> None:
    redraw, _ = _redraw(2)
    enhancing = [0.0, 0.0, 0.0, 0.5]  # the stand-in never draws enhancing tumour
    _, records = redraw(StandInLabels(), torch.tensor([enhancing]), [0], "cpu")
    assert records[0]["missing"] == ["enhancing"] and records[0]["draws"] == 2 and not records[0]["conforms"]


def test_a_sample_redraws_the_same_whatever_its_batch() -> None:
    redraw, draw_seed = _redraw(4)
    conditions = torch.tensor([HEALTHY, WMH, WMH])
    batched, batch_records = redraw(FirstDrawCompanions(draw_seed), conditions, [0, 1, 2], "cpu")
    alone, alone_records = redraw(FirstDrawCompanions(draw_seed), conditions[1:2], [1], "cpu")
    assert torch.equal(batched[1], alone[0]) and batch_records[1] == alone_records[0]


def test_one_draw_delivers_the_first_draw_unchanged() -> None:
    redraw, draw_seed = _redraw(1)
    labels = FirstDrawCompanions(draw_seed)
    first = labels(torch.tensor([WMH]), [5], "cpu")
    maps, records = redraw(labels, torch.tensor([WMH]), [5], "cpu", first)
    assert torch.equal(maps, first) and records[0]["draws"] == 1 and records[0]["unrequested"] == ["edema"]


def test_redraws_draw_new_noise() -> None:
    _, draw_seed = _redraw(2)
    seeds = [draw_seed(3, draw) for draw in range(4)]
    noise = [torch.randn(4, generator=torch.Generator().manual_seed(s)) for s in seeds]
    assert seeds[0] == 3 and all(not torch.equal(noise[0], n) for n in noise[1:])  # torch keeps 32 seed bits
    assert len(set(seeds)) == 4 and draw_seed(4, 1) not in seeds


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_draw_budget_is_refused_naming_its_key(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="max_label_draws"):
        _redraw(bad)


def test_the_presence_study_reports_raw_and_delivered_rates() -> None:
    redraw, draw_seed = _redraw(3)
    with bundle_module("evaluation") as evaluation:
        study = evaluation.LesionPresenceStudy(
            FirstDrawCompanions(draw_seed), {"wmh": WMH}, redraw.measure, samples=3, batch_size=2, label_redraw=redraw
        )
        report, protocol = study.run(), study.protocol()
    assert report["wmh"]["unrequested_lesion_rate"] == 1.0  # the model's first draws
    delivered = report["wmh"]["delivered"]
    assert delivered["unrequested_lesion_rate"] == 0.0 and delivered["all_requested_present_rate"] == 1.0
    assert delivered["mean_draws"] == 2.0 and delivered["non_conforming"] == 0 and delivered["max_label_draws"] == 3
    assert protocol["max_label_draws"] == 3
