"""bundle_runtime/dataset.py in-process: plan, shards, refusals, resume by sha256, torn rows, stale temporaries."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bundle_runtime import dataset
from bundle_runtime.atomic_io import atomic_path, prepare_output_dir
from bundle_runtime.dataset import DatasetGeneration, Plan, read_table_csv, resolve_shard, sample_stem, write_samples


class CountingSynthesis:
    """Sample ``i`` is the vector [i, i, i]; remembers which batches it was asked for."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def generate_batch(self, indices: list[int]) -> list[np.ndarray]:
        self.batches.append(list(indices))
        return [np.full(3, float(i)) for i in indices]

    def describe(self, index: int, sample: np.ndarray) -> dict:
        return {"index": index}


class TextWriter:
    def write(self, folder: Path, stem: str, sample: np.ndarray, record: dict) -> dict[str, str]:
        name = f"{stem}.txt"
        atomic_path(folder / name, lambda tmp: tmp.write_text(f"{record} {sample.tolist()}\n"))
        return {"data": name}

    def thumbnail(self, folder: Path, files: dict[str, str]) -> Image.Image:
        return Image.new("L", (8, 8), color=128)


def _generation(output_dir: Path, n_samples: int = 5, synthesis: CountingSynthesis | None = None, **kwargs):
    plan = Plan(seed=10, n_samples=n_samples, condition_names=["age"], conditions=[[i / 10] for i in range(n_samples)])
    return DatasetGeneration(
        synthesis or CountingSynthesis(),
        TextWriter(),
        plan,
        output_dir,
        measure=lambda sample: {"mean": float(sample.mean())},
        provenance={"bundle_version": "9.9.9"},
        progress=False,
        **kwargs,
    )


def test_a_dataset_run_writes_plan_manifest_card_and_overview(tmp_path: Path) -> None:
    _generation(tmp_path, subfolders=True).run()
    assert (tmp_path / "plan.csv").read_text().splitlines()[:2] == ["index,seed,age", "0,10,0.0"]
    rows = dataset.read_records(tmp_path)
    assert sorted(rows) == list(range(5))
    assert rows[3]["measured_mean"] == "3.0" and rows[3]["bundle_version"] == "9.9.9"
    assert rows[3]["file_data"] == "000/sample_000003.txt" and (tmp_path / "000" / "sample_000003.txt").is_file()
    assert len(rows[3]["sha256_data"]) == 64
    assert "requested age" in (tmp_path / "dataset_card.md").read_text()
    with Image.open(tmp_path / "overview.png") as overview:
        assert overview.width > 8 and overview.height > 8


def test_sample_names_are_zero_padded_wide_enough() -> None:
    assert sample_stem(123, 1000) == "sample_000123"
    assert sample_stem(123, 12_345_678) == "sample_00000123"
    assert sample_stem(4567, 10_000, subfolders=True) == "004/sample_004567"


def test_resume_skips_complete_samples_and_redoes_the_rest(tmp_path: Path) -> None:
    _generation(tmp_path, batch_size=2).run()
    (tmp_path / "sample_000004.txt").unlink()  # a lost file
    part = next((tmp_path / "manifest.parts").glob("*.csv"))
    part.write_text(part.read_text() + "5,15,0.5,unfinished")  # a kill in the middle of an append
    (tmp_path / ".tmp-4242-sample_000001.txt").write_text("debris")
    synthesis = CountingSynthesis()
    _generation(tmp_path, synthesis=synthesis, batch_size=2).run()
    assert synthesis.batches == [[4]]  # batches are fixed slices of the plan: [0, 1], [2, 3], [4]
    assert not (tmp_path / ".tmp-4242-sample_000001.txt").exists()
    assert part.read_text().endswith("\n") and "unfinished" not in part.read_text()
    assert sorted(dataset.read_records(tmp_path)) == list(range(5))


def test_a_changed_finished_sample_is_never_overwritten_silently(tmp_path: Path) -> None:
    _generation(tmp_path).run()
    (tmp_path / "sample_000002.txt").write_text("edited by hand\n")
    with pytest.raises(ValueError, match=r"sample_000002.txt differs from its sha256 in the manifest"):
        _generation(tmp_path).prepare()
    synthesis = CountingSynthesis()
    _generation(tmp_path, synthesis=synthesis, overwrite=True).run()
    assert synthesis.batches == [[0], [1], [2], [3], [4]]
    assert "edited" not in (tmp_path / "sample_000002.txt").read_text()


