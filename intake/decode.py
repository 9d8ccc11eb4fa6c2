"""Safe decoding of untrusted image bytes into 8-bit RGB (+ optional alpha).

Only an allowlist of raster formats is decoded (JPEG, PNG, WebP, TIFF). The pixel count and the
short side are checked from the header, before any pixel data is decompressed, so a decompression
bomb never reaches a full decode. EXIF orientation is applied, embedded ICC profiles are converted
to sRGB, and every Pillow mode a catalogue photo may come in is normalised to 8 bits per channel
(16-bit data is scaled, not clipped).

Every refusal raises :class:`IntakeError` with a machine-readable :class:`Reason` and a message that
names the input.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

__all__ = [
    "ALLOWED_FORMATS",
    "DecodeLimits",
    "DecodedImage",
    "IntakeError",
    "Reason",
    "decode_image",
    "probe",
]

#: Pillow format names that are decoded. MPO (multi-picture JPEG from cameras) is read as JPEG.
ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF")
_FORMAT_ALIASES = {"MPO": "JPEG"}


class Reason(StrEnum):
    """Machine-readable refusal reasons of the intake stage."""

    EMPTY_FILE = "empty_file"
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"
    TOO_SMALL = "too_small"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    UNSUPPORTED_MODE = "unsupported_mode"
    NO_ALPHA = "no_alpha"
    EMPTY_ALPHA = "empty_alpha"
    NO_FOREGROUND = "no_foreground"
    MODEL_UNAVAILABLE = "model_unavailable"
    BAD_ARGUMENT = "bad_argument"


class IntakeError(ValueError):
    """An input the intake stage refuses (never transient: the same bytes give the same refusal).

    Attributes
    ----------
    reason : Reason
        Machine-readable cause (a ``str`` subclass, e.g. ``"too_many_pixels"``).
    name : str
        The input's name (file name or catalogue key), repeated in the message.
    detail : str
        Human-readable explanation.
    """

    transient = False

    def __init__(self, reason: Reason, name: str, detail: str) -> None:
        self.reason = Reason(reason)
        self.name = name
        self.detail = detail
        super().__init__(f"{name}: {detail} [{self.reason.value}]")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds applied before and during decoding.

    Attributes
    ----------
    max_pixels : int
        Largest accepted width * height, checked from the header (default 50 megapixels).
    min_side : int
        Smallest accepted short side in pixels (default 64).
    formats : tuple[str, ...]
        Pillow format names that may be decoded; a subset of :data:`ALLOWED_FORMATS`.
    """

    max_pixels: int = 50_000_000
    min_side: int = 64
    formats: tuple[str, ...] = ALLOWED_FORMATS

    def __post_init__(self) -> None:
        if self.max_pixels <= 0 or self.min_side <= 0:
            raise ValueError("max_pixels and min_side must be positive")
        unknown = set(self.formats) - set(ALLOWED_FORMATS)
        if unknown:
            raise ValueError(f"formats outside the allowlist {ALLOWED_FORMATS}: {sorted(unknown)}")


