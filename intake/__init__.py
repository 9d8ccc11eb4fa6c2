"""Image intake: any catalogue photo -> the TripoSR input (512x512 RGB on gray 0.5), a mask and flags.

``preprocess(data, name=...)`` decodes the bytes safely, finds the object (the photo's own alpha,
a rembg model found on disk, or the built-in plain-backdrop method), frames it like the official
``run.py`` (minus its off-by-one) and measures how far the result can be trusted. Pure functions:
no Prefect, no I/O beyond reading rembg model files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from intake.alpha import alpha_segmentation, has_transparency
from intake.backdrop import BackdropParams, on_model_gray, plain_backdrop_segmentation
from intake.decode import DecodedImage, DecodeLimits, IntakeError, Reason, decode_image
from intake.flags import FlagThresholds, IntakeFlags, assess, compute_flags
from intake.framing import foreground_bbox, frame_object
from intake.rembg_method import RembgConfig, model_status, rembg_segmentation
from intake.types import METHODS, IntakeMethod, Segmentation

__all__ = [
    "METHODS",
    "BackdropParams",
    "DecodeLimits",
    "DecodedImage",
    "FlagThresholds",
    "IntakeError",
    "IntakeFlags",
    "IntakeMethod",
    "IntakeResult",
    "Reason",
    "RembgConfig",
    "Segmentation",
    "decode_image",
    "preprocess",
    "segment",
]

MethodChoice = Literal["auto", "alpha", "rembg", "plain-backdrop"]


@dataclass(frozen=True)
class IntakeResult:
    """Everything the intake stage produces for one photo.

    Attributes
    ----------
    image : np.ndarray
        ``(512, 512, 3) uint8`` model input: the object framed on gray 0.5 (127).
    mask : np.ndarray
        ``(H, W) uint8`` foreground mask of the (upright) photo.
    framed_mask : np.ndarray
        ``(512, 512) uint8`` the mask in the frame of ``image``.
    method : str
        The method that produced the mask.
    flags : IntakeFlags
    usable : bool
    reasons : tuple[str, ...]
        Why it is not usable (empty when usable).
    foreground_fraction : float
        Object pixels / photo pixels.
    bbox : tuple[int, int, int, int]
        ``(x0, y0, x1, y1)`` of the object in the photo, ends exclusive.
    source : dict[str, Any]
        Format, stored mode, size and EXIF orientation of the file.
    attempts : tuple[dict[str, str], ...]
        Methods tried before the one that ran, with why they were skipped.
    """

    image: np.ndarray
    mask: np.ndarray
    framed_mask: np.ndarray
    method: str
    flags: IntakeFlags
    usable: bool
    reasons: tuple[str, ...]
    foreground_fraction: float
    bbox: tuple[int, int, int, int]
    source: dict[str, Any] = field(default_factory=dict)
    attempts: tuple[dict[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON summary (no pixel data)."""
        return {
            "method": self.method,
            "usable": self.usable,
            "reasons": list(self.reasons),
            "foreground_fraction": self.foreground_fraction,
            "bbox": list(self.bbox),
            "flags": self.flags.to_json(),
            "source": self.source,
            "attempts": list(self.attempts),
        }


