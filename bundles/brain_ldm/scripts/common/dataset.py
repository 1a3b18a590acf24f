# Generated copy of bundle_runtime/dataset.py: edit the source, then run `python -m tools sync-common`.
"""Synthetic datasets at scale: a plan before any work, shards, resume by sha256 and a manifest.

MONAI has no piece for this: its engines iterate a data loader once, with no notion of finished
outputs, so a killed or pre-empted run starts over. Here the dataset is described first
(``plan.csv``: index, seed, requested conditioning), each process takes the plan rows of its shard
(``index % num_shards == shard``, where torchrun ranks subdivide a ``--shard_index``), and every
finished sample is recorded in the shard's own part file under ``manifest.parts/``, one line per
sample appended in a single ``write`` and flushed to disk. A sample is complete when its manifest
row exists and every file it names has the recorded sha256; a re-run skips those, regenerates the
rest (a killed run's unrecorded files included) and merges the parts into ``manifest.csv``.

The bundle supplies three pieces: the synthesis (``generate_batch(indices)`` and
``describe(index, sample)``), a writer (``write(folder, stem, sample, record)`` returning the file
names, and ``thumbnail(folder, files)``) and optionally a measure (``sample -> {name: value}``).
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .atomic_io import atomic_path, prepare_output_dir, stale_temporaries, temporary_target
from .checks import check_non_negative_int, check_positive_int, check_seed_span
from .weights import file_sha256

__all__ = [
    "DatasetGeneration",
    "Plan",
    "index_width",
    "merge_manifest",
    "read_records",
    "read_table_csv",
    "resolve_shard",
    "sample_stem",
    "write_samples",
]

PLAN_FILE = "plan.csv"
MANIFEST_FILE = "manifest.csv"
PARTS_DIR = "manifest.parts"
#: Dataset-level temporaries (plan, manifest, card) older than this are a killed run's.
STALE_SECONDS = 600.0


def index_width(n_samples: int) -> int:
    """Digits of a zero-padded sample index: six, or more when ``n_samples`` needs them."""
    return max(6, len(str(max(int(n_samples) - 1, 0))))


def sample_stem(index: int, n_samples: int, prefix: str = "sample", subfolders: bool = False) -> str:
    """``sample_000123``, or ``000/sample_000123`` with one subfolder per 1,000 samples."""
    width = index_width(n_samples)
    stem = f"{prefix}_{index:0{width}d}"
    return f"{index // 1000:0{width - 3}d}/{stem}" if subfolders else stem


def _number_text(value: Any) -> str:
    """The shortest text that reads back as the same float (or int) value."""
    return str(int(value)) if isinstance(value, int) and not isinstance(value, bool) else repr(float(value))


def read_table_csv(
    path: str | os.PathLike, names: Sequence[str], check: Callable[[str, str], float], key: str = "conditions_csv"
) -> list[list[float]]:
    """Rows of a CSV holding a column per name in ``names`` (other columns are ignored).

    ``check(source, text)`` turns one cell into a number or raises an error naming ``source``
    (file, line and column), so a missing column, a non-numeric or out-of-range cell is refused
    before any work.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: file {path} does not exist")
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle, restkey="__extra__", restval=None)
            header = reader.fieldnames or []
            missing = [n for n in names if n not in header]
            if missing:
                raise ValueError(f"{key} {path}: header {header} lacks column(s) {missing}")
            rows = []
            for line_number, record in enumerate(reader, start=2):
                if "__extra__" in record or any(record.get(h) is None for h in header):
                    raise ValueError(f"{key} {path}, line {line_number}: expected {len(header)} fields")
                rows.append([check(f"{key} {path}, line {line_number}: {n}", record[n].strip()) for n in names])
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{key} {path} is not a readable CSV: {error}") from error
    if not rows:
        raise ValueError(f"{key} {path} has a header but no rows")
    return rows


