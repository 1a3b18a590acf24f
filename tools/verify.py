"""``tools verify``: apply the model-zoo rules to bundles, so a problem shows up here and not in review.

Each check returns a list of problems (``"<bundle>: <file>: <what is wrong>"``); an empty list means it passed.
torch and MONAI are imported inside the checks that need them so that ``tools package``/``download`` start fast.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bundle_runtime.atomic_io import atomic_path
from tools import BUNDLES_DIR
from tools.large_files import LargeFilesError, entries_of, entry_problems, large_files_lists, weak_hash_warnings
from tools.packaging import BundleNotFoundError, available_bundles, bundle_files, resolve_bundle, sha256_file

MANDATORY_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "configs/logging.conf",
    "LICENSE",
    "docs/README.md",
    "docs/data_license.txt",
)
MAX_FILE_BYTES = 25 * 1024 * 1024
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
SCHEMA_DIR_ENV = "SYNTHBRAIN_SCHEMA_DIR"
_SCRIPTS_REFERENCE = re.compile(r"(?<![\w.])scripts((?:\.\w+)*)")
_DIM_EXPRESSION = re.compile(r"^[\d\s*+\-/()n]+$")
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32"}


class SchemaNotFoundError(FileNotFoundError):
    """The metadata schema is neither given, nor in the schema folder or cache, nor downloadable."""


def schema_cache_dir() -> Path:
    """Where downloaded schemas are kept (computed per call so a changed HOME is honoured)."""
    return Path.home() / ".cache" / "synthbrain-zoo" / "schemas"


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
    candidates = []
    if os.environ.get(SCHEMA_DIR_ENV):
        candidates.append(Path(os.environ[SCHEMA_DIR_ENV]).expanduser() / basename)
    cached = schema_cache_dir() / basename
    candidates.append(cached)
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


def _problem(bundle_dir: Path, file: str | Path, message: str) -> str:
    return f"{bundle_dir.name}: {file}: {message}"


def _first_line(error: BaseException, limit: int = 300) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) <= limit else text[:limit] + "..."


def check_mandatory_files(bundle_dir: Path) -> list[str]:
    """The files model-zoo requires of every bundle."""
    return [
        _problem(bundle_dir, f, "mandatory file is missing") for f in MANDATORY_FILES if not (bundle_dir / f).is_file()
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
        return [_problem(bundle_dir, file, f"not valid JSON: {error}")]
    if not isinstance(metadata, dict):
        return [_problem(bundle_dir, file, "is not a JSON object")]
    problems = []
    schema_url = metadata.get("schema")
    if not isinstance(schema_url, str) or not schema_url:
        problems.append(_problem(bundle_dir, file, "has no 'schema' URL naming the metadata schema"))
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
                problem = _problem(bundle_dir, file, f"schema violation at {where}: {message}")
                if problem not in problems:  # network_data_format matches two schema rules, so errors come twice
                    problems.append(problem)
        except (SchemaNotFoundError, json.JSONDecodeError, jsonschema.SchemaError) as error:
            problems.append(_problem(bundle_dir, file, f"cannot validate: {error}"))
    version = metadata.get("version")
    changelog = metadata.get("changelog")
    if not isinstance(changelog, dict) or version not in changelog:
        problems.append(_problem(bundle_dir, file, f"version {version!r} is not a key of 'changelog'"))
    return problems


def config_files(bundle_dir: Path) -> list[Path]:
    """Config files under configs/, relative to the bundle, inference.json first."""
    configs = sorted(
        p.relative_to(bundle_dir)
        for p in (bundle_dir / "configs").rglob("*")
        if p.suffix in CONFIG_SUFFIXES and p.is_file() and "__pycache__" not in p.parts
    )
    first = Path("configs/inference.json")
    return ([first] if first in configs else []) + [c for c in configs if c != first]


def _drop_scripts_modules() -> None:
    for module_name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
        del sys.modules[module_name]


@contextmanager
def inside_bundle(bundle_dir: Path) -> Iterator[None]:
    """Work as ``monai.bundle run`` does from the bundle folder (cwd, ``scripts`` importable); undo it after.

    Every bundle has its own ``scripts`` package, so cached ``scripts`` modules are dropped on the way in and out.
    """
    saved_path = list(sys.path)
    saved_cwd = os.getcwd()
    _drop_scripts_modules()
    sys.path.insert(0, str(bundle_dir))
    importlib.invalidate_caches()
    os.chdir(bundle_dir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path
        _drop_scripts_modules()
        importlib.invalidate_caches()


def walk_config(node: Any, at: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Yield (config id, key, value) for every dict entry and list item in a config."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{at}#{key}" if at else str(key)
            yield child, key, value
            yield from walk_config(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            child = f"{at}#{index}" if at else str(index)
            yield child, index, value
            yield from walk_config(value, child)


def _locate_target(target: str, locator: Any) -> tuple[Any, str]:
    """Resolve a ``_target_`` the way ``ConfigComponent`` does: a MONAI component name, else a dotted path."""
    from monai.utils.module import locate

    module = locator.get_component_module_name(target)
    full_name = target
    if isinstance(module, list):
        module = module[0]
    if module is not None:
        full_name = f"{module}.{target}"
    try:
        return locate(full_name), full_name
    except Exception as error:  # an import error inside the target module is the finding itself
        raise ImportError(f"importing {full_name!r} failed: {_first_line(error)}") from error


def _missing_scripts_module(bundle_dir: Path, dotted: str) -> str | None:
    """The first part of a ``scripts.a.b`` reference with no module file, package or name behind it."""
    current = bundle_dir / "scripts"
    if not current.is_dir():
        return "scripts"
    reached = "scripts"
    for part in [p for p in dotted.split(".") if p]:
        if (current / part).is_dir():
            current = current / part
        elif (current / f"{part}.py").is_file():
            return None  # a module; what follows are names inside it
        else:
            init = current / "__init__.py"
            if init.is_file() and re.search(rf"\b{re.escape(part)}\b", init.read_text(errors="replace")):
                return None  # a name defined or imported by the package
            return f"{reached}.{part}"
        reached = f"{reached}.{part}"
    return None


def _check_target(bundle_dir: Path, file: Path, item_id: str, target: str, locator: Any) -> list[str]:
    where = f"_target_ {target!r} at {item_id!r}"
    if target.split(".", 1)[0] == "scripts":
        missing = _missing_scripts_module(bundle_dir, target.partition(".")[2])
        if missing:
            return [_problem(bundle_dir, file, f"{where} cannot be resolved: {missing} does not exist in the bundle")]
    try:
        component, _ = _locate_target(target, locator)
    except ImportError as error:
        return [_problem(bundle_dir, file, f"{where}: {error}")]
    if component is None:
        return [_problem(bundle_dir, file, f"{where} cannot be resolved")]
    return []


def check_configs(bundle_dir: Path) -> list[str]:
    """Every config parses, every ``_target_`` resolves, and every ``scripts`` reference exists in the bundle."""
    from monai.bundle import ConfigParser
    from monai.bundle.config_item import ComponentLocator

    problems = []
    locator = ComponentLocator()
    with inside_bundle(bundle_dir):
        for file in config_files(bundle_dir):
            try:
                content = ConfigParser.load_config_file(bundle_dir / file)
                parser = ConfigParser(content)
                parser.parse()
            except Exception as error:  # any parse failure is reported with the file named
                problems.append(_problem(bundle_dir, file, f"does not parse: {_first_line(error)}"))
                continue
            for config_id, key, value in walk_config(content):
                if key == "_target_" and isinstance(value, str) and not value.startswith(("$", "@", "%")):
                    problems += _check_target(
                        bundle_dir, file, config_id.rpartition("#")[0] or "(top level)", value, locator
                    )
                elif isinstance(value, str) and value.startswith("$"):
                    for match in _SCRIPTS_REFERENCE.finditer(value):
                        missing = _missing_scripts_module(bundle_dir, match.group(1))
                        if missing:
                            message = f"{config_id!r} references {match.group(0)!r} but {missing} does not exist"
                            problems.append(_problem(bundle_dir, file, f"{message} in the bundle's scripts/"))
    return problems


def check_file_sizes(bundle_dir: Path) -> list[str]:
    """No file over 25 MB: larger weights belong in large_files.yml (caches and run outputs are not counted)."""
    problems = []
    for relative in bundle_files(bundle_dir):
        size = (bundle_dir / relative).stat().st_size
        if size > MAX_FILE_BYTES:
            problems.append(
                _problem(
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
        return [_problem(bundle_dir, CHECKSUMS_FILE, f"missing; it must record the sha256 of {weights}")]
    try:
        recorded = read_checksums(checksum_path)
    except ValueError as error:
        return [_problem(bundle_dir, CHECKSUMS_FILE, str(error))]
    problems = []
    for name in weights:
        if name not in recorded:
            problems.append(_problem(bundle_dir, f"models/{name}", f"no sha256 recorded in {CHECKSUMS_FILE}"))
        elif sha256_file(models / name) != recorded[name]:
            problems.append(_problem(bundle_dir, f"models/{name}", f"sha256 differs from {CHECKSUMS_FILE}"))
    for name in sorted(set(recorded) - set(weights)):
        problems.append(_problem(bundle_dir, CHECKSUMS_FILE, f"lists {name}, which is not in models/"))
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
            problems += [_problem(bundle_dir, file_name, p) for p in entry_problems(entry, index)]
    return problems


def network_config_ids(metadata: dict) -> dict[str, str]:
    """Map each ``*_data_format`` metadata key to the config id of its network (``<net>_data_format`` ->
    ``<net>_def``; ``network_data_format`` -> ``network_def``)."""
    return {key: f"{key[: -len('_data_format')]}_def" for key in sorted(metadata) if key.endswith("_data_format")}


def _concrete_dims(dims: list, where: str) -> list[int]:
    """Turn a declared spatial shape into integers; model-zoo expressions such as ``"16*n"`` use n = 1."""
    concrete = []
    for dim in dims:
        if isinstance(dim, int):
            concrete.append(dim)
        else:
            try:
                if not (isinstance(dim, str) and _DIM_EXPRESSION.match(dim)):
                    raise ValueError(dim)
                concrete.append(int(eval(dim, {"__builtins__": {}}, {"n": 1})))  # digits, n and operators only
            except (ValueError, SyntaxError, TypeError, ZeroDivisionError) as error:
                raise ValueError(
                    f"{where}: spatial dimension {dim!r} is not a number; give one with --shapes"
                ) from error
    return concrete


def _torch_dtype(name: str) -> Any:
    import torch

    key = str(name).lower().removeprefix("torch.")
    dtype = getattr(torch, _DTYPE_ALIASES.get(key, key), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def _make_input(spec: dict, spatial: list[int], generator: Any) -> Any:
    """A random tensor of shape [1] + [num_channels if > 0] + spatial, with values inside ``value_range``."""
    import torch

    channels = int(spec.get("num_channels", 0))
    shape = [1] + ([channels] if channels > 0 else []) + spatial
    dtype = _torch_dtype(spec.get("dtype", "float32"))
    value_range = [v for v in spec.get("value_range", []) if isinstance(v, int | float)]
    low, high = (min(value_range), max(value_range)) if value_range else (0, 1)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=generator) * (high - low) + low).to(dtype)
    return torch.randint(int(low), int(high) + 1, shape, generator=generator).to(dtype)


def _find_network_config(bundle_dir: Path, config_id: str) -> Path | None:
    from monai.bundle import ConfigParser

    for file in config_files(bundle_dir):
        if file.name == "metadata.json":
            continue
        try:
            content = ConfigParser.load_config_file(bundle_dir / file)
        except Exception:  # unparsable configs are reported by check_configs
            continue
        if isinstance(content, dict) and config_id in content:
            return file
    return None


def _check_outputs(label: str, fmt: dict, result: Any, overridden: set[str], shapes: dict) -> list[str]:
    import torch

    produced = list(result) if isinstance(result, tuple | list) else [result]
    problems = []
    for (name, spec), tensor in zip(fmt.get("outputs", {}).items(), produced, strict=False):
        if not isinstance(spec, dict) or not torch.is_tensor(tensor):
            continue
        channels = int(spec.get("num_channels", 0))
        if channels > 0 and (tensor.ndim < 2 or tensor.shape[1] != channels):
            problems.append(f"{label}: output {name!r} has shape {list(tensor.shape)}, expected {channels} channels")
            continue
        if name in shapes:
            expected = [int(d) for d in shapes[name]]
        elif overridden or "spatial_shape" not in spec:
            continue  # inputs were resized on request, so the declared output size no longer applies
        else:
            expected = _concrete_dims(spec["spatial_shape"], f"{label} output {name!r}")
        spatial = list(tensor.shape[2:] if channels > 0 else tensor.shape[1:])
        if spatial != expected:
            problems.append(f"{label}: output {name!r} has spatial shape {spatial}, expected {expected}")
    return problems


def _run_network(
    bundle_dir: Path, key: str, config_id: str, fmt: dict, override: dict, shapes: dict, used: set[str]
) -> list[str]:
    import torch
    from monai.bundle import ConfigParser

    file = _find_network_config(bundle_dir, config_id)
    if file is None:
        return [_problem(bundle_dir, "configs", f"{key} is declared but no config defines {config_id!r}")]
    label = _problem(bundle_dir, file, f"{config_id} ({key})")
    parser = ConfigParser()
    parser.read_config(bundle_dir / file)
    parser.read_meta(bundle_dir / "configs" / "metadata.json")
    parser["bundle_root"] = str(bundle_dir)
    if "device" in parser.get():
        parser["device"] = "$torch.device('cpu')"
    for override_key, value in override.items():
        if override_key.split("#", 1)[0] in parser.get():
            parser[override_key] = value
            used.add(override_key)
    try:
        inputs = {}
        generator = torch.Generator().manual_seed(0)
        for name, spec in fmt.get("inputs", {}).items():
            if not isinstance(spec, dict):
                inputs[name] = spec  # a plain number, string or flag
                continue
            spatial = shapes.get(name, spec.get("spatial_shape", []))
            inputs[name] = _make_input(spec, _concrete_dims(list(spatial), f"input {name!r}"), generator)
    except ValueError as error:
        return [f"{label}: {error}"]
    described = {n: list(t.shape) if torch.is_tensor(t) else t for n, t in inputs.items()}
    try:
        network = parser.get_parsed_content(config_id, instantiate=True)
        if not isinstance(network, torch.nn.Module):
            return [f"{label}: is a {type(network).__name__}, not a torch.nn.Module"]
        network = network.to("cpu").eval()
        with torch.no_grad():
            result = network(*inputs.values()) if len(inputs) == 1 else network(**inputs)
    except Exception as error:  # the failure to build or run is what this check reports
        hint = ""
        if len(inputs) > 1 and "unexpected keyword argument" in str(error):
            hint = " (several inputs are passed by keyword: name them after the parameters of forward())"
        return [f"{label}: does not run on its declared inputs {described}: {_first_line(error)}{hint}"]
    overridden = {name for name in shapes if name in fmt.get("inputs", {})}
    return _check_outputs(label, fmt, result, overridden, shapes)


def check_networks(bundle_dir: Path, override: dict | None = None, shapes: dict | None = None) -> list[str]:
    """Build each network of a ``*_data_format`` key on CPU and run it on its declared input shapes.

    Args:
        bundle_dir: the bundle folder.
        override: config overrides applied before building, e.g. ``{"diffusion_def#channels": [8, 8]}``, so that
            a large network can be checked at a tiny size.
        shapes: per network (``network`` for ``network_data_format``, ``<net>`` for ``<net>_data_format``), spatial
            shapes replacing the declared ones, e.g. ``{"diffusion": {"x": [16, 16]}}``; naming an output gives its
            expected spatial shape (otherwise output spatial sizes are not checked for that network).
    """
    bundle_dir = Path(bundle_dir).resolve()
    override = dict(override or {})
    shapes = dict(shapes or {})
    metadata_path = bundle_dir / "configs" / "metadata.json"
    try:
        metadata = json.loads(metadata_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        return [_problem(bundle_dir, "configs/metadata.json", f"cannot read networks: {_first_line(error)}")]
    networks = network_config_ids(metadata)
    problems = []
    unknown = sorted(set(shapes) - {k[: -len("_data_format")] for k in networks})
    if unknown:
        problems.append(_problem(bundle_dir, "--shapes", f"names no declared network: {unknown}"))
    used: set[str] = set()
    with inside_bundle(bundle_dir):
        for key, config_id in networks.items():
            fmt = metadata[key]
            if not isinstance(fmt, dict):
                problems.append(_problem(bundle_dir, "configs/metadata.json", f"{key} is not an object"))
                continue
            net_shapes = shapes.get(key[: -len("_data_format")], {})
            problems += _run_network(bundle_dir, key, config_id, fmt, override, net_shapes, used)
    unused = sorted(set(override) - used)
    if unused:
        problems.append(_problem(bundle_dir, "--override", f"keys match no network config: {unused}"))
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
