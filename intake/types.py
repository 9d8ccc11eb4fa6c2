"""Small value types shared by the segmentation methods."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import numpy as np

__all__ = ["METHODS", "IntakeMethod", "Method", "Segmentation"]


class IntakeMethod(StrEnum):
    """How intake finds the object: ``auto`` tries ``alpha``, ``rembg``, ``plain-backdrop`` in that order."""

    auto = "auto"
    alpha = "alpha"
    rembg = "rembg"
    plain_backdrop = "plain-backdrop"


#: Names of the foreground methods, in the order ``auto`` tries them.
Method = Literal["alpha", "rembg", "plain-backdrop"]
METHODS: tuple[str, ...] = tuple(m.value for m in IntakeMethod if m is not IntakeMethod.auto)


@dataclass(frozen=True)
class Segmentation:
    """The foreground found by one method.

    Attributes
    ----------
    mask : np.ndarray
        ``(H, W) uint8`` foreground opacity, 0 = backdrop, 255 = object; soft values on edges.
    method : str
        The method that produced it (one of :data:`METHODS`).
    confidence : float
        How far the method trusts its own mask, in ``[0, 1]``.
    backdrop_contrast : float | None
        Median RGB distance (0-441) between the object's pixels and the backdrop model;
        ``None`` when the method has no backdrop model.
    on_gray : bool
        True when the photo already sits on the model's 0.5 gray (an already preprocessed input).
    """

    mask: np.ndarray
    method: str
    confidence: float
    backdrop_contrast: float | None = None
    on_gray: bool = False
