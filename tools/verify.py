"""``tools verify``: apply the model-zoo rules to bundles, so a problem shows up here and not in review.

Each check returns a list of problems (``"<bundle>: <file>: <what is wrong>"``, ``verify_problems``); an empty
list means it passed. This module holds the file, metadata, weights and model-zoo-name checks and the CLI; the
config check is ``verify_configs``, the network check ``verify_networks``. torch and MONAI are imported inside the
checks that need them so that ``tools package``/``download`` start fast.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path

from bundle_runtime.atomic_io import atomic_path
from tools import BUNDLES_DIR
from tools.large_files import LargeFilesError, entries_of, entry_problems, large_files_lists, weak_hash_warnings
from tools.packaging import BundleNotFoundError, available_bundles, bundle_files, resolve_bundle, sha256_file
from tools.verify_configs import check_configs
from tools.verify_networks import check_networks
from tools.verify_problems import bundle_problem

MANDATORY_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "configs/logging.conf",
    "LICENSE",
    "docs/README.md",
    "docs/data_license.txt",
)
MAX_FILE_BYTES = 25 * 1024 * 1024
SCHEMA_DIR_ENV = "SYNTHBRAIN_SCHEMA_DIR"


class SchemaNotFoundError(FileNotFoundError):
    """The metadata schema is neither given, nor in the schema folder or cache, nor downloadable."""


def schema_cache_dir() -> Path:
    """Where downloaded schemas are kept (computed per call so a changed HOME is honoured)."""
    return Path.home() / ".cache" / "synthbrain-zoo" / "schemas"


def local_schema_candidates(basename: str) -> list[Path]:
    """Where a schema is looked for offline, in order: ``$SYNTHBRAIN_SCHEMA_DIR``, then the cache (last)."""
    folders = [Path(os.environ[SCHEMA_DIR_ENV]).expanduser()] if os.environ.get(SCHEMA_DIR_ENV) else []
    return [folder / basename for folder in (*folders, schema_cache_dir())]


def find_schema(schema_url: str, schema: str | Path | None = None, timeout: float = 30.0) -> Path:
    """Locate the schema file named by a metadata ``schema`` URL, downloading it only as the last resort.

    Order: the explicit ``schema`` path; ``$SYNTHBRAIN_SCHEMA_DIR/<basename>``; the cache
    ``~/.cache/synthbrain-zoo/schemas/<basename>``; a download of the URL into that cache.
    """
    if schema is not None:
        path = Path(schema).expanduser()
        if not path.is_file():
            raise SchemaNotFoundError(f"--schema {path}: no such file")
        return path
    basename = schema_url.rstrip("/").rsplit("/", 1)[-1]
    if not basename:
        raise SchemaNotFoundError(f"metadata 'schema' {schema_url!r} does not name a file")
    candidates = local_schema_candidates(basename)
    cached = candidates[-1]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    try:
        with urllib.request.urlopen(schema_url, timeout=timeout) as response:
            content = response.read()
        json.loads(content)
    except (urllib.error.URLError, OSError, ValueError) as error:
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # it holds the response socket open
        tried = ", ".join(str(c) for c in candidates)
        raise SchemaNotFoundError(
            f"schema {schema_url} could not be downloaded ({error}); offline, pass --schema PATH, or put "
            f"{basename} in ${SCHEMA_DIR_ENV} or in {cached.parent} (looked in: {tried})"
        ) from error
    return atomic_path(cached, lambda temporary: temporary.write_bytes(content))


def check_mandatory_files(bundle_dir: Path) -> list[str]:
    """The files model-zoo requires of every bundle."""
    return [
        bundle_problem(bundle_dir, f, "mandatory file is missing")
        for f in MANDATORY_FILES
        if not (bundle_dir / f).is_file()
    ]


def check_metadata(bundle_dir: Path, schema: str | Path | None = None) -> list[str]:
    """Validate metadata.json against the schema its ``schema`` field names, and the changelog rule."""
    import jsonschema

    file = "configs/metadata.json"
    path = bundle_dir / file
    if not path.is_file():
        return []  # reported by check_mandatory_files
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        return [bundle_problem(bundle_dir, file, f"not valid JSON: {error}")]
    if not isinstance(metadata, dict):
        return [bundle_problem(bundle_dir, file, "is not a JSON object")]
    problems = []
    schema_url = metadata.get("schema")
    if not isinstance(schema_url, str) or not schema_url:
        problems.append(bundle_problem(bundle_dir, file, "has no 'schema' URL naming the metadata schema"))
    else:
        try:
            schema_path = find_schema(schema_url, schema)
            schema_doc = json.loads(schema_path.read_text())
            validator_class = jsonschema.validators.validator_for(schema_doc)
            validator = validator_class(schema_doc)
            for error in sorted(validator.iter_errors(metadata), key=lambda e: list(map(str, e.absolute_path))):
                while error.context:  # anyOf: report the deepest branch failure, not the whole value
                    error = max(error.context, key=lambda e: len(e.absolute_path))
                where = "/".join(map(str, error.absolute_path)) or "(top level)"
                message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
                problem = bundle_problem(bundle_dir, file, f"schema violation at {where}: {message}")
                if problem not in problems:  # network_data_format matches two schema rules, so errors come twice
                    problems.append(problem)
        except (SchemaNotFoundError, json.JSONDecodeError, jsonschema.SchemaError) as error:
            problems.append(bundle_problem(bundle_dir, file, f"cannot validate: {error}"))
    version = metadata.get("version")
    changelog = metadata.get("changelog")
    if not isinstance(changelog, dict) or version not in changelog:
        problems.append(bundle_problem(bundle_dir, file, f"version {version!r} is not a key of 'changelog'"))
    return problems


def check_file_sizes(bundle_dir: Path) -> list[str]:
    """No file over 25 MB: larger weights belong in large_files.yml (caches and run outputs are not counted)."""
    problems = []
    for relative in bundle_files(bundle_dir):
        size = (bundle_dir / relative).stat().st_size
        if size > MAX_FILE_BYTES:
            problems.append(
                bundle_problem(
                    bundle_dir,
                    relative.as_posix(),
                    f"{size / 2**20:.1f} MiB is over the 25 MiB limit; list it in large_files.yml instead",
                )
            )
    return problems


WEIGHT_SUFFIXES = (".pt", ".pth", ".ts", ".onnx", ".data")
CHECKSUMS_FILE = "models/SHA256SUMS"


def read_checksums(path: Path) -> dict[str, str]:
    """Parse a ``sha256sum``-format file into {relative path: hex digest}."""
    entries = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, name = line.partition("  ")
        if not re.fullmatch(r"[0-9a-f]{64}", digest) or not name:
            raise ValueError(f"{path}: line {number} is not '<sha256>  <file>'")
        entries[name.strip()] = digest
    return entries


def check_shipped_weights(bundle_dir: Path) -> list[str]:
    """Shipped weights must have their sha256 recorded in models/SHA256SUMS, and match it."""
    models = bundle_dir / "models"
    weights = (
        sorted(
            p.relative_to(models).as_posix()
            for p in models.rglob("*")
            if p.is_file() and p.suffix in WEIGHT_SUFFIXES and "checkpoints" not in p.relative_to(models).parts
        )
        if models.is_dir()
        else []
    )
    if not weights:
        return []
    checksum_path = bundle_dir / CHECKSUMS_FILE
    if not checksum_path.is_file():
        return [bundle_problem(bundle_dir, CHECKSUMS_FILE, f"missing; it must record the sha256 of {weights}")]
    try:
        recorded = read_checksums(checksum_path)
    except ValueError as error:
        return [bundle_problem(bundle_dir, CHECKSUMS_FILE, str(error))]
    problems = []
    for name in weights:
        if name not in recorded:
            problems.append(bundle_problem(bundle_dir, f"models/{name}", f"no sha256 recorded in {CHECKSUMS_FILE}"))
        elif sha256_file(models / name) != recorded[name]:
            problems.append(bundle_problem(bundle_dir, f"models/{name}", f"sha256 differs from {CHECKSUMS_FILE}"))
    for name in sorted(set(recorded) - set(weights)):
        problems.append(bundle_problem(bundle_dir, CHECKSUMS_FILE, f"lists {name}, which is not in models/"))
    return problems


def check_large_files(bundle_dir: Path) -> list[str]:
    """Every large_files entry must say where to download the file and give its md5 or sha256, so that
    ``tools download-weights`` can enforce it (md5 entries also get a warning: see ``weak_hash_warnings``)."""
    problems = []
    try:
        lists = large_files_lists(bundle_dir)
    except LargeFilesError as error:
        return [f"{bundle_dir.name}: {error}"]  # the error names the file
    for file_name, content in lists:
        try:
            entries = entries_of(content, file_name)
        except LargeFilesError as error:
            problems.append(f"{bundle_dir.name}: {error}")
            continue
        for index, entry in enumerate(entries):
            problems += [bundle_problem(bundle_dir, file_name, p) for p in entry_problems(entry, index)]
    return problems


def _large_file_paths(bundle_dir: Path) -> set[str]:
    """Paths that large_files.yml/.json promise to download (check_large_files reports a malformed list)."""
    paths = set()
    try:
        for file_name, content in large_files_lists(bundle_dir):
            paths.update(str(entry.get("path")) for entry in entries_of(content, file_name) if isinstance(entry, dict))
    except LargeFilesError:
        pass
    return paths


def check_model_zoo_names(bundle_dir: Path) -> list[str]:
    """The names model-zoo's own ``ci/verify_bundle.py`` relies on, so a bundle that passes ours passes theirs.

    Its full mode loads the main network's weights from ``models/model.pt`` (shipped, or listed in
    large_files to be fetched) and runs MONAI's ``verify_net_in_out``, which feeds the input ``image`` of a
    one-input ``network_data_format`` and reads its output ``pred``.
    """
    bundle_dir = Path(bundle_dir)
    problems = []
    shipped = any((bundle_dir / "models" / name).is_file() for name in ("model.pt", "model.ts"))
    fetched = {"models/model.pt", "models/model.ts"} & _large_file_paths(bundle_dir)
    if not shipped and not fetched:
        problems.append(
            f"{bundle_dir.name}: models/model.pt: missing; model-zoo's CI expects the main network's weights there"
        )
    try:
        fmt = json.loads((bundle_dir / "configs" / "metadata.json").read_text()).get("network_data_format", {})
    except (OSError, json.JSONDecodeError):
        return problems  # check_metadata reports an unreadable metadata.json
    inputs, outputs = fmt.get("inputs", {}), fmt.get("outputs", {})
    if len(inputs) == 1 and "image" not in inputs:
        problems.append(
            f"{bundle_dir.name}: network_data_format: its one input is named {next(iter(inputs))!r}; "
            "MONAI's verify_net_in_out (run by model-zoo's CI) reads 'image'"
        )
    if outputs and "pred" not in outputs:
        problems.append(f"{bundle_dir.name}: network_data_format: no output 'pred', which verify_net_in_out reads")
    return problems


def verify_bundle(
    bundle: str | Path,
    schema: str | Path | None = None,
    override: dict | None = None,
    shapes: dict | None = None,
    networks: bool = True,
) -> list[str]:
    """All model-zoo checks on one bundle; returns the problems found (empty when it passes)."""
    try:
        bundle_dir = resolve_bundle(bundle)
    except BundleNotFoundError as error:
        return [str(error)]
    problems = check_mandatory_files(bundle_dir)
    problems += check_metadata(bundle_dir, schema)
    problems += check_configs(bundle_dir)
    problems += check_file_sizes(bundle_dir)
    problems += check_large_files(bundle_dir)
    problems += check_shipped_weights(bundle_dir)
    problems += check_model_zoo_names(bundle_dir)
    if networks:
        problems += check_networks(bundle_dir, override, shapes)
    return problems


def _as_dict(value: dict | str | None, option: str) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise SystemExit(f"verify: {option} must be a JSON object, got {value!r}") from error
    if not isinstance(parsed, dict):
        raise SystemExit(f"verify: {option} must be a JSON object, got {value!r}")
    return parsed


def verify_cli(
    *bundles: str,
    schema: str | None = None,
    override: dict | str | None = None,
    shapes: dict | str | None = None,
    networks: bool = True,
) -> None:
    """Check bundles against the model-zoo rules; exits with status 1 if any bundle fails.

    Args:
        bundles: bundle folders or names under bundles/ (default: every bundle there).
        schema: local metadata schema file, for offline use (see docs/tools.md for the lookup order).
        override: config overrides for the network check, e.g. '{"network_def#channels": [8, 16]}'.
        shapes: spatial shapes replacing the declared ones, e.g. '{"network": {"image": [16, 16, 16]}}'.
        networks: set to False to skip building and running the networks.
    """
    override_dict = _as_dict(override, "--override")
    shapes_dict = _as_dict(shapes, "--shapes")
    names = [str(b) for b in bundles] or available_bundles(BUNDLES_DIR)
    if not names:
        print(f"no bundles to verify in {BUNDLES_DIR}")
        return
    failed = []
    for name in names:
        problems = verify_bundle(name, schema, override_dict, shapes_dict, networks)
        print(f"{'FAIL' if problems else 'PASS'}  {name}")
        for problem in problems:
            print(f"  - {problem}")
        with contextlib.suppress(BundleNotFoundError):
            found = resolve_bundle(name)
            for warning in weak_hash_warnings(found):
                print(f"  warning: {warning}")
        if problems:
            failed.append(name)
    if failed:
        print(f"{len(failed)} of {len(names)} bundle(s) failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    print(f"all {len(names)} bundle(s) pass")