def test_other_weights_are_refused_on_resume(tmp_path: Path) -> None:
    _generation(tmp_path).run()
    other = _generation(tmp_path)
    other.provenance = {"bundle_version": "1.0.0"}
    with pytest.raises(ValueError, match=r"bundle_version=9.9.9, this run has 1.0.0"):
        other.prepare()


def test_a_different_plan_is_refused_naming_the_difference(tmp_path: Path) -> None:
    Plan(0, 3, ["age"], [[0.1], [0.2], [0.3]]).write_or_check(tmp_path)
    with pytest.raises(ValueError, match=r"sample 1: age is 0.2 there, 0.25 now"):
        Plan(0, 3, ["age"], [[0.1], [0.25], [0.3]]).write_or_check(tmp_path)
    with pytest.raises(ValueError, match=r"3 samples there, n_samples=4 now"):
        Plan(0, 4, ["age"], [[0.1]] * 4).write_or_check(tmp_path)
    with pytest.raises(ValueError, match=r"sample 0: seed is 0 there, 1 now"):
        Plan(1, 3, ["age"], [[0.1], [0.2], [0.3]]).write_or_check(tmp_path)


@pytest.mark.parametrize("n_samples", [0, -3, 2.5, True])
def test_a_non_positive_number_of_samples_is_refused(n_samples: object) -> None:
    with pytest.raises(ValueError, match=r"n_samples=.* must be a positive integer"):
        Plan(0, n_samples)


def _unit(source: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{source}={text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise ValueError(f"{source}={value} is outside [0, 1]")
    return value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("age\n0.5\n", r"lacks column\(s\) \['sex'\]"),
        ("age,sex\n0.5,male\n", r"line 2: sex='male' is not a number"),
        ("age,sex\n0.5,1\n2.0,0\n", r"line 3: age=2.0 is outside \[0, 1\]"),
        ("age,sex\n", r"has a header but no rows"),
    ],
)
def test_bad_plan_csvs_are_refused_naming_file_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    table = tmp_path / "plan.csv"
    table.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_table_csv(table, ["age", "sex"], _unit)


def test_shards_split_the_plan_and_torchrun_ranks_subdivide_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_shard(1, 3) == (1, 3)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert resolve_shard(2, 3) == (5, 6)
    for shard_index, num_shards in ((3, 3), (-1, 3), (0, 0)):
        with pytest.raises(ValueError, match="shard_index|num_shards"):
            resolve_shard(shard_index, num_shards)


def test_shards_together_cover_the_plan_once(tmp_path: Path) -> None:
    runs = [_generation(tmp_path, n_samples=7, shard_index=s, num_shards=3) for s in range(3)]
    assert sorted(i for run in runs for i in run.own_indices()) == list(range(7))
    for run in runs:
        run.run()
    assert sorted(dataset.read_records(tmp_path)) == list(range(7))
    assert (tmp_path / "dataset_card.md").is_file()  # the last shard to finish completes the dataset


def test_an_output_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match=f"output_dir {blocker} is a file"):
        prepare_output_dir(blocker)
    with pytest.raises(NotADirectoryError, match=f"below {blocker}, which is a file"):
        prepare_output_dir(blocker / "out")


def test_an_unwritable_output_dir_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, data: bytes) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "write_bytes", refuse)  # root ignores chmod, so the refusal is simulated
    with pytest.raises(PermissionError, match=f"output_dir {tmp_path / 'out'} is not writable"):
        prepare_output_dir(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing is created before the checks pass


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only folder")
def test_a_read_only_output_dir_is_refused(tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="not writable"):
            prepare_output_dir(tmp_path)
    finally:
        tmp_path.chmod(0o700)


def test_plain_inference_removes_a_killed_runs_temporaries(tmp_path: Path) -> None:
    (tmp_path / ".tmp-31337-sample_000000.txt").write_text("debris")
    files = write_samples(CountingSynthesis(), TextWriter(), tmp_path, n_samples=3, batch_size=2, progress=False)
    assert [f["data"] for f in files] == ["sample_000000.txt", "sample_000001.txt", "sample_000002.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f["data"] for f in files]