def segment(
    decoded: DecodedImage,
    *,
    name: str,
    method: MethodChoice = "auto",
    rembg: RembgConfig = RembgConfig(),
    backdrop: BackdropParams = BackdropParams(),
) -> tuple[Segmentation, tuple[dict[str, str], ...]]:
    """Find the object with the chosen method.

    ``auto`` tries, in order: the alpha channel when it has transparent pixels; rembg when its model
    file is on disk; the plain-backdrop method. A photo already on the model's gray goes straight to
    plain-backdrop (compositing onto the same gray cannot damage it).

    Returns
    -------
    segmentation : Segmentation
    attempts : tuple[dict[str, str], ...]
        ``{"method", "outcome", "detail"}`` for every method skipped before the one that ran.

    Raises
    ------
    IntakeError
        The chosen method's refusal (``no_alpha``, ``empty_alpha``, ``model_unavailable``,
        ``no_foreground``).
    """
    if method == "alpha":
        return alpha_segmentation(decoded.alpha, name=name), ()
    if method == "rembg":
        return rembg_segmentation(decoded.rgb, name=name, config=rembg), ()
    if method == "plain-backdrop":
        return plain_backdrop_segmentation(decoded.rgb, name=name, params=backdrop), ()
    if method != "auto":
        raise IntakeError(
            Reason.BAD_ARGUMENT, name, f"unknown method {method!r}; choose auto or one of {METHODS}"
        )
    attempts: list[dict[str, str]] = []
    if has_transparency(decoded.alpha):
        return alpha_segmentation(decoded.alpha, name=name), ()
    attempts.append(
        {
            "method": "alpha",
            "outcome": "skipped",
            "detail": "no alpha channel" if decoded.alpha is None else "fully opaque alpha",
        }
    )
    if on_model_gray(decoded.rgb, backdrop):
        attempts.append(
            {"method": "rembg", "outcome": "skipped", "detail": "already on the model's gray backdrop"}
        )
    else:
        status = model_status(rembg)
        if status.available:
            try:
                return rembg_segmentation(decoded.rgb, name=name, config=rembg), tuple(attempts)
            except IntakeError as exc:
                attempts.append({"method": "rembg", "outcome": exc.reason.value, "detail": exc.detail})
        else:
            attempts.append(
                {"method": "rembg", "outcome": Reason.MODEL_UNAVAILABLE.value, "detail": status.detail}
            )
    return plain_backdrop_segmentation(decoded.rgb, name=name, params=backdrop), tuple(attempts)


def preprocess(
    data: bytes,
    *,
    name: str,
    method: MethodChoice = "auto",
    foreground_ratio: float = 0.85,
    size: int = 512,
    limits: DecodeLimits = DecodeLimits(),
    rembg: RembgConfig = RembgConfig(),
    backdrop: BackdropParams = BackdropParams(),
    thresholds: FlagThresholds = FlagThresholds(),
) -> IntakeResult:
    """Turn photo bytes into the model input, a mask and intake flags.

    Parameters
    ----------
    data : bytes
        The photo file's bytes (JPEG, PNG, WebP or TIFF).
    name : str
        Its name (file name or catalogue key), used in every error message.
    method : {"auto", "alpha", "rembg", "plain-backdrop"}
        Foreground method; ``auto`` picks alpha, then rembg if a model is on disk, then plain-backdrop.
    foreground_ratio : float
        Fraction of the output side the object spans (official default 0.85).
    size : int
        Output side (512 for TripoSR).
    limits, rembg, backdrop, thresholds
        Decoding bounds, rembg model choice, plain-backdrop tuning and flag thresholds.

    Returns
    -------
    IntakeResult

    Raises
    ------
    IntakeError
        Any refusal of decoding or of the chosen method, with its ``reason``.
    """
    if not 0.0 < foreground_ratio <= 1.0:
        raise IntakeError(
            Reason.BAD_ARGUMENT, name, f"foreground_ratio must be in (0, 1], got {foreground_ratio}"
        )
    decoded = decode_image(data, name=name, limits=limits)
    seg, attempts = segment(decoded, name=name, method=method, rembg=rembg, backdrop=backdrop)
    bbox = foreground_bbox(seg.mask)
    if bbox is None:
        raise IntakeError(Reason.NO_FOREGROUND, name, f"the {seg.method} mask is empty")
    # A photo already on the model's gray keeps its pixels: only the crop and scale change.
    image, framed_mask, _ = frame_object(
        decoded.rgb, seg.mask, foreground_ratio=foreground_ratio, size=size, composite=not seg.on_gray
    )
    flags = compute_flags(seg, thresholds)
    usable, reasons = assess(flags, thresholds)
    source = {
        "format": decoded.format,
        "mode": decoded.mode,
        "width": decoded.size[0],
        "height": decoded.size[1],
        "orientation": decoded.orientation,
        "notes": list(decoded.notes),
    }
    return IntakeResult(
        image=image,
        mask=seg.mask,
        framed_mask=framed_mask,
        method=seg.method,
        flags=flags,
        usable=usable,
        reasons=reasons,
        foreground_fraction=flags.foreground_fraction,
        bbox=bbox,
        source=source,
        attempts=attempts,
    )
