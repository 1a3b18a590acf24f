"""The per-sample PNG: the label map in colour, then each contrast with the lesions drawn over it.

The planes come from the shared ``triplanar`` so every panel has the same geometry; a label volume
shown with the value range (0, 255) keeps its class indices as grey levels, which are then coloured.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from scripts.common.previews import grid, triplanar

__all__ = ["PALETTE", "colour_labels", "lesion_overlay", "sample_preview"]

#: RGB per class, in label order: background, CSF, GM, WM, deep GM, brainstem, WMH, tumour, edema, enhancing.
PALETTE = np.array(
    [
        (0, 0, 0),
        (70, 130, 220),
        (150, 150, 150),
        (235, 235, 235),
        (120, 90, 60),
        (90, 150, 90),
        (255, 220, 0),
        (220, 30, 30),
        (40, 200, 220),
        (255, 120, 0),
    ],
    dtype=np.uint8,
)
COLOUR_NAMES = ("black", "blue", "grey", "white", "brown", "green", "yellow", "red", "cyan", "orange")


def _class_planes(labels: np.ndarray, zoom: int) -> np.ndarray:
    return np.asarray(triplanar(labels.astype(np.float32), (0.0, 255.0), zoom))


def colour_labels(labels: np.ndarray, palette: np.ndarray = PALETTE, zoom: int = 4) -> Image.Image:
    """Tri-planar view of an integer label volume, one colour per class."""
    return Image.fromarray(palette[np.clip(_class_planes(labels, zoom), 0, len(palette) - 1)], mode="RGB")


def lesion_overlay(
    volume: np.ndarray,
    labels: np.ndarray,
    lesion_classes: Sequence[int],
    palette: np.ndarray = PALETTE,
    alpha: float = 0.5,
    zoom: int = 4,
) -> Image.Image:
    """Tri-planar grey view of ``volume`` with the voxels of ``lesion_classes`` tinted by their colour."""
    grey = np.asarray(triplanar(volume, (0.0, 1.0), zoom)).astype(np.float32)
    classes = np.clip(_class_planes(labels, zoom), 0, len(palette) - 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    tinted = np.isin(classes, list(lesion_classes))
    rgb[tinted] = (1 - alpha) * rgb[tinted] + alpha * palette[classes[tinted]].astype(np.float32)
    return Image.fromarray(rgb.round().clip(0, 255).astype(np.uint8), mode="RGB")


def _with_caption(image: Image.Image, text: str, height: int = 14) -> Image.Image:
    """``image`` in colour below a line of white text (the shared ``captioned`` is greyscale)."""
    canvas = Image.new("RGB", (image.width, image.height + height))
    ImageDraw.Draw(canvas).text((2, 1), text, fill=(255, 255, 255), font=ImageFont.load_default())
    canvas.paste(image.convert("RGB"), (0, height))
    return canvas


def sample_preview(
    labels: np.ndarray,
    images: Mapping[str, np.ndarray],
    caption: str,
    label_names: Sequence[str],
    lesion_names: Sequence[str],
) -> Image.Image:
    """The coloured label map under ``caption``, then one lesion-overlaid row per contrast."""
    lesion_classes = [label_names.index(name) for name in lesion_names]
    legend = ", ".join(f"{name} {COLOUR_NAMES[index]}" for name, index in zip(lesion_names, lesion_classes))
    rows = [_with_caption(colour_labels(labels), caption)]
    rows += [
        _with_caption(lesion_overlay(volume, labels, lesion_classes), f"{contrast} ({legend})")
        for contrast, volume in images.items()
    ]
    return grid(rows, gap=2)
