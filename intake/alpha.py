"""Alpha path: an image that already carries transparency is its own cut-out (as the official code)."""

from __future__ import annotations

import numpy as np

from intake.decode import IntakeError, Reason
from intake.types import Segmentation

__all__ = ["alpha_segmentation", "has_transparency"]


def has_transparency(alpha: np.ndarray | None) -> bool:
    """True when an alpha channel exists and some pixel is not fully opaque.

    Parameters
    ----------
    alpha : np.ndarray | None
        ``(H, W) uint8`` alpha, or ``None``.
    """
    return alpha is not None and bool((alpha < 255).any())


def alpha_segmentation(alpha: np.ndarray | None, *, name: str) -> Segmentation:
    """Use the alpha channel as the foreground mask.

    Parameters
    ----------
    alpha : np.ndarray | None
        ``(H, W) uint8`` alpha channel of the decoded image.
    name : str
        Input name for error messages.

    Returns
    -------
    Segmentation
        ``mask`` is the alpha itself; ``confidence`` is 1 (the file states its own cut-out).

    Raises
    ------
    IntakeError
        ``no_alpha`` when there is no alpha channel or it is all opaque (not a cut-out), and
        ``empty_alpha`` when no pixel is visible.
    """
    if alpha is None:
        raise IntakeError(Reason.NO_ALPHA, name, "the image has no alpha channel")
    if not has_transparency(alpha):
        raise IntakeError(Reason.NO_ALPHA, name, "the alpha channel is fully opaque, so it is not a cut-out")
    if not (alpha > 0).any():
        raise IntakeError(
            Reason.EMPTY_ALPHA, name, "the alpha channel is fully transparent: nothing is visible"
        )
    return Segmentation(mask=np.ascontiguousarray(alpha, dtype=np.uint8), method="alpha", confidence=1.0)
