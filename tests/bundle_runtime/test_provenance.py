"""bundle_runtime/provenance.py: one description of the machine for every record, and portable file names."""

from __future__ import annotations

from pathlib import Path

import torch

from bundle_runtime.provenance import bundle_relative, machine_description, machine_facts


def test_machine_facts_name_the_processor_cores_and_threads() -> None:
    facts = machine_facts(torch_threads=3)
    assert facts["cpu"] and facts["usable_cpus"] >= 1 and facts["logical_cpus"] >= facts["usable_cpus"]
    assert facts["torch_threads"] == 3 and facts["torch"] == torch.__version__
    assert machine_facts()["torch_threads"] == torch.get_num_threads()


def test_the_one_line_description_is_built_from_the_same_facts() -> None:
    facts = machine_facts()
    line = machine_description()
    assert line.startswith(f"{facts['cpu']}, {facts['usable_cpus']} cores") and f"torch {facts['torch']}" in line


def test_files_are_named_relative_to_the_bundle_or_by_bare_name(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    assert bundle_relative(bundle / "models" / "model.pt", bundle) == "models/model.pt"
    assert bundle_relative(tmp_path / "elsewhere" / "weights.pt", bundle) == "weights.pt"
