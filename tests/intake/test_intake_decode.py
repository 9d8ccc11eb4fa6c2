"""Safe decoding: every refusal reason on a crafted file, mode normalisation, orientation, bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from intake_helpers import encode, photo_like, raw_png
from PIL import Image

from intake import DecodeLimits, IntakeError, Reason, decode_image, preprocess


def refusal(data: bytes, name: str = "item.jpg", **kwargs: object) -> IntakeError:
    with pytest.raises(IntakeError) as exc:
        decode_image(data, name=name, **kwargs)
    assert name in str(exc.value), "the message names the input"
    return exc.value


def test_zero_byte_file() -> None:
    assert refusal(b"").reason is Reason.EMPTY_FILE


def test_text_named_jpg_is_not_an_image() -> None:
    err = refusal(b"hello, this is a text file pretending to be a photo\n" * 20, name="photo.jpg")
    assert err.reason is Reason.NOT_AN_IMAGE


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n", "EPS"),
        (
            b"SIMPLE  =                    T" + b" " * 50 + b"BITPIX  =                    8" + b" " * 50,
            "FITS",
        ),
    ],
)
def test_vector_and_scientific_formats_refused_by_name(data: bytes, fmt: str) -> None:
    err = refusal(data, name=f"file.{fmt.lower()}")
    assert err.reason is Reason.UNSUPPORTED_FORMAT
    assert fmt in err.detail


@pytest.mark.parametrize("fmt", ["GIF", "BMP"])
def test_raster_formats_outside_the_allowlist_refused_by_name(fmt: str) -> None:
    err = refusal(encode(photo_like(size=96), fmt), name=f"x.{fmt.lower()}")
    assert err.reason is Reason.UNSUPPORTED_FORMAT
    assert fmt in err.detail


def test_allowlist_can_be_narrowed() -> None:
    err = refusal(encode(photo_like(size=96), "PNG"), name="x.png", limits=DecodeLimits(formats=("JPEG",)))
    assert err.reason is Reason.UNSUPPORTED_FORMAT


def test_20000_square_png_header_refused_before_decoding() -> None:
    # A valid header claiming 20000x20000 RGB and only a few bytes of pixel data: a decode attempt
    # would report truncation, so too_many_pixels proves the refusal came from the header.
    data = raw_png(20000, 20000, 8, 2, zlib.compress(b"\x00" * 1000))
    err = refusal(data, name="bomb.png")
    assert err.reason is Reason.TOO_MANY_PIXELS
    assert "before decoding" in err.detail and "400000000" in err.detail


def test_pixel_bound_is_configurable() -> None:
    data = encode(photo_like(size=200), "PNG")
    assert (
        refusal(data, name="x.png", limits=DecodeLimits(max_pixels=30_000)).reason is Reason.TOO_MANY_PIXELS
    )
    assert decode_image(data, name="x.png", limits=DecodeLimits(max_pixels=40_000)).size == (200, 200)


_BOMB_SCRIPT = """
import resource, sys, zlib
sys.path.insert(0, sys.argv[1])
from intake_helpers import raw_png
from intake import IntakeError, decode_image
side = 8000  # 64 Mpx RGB: about 190 MB of pixels once decoded, 190 kB as a file
comp = zlib.compressobj(9)
row = bytes(1 + side * 3)
data = raw_png(side, side, 8, 2, b"".join([comp.compress(row) for _ in range(side)] + [comp.flush()]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(data, name="bomb.png")
    reason = None
except IntakeError as exc:
    reason = exc.reason.value
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(reason, len(data), (after - before) // 1024)
"""


def test_decompression_bomb_memory_stays_bounded() -> None:
    here = str(Path(__file__).parent)
    proc = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT, here], capture_output=True, text=True, timeout=120, check=True
    )
    reason, size, grown_mb = proc.stdout.split()
    assert reason == "too_many_pixels"
    assert int(size) < 400_000
    assert int(grown_mb) < 20, f"decoding the bomb grew the process by {grown_mb} MB"


def test_one_pixel_png_is_too_small() -> None:
    assert refusal(encode(np.zeros((1, 1, 3), np.uint8), "PNG"), name="dot.png").reason is Reason.TOO_SMALL


def test_minimum_side_is_configurable() -> None:
    data = encode(photo_like(size=80), "PNG")
    assert refusal(data, name="x.png", limits=DecodeLimits(min_side=100)).reason is Reason.TOO_SMALL
    assert decode_image(data, name="x.png").size == (80, 80)


def test_truncated_jpeg() -> None:
    data = encode(photo_like(), "JPEG", quality=90)
    assert refusal(data[: len(data) // 2], name="cut.jpg").reason is Reason.TRUNCATED


def test_truncated_png() -> None:
    data = encode(photo_like(), "PNG")
    assert refusal(data[: len(data) // 2], name="cut.png").reason is Reason.TRUNCATED


def test_corrupt_png_data() -> None:
    data = bytearray(encode(photo_like(), "PNG"))
    data[len(data) // 2] ^= 0xFF
    assert refusal(bytes(data), name="bad.png").reason in {Reason.CORRUPT, Reason.TRUNCATED}


def test_cmyk_jpeg_is_converted_to_rgb() -> None:
    # Pure magenta + yellow ink = red.
    data = encode(Image.new("CMYK", (96, 96), (0, 255, 255, 0)), "JPEG", quality=95)
    out = decode_image(data, name="cmyk.jpg")
    assert out.mode == "CMYK"
    assert out.rgb.shape == (96, 96, 3) and out.rgb.dtype == np.uint8
    assert np.abs(out.rgb.reshape(-1, 3).mean(0) - (255, 0, 0)).max() < 8


def test_16_bit_gray_png_is_scaled_not_clipped() -> None:
    arr = np.full((70, 90), 40000, np.uint16)
    arr[:, :30] = 65535
    arr[:, 30:60] = 1000
    data = encode(arr, "PNG")
    out = decode_image(data, name="deep.png")
    assert out.mode.startswith("I")
    assert out.rgb[0, 0].tolist() == [255] * 3
    assert out.rgb[0, 40].tolist() == [4] * 3  # 1000 / 257, where a clip would give 255
    assert out.rgb[0, 80].tolist() == [156] * 3  # 40000 / 257


def test_16_bit_rgba_png_keeps_alpha_and_scales() -> None:
    w = h = 64
    px = np.zeros((h, w, 4), ">u2")
    px[..., :3] = 40000
    px[..., 3] = 65535
    px[: h // 2, :, 3] = 0
    raw = b"".join(b"\x00" + px[y].tobytes() for y in range(h))
    out = decode_image(raw_png(w, h, 16, 6, zlib.compress(raw)), name="deep-rgba.png")
    assert out.alpha is not None
    assert out.alpha[0, 0] == 0 and out.alpha[-1, 0] == 255
    assert out.rgb[-1, 0].tolist() == [156] * 3


def test_palette_with_transparency_gives_alpha() -> None:
    im = Image.new("P", (80, 80), 0)
    im.putpalette([255, 255, 255, 200, 30, 30] + [0] * (254 * 3))
    im.paste(1, (20, 20, 60, 60))
    out = decode_image(encode(im, "PNG", transparency=0), name="palette.png")
    assert out.mode == "P" and out.alpha is not None
    assert out.alpha[0, 0] == 0 and out.alpha[40, 40] == 255
    assert out.rgb[40, 40].tolist() == [200, 30, 30]


@pytest.mark.parametrize("mode", ["L", "LA", "1"])
def test_gray_modes_become_rgb(mode: str) -> None:
    im = Image.new(mode, (72, 72), 255 if mode != "LA" else (200, 128))
    out = decode_image(encode(im, "PNG"), name=f"{mode}.png")
    assert out.rgb.shape == (72, 72, 3)
    assert (out.alpha is not None) == (mode == "LA")


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF"])
def test_other_allowed_formats_decode(fmt: str) -> None:
    arr = photo_like(size=96)
    out = decode_image(encode(arr, fmt, **({"lossless": True} if fmt == "WEBP" else {})), name=f"x.{fmt}")
    assert out.format == fmt
    np.testing.assert_array_equal(out.rgb, arr)


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    upright = np.zeros((120, 80, 3), np.uint8)
    upright[:40] = (230, 20, 20)  # red band on top
    upright[40:] = (20, 20, 230)
    # Stored sideways; orientation 6 tells a viewer to rotate it 90 degrees clockwise.
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data, name="phone.jpg")
    assert out.orientation == 6
    assert out.size == (80, 120)
    assert out.rgb[5, 40, 0] > 200 and out.rgb[5, 40, 2] < 60  # top is red
    assert out.rgb[110, 40, 2] > 200  # bottom is blue


def test_exif_rotation_reaches_the_model_input() -> None:
    upright = np.full((160, 100, 3), 255, np.uint8)
    upright[20:60, 30:70] = (220, 30, 30)  # red block above
    upright[60:140, 30:70] = (30, 30, 220)  # taller blue block below
    exif = Image.Exif()
    exif[0x0112] = 8  # stored rotated 90 degrees clockwise; the viewer rotates it back
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_270)
    result = preprocess(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), name="rotated.jpg")
    img = result.image.astype(int)
    rows = np.flatnonzero((np.abs(img - 127).sum(-1) > 60).any(axis=1))
    top, bottom = img[rows[0] + 5, 256], img[rows[-1] - 5, 256]
    assert top[0] > 150 and top[2] < 100, "red on top"
    assert bottom[2] > 150 and bottom[0] < 100, "blue at the bottom"
    assert result.bbox[2] - result.bbox[0] < result.bbox[3] - result.bbox[1], "taller than wide"


def test_fully_transparent_png_is_refused() -> None:
    data = encode(np.zeros((100, 100, 4), np.uint8), "PNG")
    with pytest.raises(IntakeError) as exc:
        preprocess(data, name="ghost.png")
    assert exc.value.reason is Reason.EMPTY_ALPHA
    assert "ghost.png" in str(exc.value)


def test_reasons_are_json_strings() -> None:
    err = refusal(b"", name="e.png")
    assert json.loads(json.dumps({"reason": err.reason})) == {"reason": "empty_file"}