class Plan:
    """The dataset before any work: per sample its index, seed and requested conditioning.

    Args:
        seed: base seed; sample ``i`` uses ``seed + seed_stride * i``.
        n_samples: number of samples (> 0).
        condition_names: names of the requested conditions (may be empty, e.g. tof pairs).
        conditions: (n_samples, len(condition_names)) values, e.g. the validated condition matrix.
        seed_stride: 1 where each sample has its own seed (the brain bundles), 0 where sample ``i`` is
            draw ``i`` of one seeded stream (tof pairs).
    """

    def __init__(
        self,
        seed: int,
        n_samples: int,
        condition_names: Sequence[str] = (),
        conditions: Any = None,
        seed_stride: int = 1,
    ) -> None:
        self.seed_stride = check_non_negative_int("seed_stride", seed_stride)
        self.n_samples = check_positive_int("n_samples", n_samples)
        self.seed = check_seed_span("seed", seed, self.seed_stride * (self.n_samples - 1) + 1)
        self.condition_names = [str(n) for n in condition_names]
        values = [] if conditions is None else [[float(v) for v in row] for row in _as_rows(conditions)]
        if self.condition_names and len(values) != self.n_samples:
            raise ValueError(f"plan: {len(values)} condition rows for n_samples={self.n_samples}")
        if any(len(row) != len(self.condition_names) for row in values):
            raise ValueError(f"plan: every condition row needs {len(self.condition_names)} values")
        self.conditions = values

    @property
    def columns(self) -> list[str]:
        return ["index", "seed", *self.condition_names]

    def row(self, index: int) -> dict[str, str]:
        """Plan row ``index`` as text, exactly as written to ``plan.csv``."""
        values = self.conditions[index] if self.condition_names else []
        texts = [str(index), str(self.seed + self.seed_stride * index), *(_number_text(v) for v in values)]
        return dict(zip(self.columns, texts))

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.row(i).values() for i in range(self.n_samples))
        return buffer.getvalue()

    def difference(self, existing: str) -> str | None:
        """What differs between this plan and an existing ``plan.csv`` text, or None."""
        lines = existing.splitlines()
        header = lines[0].split(",") if lines else []
        if header != self.columns:
            return f"columns {header} there, {self.columns} now"
        if len(lines) - 1 != self.n_samples:
            return f"{len(lines) - 1} samples there, n_samples={self.n_samples} now"
        for number, (old, new) in enumerate(zip(csv.reader(lines[1:]), (self.row(i) for i in range(self.n_samples)))):
            for column, old_value, new_value in zip(self.columns, old, new.values()):
                if old_value != new_value:
                    return f"sample {number}: {column} is {old_value} there, {new_value} now"
        return None

    def write_or_check(self, output_dir: str | os.PathLike) -> Path:
        """Write ``plan.csv`` once, atomically; refuse a different plan in the same folder."""
        path = Path(output_dir) / PLAN_FILE
        if path.is_file():
            difference = self.difference(path.read_text())
            if difference:
                raise ValueError(
                    f"{path} describes another dataset ({difference}); use another output_dir, or delete the "
                    "folder to start over"
                )
            return path
        text = self.to_csv()
        return atomic_path(path, lambda tmp: tmp.write_text(text))


def _as_rows(conditions: Any) -> list:
    return conditions.tolist() if hasattr(conditions, "tolist") else list(conditions)


def resolve_shard(shard_index: int = 0, num_shards: int = 1) -> tuple[int, int]:
    """(shard, number of shards) of this process: ``--shard_index`` subdivided by the torchrun rank."""
    num_shards = check_positive_int("num_shards", num_shards)
    shard_index = check_non_negative_int("shard_index", shard_index)
    if shard_index >= num_shards:
        raise ValueError(f"shard_index={shard_index} is outside [0, num_shards={num_shards})")
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    return shard_index * world + rank, num_shards * world


def _complete_lines(path: Path) -> list[str]:
    """Lines of a part file, without a last line a kill cut short (it has no newline)."""
    text = path.read_text()
    return text[: text.rfind("\n") + 1].splitlines()


def read_records(output_dir: str | os.PathLike) -> dict[int, dict[str, str]]:
    """Manifest rows by index: ``manifest.csv``, then every part (oldest first; the later row wins)."""
    output_dir = Path(output_dir)
    sources = [output_dir / MANIFEST_FILE] if (output_dir / MANIFEST_FILE).is_file() else []
    parts = output_dir / PARTS_DIR
    if parts.is_dir():
        sources += sorted((p for p in parts.glob("part_*.csv")), key=lambda p: (p.stat().st_mtime_ns, p.name))
    records: dict[int, dict[str, str]] = {}
    for source in sources:
        for row in csv.DictReader(_complete_lines(source)):
            records[int(row["index"])] = row
    return records


