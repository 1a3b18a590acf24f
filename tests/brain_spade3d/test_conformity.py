"""Label redraws in-process, on a stand-in stage 1 whose mismatches are known from the draw it is asked for.

The stand-in draws every requested lesion; a first draw (draw 0) also carries the companion lesions of
``FirstDrawCompanions``, a redraw does not, unless told to mismatch always.
"""

from __future__ import annotations

import pytest
import torch

from tests.brain_spade3d.spade3d_helpers import LESION_NAMES, bundle_module
from tests.brain_spade3d.test_evaluation_studies import LABEL_NAMES, StandInImages, StandInLabels

WMH, HEALTHY = [0.5, 0.0, 0.0, 0.0], [0.0] * 4


class FirstDrawCompanions(StandInLabels):
    """Edema beside every WMH request on a first draw; on redraws too when ``always`` is set."""

    def __init__(self, always: bool = False) -> None:
        super().__init__(companions={"wmh": "edema"})
        self.always = always
        self.calls: list[tuple[list[int], int]] = []  # (seeds, draw) of every call

    def __call__(self, condition: torch.Tensor, seeds: list[int], device: object, draw: int = 0) -> torch.Tensor:
        self.calls.append(([int(s) for s in seeds], draw))
        self.companions = {"wmh": "edema"} if draw == 0 or self.always else {}
        return super().__call__(condition, seeds, device, draw)


def _redraw(max_draws: int) -> object:
    with bundle_module("conformity") as conformity, bundle_module("measures") as measures:
        measure = measures.LesionMeasure(1.0, [1.0] * 4, 0.5, LABEL_NAMES, LESION_NAMES)
        return conformity.LabelRedraw(measure, max_draws)


def test_a_map_with_an_unrequested_lesion_is_redrawn_and_a_conforming_one_kept() -> None:
    redraw = _redraw(4)
    labels = FirstDrawCompanions()
    maps, records = redraw(labels, torch.tensor([WMH, HEALTHY]), [3, 4], "cpu")
    assert labels.calls == [([3, 4], 0), ([3], 1)]  # only the mismatched sample is drawn again
    assert records[0] == {
        "draws": 2,
        "max_draws": 4,
        "kept_draw": 1,
        "conforms": True,
        "missing": [],
        "unrequested": [],
        "unrequested_ml": 0.0,
    }
    assert records[1]["draws"] == 1 and records[1]["kept_draw"] == 0
    assert maps[0, LABEL_NAMES.index("edema")].sum() == 0 and maps[0, LABEL_NAMES.index("wmh")].sum() > 0


def test_when_no_draw_conforms_the_best_draw_is_kept_and_flagged() -> None:
    redraw = _redraw(3)
    maps, records = redraw(FirstDrawCompanions(always=True), torch.tensor([WMH]), [0], "cpu")
    assert records[0]["draws"] == 3 and records[0]["conforms"] is False
    assert records[0]["unrequested"] == ["edema"] and records[0]["unrequested_ml"] == 128.0  # a 2 x 8 x 8 slab
    assert records[0]["kept_draw"] == 0  # later draws were no better: the first one stays


def test_a_missing_requested_lesion_counts_as_a_mismatch() -> None:
    redraw = _redraw(2)
    enhancing = [0.0, 0.0, 0.0, 0.5]  # the stand-in never draws enhancing tumour
    _, records = redraw(StandInLabels(), torch.tensor([enhancing]), [0], "cpu")
    assert records[0]["missing"] == ["enhancing"] and records[0]["draws"] == 2 and not records[0]["conforms"]


def test_a_sample_redraws_the_same_whatever_its_batch() -> None:
    redraw = _redraw(4)
    conditions = torch.tensor([HEALTHY, WMH, WMH])
    batched, batch_records = redraw(FirstDrawCompanions(), conditions, [0, 1, 2], "cpu")
    alone, alone_records = redraw(FirstDrawCompanions(), conditions[1:2], [1], "cpu")
    assert torch.equal(batched[1], alone[0]) and batch_records[1] == alone_records[0]


def test_one_draw_delivers_the_first_draw_unchanged() -> None:
    redraw = _redraw(1)
    labels = FirstDrawCompanions()
    first = labels(torch.tensor([WMH]), [5], "cpu")
    maps, records = redraw(labels, torch.tensor([WMH]), [5], "cpu", first)
    assert torch.equal(maps, first) and records[0]["draws"] == 1 and records[0]["unrequested"] == ["edema"]


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_bad_draw_budget_is_refused_naming_its_key(bad: object) -> None:
    with pytest.raises((ValueError, TypeError), match="max_label_draws"):
        _redraw(bad)


def test_the_presence_study_reports_raw_and_delivered_rates() -> None:
    redraw = _redraw(3)
    with bundle_module("evaluation") as evaluation:
        study = evaluation.LesionPresenceStudy(
            FirstDrawCompanions(), {"wmh": WMH}, redraw.measure, samples=3, batch_size=2, label_redraw=redraw
        )
        report, protocol = study.run(), study.protocol()
    assert report["wmh"]["unrequested_lesion_rate"] == 1.0  # the model's first draws
    delivered = report["wmh"]["delivered"]
    assert delivered["unrequested_lesion_rate"] == 0.0 and delivered["all_requested_present_rate"] == 1.0
    assert delivered["mean_draws"] == 2.0 and delivered["non_conforming"] == 0 and delivered["max_label_draws"] == 3
    assert protocol["max_label_draws"] == 3


def test_a_redraw_starts_from_new_noise_and_draw_zero_from_the_seeds_own_stream() -> None:
    from types import SimpleNamespace

    sampler = SimpleNamespace(
        concat_condition=False,
        latent_shape=(2, 3, 3, 3),
        initial_noise=lambda b, generator, device: torch.randn((b, 2, 3, 3, 3), generator=generator),
    )
    with bundle_module("synthesis") as synthesis:
        labels = synthesis.LabelGenerator(sampler, diffusion=None, decode=None)
        draws = [labels.noise([3, 4], draw, "cpu") for draw in range(3)]
        style = synthesis.ImageGenerator(decode=None, z_dim=2 * 27, contrasts=["T1w"]).random_style([3], "cpu")
    own = torch.randn((1, 2, 3, 3, 3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(draws[0][:1], own)  # draw 0 is the map a run without redraws gives
    assert all(not torch.allclose(draws[0], later) for later in draws[1:]) and not torch.allclose(draws[1], draws[2])
    assert torch.equal(labels.noise([4], 2, "cpu")[0], draws[2][1])  # a sample's redraw does not depend on its batch
    assert not torch.allclose(style.reshape(-1), own.reshape(-1))  # the style code is not the label noise


def test_synthetic_segmentation_pairs_carry_the_delivered_maps() -> None:
    redraw, conditions = _redraw(3), torch.tensor([WMH])
    with bundle_module("evaluation") as evaluation:

        def pairs(label_redraw: object) -> object:
            return evaluation.SegmentationPairs(
                None,
                {"T1w": "t1w"},
                "T1w",
                FirstDrawCompanions(),
                StandInImages(),
                progress=False,
                label_redraw=label_redraw,
            )

        kept, raw = pairs(redraw), pairs(None)
        delivered, first = kept.synthetic(conditions, [3], "pairs")[0], raw.synthetic(conditions, [3], "pairs")[0]
    edema = LABEL_NAMES.index("edema")
    assert (first["label"] == edema).any() and not (delivered["label"] == edema).any()
    assert kept.protocol()["synthetic_max_label_draws"] == 3 and raw.protocol()["synthetic_max_label_draws"] == 1
