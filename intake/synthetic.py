"""Ground-truth studio photos: an RGBA cut-out composited onto a generated seamless backdrop.

Used to measure background removal against a known alpha (tests and ``bench/intake.py``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

__all__ = ["BACKDROPS", "Backdrop", "backdrop_image", "composite", "iou"]


@dataclass(frozen=True)
class Backdrop:
    """A seamless backdrop: a vertical gradient ``top -> bottom`` and an optional contact shadow.

    ``shadow`` is the darkening (0-1) at the centre of the soft elliptical shadow under the object.
    """

    name: str
    top: tuple[int, int, int]
    bottom: tuple[int, int, int]
    shadow: float = 0.0


#: The acceptance backdrops: white, light gray (CSS ``lightgray``), a blue seamless sweep with a shadow.
BACKDROPS: tuple[Backdrop, ...] = (
    Backdrop("white", (255, 255, 255), (255, 255, 255)),
    Backdrop("light-gray", (211, 211, 211), (211, 211, 211)),
    Backdrop("blue-seamless+shadow", (150, 185, 215), (212, 228, 240), shadow=0.45),
)


def backdrop_image(bd: Backdrop, alpha: np.ndarray) -> np.ndarray:
    """The backdrop for an object.

    Parameters
    ----------
    bd : Backdrop
    alpha : np.ndarray
        ``(H, W) float`` object alpha in [0, 1] (places the shadow under it).

    Returns
    -------
    np.ndarray
        ``(H, W, 3) float32`` backdrop colours (0-255).
    """
    h, w = alpha.shape
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]  # (H, 1, 1)
    top, bottom = np.array(bd.top, np.float32), np.array(bd.bottom, np.float32)
    bg = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    if bd.shadow:
        ys, xs = np.nonzero(alpha > 0.5)
        cx, width, floor = (xs.min() + xs.max()) / 2, float(xs.max() - xs.min()), float(ys.max())
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ellipse = (((xx - cx) / (0.45 * width)) ** 2 + ((yy - floor) / (0.06 * width)) ** 2) <= 1
        soft = cv2.GaussianBlur(ellipse.astype(np.float32), (0, 0), 0.04 * width)
        bg *= (1 - bd.shadow * soft / max(float(soft.max()), 1e-6))[..., None]
    return bg


def composite(
    rgba: np.ndarray, bd: Backdrop, *, jpeg_quality: int | None = None, scale: int = 1
) -> tuple[bytes, np.ndarray]:
    """Composite a cut-out on a backdrop and encode it.

    Parameters
    ----------
    rgba : np.ndarray
        ``(H, W, 4) uint8`` cut-out.
    bd : Backdrop
    jpeg_quality : int | None
        JPEG quality, or ``None`` for a lossless PNG.
    scale : int
        Integer upscale (bicubic) of the cut-out first, to make a larger photo.

    Returns
    -------
    data : bytes
        The encoded photo.
    truth : np.ndarray
        ``(H * scale, W * scale) bool`` ground-truth mask, alpha >= 128.
    """
    if scale != 1:
        im = Image.fromarray(rgba)
        rgba = np.asarray(im.resize((im.width * scale, im.height * scale), Image.Resampling.BICUBIC))
    a = rgba[..., 3:].astype(np.float32) / 255.0
    out = np.clip(rgba[..., :3] * a + backdrop_image(bd, a[..., 0]) * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if jpeg_quality is None:
        Image.fromarray(out).save(buf, "PNG")
    else:
        Image.fromarray(out).save(buf, "JPEG", quality=jpeg_quality)
    return buf.getvalue(), rgba[..., 3] >= 128


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(H, W) bool`` masks."""
    return float((a & b).sum() / max(1, (a | b).sum()))
