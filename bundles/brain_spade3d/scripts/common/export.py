# Generated copy of bundle_runtime/export.py: edit the source, then run `python -m tools sync-common`.
"""Export networks to TorchScript and ONNX with MONAI, check them against PyTorch and report.

The conversions are MONAI's: ``monai.networks.utils.convert_to_torchscript`` (with ``use_trace=True``:
``torch.jit.script`` fails on MONAI's generative networks) and ``convert_to_onnx`` (with its default
``use_trace=True``, which hands ``dynamo=False`` to ``torch.onnx.export``: the legacy TorchScript-based
exporter, opset 17, no ``onnxscript`` needed). Both take any number of inputs; ``convert_to_onnx``
takes the input names and per-axis ``dynamic_axes`` as given.

What this module adds, because MONAI lacks it:

- **Symbolic axes** (:func:`dynamic_axes_for`): MONAI takes ``dynamic_axes`` but does not build them;
  here the batch axis and every spatial axis of each input and output get their own name, so one
  export serves any batch and spatial size the network accepts.
- **The second-shape check and the tolerance rule.** A trace freezes Python control flow, so each
  export is run against PyTorch on the example inputs and on inputs of another batch and spatial
  size (``check_inputs``), with a tolerance scaled to the output's magnitude. MONAI's ``verify=True``
  is not used: it checks the example inputs only, raises without the numbers a report needs, moves
  the model to CUDA by default, re-seeds the global random generators (``set_determinism(None)``)
  afterwards, and builds its onnxruntime session from the serialised model, which protobuf refuses
  over 2 GB.
- **One external-data file.** Over 2 GB the exporter spills one file per weight beside the model;
  they are gathered into one ``<name>.onnx.data`` (:func:`_merge_external_data`).
- **All-or-nothing writes of several networks** (:func:`export_networks`): every file is made in a
  hidden scratch folder and moved into place only once every network passed every check.
- **The parity report**: errors per input set, the symbolic shapes the graphs declare, and the
  sha256 of every file written.

With ``polygraphy`` installed, ``convert_to_onnx`` also folds constants with it before saving; the
parity checks apply to that file all the same. Running an export (``OnnxModule``) and
``MethodModule`` live in :mod:`onnx_runtime`, which inference needs without this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.networks.utils import convert_to_onnx, convert_to_torchscript

from .atomic_io import atomic_path, write_json
from .onnx_runtime import MethodModule, OnnxModule
from .weights import file_sha256

__all__ = [
    "ONNX_OPSET",
    "dynamic_axes_for",
    "export_networks",
    "export_onnx",
    "export_torchscript",
    "max_abs_error",
]

#: Opset of the legacy exporter measured to reproduce MONAI's UNet and decoder to ~1e-6.
ONNX_OPSET = 17


def _as_tuple(outputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (outputs,) if isinstance(outputs, torch.Tensor) else tuple(outputs)


def _module_device(module: torch.nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def dynamic_axes_for(
    tensors: Mapping[str, torch.Tensor], spatial_names: Sequence[str] | None = None
) -> dict[str, dict[int, str]]:
    """Symbolic ONNX axes: axis 0 of every tensor, and axes 2.. of image-like tensors.

    Each axis gets its own name (``x_batch``, ``x_dim2``...), so the batch of the timesteps may differ
    from that of the latent and every spatial axis varies independently. ``spatial_names`` lists the
    tensors whose axes from 2 on are spatial; by default those with at least two spatial axes
    (ndim >= 4), which leaves e.g. a (B, 1, K) cross-attention context with a fixed token shape.
    """
    if spatial_names is None:
        spatial_names = [name for name, tensor in tensors.items() if tensor.ndim >= 4]
    unknown = set(spatial_names) - set(tensors)
    if unknown:
        raise ValueError(f"spatial_names {sorted(unknown)} are not among the tensors {list(tensors)}")
    axes: dict[str, dict[int, str]] = {}
    for name, tensor in tensors.items():
        if tensor.ndim == 0:
            raise ValueError(f"input/output {name!r} is a scalar; give it a batch axis")
        axes[name] = {0: f"{name}_batch"}
        if name in spatial_names:
            axes[name].update({axis: f"{name}_dim{axis}" for axis in range(2, tensor.ndim)})
    return axes


@contextlib.contextmanager
def _quiet_trace() -> Iterator[None]:
    """Silence only the warnings a trace is known to raise; the parity checks are the real test.

    ``TracerWarning`` flags Python branches on tensor values (shape checks in MONAI's blocks), and the
    legacy ONNX exporter announces its deprecation; both are expected here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*torch.jit.*deprecated.*", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="The feature will be removed.*", category=DeprecationWarning)
        yield


def _move(source: Path, path: Path) -> Path:
    """Move a finished file into place (``os.replace`` is atomic within one file system)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, path)
    return path


def export_torchscript(
    module: torch.nn.Module, example_inputs: Mapping[str, torch.Tensor], path: str | os.PathLike
) -> Path:
    """Trace ``module`` on the named ``example_inputs`` (in forward order) and save it to ``path``."""

    def trace_into(temporary: Path) -> None:
        with _quiet_trace():
            convert_to_torchscript(
                module, str(temporary), inputs=tuple(example_inputs.values()), use_trace=True, check_trace=False
            )

    # the archive's top folder is named after the file written, hence a temporary name without a pid
    return atomic_path(path, trace_into, stable_temporary=True)


def _output_names(module: torch.nn.Module, args: tuple, output_names: Sequence[str] | None) -> dict[str, torch.Tensor]:
    """The module's outputs on ``args`` by name: ``output``, or ``output0``... unless named."""
    module.eval()
    with torch.no_grad():
        outputs = _as_tuple(module(*args))
    if output_names is None:
        output_names = ["output"] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
    if len(output_names) != len(outputs):
        raise ValueError(f"output_names {list(output_names)} do not match the module's {len(outputs)} outputs")
    return dict(zip(output_names, outputs, strict=True))


def export_onnx(
    module: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    output_names: Sequence[str] | None = None,
    spatial_names: Sequence[str] | None = None,
    opset: int = ONNX_OPSET,
) -> Path:
    """Export ``module`` to ONNX with dynamic batch and spatial axes (see :func:`dynamic_axes_for`).

    The ONNX input names are the keys of ``example_inputs``, which must follow ``forward``'s order.
    A model over the 2 GB protobuf limit keeps its weights in one ``<name>.onnx.data`` file beside it.
    """
    path = Path(path)
    args = tuple(example_inputs.values())
    outputs = _output_names(module, args, output_names)
    axes = {**dynamic_axes_for(example_inputs, spatial_names), **dynamic_axes_for(outputs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter spills >2 GB weights into one file per tensor beside the model: work in a private folder.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        scratch_model = Path(scratch) / path.name
        with _quiet_trace():
            convert_to_onnx(
                module,
                args,
                input_names=list(example_inputs),
                output_names=list(outputs),
                opset_version=opset,
                dynamic_axes=axes,
                filename=str(scratch_model),
                dynamo=False,
            )
        if len(list(Path(scratch).iterdir())) > 1:
            _merge_external_data(scratch_model)
        data_file = scratch_model.with_name(f"{path.name}.data")
        if data_file.exists():
            _move(data_file, path.with_name(data_file.name))
        return _move(scratch_model, path)


def _merge_external_data(model_path: Path) -> None:
    """Rewrite a model whose weights are spread over many files with one ``<model>.data`` file."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=True)
    for stray in model_path.parent.iterdir():
        if stray != model_path:
            stray.unlink()
    onnx.save_model(
        model,
        str(model_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{model_path.name}.data",
    )


def max_abs_error(reference: Sequence[torch.Tensor], candidate: Sequence[torch.Tensor]) -> float:
    """Largest absolute difference over all outputs; a shape mismatch is an error, not a number."""
    worst = 0.0
    for expected, got in zip(reference, candidate, strict=True):
        got = torch.as_tensor(got)
        if tuple(expected.shape) != tuple(got.shape):
            raise ValueError(f"exported output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}")
        worst = max(worst, float((expected.detach().cpu().double() - got.detach().cpu().double()).abs().max()))
    return worst


def _shapes(inputs: Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
    return {name: list(tensor.shape) for name, tensor in inputs.items()}


def _symbolic_shapes(onnx_path: Path, which: str) -> dict[str, list[int | str]]:
    """Shapes the ONNX graph declares, symbolic names included: the record that the axes are dynamic."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    values = graph.input if which == "inputs" else graph.output
    return {
        value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim] for value in values
    }


def _check_exports(
    module: torch.nn.Module,
    traced: torch.jit.ScriptModule,
    onnx_module: OnnxModule,
    inputs: Mapping[str, torch.Tensor],
) -> dict[str, Any]:
    device = _module_device(module)
    on_device = {name: tensor.to(device) for name, tensor in inputs.items()}
    with torch.no_grad():
        reference = _as_tuple(module(*on_device.values()))
        scripted = _as_tuple(traced(*on_device.values()))
        onnx_outputs = _as_tuple(onnx_module(*on_device.values()))
    return {
        "input_shapes": _shapes(inputs),
        "output_shapes": [list(t.shape) for t in reference],
        "output_max_abs": max(float(t.detach().abs().max()) for t in reference),
        "torchscript_max_abs_error": max_abs_error(reference, scripted),
        "onnxruntime_max_abs_error": max_abs_error(reference, onnx_outputs),
    }


def _describe(module: torch.nn.Module) -> str:
    if isinstance(module, MethodModule):
        return f"{type(module.network).__name__}.{module.method}"
    return type(module).__name__


def _check_specs(networks: Mapping[str, Mapping[str, Any]], tolerance: float) -> None:
    """Name the bad network or key before anything is exported."""
    if not networks:
        raise ValueError("export_networks: no networks to export")
    if not tolerance > 0:
        raise ValueError(f"tolerance={tolerance!r} must be positive")
    for name, spec in networks.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"network name {name!r} must be a plain file stem (letters, digits, _ and -)")
        unknown = set(spec) - {"module", "inputs", "check_inputs", "output_names", "spatial_names"}
        if unknown or "module" not in spec or "inputs" not in spec:
            raise ValueError(f"network {name!r}: needs 'module' and 'inputs'; unknown keys {sorted(unknown)}")


def _within_tolerance(name: str, checks: Sequence[Mapping[str, Any]], tolerance: float, export_dir: Path) -> None:
    """Refuse an export that differs from PyTorch on any input set (relative beyond outputs of magnitude 1)."""
    for check in checks:
        worst = max(check["torchscript_max_abs_error"], check["onnxruntime_max_abs_error"])
        allowed = tolerance * max(1.0, check["output_max_abs"])
        if not worst <= allowed:
            raise RuntimeError(
                f"export of {name!r} differs from PyTorch by {worst:.3g} (> {allowed:.3g}: tolerance "
                f"{tolerance} x max(1, largest output {check['output_max_abs']:.3g})) on inputs "
                f"{check['input_shapes']}; nothing was written to {export_dir}"
            )


def _export_and_check(name: str, spec: Mapping[str, Any], scratch_dir: Path, opset: int) -> dict[str, Any]:
    """Export one network into ``scratch_dir`` and run both exports on every input set."""
    module, inputs = spec["module"], dict(spec["inputs"])
    device = _module_device(module)
    inputs = {key: value.to(device) for key, value in inputs.items()}
    torchscript_path = export_torchscript(module, inputs, scratch_dir / f"{name}.ts")
    onnx_path = export_onnx(
        module, inputs, scratch_dir / f"{name}.onnx", spec.get("output_names"), spec.get("spatial_names"), opset
    )
    traced = torch.jit.load(str(torchscript_path), map_location=device)
    onnx_module = OnnxModule(onnx_path)
    checks = [
        _check_exports(module, traced, onnx_module, check_inputs)
        for check_inputs in [inputs, *spec.get("check_inputs", [])]
    ]
    return {
        "module": _describe(module),
        "onnx_inputs": _symbolic_shapes(onnx_path, "inputs"),
        "onnx_outputs": _symbolic_shapes(onnx_path, "outputs"),
        "checks": checks,
    }


def export_networks(
    networks: Mapping[str, Mapping[str, Any]],
    export_dir: str | os.PathLike,
    tolerance: float = 1e-4,
    report_name: str = "export_report.json",
    opset: int = ONNX_OPSET,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export several networks to ``<export_dir>/<name>.ts`` and ``<name>.onnx`` and write a parity report.

    Args:
        networks: ``{name: {"module": nn.Module, "inputs": {input name: example tensor}, "check_inputs":
            [{input name: tensor}, ...] (optional, e.g. another batch and spatial size),
            "output_names": [...] (optional), "spatial_names": [...] (optional)}}``.
        export_dir: destination folder.
        tolerance: largest accepted difference between PyTorch and either export, absolute for outputs
            within [-1, 1] and relative to the largest output magnitude beyond (float32 rounding grows
            with the output's scale).
        report_name: JSON report written last in ``export_dir``, with the errors on every input set.
        opset: ONNX opset.
        metadata: provenance copied into the report (e.g. the profile and the sha256 of the source weights).

    Everything is written to a hidden scratch folder first; only when every network passed its
    checks are the files moved into ``export_dir``, so a failed export leaves nothing behind.
    """
    _check_specs(networks, tolerance)
    export_dir = Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "torch_version": torch.__version__,
        "onnx_opset": opset,
        "tolerance": tolerance,
        **dict(metadata or {}),
        "networks": {},
    }
    with tempfile.TemporaryDirectory(dir=export_dir, prefix=".export-") as scratch:
        scratch_dir = Path(scratch)
        written: list[Path] = []
        for name, spec in networks.items():
            entry = _export_and_check(name, spec, scratch_dir, opset)
            _within_tolerance(name, entry["checks"], tolerance, export_dir)
            files = sorted(p for p in scratch_dir.iterdir() if p.name.startswith(f"{name}."))
            written += files
            report["networks"][name] = {"module": entry.pop("module"), "files": {p.name: file_sha256(p) for p in files}}
            report["networks"][name].update(entry)
            print(f"exported {name}: " + ", ".join(_summary(check) for check in entry["checks"]))
        for file in written:
            _move(file, export_dir / file.name)
            print(f"wrote {export_dir / file.name}")
    report_path = write_json(report, export_dir / report_name)
    print(f"wrote {report_path}")
    return report


def _summary(check: Mapping[str, Any]) -> str:
    return (
        f"{check['input_shapes']} onnxruntime {check['onnxruntime_max_abs_error']:.2e} "
        f"torchscript {check['torchscript_max_abs_error']:.2e} (largest output {check['output_max_abs']:.3g})"
    )
