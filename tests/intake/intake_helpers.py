"""Helpers of the intake tests: crafted image files."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

#: Mask IoU of the plain-backdrop method per (object, backdrop, encoding): filled by the ground-truth
#: test, printed by the conftest's terminal summary.
IOU_TABLE: dict[tuple[str, str, str], float] = {}


def encode(arr: np.ndarray | Image.Image, fmt: str, **kwargs: object) -> bytes:
    """Encode an array or image with Pillow."""
    im = arr if isinstance(arr, Image.Image) else Image.fromarray(arr)
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    )


def raw_png(width: int, height: int, bit_depth: int, color_type: int, idat: bytes) -> bytes:
    """A PNG assembled by hand: signature, IHDR, one IDAT, IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def photo_like(seed: int = 0, size: int = 256) -> np.ndarray:
    """``(size, size, 3) uint8`` textured test pattern (compresses badly, decodes visibly)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
