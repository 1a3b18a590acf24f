"""The repository stands alone: no project file points a reader at material a clone does not have."""

from __future__ import annotations

import subprocess

from tests.helpers import REPO_ROOT

#: Notes kept beside the checkout for the developers, never shipped with it (spelled in two parts so that
#: this file does not name them itself).
OUTSIDE_NOTES = ("PAPERS" + ".md", "STYLE" + ".md", "../" + "shared/")


def _tracked_text_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    return [name for name in listed.splitlines() if name.endswith((".py", ".md", ".json", ".yml", ".toml", ".txt"))]


def test_no_project_file_cites_notes_outside_the_repository():
    citing = []
    for name in _tracked_text_files():
        text = (REPO_ROOT / name).read_text(errors="replace")
        citing += [f"{name}: {note}" for note in OUTSIDE_NOTES if note in text]
    assert citing == [], "write the fact into docs/references.md in our words and cite the paper"


def test_references_page_exists_for_the_facts_readers_need():
    references = (REPO_ROOT / "docs" / "references.md").read_text()
    for anchor in ("Label set of brainSPADE3D", "Network sizes of the TOF-MRA GANs", "Cost of a paper-size brain"):
        assert f"## {anchor}" in references