def merge_manifest(output_dir: str | os.PathLike, n_samples: int) -> list[dict[str, str]]:
    """Merge the parts into ``manifest.csv`` (sorted by index, atomically); returns its rows."""
    records = read_records(output_dir)
    rows = [records[i] for i in sorted(records) if i < n_samples]
    if not rows:
        return rows
    columns = list(dict.fromkeys(column for row in rows for column in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    text = buffer.getvalue()
    atomic_path(Path(output_dir) / MANIFEST_FILE, lambda tmp: tmp.write_text(text))
    return rows


def _batches(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def write_samples(
    synthesis: Any,
    writer: Any,
    output_dir: str | os.PathLike,
    n_samples: int,
    batch_size: int = 1,
    prefix: str = "sample",
    progress: bool = True,
) -> list[dict[str, str]]:
    """Plain inference: generate samples ``0..n_samples-1`` in batches and hand each to ``writer``.

    Temporary files a killed run left in ``output_dir`` are removed first. Returns each sample's files.
    """
    from tqdm.auto import tqdm

    output_dir = prepare_output_dir(output_dir)
    for stale in stale_temporaries(output_dir):
        stale.unlink(missing_ok=True)
    written = []
    with tqdm(total=n_samples, desc="samples", disable=not progress) as bar:
        for batch in _batches(range(n_samples), check_positive_int("batch_size", batch_size)):
            for index, sample in zip(batch, synthesis.generate_batch(batch)):
                stem = sample_stem(index, n_samples, prefix)
                written.append(writer.write(output_dir, stem, sample, synthesis.describe(index, sample)))
                bar.update(1)
    return written


class DatasetGeneration:
    """Generates this process's share of a planned dataset, resumably, and records it in the manifest.

    Args:
        synthesis: the bundle's sampler (``generate_batch``, ``describe``).
        writer: the bundle's writer (``write``, ``thumbnail``).
        plan: the dataset plan.
        output_dir: the dataset folder.
        measure: ``sample -> {name: value}``; values go to the manifest as ``measured_<name>``.
        batch_size: samples per forward pass; the batches are fixed slices of the shard's rows, so a
            resumed run regenerates a sample in the same batch as an uninterrupted run.
        shard_index, num_shards: this job's slice of the plan (SLURM arrays); torchrun ranks subdivide it.
        overwrite: regenerate finished samples too (never done otherwise).
        subfolders: one subfolder per 1,000 samples.
        provenance: constant manifest columns (bundle version, weights sha256...).
        prefix: file name prefix of a sample.
        comparisons: (requested column, measured name) pairs shown as histograms in ``overview.png``.
        title: the dataset card's title.
        progress: show a tqdm bar per process.
    """

    def __init__(
        self,
        synthesis: Any,
        writer: Any,
        plan: Plan,
        output_dir: str | os.PathLike,
        measure: Callable[[Any], Mapping[str, float]] | None = None,
        batch_size: int = 1,
        shard_index: int = 0,
        num_shards: int = 1,
        overwrite: bool = False,
        subfolders: bool = False,
        provenance: Mapping[str, Any] | None = None,
        prefix: str = "sample",
        comparisons: Sequence[Sequence[str]] = (),
        title: str = "Synthetic dataset",
        progress: bool = True,
    ) -> None:
        self.synthesis = synthesis
        self.writer = writer
        self.plan = plan
        self.output_dir = Path(output_dir)
        self.measure = measure
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.shard_index, self.num_shards = shard_index, num_shards
        self.overwrite = bool(overwrite)
        self.subfolders = bool(subfolders)
        self.provenance = {str(k): str(v) for k, v in (provenance or {}).items()}
        self.prefix = prefix
        self.comparisons = [tuple(pair) for pair in comparisons]
        self.title = title
        self.progress = progress
        self._pending: list[list[int]] | None = None

    @property
    def part_path(self) -> Path:
        shard, shards = resolve_shard(self.shard_index, self.num_shards)
        return self.output_dir / PARTS_DIR / f"part_{shard:05d}_of_{shards:05d}.csv"

    def own_indices(self) -> list[int]:
        shard, shards = resolve_shard(self.shard_index, self.num_shards)
        return list(range(shard, self.plan.n_samples, shards))

    def prepare(self) -> int:
        """Everything that can refuse the run, before any sample: folder, shard, plan, finished samples.

        Returns the number of samples this process will generate.
        """
        own = set(self.own_indices())  # refuses a bad shard first
        prepare_output_dir(self.output_dir)
        self._remove_stale_temporaries(own)
        self._repair_part()
        self.plan.write_or_check(self.output_dir)
        records = read_records(self.output_dir)
        done = {i for i in own if i in records and self._complete(records[i])}
        self._pending = [b for b in _batches(sorted(own), self.batch_size) if set(b) - done]
        self._done = done
        return len(own - done)

    def _remove_stale_temporaries(self, own: set[int]) -> None:
        """Remove temporaries of this shard's samples, and dataset-level ones old enough to be a killed run's."""
        pattern = re.compile(rf"^{re.escape(self.prefix)}_(\d+)")
        for path in stale_temporaries(self.output_dir):
            match = pattern.match(temporary_target(path.name) or "")
            if match and int(match.group(1)) in own:
                path.unlink(missing_ok=True)
            elif not match and time.time() - path.stat().st_mtime > STALE_SECONDS:
                path.unlink(missing_ok=True)

    def _repair_part(self) -> None:
        """Cut a line a kill left half-written at the end of this shard's part, so appends stay whole."""
        path = self.part_path
        if path.is_file():
            text = path.read_bytes()
            if text and not text.endswith(b"\n"):
                with path.open("r+b") as handle:
                    handle.truncate(text.rfind(b"\n") + 1)

    def _complete(self, row: Mapping[str, str]) -> bool:
        """Whether a recorded sample is finished; a finished one that was changed is never silently redone."""
        if self.overwrite:
            return False
        index = int(row["index"])
        files = {k.removeprefix("file_"): v for k, v in row.items() if k.startswith("file_")}
        if not all((self.output_dir / name).is_file() for name in files.values()):
            return False
        for key, value in self.provenance.items():
            if row.get(key) != value:
                raise ValueError(
                    f"{self.output_dir}: sample {index} was made with {key}={row.get(key)}, this run has {value}; "
                    "pass --overwrite True to regenerate it, or use another output_dir"
                )
        for key, name in files.items():
            if file_sha256(self.output_dir / name) != row.get(f"sha256_{key}"):
                raise ValueError(
                    f"{self.output_dir / name} differs from its sha256 in the manifest (changed after it was "
                    "written); pass --overwrite True to regenerate it"
                )
        return True

    def _append(self, row: Mapping[str, str]) -> None:
        """Append one manifest row in a single write, then flush it to disk."""
        path = self.part_path
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(row), lineterminator="\n")
        if not path.is_file() or path.stat().st_size == 0:
            writer.writeheader()
        writer.writerow(row)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, buffer.getvalue().encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _finish_sample(self, index: int, sample: Any) -> None:
        measured = {k: float(v) for k, v in (self.measure(sample) if self.measure else {}).items()}
        record = dict(self.synthesis.describe(index, sample))
        if measured:
            record["measured"] = measured
        stem = sample_stem(index, self.plan.n_samples, self.prefix, self.subfolders)
        files = self.writer.write(self.output_dir, stem, sample, record)
        row = {**self.plan.row(index), **{f"measured_{k}": _number_text(v) for k, v in measured.items()}}
        row.update({f"file_{k}": v for k, v in files.items()})
        row.update({f"sha256_{k}": file_sha256(self.output_dir / v) for k, v in files.items()})
        self._append({**row, **self.provenance})

    def run(self) -> Path | None:
        """Generate the pending samples, then merge the manifest (rank 0 after a barrier under torchrun)."""
        from tqdm.auto import tqdm

        if self._pending is None:
            self.prepare()
        shard, shards = resolve_shard(self.shard_index, self.num_shards)
        todo = sum(len(set(b) - self._done) for b in self._pending)
        start, generated = time.perf_counter(), 0
        bar = tqdm(total=todo, desc=f"shard {shard}/{shards}", position=shard % 8, disable=not self.progress)
        with bar:
            for batch in self._pending:
                for index, sample in zip(batch, self.synthesis.generate_batch(batch)):
                    if index not in self._done:
                        self._finish_sample(index, sample)
                        generated += 1
                        bar.update(1)
        elapsed = max(time.perf_counter() - start, 1e-9)
        print(
            f"shard {shard}/{shards}: {generated} samples in {elapsed:.1f} s ({generated / elapsed:.3f} samples/s), "
            f"{len(self._done)} already complete",
            flush=True,
        )
        return self.finish()

    def finish(self) -> Path | None:
        """Merge the parts; write the card and the overview once every planned sample is recorded."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            if dist.get_rank() != 0:
                return None
        rows = merge_manifest(self.output_dir, self.plan.n_samples)
        path = self.output_dir / MANIFEST_FILE
        if len(rows) == self.plan.n_samples:
            from .dataset_card import write_card

            write_card(self, rows)
            print(f"dataset complete: {len(rows)} samples; {path}, dataset_card.md, overview.png", flush=True)
        else:
            print(f"{len(rows)} of {self.plan.n_samples} samples recorded in {path}; other shards pending", flush=True)
        return path
