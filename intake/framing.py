"""Framing as the official TripoSR ``run.py`` does it, without its off-by-one.

Official steps: crop to the ``alpha > 0`` box, pad to a centred square, pad again so the object spans
``foreground_ratio`` of the side (``new = int(side / ratio)``, split ``(new - side) // 2`` before),
composite ``rgb * a + 0.5 * (1 - a)``, truncate to uint8; the model then resizes to 512 with an
antialiased bilinear filter. The official crop ``image[y1:y2, x1:x2]`` uses the inclusive maxima as
exclusive ends and so drops the object's last row and column; here the box is ``[y0, y1]`` inclusive.

The box is that of ``alpha > 0``: the soft edge counts, down to its faintest pixel, as in the official
rule, so the mask handed in must keep it (the rembg path keeps every faint pixel attached to the object;
see ``intake.rembg_method._clean``). Cutting it would frame the object larger than the model saw in
training.

Large photos are box-reduced by an integer factor before the final antialiased bilinear resize, so
memory stays proportional to the crop, never to the padded square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["Framing", "foreground_bbox", "frame_object", "plan_framing"]

_STRIP_ROWS = 256


@dataclass(frozen=True)
class Framing:
    """Where the crop sits in the official padded square.

    Attributes
    ----------
    bbox : tuple[int, int, int, int]
        ``(x0, y0, x1, y1)`` of the foreground in the photo, ends exclusive.
    side : int
        Side of the centred square around the crop.
    canvas : int
        Side of the padded canvas, ``int(side / foreground_ratio)``.
    offset : tuple[int, int]
        ``(x, y)`` of the crop's top-left corner in the canvas.
    """

    bbox: tuple[int, int, int, int]
    side: int
    canvas: int
    offset: tuple[int, int]


def foreground_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Box of the ``mask > 0`` pixels.

    Parameters
    ----------
    mask : np.ndarray
        ``(H, W)`` mask or alpha.

    Returns
    -------
    tuple[int, int, int, int] | None
        ``(x0, y0, x1, y1)`` with exclusive ends (the last foreground row and column included), or
        ``None`` for an empty mask.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def plan_framing(bbox: tuple[int, int, int, int], foreground_ratio: float) -> Framing:
    """The official square and padding for a foreground box (see module docstring)."""
    if not 0.0 < foreground_ratio <= 1.0:
        raise ValueError(f"foreground_ratio must be in (0, 1], got {foreground_ratio}")
    x0, y0, x1, y1 = bbox
    h, w = y1 - y0, x1 - x0
    side = max(h, w)
    canvas = int(side / foreground_ratio)
    pad = (canvas - side) // 2
    return Framing(bbox=bbox, side=side, canvas=canvas, offset=(pad + (side - w) // 2, pad + (side - h) // 2))


def _composite_strip(rgb: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``rgb * a + 0.5 * (1 - a)`` on 0-255 data, truncated like the official ``astype(np.uint8)``.

    ``(n, w, 3) uint8``, ``(n, w) uint8`` -> ``(n, w, 3) uint8``; exact integer arithmetic:
    ``floor((2 * rgb * a + 255 * (255 - a)) / 510)``.
    """
    a32 = a.astype(np.int32)[..., None]  # (n, w, 1)
    return ((2 * rgb.astype(np.int32) * a32 + 255 * (255 - a32)) // 510).astype(np.uint8)


def frame_object(
    rgb: np.ndarray,
    mask: np.ndarray,
    *,
    foreground_ratio: float = 0.85,
    size: int = 512,
    composite: bool = True,
) -> tuple[np.ndarray, np.ndarray, Framing]:
    """Frame the object for the model.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3) uint8`` photo.
    mask : np.ndarray
        ``(H, W) uint8`` foreground opacity (alpha).
    foreground_ratio : float
        Fraction of the output side the object's longer extent spans.
    size : int
        Output side.
    composite : bool
        Composite onto the gray with the mask (the official step). ``False`` keeps the crop's pixels as
        they are, for a photo that already sits on the model's gray.

    Returns
    -------
    image : np.ndarray
        ``(size, size, 3) uint8`` model input, object on gray 0.5 (127).
    framed_mask : np.ndarray
        ``(size, size) uint8`` the mask in the same frame.
    framing : Framing
        Geometry of the crop.

    Raises
    ------
    ValueError
        For an empty mask or a ratio outside ``(0, 1]``.
    """
    bbox = foreground_bbox(mask)
    if bbox is None:
        raise ValueError("empty mask: nothing to frame")
    fr = plan_framing(bbox, foreground_ratio)
    x0, y0, x1, y1 = bbox
    h, w = y1 - y0, x1 - x0
    ox, oy = fr.offset
    # Integer box reduction first (keeps >= 2x the output resolution), then one antialiased resize.
    k = max(1, fr.canvas // (2 * size))
    px, py = ox % k, oy % k
    hp = -(-(py + h) // k) * k
    wp = -(-(px + w) // k) * k
    comp = np.full((hp, wp, 3), 127, np.uint8)
    alpha = np.zeros((hp, wp), np.uint8)
    for r in range(0, h, _STRIP_ROWS):
        rr = slice(y0 + r, y0 + min(h, r + _STRIP_ROWS))
        dst = slice(py + r, py + min(h, r + _STRIP_ROWS))
        comp[dst, px : px + w] = (
            _composite_strip(rgb[rr, x0:x1], mask[rr, x0:x1]) if composite else rgb[rr, x0:x1]
        )
        alpha[dst, px : px + w] = mask[rr, x0:x1]
    cimg, aimg = Image.fromarray(comp), Image.fromarray(alpha)
    if k > 1:
        cimg, aimg = cimg.reduce(k), aimg.reduce(k)
    n = -(-fr.canvas // k)  # reduced canvas side
    canvas_rgb = Image.new("RGB", (n, n), (127, 127, 127))
    canvas_a = Image.new("L", (n, n), 0)
    canvas_rgb.paste(cimg, (ox // k, oy // k))
    canvas_a.paste(aimg, (ox // k, oy // k))
    box = (0.0, 0.0, fr.canvas / k, fr.canvas / k)
    out_rgb = canvas_rgb.resize((size, size), Image.Resampling.BILINEAR, box=box)
    out_a = canvas_a.resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.asarray(out_rgb), np.asarray(out_a), fr
