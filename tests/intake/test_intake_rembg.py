"""rembg path: rembg's real session code on a tiny ONNX model built here; offline means no download."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from intake_helpers import encode
from onnx import TensorProto, helper
from PIL import Image, ImageFilter

from intake import IntakeError, Reason, RembgConfig, decode_image, preprocess
from intake.rembg_method import model_status, rembg_segmentation


def tiny_saliency_model(path: Path) -> Path:
    """A u2net-shaped ONNX model (input 1x3x320x320 -> 1x1x320x320).

    saliency = sigmoid(4 * (0.7 - mean over channels)): rembg normalises the image with the ImageNet
    mean/std (white -> about +2.4, dark gray -> about -1.1) and min-max scales the output, so dark
    pixels on a light backdrop come out as foreground, near 0 / 1 like a trained model's.
    """
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 320, 320])
    y = helper.make_tensor_value_info("d0", TensorProto.FLOAT, [1, 1, 320, 320])
    consts = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("offset", TensorProto.FLOAT, [], [0.7]),
        helper.make_tensor("gain", TensorProto.FLOAT, [], [4.0]),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input.1", "axes"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["offset", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["d0"]),
    ]
    graph = helper.make_graph(nodes, "tiny-saliency", [x], [y], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def rembg_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty, isolated rembg home; any download attempt fails the test."""
    home = tmp_path / "rembg-home"
    home.mkdir()
    monkeypatch.setenv("REMBG_HOME", str(home))
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # rembg's legacy ~/.u2net lookup

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"rembg tried to download a model: {args}")

    import pooch

    monkeypatch.setattr(pooch, "retrieve", no_download)
    return home


def dark_square(size: int = 240) -> tuple[np.ndarray, np.ndarray]:
    """``(size, size, 3) uint8`` white photo with a dark square, and its ``(size, size) bool`` truth."""
    rgb = np.full((size, size, 3), 245, np.uint8)
    truth = np.zeros((size, size), bool)
    truth[60:180, 80:170] = True
    rgb[truth] = (40, 50, 60)
    return rgb, truth


def test_named_model_from_rembg_home(rembg_home: Path) -> None:
    tiny_saliency_model(rembg_home / "models" / "u2net" / "u2net.onnx")
    config = RembgConfig(model="u2net")
    status = model_status(config)
    assert status.available and status.path == rembg_home / "models" / "u2net" / "u2net.onnx"
    rgb, truth = dark_square()
    seg = rembg_segmentation(rgb, name="square.png", config=config)
    assert seg.method == "rembg" and seg.mask.shape == truth.shape
    m = seg.mask >= 128
    assert (m & truth).sum() / (m | truth).sum() > 0.93
    assert 0.5 < seg.confidence <= 1.0


def test_auto_uses_rembg_when_its_model_is_on_disk(rembg_home: Path) -> None:
    tiny_saliency_model(rembg_home / "models" / "u2net" / "u2net.onnx")
    rgb, _ = dark_square()
    result = preprocess(encode(rgb, "PNG"), name="square.png", rembg=RembgConfig(model="u2net"))
    assert result.method == "rembg"
    assert [a["method"] for a in result.attempts] == ["alpha"]
    assert result.usable and result.flags.backdrop_contrast is None


def test_custom_onnx_path(rembg_home: Path) -> None:
    path = tiny_saliency_model(rembg_home / "custom" / "tiny.onnx")
    rgb, truth = dark_square()
    seg = rembg_segmentation(
        rgb, name="square.png", config=RembgConfig(model="u2net_custom", model_path=path)
    )
    m = seg.mask >= 128
    assert (m & truth).sum() / (m | truth).sum() > 0.93


def test_custom_path_outside_the_model_home_is_refused(rembg_home: Path, tmp_path: Path) -> None:
    path = tiny_saliency_model(tmp_path / "elsewhere" / "tiny.onnx")
    status = model_status(RembgConfig(model="u2net_custom", model_path=path))
    assert not status.available and "refused by rembg" in status.detail


