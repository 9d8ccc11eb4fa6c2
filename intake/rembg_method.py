"""rembg path: a learned salient-object model, only from model files already on disk.

Models are chosen by explicit name from a permissively licensed allowlist (never rembg's default
``bria-rmbg``, whose licence needs a paid agreement for commercial use), looked up where rembg keeps
them (``REMBG_HOME`` / ``U2NET_HOME``, rembg's own resolution), or given as a custom ONNX file
(``u2net_custom`` / ``dis_custom`` architectures; rembg requires it under its model home).

Nothing here downloads: the model file must exist before a session is created (rembg would otherwise
fetch it with pooch), and a missing one is reported as ``model_unavailable``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from intake.decode import IntakeError, Reason
from intake.types import Segmentation

__all__ = [
    "CUSTOM_ARCHITECTURES",
    "PERMISSIVE_MODELS",
    "ModelStatus",
    "RembgConfig",
    "model_status",
    "rembg_segmentation",
]

#: Named rembg models that may be used, with their licences.
PERMISSIVE_MODELS: dict[str, str] = {
    "isnet-general-use": "Apache-2.0",
    "u2net": "Apache-2.0",
    "u2netp": "Apache-2.0",
    "birefnet-general": "MIT",
    "birefnet-general-lite": "MIT",
}
#: rembg session names that run a custom ONNX file of a known architecture (u2net / IS-Net input).
CUSTOM_ARCHITECTURES: tuple[str, ...] = ("u2net_custom", "dis_custom")


@dataclass(frozen=True)
class RembgConfig:
    """Which rembg model to run.

    Attributes
    ----------
    model : str
        A name in :data:`PERMISSIVE_MODELS`, or one of :data:`CUSTOM_ARCHITECTURES` with ``model_path``.
    model_path : Path | None
        The custom ONNX file (custom architectures only).
    min_component_ratio : float
        Mask components smaller than this fraction of the largest are dropped.
    """

    model: str = "isnet-general-use"
    model_path: Path | None = None
    min_component_ratio: float = 0.02

    def __post_init__(self) -> None:
        if self.model in CUSTOM_ARCHITECTURES:
            if self.model_path is None:
                raise ValueError(f"rembg model {self.model!r} needs model_path (a custom ONNX file)")
        elif self.model not in PERMISSIVE_MODELS:
            raise ValueError(
                f"rembg model {self.model!r} is not allowed; choose one of {sorted(PERMISSIVE_MODELS)} "
                f"(permissive licences) or a custom ONNX file with {list(CUSTOM_ARCHITECTURES)}"
            )
        elif self.model_path is not None:
            raise ValueError("model_path is only used with a custom architecture")


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model can run offline.

    Attributes
    ----------
    available : bool
    path : Path | None
        The model file when found.
    detail : str
        Where it was looked for, or why it cannot be used.
    """

    available: bool
    path: Path | None
    detail: str


def _session_class(model: str) -> Any:
    from rembg.sessions import sessions  # heavy import (onnxruntime): only when rembg is used

    return sessions[model]


def model_status(config: RembgConfig) -> ModelStatus:
    """Find the model file without downloading anything.

    Named models are resolved with rembg's own lookup (``<home>/models/<name>/<name>.onnx`` or the
    legacy flat ``U2NET_HOME``); a custom path must exist and lie under rembg's model home.
    """
    cls = _session_class(config.model)
    if config.model_path is not None:
        path = Path(config.model_path).expanduser().resolve()
        if not path.is_file():
            return ModelStatus(False, None, f"custom model file {path} does not exist")
        try:
            resolved = Path(cls.validate_model_path(model_path=str(path)))
        except ValueError as exc:
            return ModelStatus(False, None, f"custom model file {path} refused by rembg: {exc}")
        return ModelStatus(True, resolved, f"custom model {resolved}")
    fname = f"{cls.name()}.onnx"
    found = cls.resolve_existing(fname)
    if found is None:
        return ModelStatus(
            False,
            None,
            f"{fname} not found under {cls.model_dir()} or {cls.legacy_home()} (set REMBG_HOME; nothing is downloaded)",
        )
    return ModelStatus(True, Path(found), f"{config.model} at {found}")


@functools.lru_cache(maxsize=4)
def _session(model: str, path: str, stamp: tuple[int, int]) -> Any:
    """One onnxruntime session per model file (keyed by path, size and mtime)."""
    from rembg import new_session

    kwargs: dict[str, Any] = {"model_path": path} if model in CUSTOM_ARCHITECTURES else {}
    return new_session(model, **kwargs)


def load_session(config: RembgConfig, *, name: str) -> Any:
    """A rembg session for ``config``, only if its model file is on disk.

    Raises
    ------
    IntakeError
        ``model_unavailable`` when the file is missing (nothing is downloaded).
    """
    status = model_status(config)
    if not status.available or status.path is None:
        raise IntakeError(Reason.MODEL_UNAVAILABLE, name, f"rembg model unavailable: {status.detail}")
    st = os.stat(status.path)
    return _session(config.model, str(status.path), (st.st_size, st.st_mtime_ns))


def _clean(mask: np.ndarray, ratio: float) -> np.ndarray:
    """Drop small objects, keep the whole soft edge of the kept ones. ``(H, W) uint8`` -> same.

    Objects are the components of ``mask >= 128``; those under ``ratio`` of the largest are dropped
    (their pixels and a 2-pixel ring around them). Every ``mask > 0`` pixel connected to a kept object
    stays as the model gave it, faint values included: the official framing measures ``alpha > 0``,
    so cutting the faint edge would frame the object larger than the model was trained to see it.
    """
    n, lab, stats, _ = cv2.connectedComponentsWithStats((mask >= 128).astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    big = np.nonzero(areas >= ratio * areas.max())[0] + 1
    keep = np.isin(lab, big)
    dropped = (lab > 0) & ~keep
    _, soft_lab = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    attached = np.isin(soft_lab, np.unique(soft_lab[keep]))
    ring = cv2.dilate(dropped.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~keep
    return np.where(attached & ~ring, mask, 0).astype(np.uint8)


def rembg_segmentation(rgb: np.ndarray, *, name: str, config: RembgConfig = RembgConfig()) -> Segmentation:
    """Segment with a rembg model found on disk.

    Parameters
    ----------
    rgb : np.ndarray
        ``(H, W, 3) uint8`` photo.
    name : str
        Input name for error messages.
    config : RembgConfig

    Returns
    -------
    Segmentation
        ``mask`` ``(H, W) uint8`` soft; ``confidence`` = 1 - (undecided pixels, 10-90 %) / object pixels.

    Raises
    ------
    IntakeError
        ``model_unavailable`` (no model file) or ``no_foreground`` (the model finds nothing).
    """
    from rembg import remove

    session = load_session(config, name=name)
    out = remove(Image.fromarray(rgb), session=session, only_mask=True)
    raw = np.asarray(out.convert("L") if out.mode != "L" else out, dtype=np.uint8)  # (H, W)
    mask = _clean(raw, config.min_component_ratio)
    obj = int((mask >= 128).sum())
    if obj == 0:
        raise IntakeError(Reason.NO_FOREGROUND, name, f"rembg model {config.model} found no object")
    undecided = int(((mask > 25) & (mask < 230)).sum())
    return Segmentation(mask=mask, method="rembg", confidence=float(max(0.0, 1.0 - undecided / obj)))
