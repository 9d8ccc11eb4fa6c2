"""Real-world size: the scale rule and the aspect mismatch on known numbers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from meshing.errors import MeshingError
from meshing.review import GateDecision, review
from meshing.scale import ProductSize, fit_scale

EXTENTS = np.array([0.5, 1.0, 0.25])  # a model twice as tall as wide, four times as tall as deep


def test_height_alone_sets_the_scale() -> None:
    fit = fit_scale(EXTENTS, ProductSize(height_m=0.32))
    assert fit.scale == pytest.approx(0.32) and fit.basis == "height_m"
    assert fit.size_m == pytest.approx((0.16, 0.32, 0.08))
    assert fit.aspect_mismatch is None and not fit.unscaled and fit.source == "flag"


def test_the_largest_given_dimension_sets_the_scale() -> None:
    # width 0.6 is the largest given: the model's width becomes 0.6, its height 1.2 (not 0.4)
    fit = fit_scale(EXTENTS, ProductSize(width_m=0.6, height_m=0.4, source="catalogue"))
    assert fit.basis == "width_m" and fit.size_m[0] == pytest.approx(0.6)
    # width/height: product 1.5, model 0.5: the ratio of ratios is 3
    assert fit.aspect_mismatch == pytest.approx(3.0)


def test_mismatch_is_the_worst_ratio_of_ratios_over_given_pairs() -> None:
    product = np.array([0.3, 0.5, 0.2])
    fit = fit_scale(EXTENTS, ProductSize(*product, source="sidecar"))
    pairs = [
        max(r, 1 / r)
        for i, j in itertools.combinations(range(3), 2)
        for r in [(product[i] / product[j]) / (EXTENTS[i] / EXTENTS[j])]
    ]
    assert fit.aspect_mismatch == pytest.approx(max(pairs)) and fit.aspect_mismatch >= 1.0
    same_shape = fit_scale(EXTENTS, ProductSize(*(EXTENTS * 0.4)))
    assert same_shape.aspect_mismatch == pytest.approx(1.0) and same_shape.scale == pytest.approx(0.4)


def test_without_dimensions_the_asset_is_unscaled() -> None:
    fit = fit_scale(EXTENTS, None)
    assert fit.unscaled and fit.scale == 1.0 and fit.source is None and fit.basis is None
    assert fit.as_dict()["unscaled"] is True and fit.as_dict()["product_m"] is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"height_m": 0.0},
        {"width_m": -1.0},
        {"depth_m": float("nan")},
        {"height_m": 1.0, "source": "guess"},
    ],
)
def test_bad_sizes_are_refused(kwargs: dict) -> None:
    with pytest.raises(MeshingError) as err:
        ProductSize(**kwargs)
    assert err.value.reason == "bad_input"


def test_a_flat_model_cannot_match_a_depth() -> None:
    with pytest.raises(MeshingError):
        fit_scale(np.array([1.0, 1.0, 0.0]), ProductSize(depth_m=0.1))


def test_gate_holds_a_3x_mismatch_and_names_the_rule() -> None:
    base = {
        "validation": {"errors": 0},
        "limits": {"ok": True},
        "input_view": {"silhouette_iou": 0.95, "masked_psnr_db": 20.0},
    }
    fit = fit_scale(EXTENTS, ProductSize(width_m=1.5, height_m=1.0))
    assert fit.aspect_mismatch == pytest.approx(3.0)
    verdict = review({**base, "scale": fit.as_dict()})
    assert verdict.status is GateDecision.needs_review
    assert any("review_max_aspect_mismatch" in r and "3.00" in r for r in verdict.reasons)
    near = fit_scale(EXTENTS, ProductSize(width_m=0.55, height_m=1.0))  # 1.1x: within the default 1.5
    assert review({**base, "scale": near.as_dict()}).status is GateDecision.auto_approved
