"""Plain-backdrop segmentation: ground truth from the shared cut-outs, and the shared real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from intake_helpers import IOU_TABLE, encode
from PIL import Image

from intake import IntakeError, Reason, decode_image, preprocess
from intake.backdrop import BackdropParams, fit_backdrop, on_model_gray, plain_backdrop_segmentation
from intake.framing import frame_object
from intake.synthetic import BACKDROPS, Backdrop, backdrop_image, composite, iou

OBJECTS = ("chair", "hamburger", "robot")


@pytest.fixture(scope="module")
def cutouts(photos: Path) -> dict[str, np.ndarray]:
    return {n: np.asarray(Image.open(photos / f"{n}.png").convert("RGBA")) for n in OBJECTS}


@pytest.mark.parametrize("encoding", ["png", "jpeg75"])
@pytest.mark.parametrize("backdrop", BACKDROPS, ids=[b.name for b in BACKDROPS])
@pytest.mark.parametrize("obj", OBJECTS)
def test_ground_truth_iou(
    obj: str, backdrop: Backdrop, encoding: str, cutouts: dict[str, np.ndarray]
) -> None:
    data, truth = composite(cutouts[obj], backdrop, jpeg_quality=75 if encoding == "jpeg75" else None)
    name = f"{obj}-{backdrop.name}.{encoding}"
    seg = plain_backdrop_segmentation(decode_image(data, name=name).rgb, name=name)
    score = iou(seg.mask >= 128, truth)
    IOU_TABLE[(obj, backdrop.name, encoding)] = score
    assert score >= 0.95, f"{name}: IoU {score:.4f}"
    assert seg.method == "plain-backdrop" and not seg.on_gray


def test_backdrop_fit_ignores_the_shadow_on_the_border(cutouts: dict[str, np.ndarray]) -> None:
    bd = BACKDROPS[2]
    a = cutouts["robot"][..., 3].astype(np.float32) / 255
    clean = backdrop_image(Backdrop(bd.name, bd.top, bd.bottom), a)  # the sweep without its shadow
    data, _ = composite(cutouts["robot"], bd)
    rgb = decode_image(data, name="robot.png").rgb
    model = fit_backdrop(rgb.astype(np.float32))
    err = np.abs(model.field(*rgb.shape[:2]) - clean)
    assert err.mean() < 1.5 and model.sigma < 3


def test_larger_photo_uses_the_downscaled_pass(cutouts: dict[str, np.ndarray]) -> None:
    data, truth = composite(cutouts["chair"], BACKDROPS[2], jpeg_quality=75, scale=3)  # 1536 px
    seg = plain_backdrop_segmentation(decode_image(data, name="big.jpg").rgb, name="big.jpg")
    assert seg.mask.shape == truth.shape
    assert iou(seg.mask >= 128, truth) >= 0.95


@pytest.mark.parametrize("photo", ["flor.png", "cerebro.jpg"])
def test_shared_photos_give_one_clean_usable_object(photo: str, photos: Path) -> None:
    result = preprocess((photos / photo).read_bytes(), name=photo)
    assert result.method == "plain-backdrop"
    assert result.usable, result.reasons
    f = result.flags
    assert f.object_count == 1 and not f.clipped and not f.several_objects and not f.on_gray
    assert 0.1 < result.foreground_fraction < 0.6
    assert f.mask_confidence > 0.9 and f.backdrop_contrast is not None and f.backdrop_contrast > 50
    # the framed object spans the foreground ratio of the side
    ys, xs = np.nonzero(result.framed_mask >= 128)
    extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    assert abs(extent - 0.85 * 512) <= 3


def test_flor_mask_keeps_petals_and_stem(photos: Path) -> None:
    result = preprocess((photos / "flor.png").read_bytes(), name="flor.png")
    rgb = decode_image((photos / "flor.png").read_bytes(), name="flor.png").rgb.astype(int)
    pink = (rgb[..., 0] - rgb[..., 1] > 60) & (rgb[..., 2] > 120)  # petals
    assert (result.mask[pink] >= 128).mean() > 0.98
    near_white = (rgb.min(-1) > 235) & (np.ptp(rgb, axis=-1) < 12)
    assert (result.mask[near_white] >= 128).mean() < 0.02
    x0, y0, x1, y1 = result.bbox
    assert y1 - y0 > 0.8 * rgb.shape[0], "the stem reaches down: the box spans most of the height"


def test_teapot_on_gray_is_detected_and_framed_without_damage(photos: Path) -> None:
    data = (photos / "teapot.png").read_bytes()
    result = preprocess(data, name="teapot.png")
    assert result.flags.on_gray and result.method == "plain-backdrop"
    assert {
        "method": "rembg",
        "outcome": "skipped",
        "detail": "already on the model's gray backdrop",
    } in result.attempts
    assert result.usable and result.flags.object_count == 1
    # Reference: the same crop of the photo with nothing masked (it already is on the model gray).
    rgb = decode_image(data, name="teapot.png").rgb
    box = np.zeros(rgb.shape[:2], np.uint8)
    x0, y0, x1, y1 = result.bbox
    box[y0:y1, x0:x1] = 255
    ref, _, _ = frame_object(rgb, box)
    assert np.abs(result.image.astype(int) - ref.astype(int)).max() <= 1
    # and the object did not move: its framed mask is where the teapot's colour is
    red = (result.image[..., 0].astype(int) - result.image[..., 2] > 60) & (result.image[..., 0] > 120)
    assert (result.framed_mask[red] >= 128).mean() > 0.99
    assert on_model_gray(rgb)


def test_uniform_image_has_no_foreground() -> None:
    with pytest.raises(IntakeError) as exc:
        preprocess(encode(np.full((200, 300, 3), 240, np.uint8), "PNG"), name="blank.png")
    assert exc.value.reason is Reason.NO_FOREGROUND


def test_params_change_the_analysis_resolution(cutouts: dict[str, np.ndarray]) -> None:
    data, truth = composite(cutouts["hamburger"], BACKDROPS[0])
    rgb = decode_image(data, name="h.png").rgb
    coarse = plain_backdrop_segmentation(rgb, name="h.png", params=BackdropParams(work_size=160))
    assert coarse.mask.shape == truth.shape
    assert (
        0.9
        < iou(coarse.mask >= 128, truth)
        < iou(plain_backdrop_segmentation(rgb, name="h.png").mask >= 128, truth) + 0.02
    )


def test_same_photo_same_mask(cutouts: dict[str, np.ndarray]) -> None:
    data, _ = composite(cutouts["robot"], BACKDROPS[0], jpeg_quality=75)
    rgb = decode_image(data, name="r.jpg").rgb
    first = plain_backdrop_segmentation(rgb, name="r.jpg").mask
    other, _ = composite(cutouts["chair"], BACKDROPS[2])
    plain_backdrop_segmentation(decode_image(other, name="c.png").rgb, name="c.png")  # moves OpenCV's RNG on
    np.testing.assert_array_equal(plain_backdrop_segmentation(rgb, name="r.jpg").mask, first)
