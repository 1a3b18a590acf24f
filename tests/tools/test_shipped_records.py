"""Measurement records shipped in ``bundles/*/docs/measured`` must describe the shipped bundle: its version and weights.

A record written before a version bump or a weights update would put a number in the README that no
user can reproduce with what they download.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BUNDLES_DIR

RECORDS = sorted(BUNDLES_DIR.glob("*/docs/measured/*.json"))
#: Records of an earlier bundle version kept because a README compares against them; ``history/<version>/``.
HISTORY = sorted(BUNDLES_DIR.glob("*/docs/measured/history/*/*.json"))


def _shipped_sha256(bundle: Path) -> dict[str, str]:
    sums = bundle / "models" / "SHA256SUMS"
    return {name: digest for digest, name in (line.split() for line in sums.read_text().splitlines() if line.strip())}


def _recorded_weights(node: object) -> Iterator[tuple[str, str]]:
    """(file name, sha256) pairs a record names as ``"<key>": file`` beside ``"<key>_sha256": digest``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_sha256") and isinstance(node.get(key[: -len("_sha256")]), str):
                yield Path(node[key[: -len("_sha256")]]).name, value
            yield from _recorded_weights(value)
    elif isinstance(node, list):
        for item in node:
            yield from _recorded_weights(item)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


#: A string a record must never hold: an absolute POSIX or Windows path, or a home-relative one.
_MACHINE_PATH = re.compile(r"^(/|~|[A-Za-z]:[\\/])")


def _strings(node: object, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _strings(item, f"{where}[{index}]")
    elif isinstance(node, str):
        yield where, node


def test_there_are_records_to_check():
    assert {path.parent.parent.parent.name for path in RECORDS} >= {"brain_ldm", "brain_spade3d", "tof_mra_vessel_gan"}


@pytest.mark.parametrize("record_path", RECORDS, ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}")
def test_record_matches_the_shipped_version_and_weights(record_path: Path):
    bundle = record_path.parent.parent.parent
    record = json.loads(record_path.read_text())
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    assert record.get("bundle_version") == version, f"{record_path} was measured on {record.get('bundle_version')}"
    assert record.get("machine"), f"{record_path} does not name the machine it was measured on"
    shipped = _shipped_sha256(bundle)
    checked = [(name, digest) for name, digest in _recorded_weights(record) if name in shipped]
    for name, digest in checked:
        assert digest == shipped[name], f"{record_path} measured another {name} than the one shipped"
    if record.get("random_weights") is True:  # a benchmark of the architecture on seeded random weights
        assert not checked, f"{record_path} says random weights but names shipped ones"
        return
    if record.get("uses_weights") is False:  # a measurement of data, e.g. a measure calibrated on real images
        assert not list(_recorded_weights(record)), f"{record_path} says it uses no weights but names some"
        return
    assert checked, f"{record_path} names none of the shipped weights with its sha256"


@pytest.mark.parametrize("record_path", HISTORY, ids=lambda p: f"{p.parents[4].name}/{p.parent.name}/{p.name}")
def test_history_record_is_an_earlier_version_of_the_shipped_weights(record_path: Path):
    """A history record may keep a number of an earlier version only if it measured weights shipped today.

    A benchmark on seeded random weights measured the architecture and the code, not any weights file, so it
    names none; it must still come from an earlier version and name its machine.
    """
    bundle = record_path.parents[4]
    record = json.loads(record_path.read_text())
    current = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    assert record.get("bundle_version") == record_path.parent.name, f"{record_path} is not in its version's folder"
    assert _version(record["bundle_version"]) < _version(current), f"{record_path} is not older than {current}"
    assert record.get("machine"), f"{record_path} does not name the machine it was measured on"
    recorded = {digest for _, digest in _recorded_weights(record)}
    if record.get("random_weights") is True:
        assert not recorded, f"{record_path} says random weights but names weights files"
        return
    assert recorded & set(_shipped_sha256(bundle).values()), f"{record_path} measured weights that are not shipped"


@pytest.mark.parametrize("record_path", RECORDS + HISTORY, ids=lambda p: str(p.relative_to(BUNDLES_DIR)))
def test_record_names_no_path_of_the_measuring_machine(record_path: Path):
    record = json.loads(record_path.read_text())
    local = [(where, text) for where, text in _strings(record) if _MACHINE_PATH.match(text)]
    assert not local, f"{record_path} holds machine-local paths (name files relative to the bundle): {local}"


def test_machine_path_pattern_catches_absolute_paths():
    assert _MACHINE_PATH.match("/work/tofseg5/segmenter_real.pt")
    assert _MACHINE_PATH.match("C:\\runs\\a.pt")
    assert not _MACHINE_PATH.match("models/generator.pt")
