"""``tools verify``'s network check: build each network a ``*_data_format`` declares and run it on its inputs.

The multi-network extra of MONAI's ``verify_net_in_out``, which checks one ``network_def``. torch and MONAI are
imported inside the checks, so ``tools package``/``download`` start fast.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tools.verify_configs import config_files, inside_bundle
from tools.verify_problems import bundle_problem, first_line

_DIM_EXPRESSION = re.compile(r"^[\d\s*+\-/()n]+$")
_DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32"}


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
        return [bundle_problem(bundle_dir, "configs", f"{key} is declared but no config defines {config_id!r}")]
    label = bundle_problem(bundle_dir, file, f"{config_id} ({key})")
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
        return [f"{label}: does not run on its declared inputs {described}: {first_line(error)}{hint}"]
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
        return [bundle_problem(bundle_dir, "configs/metadata.json", f"cannot read networks: {first_line(error)}")]
    networks = network_config_ids(metadata)
    problems = []
    unknown = sorted(set(shapes) - {k[: -len("_data_format")] for k in networks})
    if unknown:
        problems.append(bundle_problem(bundle_dir, "--shapes", f"names no declared network: {unknown}"))
    used: set[str] = set()
    with inside_bundle(bundle_dir):
        for key, config_id in networks.items():
            fmt = metadata[key]
            if not isinstance(fmt, dict):
                problems.append(bundle_problem(bundle_dir, "configs/metadata.json", f"{key} is not an object"))
                continue
            net_shapes = shapes.get(key[: -len("_data_format")], {})
            problems += _run_network(bundle_dir, key, config_id, fmt, override, net_shapes, used)
    unused = sorted(set(override) - used)
    if unused:
        problems.append(bundle_problem(bundle_dir, "--override", f"keys match no network config: {unused}"))
    return problems
