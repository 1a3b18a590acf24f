"""Loading the published UK Biobank weights, which are saved in the old MONAI GenerativeModels format.

MONAI core's ``load_old_state_dict`` renames the old keys (attention projections, upsampling
convolutions), but it keeps the initial values of any tensor the file lacks and ignores tensors it
cannot place. :func:`load_old_format` counts both, so a checkpoint of another architecture fails
loudly, naming the file, instead of giving a half-random network.
"""

from __future__ import annotations

import os

import torch

from scripts.common.weights import read_state_dict, unwrap

__all__ = ["load_old_format"]


def load_old_format(network: torch.nn.Module, path: str | os.PathLike, name: str = "weights") -> torch.nn.Module:
    """Load a GenerativeModels-format checkpoint at ``path`` into a MONAI core ``network``.

    A checkpoint whose keys already follow MONAI core is loaded as is. ``name`` is the config id
    reported in errors (e.g. ``load_diffusion_path``).
    """
    target = unwrap(network)
    if not callable(getattr(target, "load_old_state_dict", None)):
        raise TypeError(f"{name}: {type(target).__name__} cannot convert old-format weights (no load_old_state_dict)")
    expected = target.state_dict()
    old_state = read_state_dict(path, name)
    unused = dict(old_state)  # load_old_state_dict pops every tensor it places
    try:
        if all(key in expected for key in old_state):  # already in MONAI core's layout
            target.load_state_dict(old_state)
            return network
        target.load_old_state_dict(unused)
    except KeyError as error:
        raise ValueError(
            f"{name}: weights file {path} lacks tensor {error} that the configured {type(target).__name__} needs"
        ) from error
    except RuntimeError as error:
        raise ValueError(f"{name}: weights file {path} does not match the configured network: {error}") from error
    if unused:
        raise ValueError(
            f"{name}: weights file {path} has {len(unused)} tensor(s) the configured {type(target).__name__} "
            f"does not use, e.g. {sorted(unused)[:3]}; is the architecture right?"
        )
    placed = len(old_state) - len(unused)
    if placed != len(expected):
        raise ValueError(
            f"{name}: weights file {path} provides {placed} of the {len(expected)} tensors of the configured "
            f"{type(target).__name__}; the others would keep their random initial values"
        )
    return network
