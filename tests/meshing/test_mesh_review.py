from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshing.errors import MeshingError
from meshing.review import DEFAULT_POLICY_PATH, GateDecision, GateVerdict, ReviewPolicy, load_policy, review

GOOD = {
    "validation": {"errors": 0, "warnings": 0},
    "limits": {"ok": True, "failures": []},
    "asset": {"components": 1, "boundary_edges": 10},
    "input_view": {"silhouette_iou": 0.96, "masked_psnr_db": 24.0},
    "color_error": {"mean_abs": [1.0, 1.2, 0.8]},
    "seams": {"p95_abs": 3.0},
}


def _with(**parts: dict) -> dict:
    out = {k: dict(v) for k, v in GOOD.items()}
    for key, value in parts.items():
        out[key] = {**out.get(key, {}), **value}
    return out


def test_default_policy_file_matches_the_dataclass_defaults() -> None:
    assert load_policy(DEFAULT_POLICY_PATH) == ReviewPolicy()


def test_good_asset_is_auto_approved() -> None:
    verdict = review(GOOD)
    assert isinstance(verdict, GateVerdict) and verdict.status is GateDecision.auto_approved
    assert verdict.reasons == []
    # the enum's values are the strings stored in JSON and the catalogue
    assert json.loads(json.dumps(verdict.as_dict())) == {
        "status": "auto_approved",
        "reasons": [],
        "notes": [],
    }
    assert {d.value for d in GateDecision} == {"auto_approved", "needs_review", "rejected"}


@pytest.mark.parametrize(
    ("metrics", "flags", "status", "needle"),
    [
        (_with(input_view={"silhouette_iou": 0.85}), (), "needs_review", "silhouette IoU 0.850"),
        (_with(input_view={"silhouette_iou": 0.5}), (), "rejected", "reject_below_silhouette_iou"),
        (_with(validation={"errors": 2}), (), "rejected", "2 errors"),
        (_with(limits={"ok": False, "failures": ["triangles 9 > 1"]}), (), "rejected", "triangles 9 > 1"),
        (_with(color_error={"mean_abs": [9.0, 1.0, 1.0]}), (), "needs_review", "colour error 9.00"),
        (_with(seams={"p95_abs": 40.0}), (), "needs_review", "seam"),
        (_with(asset={"components": 9}), (), "needs_review", "9 components"),
        (_with(input_view={"masked_psnr_db": 8.0}), (), "needs_review", "masked PSNR 8.0"),
        (GOOD, ("low_contrast",), "needs_review", "intake flag low_contrast"),
        (GOOD, ("several_objects",), "rejected", "intake flag several_objects"),
        (GOOD, ("brand_new_flag",), "needs_review", "unknown intake flag"),
        ({k: v for k, v in GOOD.items() if k != "input_view"}, (), "needs_review", "no input-view"),
    ],
)
def test_rules_fire_with_reasons(metrics: dict, flags: tuple, status: str, needle: str) -> None:
    decision = review(metrics, intake_flags=flags)
    assert decision.status == status
    assert any(needle in r for r in decision.reasons), decision.reasons


def test_policy_from_config(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("approve_min_silhouette_iou: 0.97\nreview_intake_flags: [cropped]\n")
    strict = load_policy(path)
    assert review(GOOD, policy=strict).status == "needs_review"
    assert review(GOOD, intake_flags=["cropped"], policy=strict).status == "needs_review"
    lenient = load_policy({"require_input_view_metrics": False})
    no_view = {k: v for k, v in GOOD.items() if k != "input_view"}
    assert review(no_view, policy=lenient).status == "auto_approved"
    for bad in ({"approve_min_silhouette_iou": "high"}, {"no_such_threshold": 1}):
        with pytest.raises(MeshingError) as err:
            load_policy(bad)
        assert err.value.reason == "bad_input"


def test_each_reason_names_its_rule_threshold_and_value() -> None:
    import pickle

    from meshing.review import GateReason, load_policy, review

    metrics = {
        "validation": {"errors": 0},
        "limits": {"ok": True},
        "input_view": {"silhouette_iou": 0.8, "masked_psnr_db": 20.0},
        "asset": {"components": 9, "boundary_edges": 10},
    }
    verdict = review(metrics, policy=load_policy())
    by_rule = {r.rule: r for r in verdict.reasons}
    assert set(by_rule) == {"approve_min_silhouette_iou", "approve_max_components"}
    iou = by_rule["approve_min_silhouette_iou"]
    assert isinstance(iou, GateReason) and (iou.threshold, iou.value) == (0.9, 0.8) and "silhouette IoU 0.800" in iou
    assert by_rule["approve_max_components"].as_dict() == {
        "rule": "approve_max_components", "threshold": 3, "value": 9, "message": "9 components > 3 (approve_max_components)",
    }  # fmt: skip
    doc = verdict.as_dict()
    assert doc["status"] == "needs_review" and {r["rule"] for r in doc["reasons"]} == set(by_rule)
    again = pickle.loads(pickle.dumps(iou))  # cached build results carry verdicts
    assert again == iou and again.rule == iou.rule and again.value == 0.8
