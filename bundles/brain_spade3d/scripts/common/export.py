# Generated copy of tools/common/export.py: edit the source, then run `python -m tools sync-common`.
"""Export networks to TorchScript and ONNX, check them against PyTorch, and run an ONNX file as a module.

MONAI's ``ckpt_export``/``onnx_export`` feed a single input, but a conditioned diffusion UNet takes
three (noisy latent, timesteps, context), and ``torch.jit.script`` fails on MONAI's generative
networks. This module therefore traces (``torch.jit.trace``) and uses the legacy TorchScript-based
ONNX exporter (``dynamo=False``, opset 17, no ``onnxscript`` needed) for any number of named inputs.
The batch axis and every spatial axis get their own symbolic dimension, so one export serves any
batch size and any spatial size the network accepts. A trace freezes Python control flow, so each
export is checked against the PyTorch module, ideally also on inputs of another batch and spatial
size than the ones it was traced with; files only appear in the export folder once every check passed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .weights import file_sha256

__all__ = [
    "ONNX_OPSET",
    "MethodModule",
    "OnnxModule",
    "dynamic_axes_for",
    "export_networks",
    "export_onnx",
    "export_torchscript",
    "max_abs_error",
]

#: Opset of the legacy exporter measured to reproduce MONAI's UNet and decoder to ~1e-6.
ONNX_OPSET = 17

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class MethodModule(torch.nn.Module):
    """Expose one method of a network as ``forward`` so that it can be traced on its own.

    Example: ``MethodModule(autoencoder, "decode_stage_2_outputs")`` is the decoder of an
    ``AutoencoderKL`` as a stand-alone module taking a latent.
    """

    def __init__(self, network: torch.nn.Module, method: str) -> None:
        super().__init__()
        if not callable(getattr(network, method, None)):
            raise ValueError(f"MethodModule: {type(network).__name__} has no method {method!r}")
        self.network = network
        self.method = method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.network, self.method)(*inputs)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ImportError(
            "onnxruntime is needed to run or check ONNX exports: pip install 'synthbrain-zoo[export]'"
        ) from error
    return onnxruntime


def _session(path: Path, providers: Sequence[str] | None = None) -> Any:
    ort = _import_onnxruntime()
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} not found: export it first (configs/export.json)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3  # errors only: ORT otherwise warns about unused initialisers
    if providers is None:
        use_cuda = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))


class OnnxModule(torch.nn.Module):
    """Run an ``.onnx`` file with onnxruntime behind the ``torch.nn.Module`` call convention.

    Inputs are matched to the ONNX inputs by position, then by keyword (the exported input names,
    e.g. ``x``, ``timesteps``, ``context`` for a diffusion UNet), cast to the dtype the graph
    expects (a sampler's float or int64 timesteps both work) and the outputs come back as tensors
    on the device of the first input. It has no parameters, so a sampler can use it in place of the
    PyTorch network without any other change.

    Args:
        path: the ``.onnx`` file (an external ``.onnx.data`` file, if any, must sit beside it).
        providers: onnxruntime execution providers; default CUDA when torch sees a GPU, else CPU.
    """

    def __init__(self, path: str | os.PathLike, providers: Sequence[str] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = _session(self.path, providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_dtypes = {i.name: _ORT_TO_NUMPY.get(i.type) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def forward(self, *args: torch.Tensor | None, **kwargs: torch.Tensor | None) -> torch.Tensor | tuple[torch.Tensor]:
        if len(args) > len(self.input_names):
            raise TypeError(
                f"{self.path.name} takes {len(self.input_names)} inputs {self.input_names}, got {len(args)}"
            )
        named = dict(zip(self.input_names, args, strict=False))
        for name, value in kwargs.items():
            if name not in self.input_names:
                raise TypeError(f"{self.path.name} has no input {name!r}; its inputs are {self.input_names}")
            if name in named:
                raise TypeError(f"{self.path.name}: input {name!r} given both by position and by keyword")
            named[name] = value
        missing = [name for name in self.input_names if named.get(name) is None]
        if missing:
            raise TypeError(f"{self.path.name} needs inputs {missing} (got None or nothing)")
        device = next(iter(named.values())).device
        feed = {}
        for name in self.input_names:
            array = named[name].detach().cpu().numpy()
            dtype = self.input_dtypes[name]
            feed[name] = array.astype(dtype, copy=False) if dtype is not None else array
        outputs = [torch.from_numpy(o).to(device) for o in self.session.run(self.output_names, feed)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, inputs={self.input_names}, outputs={self.output_names}"


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


def _replace_atomically(temporary: Path, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temporary, path)
    return path


def export_torchscript(
    module: torch.nn.Module, example_inputs: Mapping[str, torch.Tensor], path: str | os.PathLike
) -> Path:
    """Trace ``module`` on the named ``example_inputs`` (in forward order) and save it to ``path``."""
    path = Path(path)
    module.eval()
    args = tuple(example_inputs.values())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with _quiet_trace(), torch.no_grad():
            traced = torch.jit.trace(module, args, check_trace=False)
        torch.jit.save(traced, str(temporary))
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return _replace_atomically(temporary, path)


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
    module.eval()
    args = tuple(example_inputs.values())
    with torch.no_grad():
        outputs = _as_tuple(module(*args))
    if output_names is None:
        output_names = ["output"] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
    if len(output_names) != len(outputs):
        raise ValueError(f"output_names {list(output_names)} do not match the module's {len(outputs)} outputs")
    axes = {
        **dynamic_axes_for(example_inputs, spatial_names),
        **dynamic_axes_for(dict(zip(output_names, outputs, strict=True))),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter spills >2 GB weights into one file per tensor beside the model: work in a private folder.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        scratch_model = Path(scratch) / path.name
        with _quiet_trace():
            torch.onnx.export(
                module,
                args,
                str(scratch_model),
                input_names=list(example_inputs),
                output_names=list(output_names),
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        if len(list(Path(scratch).iterdir())) > 1:
            _merge_external_data(scratch_model)
        data_file = scratch_model.with_name(f"{path.name}.data")
        if data_file.exists():
            _replace_atomically(data_file, path.with_name(data_file.name))
        return _replace_atomically(scratch_model, path)


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
            del traced, onnx_module
            for check in checks:
                worst = max(check["torchscript_max_abs_error"], check["onnxruntime_max_abs_error"])
                allowed = tolerance * max(1.0, check["output_max_abs"])
                if not worst <= allowed:
                    raise RuntimeError(
                        f"export of {name!r} differs from PyTorch by {worst:.3g} (> {allowed:.3g}: tolerance "
                        f"{tolerance} x max(1, largest output {check['output_max_abs']:.3g})) on inputs "
                        f"{check['input_shapes']}; nothing was written to {export_dir}"
                    )
            files = sorted(p for p in scratch_dir.iterdir() if p.name.startswith(f"{name}."))
            written += files
            report["networks"][name] = {
                "module": _describe(module),
                "files": {p.name: file_sha256(p) for p in files},
                "onnx_inputs": _symbolic_shapes(onnx_path, "inputs"),
                "onnx_outputs": _symbolic_shapes(onnx_path, "outputs"),
                "checks": checks,
            }
            print(
                f"exported {name}: "
                + ", ".join(
                    f"{c['input_shapes']} onnxruntime {c['onnxruntime_max_abs_error']:.2e} "
                    f"torchscript {c['torchscript_max_abs_error']:.2e} (largest output {c['output_max_abs']:.3g})"
                    for c in checks
                )
            )
        for file in written:
            _replace_atomically(file, export_dir / file.name)
            print(f"wrote {export_dir / file.name}")
    report_path = export_dir / report_name
    temporary = report_path.with_name(f".{report_name}.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    _replace_atomically(temporary, report_path)
    print(f"wrote {report_path}")
    return report