@dataclass(frozen=True)
class DecodedImage:
    """A decoded, upright, 8-bit image.

    Attributes
    ----------
    rgb : np.ndarray
        ``(H, W, 3) uint8`` sRGB pixels, EXIF orientation applied.
    alpha : np.ndarray | None
        ``(H, W) uint8`` alpha channel when the file carries one (alpha channel or a
        transparency key), else ``None``.
    format : str
        Pillow format name of the file (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"TIFF"``).
    mode : str
        Pillow mode as stored in the file (``"CMYK"``, ``"I;16"``, ``"P"`` ...).
    orientation : int
        EXIF orientation tag that was applied (1 = none).
    notes : tuple[str, ...]
        Non-fatal remarks (e.g. an ICC profile that could not be applied).
    """

    rgb: np.ndarray
    alpha: np.ndarray | None
    format: str
    mode: str
    orientation: int = 1
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` after orientation."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def _sniff_unsupported(data: bytes) -> str | None:
    """Name formats Pillow cannot identify at all (vector and container formats)."""
    head = data[:1024].lstrip()
    low = head.lower()
    if head.startswith(b"%PDF-"):
        return "PDF"
    if low.startswith(b"<svg") or (low.startswith(b"<?xml") and b"<svg" in low):
        return "SVG"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS"
    if data.startswith(b"SIMPLE  ="):
        return "FITS"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12].decode("latin-1").strip()
        if brand in {"heic", "heix", "hevc", "heim", "heis", "mif1", "msf1"}:
            return "HEIF"
        if brand in {"avif", "avis"}:
            return "AVIF"
    if data.startswith(b"\xff\x0a") or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JPEG XL"
    return None


def _identify_any(data: bytes) -> str | None:
    """The format name Pillow's full plugin registry would give, without decoding pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return str(im.format)
    except Exception:  # noqa: BLE001 - naming a refused file is best effort
        return None


def _open(data: bytes, name: str, limits: DecodeLimits) -> Image.Image:
    if not data:
        raise IntakeError(Reason.EMPTY_FILE, name, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Our own bound (checked below) replaces Pillow's warning threshold.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=list(limits.formats))
    except Image.DecompressionBombError as exc:
        raise IntakeError(
            Reason.TOO_MANY_PIXELS,
            name,
            f"more than the limit of {limits.max_pixels:,} pixels (refused before decoding: {exc})",
        ) from exc
    except UnidentifiedImageError as exc:
        fmt = _sniff_unsupported(data) or _identify_any(data)
        if fmt is not None:
            raise IntakeError(
                Reason.UNSUPPORTED_FORMAT,
                name,
                f"{fmt} is not an accepted format (accepted: {', '.join(limits.formats)})",
            ) from exc
        raise IntakeError(Reason.NOT_AN_IMAGE, name, f"not a recognisable image ({len(data)} bytes)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Recognised by its signature but the header itself is unreadable.
        reason = (
            Reason.TRUNCATED if isinstance(exc, EOFError) or "truncat" in str(exc).lower() else Reason.CORRUPT
        )
        raise IntakeError(reason, name, f"unreadable header: {exc}") from exc


def _check_header(im: Image.Image, name: str, limits: DecodeLimits) -> None:
    w, h = im.size
    if w * h > limits.max_pixels:
        raise IntakeError(
            Reason.TOO_MANY_PIXELS,
            name,
            f"{w}x{h} = {w * h:,} pixels exceeds the limit of {limits.max_pixels:,} (refused before decoding)",
        )
    if min(w, h) < limits.min_side:
        raise IntakeError(
            Reason.TOO_SMALL, name, f"{w}x{h}: the short side is under the minimum of {limits.min_side} px"
        )


def _load(im: Image.Image, name: str) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc).lower()
        reason = Reason.TRUNCATED if isinstance(exc, EOFError) or "truncat" in text else Reason.CORRUPT
        raise IntakeError(reason, name, f"{im.format} data could not be decoded: {exc}") from exc


def _to_srgb(im: Image.Image, mode: str) -> tuple[Image.Image, str | None]:
    """Apply an embedded ICC profile (to sRGB); return the image and a note on failure."""
    icc = im.info.get("icc_profile")
    if not icc:
        return im, None
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(im, src, dst, outputMode=mode), None
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        return im, f"embedded ICC profile ignored: {exc}"


def _scale16(arr: np.ndarray) -> np.ndarray:
    """``(H, W)`` integer 16-bit range -> uint8, scaled (65535 -> 255), not clipped."""
    a = np.clip(arr.astype(np.float64), 0, 65535)
    return np.round(a / 257.0).astype(np.uint8)


def _normalise(im: Image.Image, name: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Any decoded Pillow image -> ``(H, W, 3) uint8`` RGB and optional ``(H, W) uint8`` alpha."""
    notes: list[str] = []
    mode = im.mode
    if mode in {"I;16", "I;16L", "I;16B", "I;16N", "I"}:
        gray = _scale16(np.asarray(im))
        return np.repeat(gray[..., None], 3, axis=2), None, notes
    if mode == "F":
        gray = np.round(np.clip(np.nan_to_num(np.asarray(im, dtype=np.float64)), 0.0, 1.0) * 255).astype(
            np.uint8
        )
        notes.append("32-bit float data read as linear range [0, 1]")
        return np.repeat(gray[..., None], 3, axis=2), None, notes
    has_alpha = mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in im.info
    if mode == "CMYK":
        im, note = _to_srgb(im, "RGB")
        if note:
            notes.append(note)
        if im.mode != "RGB":
            im = im.convert("RGB")
    elif mode in {"RGB", "RGBA"}:
        im, note = _to_srgb(im, mode)
        if note:
            notes.append(note)
    try:
        im = im.convert("RGBA" if has_alpha else "RGB")
    except (ValueError, OSError) as exc:
        raise IntakeError(
            Reason.UNSUPPORTED_MODE, name, f"pixel mode {mode} cannot be converted to RGB: {exc}"
        ) from exc
    arr = np.asarray(im)
    if has_alpha:
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3]), notes
    return arr, None, notes


def probe(data: bytes, *, name: str, limits: DecodeLimits = DecodeLimits()) -> tuple[int, int]:
    """``(width, height)`` from the header alone, with `decode_image`'s refusals of the header: what a caller
    reserves memory for (a pixel budget) before the pixels are decompressed.

    Raises
    ------
    IntakeError
        ``empty_file``, ``not_an_image``, ``unsupported_format``, ``too_many_pixels``, ``too_small``,
        ``truncated`` or ``corrupt`` (an unreadable header).
    """
    with _open(data, name, limits) as im:
        _check_header(im, name, limits)
        return int(im.size[0]), int(im.size[1])


def decode_image(data: bytes, *, name: str, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    """Decode untrusted image bytes.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    name : str
        Name of the input, used in error messages.
    limits : DecodeLimits
        Pixel bound, minimum size and format allowlist.

    Returns
    -------
    DecodedImage
        Upright ``(H, W, 3) uint8`` RGB and an optional ``(H, W) uint8`` alpha.

    Raises
    ------
    IntakeError
        ``empty_file``, ``not_an_image``, ``unsupported_format``, ``too_many_pixels``, ``too_small``,
        ``truncated``, ``corrupt`` or ``unsupported_mode``.
    """
    im = _open(data, name, limits)
    with im:
        fmt = _FORMAT_ALIASES.get(str(im.format), str(im.format))
        if fmt not in limits.formats:  # pragma: no cover - Image.open(formats=...) already restricts
            raise IntakeError(Reason.UNSUPPORTED_FORMAT, name, f"{fmt} is not an accepted format")
        _check_header(im, name, limits)
        stored_mode = im.mode
        _load(im, name)
        orientation = int(im.getexif().get(0x0112, 1) or 1)
        upright = ImageOps.exif_transpose(im) if orientation != 1 else im
        rgb, alpha, notes = _normalise(upright, name)
    return DecodedImage(
        rgb=rgb, alpha=alpha, format=fmt, mode=stored_mode, orientation=orientation, notes=tuple(notes)
    )
