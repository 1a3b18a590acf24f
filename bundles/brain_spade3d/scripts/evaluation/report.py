"""The evaluation report: runs the studies named in a dict, in order, and writes ``evaluation.json`` once."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from scripts.common.atomic_io import write_json

__all__ = ["DATA_NOTE", "EvaluationReport", "Study"]

DATA_NOTE = "demo data (synthetic phantoms); not a clinical benchmark"
#: Sections of the report that are not a study's.
_OWN_SECTIONS = ("data", "protocol")


class Study(Protocol):
    """What the report needs of a study. It may also list in ``top_level`` entries of its result that
    become sections of their own (the segmentation study's ``feature_distance``)."""

    def run(self) -> dict[str, Any]: ...

    def protocol(self) -> dict[str, Any]: ...


def _selection(studies: Mapping[str, Study], selected: Sequence[str] | str | None) -> list[str]:
    names = list(studies) if selected is None else [selected] if isinstance(selected, str) else list(selected)
    unknown = [name for name in names if name not in studies]
    if unknown or not names:
        raise ValueError(f"studies={names!r} must name one or more of {list(studies)} (unknown: {unknown})")
    return [name for name in studies if name in names]  # the dict's order, so the report's layout is fixed


class EvaluationReport:
    """Runs ``studies`` (name -> study) and writes all their numbers and the protocol to ``output_dir``.

    Args:
        studies: section name -> study, run in this order.
        output_dir: destination of ``evaluation.json``.
        selected: the names of the studies to run (the config's ``studies``); None runs every one.
        metadata: provenance copied into the report (top-level keys).
        data: what the numbers were measured on.
    """

    def __init__(
        self,
        studies: Mapping[str, Study],
        output_dir: str | os.PathLike,
        selected: Sequence[str] | str | None = None,
        metadata: Mapping[str, Any] | None = None,
        data: str = DATA_NOTE,
    ) -> None:
        self.studies = {name: studies[name] for name in _selection(studies, selected)}
        self.output_dir = Path(output_dir)
        self.metadata = dict(metadata or {})
        self.data = data
        sections = [*_OWN_SECTIONS, *self.metadata]
        sections += [key for name, study in self.studies.items() for key in (name, *getattr(study, "top_level", ()))]
        clashes = sorted({section for section in sections if sections.count(section) > 1})
        if clashes:
            raise ValueError(f"evaluation report: sections {clashes} would be written twice")
        self._protocol = self.protocol()  # its consistency is checked before any study runs

    def protocol(self) -> dict[str, Any]:
        """Every selected study's settings in one flat record; a setting two studies share must agree."""
        merged: dict[str, Any] = {"studies": list(self.studies)}
        owner: dict[str, str] = {}
        for name, study in self.studies.items():
            for key, value in study.protocol().items():
                if key in owner and merged[key] != value:
                    raise ValueError(
                        f"protocol entry {key!r} is {merged[key]!r} in study {owner[key]!r} but {value!r} in "
                        f"{name!r}: evaluation.json records one value per setting"
                    )
                merged[key], owner[key] = value, owner.get(key, name)
        return merged

    def run(self) -> dict[str, Any]:
        """The selected studies in order; the report is written once, at the end."""
        report: dict[str, Any] = {"data": self.data, "protocol": self._protocol}
        for number, (name, study) in enumerate(self.studies.items(), start=1):
            print(f"evaluation study {number}/{len(self.studies)}: {name}", flush=True)
            result = dict(study.run())
            lifted = {key: result.pop(key) for key in getattr(study, "top_level", ())}
            report[name] = result
            report.update(lifted)
        report.update(self.metadata)
        path = write_json(report, self.output_dir / "evaluation.json")
        print(f"evaluation written to {path}")
        return report
