"""Intake quality flags: how far to trust a mask, and whether the photo is usable for reconstruction."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from intake.types import Segmentation

__all__ = ["FlagThresholds", "IntakeFlags", "assess", "compute_flags"]


@dataclass(frozen=True)
class FlagThresholds:
    """Every threshold of the intake flags, in one place.

    Attributes
    ----------
    mask_level : int
        Mask value (0-255) from which a pixel counts as object.
    clipped_border_fraction : float
        The object is clipped when more than this fraction of the image border is object.
    second_object_ratio : float
        Several objects when a second connected object has at least this fraction of the largest's area.
    tiny_fraction : float
        Tiny object when the object covers less than this fraction of the photo.
    tiny_side : int
        Tiny object when the object's longer extent is under this many pixels.
    low_contrast : float
        Low backdrop contrast when the median object-to-backdrop colour distance (RGB units) is below.
    min_confidence : float
        Unusable when the method's mask confidence is below.
    """

    mask_level: int = 128
    clipped_border_fraction: float = 0.005
    second_object_ratio: float = 0.10
    tiny_fraction: float = 0.005
    tiny_side: int = 48
    low_contrast: float = 25.0
    min_confidence: float = 0.80


@dataclass(frozen=True)
class IntakeFlags:
    """Measured intake flags (values and the booleans derived from them).

    Attributes
    ----------
    foreground_fraction : float
        Object pixels / photo pixels.
    border_fraction : float
        Object pixels on the image border / border pixels.
    clipped : bool
        The object touches the photo border (it is probably cut off).
    clipped_sides : tuple[str, ...]
        Which sides (``top``, ``bottom``, ``left``, ``right``) the object touches.
    object_count : int
        Connected objects at least ``second_object_ratio`` of the largest.
    several_objects : bool
        More than one object.
    tiny_object : bool
        The object is too small in the photo to frame at the model's resolution.
    backdrop_contrast : float | None
        Median object-to-backdrop colour distance, when the method models the backdrop.
    low_contrast : bool
        The object barely differs from the backdrop.
    mask_confidence : float
        The method's own confidence in its mask.
    on_gray : bool
        The photo already sits on the model's gray (already preprocessed).
    """

    foreground_fraction: float
    border_fraction: float
    clipped: bool
    clipped_sides: tuple[str, ...]
    object_count: int
    several_objects: bool
    tiny_object: bool
    backdrop_contrast: float | None
    low_contrast: bool
    mask_confidence: float
    on_gray: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["clipped_sides"] = list(self.clipped_sides)
        return out


def compute_flags(seg: Segmentation, thresholds: FlagThresholds = FlagThresholds()) -> IntakeFlags:
    """Measure the flags of a segmentation.

    Parameters
    ----------
    seg : Segmentation
        ``seg.mask`` is ``(H, W) uint8``.
    thresholds : FlagThresholds

    Returns
    -------
    IntakeFlags
    """
    t = thresholds
    m = seg.mask >= t.mask_level  # (H, W) bool
    H, W = m.shape
    area = int(m.sum())
    sides = {"top": m[0], "bottom": m[-1], "left": m[:, 0], "right": m[:, -1]}
    border_px = 2 * (H + W)
    on_border = sum(int(v.sum()) for v in sides.values())
    border_fraction = on_border / border_px
    touched = tuple(k for k, v in sides.items() if v.mean() > t.clipped_border_fraction)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    areas = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1] if n > 1 else np.zeros(0, np.int64)
    count = int((areas >= t.second_object_ratio * areas[0]).sum()) if len(areas) else 0
    if area:
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        extent = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    else:
        extent = 0
    fraction = area / (H * W)
    contrast = seg.backdrop_contrast
    return IntakeFlags(
        foreground_fraction=float(fraction),
        border_fraction=float(border_fraction),
        clipped=bool(touched),
        clipped_sides=touched,
        object_count=count,
        several_objects=count > 1,
        tiny_object=bool(fraction < t.tiny_fraction or extent < t.tiny_side),
        backdrop_contrast=None if contrast is None else float(contrast),
        low_contrast=bool(contrast is not None and contrast < t.low_contrast),
        mask_confidence=float(seg.confidence),
        on_gray=bool(seg.on_gray),
    )


def assess(flags: IntakeFlags, thresholds: FlagThresholds = FlagThresholds()) -> tuple[bool, tuple[str, ...]]:
    """Decide whether the photo is usable for reconstruction.

    Returns
    -------
    usable : bool
    reasons : tuple[str, ...]
        Machine-readable reasons it is not (empty when usable): ``no_object``, ``clipped``,
        ``several_objects``, ``tiny_object``, ``low_contrast``, ``low_confidence``.
    """
    reasons: list[str] = []
    if flags.foreground_fraction == 0.0:
        reasons.append("no_object")
    if flags.clipped:
        reasons.append("clipped")
    if flags.several_objects:
        reasons.append("several_objects")
    if flags.tiny_object:
        reasons.append("tiny_object")
    if flags.low_contrast:
        reasons.append("low_contrast")
    if flags.mask_confidence < thresholds.min_confidence:
        reasons.append("low_confidence")
    return not reasons, tuple(reasons)
