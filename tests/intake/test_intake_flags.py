"""Intake flags: each flag fires on a photo made to trigger it, and decides `usable`."""

from __future__ import annotations

import numpy as np
import pytest
from intake_helpers import encode

from intake import FlagThresholds, IntakeError, Reason, preprocess
from intake.flags import assess, compute_flags
from intake.types import Segmentation


def studio(size: tuple[int, int] = (300, 400), color: tuple[int, int, int] = (60, 90, 150)) -> np.ndarray:
    """``(H, W, 3) uint8`` white backdrop; objects are painted by the tests."""
    rgb = np.full((*size, 3), 250, np.uint8)
    rgb[..., :] = (250, 250, 248)
    return rgb


def disc(rgb: np.ndarray, cy: int, cx: int, r: int, color: tuple[int, int, int]) -> None:
    yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
    rgb[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = color


def run(rgb: np.ndarray, **kwargs: object) -> tuple[bool, tuple[str, ...], dict[str, object]]:
    result = preprocess(encode(rgb, "PNG"), name="flags.png", method="plain-backdrop", **kwargs)
    return result.usable, result.reasons, result.flags.to_json()


def test_clean_object_is_usable() -> None:
    rgb = studio()
    disc(rgb, 150, 200, 80, (60, 90, 150))
    usable, reasons, flags = run(rgb)
    assert usable and reasons == ()
    assert flags["object_count"] == 1 and not flags["clipped"]
    assert abs(flags["foreground_fraction"] - np.pi * 80**2 / (300 * 400)) < 0.01


def test_object_cut_by_the_border_is_clipped() -> None:
    rgb = studio()
    disc(rgb, 150, 380, 90, (60, 90, 150))  # runs off the right edge
    usable, reasons, flags = run(rgb)
    assert not usable and "clipped" in reasons
    assert flags["clipped_sides"] == ["right"] and flags["border_fraction"] > 0.05


def test_two_objects() -> None:
    rgb = studio()
    disc(rgb, 150, 110, 60, (60, 90, 150))
    disc(rgb, 150, 290, 50, (150, 60, 60))
    usable, reasons, flags = run(rgb)
    assert not usable and "several_objects" in reasons and flags["object_count"] == 2


def test_crumb_next_to_the_object_is_not_a_second_object() -> None:
    rgb = studio()
    disc(rgb, 150, 180, 80, (60, 90, 150))
    disc(rgb, 40, 350, 6, (60, 90, 150))  # a speck, well under 10 % of the object
    usable, _, flags = run(rgb)
    assert usable and flags["object_count"] == 1


def test_tiny_object() -> None:
    rgb = studio((600, 800))
    disc(rgb, 300, 400, 12, (60, 90, 150))
    usable, reasons, flags = run(rgb)
    assert not usable and "tiny_object" in reasons and flags["foreground_fraction"] < 0.005


def test_low_backdrop_contrast() -> None:
    rgb = studio()
    disc(rgb, 150, 200, 80, (240, 241, 236))  # off-white on white: barely visible
    usable, reasons, flags = run(rgb)
    assert flags["backdrop_contrast"] is not None and flags["backdrop_contrast"] < 25
    assert not usable and "low_contrast" in reasons


def test_thresholds_come_from_one_config() -> None:
    rgb = studio()
    disc(rgb, 150, 110, 60, (60, 90, 150))
    disc(rgb, 150, 290, 50, (150, 60, 60))
    usable, _, flags = run(rgb, thresholds=FlagThresholds(second_object_ratio=0.9))
    assert usable and flags["object_count"] == 1  # the second is 69 % of the first: under 90 %


def test_low_confidence_is_a_reason() -> None:
    mask = np.zeros((300, 300), np.uint8)
    mask[100:200, 100:200] = 255
    flags = compute_flags(Segmentation(mask=mask, method="rembg", confidence=0.4))
    usable, reasons = assess(flags)
    assert not usable and reasons == ("low_confidence",)
    assert flags.backdrop_contrast is None and not flags.low_contrast


def test_foreground_ratio_is_checked() -> None:
    rgb = studio()
    disc(rgb, 150, 200, 80, (60, 90, 150))
    with pytest.raises(IntakeError) as exc:
        preprocess(encode(rgb, "PNG"), name="r.png", foreground_ratio=1.5)
    assert exc.value.reason is Reason.BAD_ARGUMENT


def test_alpha_method_on_an_opaque_photo_is_refused() -> None:
    rgb = studio()
    with pytest.raises(IntakeError) as exc:
        preprocess(encode(rgb, "PNG"), name="opaque.png", method="alpha")
    assert exc.value.reason is Reason.NO_ALPHA
