"""Run exported networks inside a bundle: an ``.onnx`` file as a module, and one method as ``forward``.

These are the pieces an inference config needs (``configs/inference_onnx.json``, a decoder wrapped
for TensorRT); the export-and-check code lives apart in :mod:`export`, so running an export does
not require carrying it. MONAI has no module that runs an ONNX file behind the ``nn.Module`` call
convention (its ``convert_to_onnx`` only runs onnxruntime once, to verify), hence :class:`OnnxModule`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["MethodModule", "OnnxModule"]

_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class MethodModule(torch.nn.Module):
    """Expose one method of a network as ``forward`` so that it can be traced or compiled on its own.

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

    def _named_inputs(self, args: tuple, kwargs: dict) -> dict[str, torch.Tensor]:
        """Positional then keyword inputs by ONNX input name; a missing, extra or doubled one is an error."""
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
        return named

    def forward(self, *args: torch.Tensor | None, **kwargs: torch.Tensor | None) -> torch.Tensor | tuple[torch.Tensor]:
        named = self._named_inputs(args, kwargs)
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
