# Generated copy of bundle_runtime/previews.py: edit the source, then run `python -m tools sync-common`.
"""PNG previews drawn with Pillow (matplotlib is not a dependency of the bundles).

Volumes are RAS-oriented arrays (x: left to right, y: posterior to anterior, z: inferior to
superior), shown in neurological convention: the subject's left on the image's left, superior up,
anterior up in the axial view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["axial", "captioned", "grid", "histogram_panel", "scatter_panel", "side_by_side", "triplanar"]


def _to_uint8(plane: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    low, high = value_range
    scaled = (np.nan_to_num(plane.astype(np.float64)) - low) / max(high - low, 1e-12)
    return (np.clip(scaled, 0.0, 1.0) * 255).round().astype(np.uint8)


def triplanar(
    volume: np.ndarray,
    value_range: tuple[float, float] = (0.0, 1.0),
    zoom: int = 4,
    centre: Sequence[int] | None = None,
) -> Image.Image:
    """Sagittal, coronal and axial slices through ``centre`` (default the middle), side by side.

    Args:
        volume: (X, Y, Z) or (1, X, Y, Z) array in RAS order.
        value_range: intensities mapped to black and white.
        zoom: integer upscaling (nearest neighbour) so small 4 mm volumes stay readable.
        centre: voxel the three planes pass through.
    """
    volume = _volume_3d(volume, "triplanar")
    x, y, z = (s // 2 for s in volume.shape) if centre is None else (int(c) for c in centre)
    planes = [
        np.rot90(volume[x, :, :]),  # sagittal: rows superior->inferior, columns posterior->anterior
        np.rot90(volume[:, y, :]),  # coronal: rows superior->inferior, columns left->right
        np.rot90(volume[:, :, z]),  # axial: rows anterior->posterior, columns left->right
    ]
    return side_by_side([_tile(plane, value_range, zoom) for plane in planes], gap=2 * zoom)


def _volume_3d(volume: np.ndarray, helper: str) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim == 4 and volume.shape[0] == 1:
        volume = volume[0]
    if volume.ndim != 3:
        raise ValueError(f"{helper} needs a 3D volume, got shape {volume.shape}")
    return volume


def _tile(plane: np.ndarray, value_range: tuple[float, float], zoom: int) -> Image.Image:
    tile = Image.fromarray(_to_uint8(plane, value_range), mode="L")
    return tile.resize((tile.width * zoom, tile.height * zoom), Image.Resampling.NEAREST)


def axial(
    volume: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0), zoom: int = 4, z: int | None = None
) -> Image.Image:
    """The axial slice at ``z`` (default the middle) as :func:`triplanar` draws it, for grids of many volumes."""
    volume = _volume_3d(volume, "axial")
    return _tile(np.rot90(volume[:, :, volume.shape[2] // 2 if z is None else int(z)]), value_range, zoom)


def _stack(tiles: Sequence[Image.Image], gap: int, background: int, horizontal: bool) -> Image.Image:
    """Tiles one after another ``gap`` pixels apart, in a row (vertically centred) or a column (left-aligned).

    The canvas is RGB as soon as one tile is, so colour tiles keep their colours beside grey ones.
    """
    along = [t.width if horizontal else t.height for t in tiles]
    breadth = max(t.height if horizontal else t.width for t in tiles)
    length = sum(along) + gap * (len(tiles) - 1)
    mode = "RGB" if any(t.mode == "RGB" for t in tiles) else "L"
    size = (length, breadth) if horizontal else (breadth, length)
    canvas = Image.new(mode, size, color=background if mode == "L" else (background,) * 3)
    offset = 0
    for tile, extent in zip(tiles, along):
        canvas.paste(tile.convert(mode), (offset, (breadth - tile.height) // 2) if horizontal else (0, offset))
        offset += extent + gap
    return canvas


def side_by_side(tiles: Sequence[Image.Image], gap: int = 4, background: int = 0) -> Image.Image:
    """Tiles in one row, vertically centred."""
    return _stack(tiles, gap, background, horizontal=True)


def grid(rows: Sequence[Image.Image], gap: int = 4, background: int = 0) -> Image.Image:
    """Row images stacked vertically, left-aligned."""
    return _stack(rows, gap, background, horizontal=False)


def captioned(image: Image.Image, text: str, height: int = 14) -> Image.Image:
    """``image`` with a line of white text on black above it; colour images keep their colours."""
    mode = "RGB" if image.mode == "RGB" else "L"
    white = 255 if mode == "L" else (255, 255, 255)
    canvas = Image.new(mode, (image.width, image.height + height), color=0)
    ImageDraw.Draw(canvas).text((2, 1), text, fill=white, font=ImageFont.load_default())
    canvas.paste(image.convert(mode), (0, height))
    return canvas


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


class _Axes:
    """A white panel with a framed plot area, ticks and labels; maps data to pixel coordinates."""

    def __init__(
        self,
        x_span: tuple[float, float],
        y_span: tuple[float, float],
        title: str,
        x_label: str,
        y_label: str,
        size: tuple[int, int],
    ) -> None:
        self.width, self.height = size
        self.left, self.right, self.top, self.bottom = 76, 16, 28, 48
        (self.x_low, self.x_high), (self.y_low, self.y_high) = x_span, y_span
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        font = ImageFont.load_default()
        draw, width, height, left, top, bottom = self.draw, self.width, self.height, self.left, self.top, self.bottom
        draw.rectangle([left, top, width - self.right, height - bottom], outline="black")
        for tick in _nice_ticks(*x_span):
            u, _ = self.to_pixel(tick, self.y_low)
            draw.line([u, height - bottom, u, height - bottom + 4], fill="black")
            text = f"{tick:.3g}"
            draw.text((u - draw.textlength(text, font=font) / 2, height - bottom + 6), text, fill="black", font=font)
        for tick in _nice_ticks(*y_span):
            _, v = self.to_pixel(self.x_low, tick)
            draw.line([left - 4, v, left, v], fill="black")
            text = f"{tick:.4g}"
            draw.text((left - 8 - draw.textlength(text, font=font), v - 6), text, fill="black", font=font)
        draw.text((left, 8), title, fill="black", font=font)
        x_label_width = draw.textlength(x_label, font=font)
        draw.text(
            (left + (width - left - self.right - x_label_width) / 2, height - 18), x_label, fill="black", font=font
        )
        label = Image.new("RGB", (int(draw.textlength(y_label, font=font)) + 4, 14), "white")
        ImageDraw.Draw(label).text((2, 0), y_label, fill="black", font=font)
        rotated = label.rotate(90, expand=True)
        self.image.paste(rotated, (2, top + max(0, (height - top - bottom - rotated.height) // 2)))

    def to_pixel(self, px: float, py: float) -> tuple[float, float]:
        u = self.left + (px - self.x_low) / (self.x_high - self.x_low) * (self.width - self.left - self.right)
        v = (
            self.height
            - self.bottom
            - (py - self.y_low) / (self.y_high - self.y_low) * (self.height - self.top - self.bottom)
        )
        return u, v


def _span(values: np.ndarray) -> tuple[float, float]:
    """Data range with a margin; a unit range when there is nothing to show."""
    if values.size == 0:
        return 0.0, 1.0
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.08 or max(abs(low) * 0.1, 0.5)
    return low - pad, high + pad


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return array[np.isfinite(array)]


def scatter_panel(
    x: Sequence[float],
    y: Sequence[float],
    title: str,
    x_label: str,
    y_label: str,
    size: tuple[int, int] = (420, 360),
) -> Image.Image:
    """A labelled scatter plot with axes and ticks, white background."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    finite = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[finite], ys[finite]
    axes = _Axes(_span(xs), _span(ys), title, x_label, y_label, size)
    for px, py in zip(xs, ys):
        u, v = axes.to_pixel(px, py)
        axes.draw.ellipse([u - 3, v - 3, u + 3, v + 3], fill=(31, 119, 180), outline="black")
    return axes.image


def histogram_panel(
    values: Sequence[float],
    title: str,
    x_label: str,
    bins: int = 20,
    size: tuple[int, int] = (420, 300),
) -> Image.Image:
    """A labelled histogram (counts per bin) of the finite ``values``, white background."""
    finite = _finite(values)
    low, high = _span(finite)
    counts, edges = np.histogram(finite, bins=bins, range=(low, high))
    axes = _Axes((low, high), (0.0, max(1.0, float(counts.max(initial=0)) * 1.1)), title, x_label, "count", size)
    for count, left_edge, right_edge in zip(counts, edges[:-1], edges[1:]):
        if count:
            u0, v0 = axes.to_pixel(left_edge, float(count))
            u1, v1 = axes.to_pixel(right_edge, 0.0)
            axes.draw.rectangle([u0, v0, u1, v1], fill=(31, 119, 180), outline="black")
    return axes.image