def test_offline_without_model_falls_through_to_plain_backdrop(rembg_home: Path) -> None:
    rgb, truth = dark_square()
    data = encode(rgb, "PNG")
    status = model_status(RembgConfig())
    assert not status.available and "isnet-general-use.onnx" in status.detail
    result = preprocess(data, name="square.png")
    assert result.method == "plain-backdrop"
    assert {"method": "rembg", "outcome": "model_unavailable", "detail": status.detail} in result.attempts
    m = result.mask >= 128
    assert (m & truth).sum() / (m | truth).sum() > 0.95


def test_explicit_rembg_without_model_is_refused(rembg_home: Path) -> None:
    rgb, _ = dark_square()
    with pytest.raises(IntakeError) as exc:
        preprocess(encode(rgb, "PNG"), name="square.png", method="rembg")
    assert exc.value.reason is Reason.MODEL_UNAVAILABLE and "square.png" in str(exc.value)


def test_model_file_deleted_later_is_not_downloaded(rembg_home: Path) -> None:
    path = tiny_saliency_model(rembg_home / "models" / "u2net" / "u2net.onnx")
    path.unlink()
    rgb, _ = dark_square()
    with pytest.raises(IntakeError) as exc:
        rembg_segmentation(rgb, name="square.png", config=RembgConfig(model="u2net"))
    assert exc.value.reason is Reason.MODEL_UNAVAILABLE


def test_default_model_is_permissive_and_bria_is_refused() -> None:
    assert RembgConfig().model == "isnet-general-use"
    with pytest.raises(ValueError, match="not allowed"):
        RembgConfig(model="bria-rmbg")
    with pytest.raises(ValueError, match="model_path"):
        RembgConfig(model="u2net_custom")


def test_alpha_cutout_skips_rembg(rembg_home: Path, photos: Path) -> None:
    tiny_saliency_model(rembg_home / "models" / "u2net" / "u2net.onnx")
    data = (photos / "chair.png").read_bytes()
    result = preprocess(data, name="chair.png", rembg=RembgConfig(model="u2net"))
    assert result.method == "alpha" and result.attempts == ()
    np.testing.assert_array_equal(result.mask, decode_image(data, name="chair.png").alpha)


def test_framing_box_is_the_official_alpha_above_zero_box(rembg_home: Path) -> None:
    """Official run.py: ``rembg.remove(image)`` then ``resize_foreground`` on ``alpha > 0``, faint edge included."""
    import rembg

    tiny_saliency_model(rembg_home / "models" / "u2net" / "u2net.onnx")
    # a dark disc with a blurred rim: the model's mask fades out over several pixels
    yy, xx = np.mgrid[0:300, 0:360]
    disc = (((yy - 140) / 80.0) ** 2 + ((xx - 170) / 100.0) ** 2 <= 1).astype(np.uint8) * 255
    soft = np.asarray(Image.fromarray(disc).filter(ImageFilter.GaussianBlur(6)), dtype=np.float32) / 255.0
    rgb = (245 - soft[..., None] * np.array([205.0, 195.0, 185.0])).round().astype(np.uint8)  # (300, 360, 3)
    config = RembgConfig(model="u2net")
    result = preprocess(encode(rgb, "PNG"), name="disc.png", method="rembg", rembg=config)
    # the official alpha, computed the official way
    from intake.rembg_method import load_session

    cutout = rembg.remove(Image.fromarray(rgb), session=load_session(config, name="disc.png"))
    alpha = np.asarray(cutout)[..., 3]
    ys, xs = np.nonzero(alpha > 0)
    assert ((alpha > 0) & (alpha < 8)).any(), "the fixture must have a faint edge"
    assert result.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_clean_drops_small_objects_but_keeps_the_faint_edge() -> None:
    from intake.rembg_method import _clean

    mask = np.zeros((120, 200), np.uint8)
    mask[30:90, 30:90] = 255  # the object
    mask[24:96, 24:96] = np.maximum(mask[24:96, 24:96], 3)  # its faint edge, 6 px wide
    mask[50:54, 150:154] = 255  # a speck far away (16 px < 1 % of 3600)
    mask[48:56, 148:156] = np.maximum(mask[48:56, 148:156], 2)
    out = _clean(mask, 0.01)
    np.testing.assert_array_equal(out[:, :120], mask[:, :120])  # object and whole faint edge kept
    assert not out[:, 120:].any()  # the speck and its edge dropped
