# Generated copy of bundle_runtime/dataset_card.py: edit the source, then run `python -m tools sync-common`.
"""What a person sees at the end of a dataset run: ``dataset_card.md`` and ``overview.png``.

The card says what the dataset is (bundle, version, weights, size, seeds, conditioning) and how far
the obtained conditions are from the requested ones; the overview shows a few samples and the
histograms of requested and measured conditions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .atomic_io import atomic_path, write_png
from .previews import captioned, grid, histogram_panel, side_by_side

__all__ = ["write_card"]

#: Samples shown in the overview montage.
MONTAGE_SAMPLES = 8


def _floats(rows: Sequence[Mapping[str, str]], column: str) -> list[float]:
    values = []
    for row in rows:
        try:
            values.append(float(row[column]))
        except (KeyError, TypeError, ValueError):
            continue
    return [v for v in values if math.isfinite(v)]


def _summary_line(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"| {name} | - | - | - |"
    return f"| {name} | {min(values):.4g} | {sum(values) / len(values):.4g} | {max(values):.4g} |"


def _histograms(generation: Any, rows: Sequence[Mapping[str, str]]) -> list[Any]:
    """One row of panels per compared condition: requested, then measured."""
    measured = [c.removeprefix("measured_") for c in rows[0] if c.startswith("measured_")]
    compared = {m for _, m in generation.comparisons}
    figure_rows = []
    for requested, name in generation.comparisons:
        figure_rows.append(
            side_by_side(
                [
                    histogram_panel(_floats(rows, requested), f"requested {requested}", requested),
                    histogram_panel(_floats(rows, f"measured_{name}"), f"measured {name}", name),
                ],
                gap=8,
                background=255,
            )
        )
    alone = [histogram_panel(_floats(rows, f"measured_{n}"), f"measured {n}", n) for n in measured if n not in compared]
    if alone:
        figure_rows.append(side_by_side(alone, gap=8, background=255))
    return figure_rows


def _montage(generation: Any, rows: Sequence[Mapping[str, str]]) -> Any:
    tiles = []
    for row in rows[:MONTAGE_SAMPLES]:
        files = {k.removeprefix("file_"): v for k, v in row.items() if k.startswith("file_")}
        tiles.append(captioned(generation.writer.thumbnail(generation.output_dir, files), f"sample {row['index']}"))
    per_row = 4
    return grid([side_by_side(tiles[i : i + per_row], gap=4) for i in range(0, len(tiles), per_row)], gap=4)


def _card_text(generation: Any, rows: Sequence[Mapping[str, str]]) -> str:
    plan = generation.plan
    measured = [c for c in rows[0] if c.startswith("measured_")]
    file_keys = [c.removeprefix("file_") for c in rows[0] if c.startswith("file_")]
    lines = [
        f"# {generation.title}",
        "",
        f"- samples: {len(rows)} (indices 0 to {len(rows) - 1}), base seed {plan.seed} (see `plan.csv`)",
        *(f"- {key}: {value}" for key, value in generation.provenance.items()),
        f"- files per sample: {', '.join(file_keys)}; every file's sha256 is in `manifest.csv`",
        "- `plan.csv` holds what was asked (index, seed, requested conditions); `manifest.csv` what was made.",
        "",
        "Sample `i` is reproduced alone by generating index `i` with the same base seed and weights.",
        "",
    ]
    if plan.condition_names or measured:
        lines += ["| value | min | mean | max |", "|---|---|---|---|"]
        lines += [_summary_line(f"requested {n}", _floats(rows, n)) for n in plan.condition_names]
        lines += [_summary_line(c.replace("_", " ", 1), _floats(rows, c)) for c in measured]
        lines += ["", "`overview.png` shows a few samples and the histograms of requested and measured values.", ""]
    return "\n".join(lines)


def write_card(generation: Any, rows: Sequence[Mapping[str, str]]) -> None:
    """Write ``dataset_card.md`` and ``overview.png`` into the dataset folder, atomically."""
    text = _card_text(generation, rows)
    atomic_path(generation.output_dir / "dataset_card.md", lambda tmp: tmp.write_text(text))
    panels: Iterable[Any] = [_montage(generation, rows), *_histograms(generation, rows)]
    write_png(grid(list(panels), gap=12, background=255), generation.output_dir / "overview.png")
