"""Framing: the official run.py geometry and compositing, without the off-by-one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from intake.framing import _composite_strip, foreground_bbox, frame_object, plan_framing


def official_like(rgb: np.ndarray, mask: np.ndarray, ratio: float, size: int = 512) -> np.ndarray:
    """The official steps on the full padded canvas (inclusive crop), then the model's resize.

    ``(H, W, 3) uint8``, ``(H, W) uint8`` -> ``(size, size, 3) uint8``.
    """
    ys, xs = np.nonzero(mask > 0)
    rgba = np.dstack([rgb, mask])[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    side = max(rgba.shape[:2])
    ph, pw = (side - rgba.shape[0]) // 2, (side - rgba.shape[1]) // 2
    sq = np.pad(rgba, ((ph, side - rgba.shape[0] - ph), (pw, side - rgba.shape[1] - pw), (0, 0)))
    new = int(side / ratio)
    p0 = (new - side) // 2
    canvas = np.pad(sq, ((p0, new - side - p0), (p0, new - side - p0), (0, 0)))
    f = canvas.astype(np.float32) / 255.0
    comp = f[..., :3] * f[..., 3:4] + (1 - f[..., 3:4]) * 0.5
    out = Image.fromarray((comp * 255.0).astype(np.uint8))
    return np.asarray(out.resize((size, size), Image.Resampling.BILINEAR))


def test_bbox_includes_last_row_and_column() -> None:
    mask = np.zeros((50, 60), np.uint8)
    mask[10:20, 30:50] = 255
    assert foreground_bbox(mask) == (30, 10, 50, 20)
    assert foreground_bbox(np.zeros((5, 5), np.uint8)) is None


def test_last_row_and_column_reach_the_output() -> None:
    rgb = np.full((200, 200, 3), 255, np.uint8)
    mask = np.zeros((200, 200), np.uint8)
    mask[50:150, 60:140] = 255
    rgb[50:150, 60:140] = (200, 0, 0)
    rgb[149, 60:140] = (0, 200, 0)  # the last object row is green: the official crop drops it
    rgb[50:150, 139] = (0, 0, 200)  # the last object column is blue
    out, fmask, fr = frame_object(rgb, mask, foreground_ratio=0.85)
    assert fr.bbox == (60, 50, 140, 150)
    rows = np.flatnonzero((fmask >= 128).any(axis=1))
    cols = np.flatnonzero((fmask >= 128).any(axis=0))
    bottom, right = out[rows[-1], 256].astype(int), out[256, cols[-1]].astype(int)
    assert bottom[1] > bottom[0] and bottom[1] > 100, "green last row present"
    assert right[2] > right[0] and right[2] > 100, "blue last column present"


def test_one_pixel_thin_object_frames() -> None:
    rgb = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((100, 100), np.uint8)
    mask[40, 10:90] = 255  # the official crop of a one-row object is empty
    out, fmask, fr = frame_object(rgb, mask)
    assert fr.side == 80 and fmask.max() > 0


def test_geometry_matches_the_official_padding() -> None:
    fr = plan_framing((20, 30, 120, 80), 0.85)  # 100 wide, 50 tall
    assert fr.side == 100 and fr.canvas == 117
    assert fr.offset == (8, 8 + 25)
    rgb = np.full((300, 300, 3), 90, np.uint8)
    mask = np.zeros((300, 300), np.uint8)
    mask[30:80, 20:120] = 255
    _, fmask, _ = frame_object(rgb, mask, foreground_ratio=0.85)
    ys, xs = np.nonzero(fmask >= 128)
    scale = 512 / 117
    assert abs(xs.min() - 8 * scale) <= 1.5 and abs(xs.max() + 1 - 108 * scale) <= 1.5
    assert abs(ys.min() - 33 * scale) <= 1.5 and abs(ys.max() + 1 - 83 * scale) <= 1.5


@pytest.mark.parametrize("ratio", [0.85, 0.6, 1.0])
def test_small_photo_matches_the_official_pipeline_exactly(ratio: float) -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (240, 300, 3), dtype=np.uint8)
    mask = np.zeros((240, 300), np.uint8)
    mask[40:200, 70:230] = rng.integers(1, 256, (160, 160), dtype=np.uint8)
    out, _, _ = frame_object(rgb, mask, foreground_ratio=ratio)
    ref = official_like(rgb, mask, ratio)
    assert out.shape == (512, 512, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_large_photo_reduction_stays_close_to_the_direct_pipeline() -> None:
    rng = np.random.default_rng(2)
    h, w = 2400, 2000
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (h + w))], -1).astype(np.uint8)
    rgb[::7] = rng.integers(0, 256, rgb[::7].shape, dtype=np.uint8)
    mask = (((yy - 1200) / 1000.0) ** 2 + ((xx - 1000) / 700.0) ** 2 <= 1).astype(np.uint8) * 255
    out, _, fr = frame_object(rgb, mask)
    assert fr.canvas // (2 * 512) >= 2, "the integer reduction path is exercised"
    ref = official_like(rgb, mask, 0.85)
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 8


def test_composite_rounds_like_the_official_float_code() -> None:
    rgb = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 256, axis=1)[..., None].repeat(
        3, axis=2
    )  # (256, 256, 3)
    a = np.repeat(np.arange(256, dtype=np.uint8)[None, :], 256, axis=0)  # (256, 256)
    ours = _composite_strip(rgb, a)
    f, fa = rgb.astype(np.float32) / 255.0, a.astype(np.float32)[..., None] / 255.0
    ref = ((f * fa + (1 - fa) * 0.5) * 255.0).astype(np.uint8)
    diff = np.abs(ours.astype(int) - ref.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert ours[200, 128, 0] == 163  # 200 at alpha 128/255
    assert ours[0, 0, 0] == 127  # transparent -> the model gray, int(0.5 * 255)


def test_ratio_out_of_range() -> None:
    with pytest.raises(ValueError):
        plan_framing((0, 0, 10, 10), 1.5)


def test_soft_edged_composite_is_framed_by_the_official_alpha_above_zero_box(photos) -> None:
    """A cut-out with a soft alpha edge on a bigger canvas, framed through the whole intake path.

    The official ``resize_foreground`` is computed here on its own: box of ``alpha > 0`` (faint edge
    included), square of side ``max(h, w)``, canvas ``int(side / ratio)``, centred. The one documented
    difference: the official crop ``image[y1:y2, x1:x2]`` ends at the last foreground row and column
    instead of after them; here they are kept, so the box ends one pixel later.
    """
    from intake_helpers import encode
    from PIL import ImageFilter

    from intake import preprocess

    chair = Image.open(photos / "chair.png").convert("RGBA")
    canvas = Image.new("RGBA", (chair.width + 173, chair.height + 91), (0, 0, 0, 0))
    canvas.paste(chair, (121, 37))
    rgba = np.array(canvas)  # (H, W, 4)
    soft = np.asarray(Image.fromarray(rgba[..., 3]).filter(ImageFilter.GaussianBlur(3)))
    rgba[..., 3] = np.maximum(rgba[..., 3], soft)  # a wider, fading edge
    alpha = rgba[..., 3]
    assert ((alpha > 0) & (alpha < 10)).sum() > 100, "the composite must have a faint edge"
    result = preprocess(encode(rgba, "PNG"), name="chair-soft.png", method="alpha")

    # official resize_foreground, computed independently
    ys, xs = np.where(alpha > 0)
    y1, y2, x1, x2 = ys.min(), ys.max(), xs.min(), xs.max()
    h_off, w_off = y2 - y1, x2 - x1  # the official crop's size
    size_off = max(h_off, w_off)
    new_off = int(size_off / 0.85)

    assert result.bbox == (x1, y1, x2 + 1, y2 + 1)  # the alpha > 0 box, to the pixel
    _, fmask, fr = frame_object(rgba[..., :3], alpha, foreground_ratio=0.85, size=int((size_off + 1) / 0.85))
    h, w = h_off + 1, w_off + 1
    assert fr.side == max(h, w) == size_off + 1
    assert fr.canvas == int(fr.side / 0.85) and fr.canvas - new_off in (1, 2)
    pad = (fr.canvas - fr.side) // 2
    assert fr.offset == (pad + (fr.side - w) // 2, pad + (fr.side - h) // 2)
    # at the canvas' own size nothing is resampled: the framed alpha sits exactly there
    fys, fxs = np.nonzero(fmask > 0)
    ox, oy = fr.offset
    assert (fxs.min(), fys.min(), fxs.max() + 1, fys.max() + 1) == (ox, oy, ox + w, oy + h)
    np.testing.assert_array_equal(fmask[oy : oy + h, ox : ox + w], alpha[y1 : y2 + 1, x1 : x2 + 1])
    # and every pixel the official crop keeps lands where the official padding puts it, +-1 px
    off_y = (new_off - size_off) // 2 + (size_off - h_off) // 2
    off_x = (new_off - size_off) // 2 + (size_off - w_off) // 2
    assert abs(oy - off_y) <= 1 and abs(ox - off_x) <= 1
