"""Review gate: thresholds (from config) turn metrics and intake flags into a verdict.

A `GateVerdict` holds a `GateDecision` (`auto_approved`, `needs_review` or `rejected`) and the
reasons, every one naming the rule that fired. The default thresholds live in
`review_policy.yaml` beside this module. (The catalogue's `storage.catalogue.ReviewDecision` is
a reviewer's action on a stored asset, a different thing.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from meshing.errors import MeshingError

DEFAULT_POLICY_PATH = Path(__file__).with_name("review_policy.yaml")


@dataclass(frozen=True)
class ReviewPolicy:
    """Thresholds; every one is named in the reasons it produces."""

    reject_below_silhouette_iou: float = 0.70
    approve_min_silhouette_iou: float = 0.90
    approve_min_masked_psnr_db: float = 10.0  # TripoSR colours run darker than the photo (flor: 12 dB)
    approve_max_color_error: float = 6.0  # mean abs, 0-255, worst channel
    approve_max_seam_p95: float = 12.0  # 0-255
    approve_max_components: int = 3
    approve_max_boundary_edges: int = 2000
    # real-world size: proportions far from the product's dimensions (a wrong photo, a bad
    # reconstruction) hold the asset; an asset without dimensions is noted, held only if asked
    review_max_aspect_mismatch: float = 1.5
    hold_unscaled: bool = False
    require_input_view_metrics: bool = True
    # the reasons `intake.assess` gives for an unusable photo
    reject_intake_flags: frozenset[str] = field(
        default_factory=lambda: frozenset({"no_object", "several_objects"})
    )
    review_intake_flags: frozenset[str] = field(
        default_factory=lambda: frozenset({"clipped", "tiny_object", "low_contrast", "low_confidence"})
    )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reject_intake_flags"] = sorted(self.reject_intake_flags)
        out["review_intake_flags"] = sorted(self.review_intake_flags)
        return out


def load_policy(source: str | Path | Mapping[str, Any] | None = None) -> ReviewPolicy:
    """A policy from a YAML file, a mapping, or the packaged default (None).

    Raises
    ------
    MeshingError
        `bad_input` for unknown keys or values of the wrong type.
    """
    if source is None:
        source = DEFAULT_POLICY_PATH
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise MeshingError("bad_input", f"review policy {path}: no such file")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise MeshingError("bad_input", f"review policy {path}: expected a mapping of thresholds")
    else:
        data = source
    known = {f.name: f for f in fields(ReviewPolicy)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise MeshingError("bad_input", f"review policy: unknown keys {unknown} (known: {sorted(known)})")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key.endswith("_flags"):
            if not isinstance(value, (list, tuple, set, frozenset)):
                raise MeshingError("bad_input", f"review policy: {key} must be a list of flag names")
            kwargs[key] = frozenset(str(v) for v in value)
        elif isinstance(getattr(ReviewPolicy(), key), bool):
            if not isinstance(value, bool):
                raise MeshingError("bad_input", f"review policy: {key} must be true or false, got {value!r}")
            kwargs[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise MeshingError("bad_input", f"review policy: {key} must be a number, got {value!r}")
            kwargs[key] = type(getattr(ReviewPolicy(), key))(value)
    return ReviewPolicy(**kwargs)


class GateDecision(StrEnum):
    """The gate's outcome for one asset (values are the strings stored in JSON and the catalogue)."""

    auto_approved = "auto_approved"
    needs_review = "needs_review"
    rejected = "rejected"


class GateReason(str):
    """One rule that fired: the message (the string itself), the rule's policy key, its threshold, and the
    value measured. A `str`, so it reads, joins and compares as its message."""

    rule: str
    threshold: Any
    value: Any

    def __new__(cls, message: str, *, rule: str, threshold: Any = None, value: Any = None) -> GateReason:
        self = super().__new__(cls, message)
        self.rule, self.threshold, self.value = rule, threshold, value
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (cached build results carry verdicts)
        return (_reason, (str(self), self.rule, self.threshold, self.value))

    def as_dict(self) -> dict[str, Any]:
        """``{"rule", "threshold", "value", "message"}``: what the catalogue keeps and reviewers are shown."""
        value = self.value
        if isinstance(value, float):
            value = round(value, 6)
        return {"rule": self.rule, "threshold": self.threshold, "value": value, "message": str(self)}


def _reason(message: str, rule: str, threshold: Any, value: Any) -> GateReason:
    return GateReason(message, rule=rule, threshold=threshold, value=value)


@dataclass(frozen=True)
class GateVerdict:
    """A decision, every rule that fired, and notes a reviewer should see.

    Attributes
    ----------
    status
        The decision.
    reasons
        Every rule that held or rejected the asset (empty for `auto_approved`).
    notes
        Facts shown with the asset that do not hold it under this policy (e.g. `unscaled`).
    """

    status: GateDecision
    reasons: list[GateReason]
    notes: list[GateReason] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON: each reason and note with its rule, threshold, value and message."""
        return {
            "status": self.status.value,
            "reasons": [_as_dict(r) for r in self.reasons],
            "notes": [_as_dict(n) for n in self.notes],
        }


def _as_dict(reason: str) -> dict[str, Any]:
    return reason.as_dict() if isinstance(reason, GateReason) else {"rule": None, "threshold": None, "value": None, "message": str(reason)}


def _get(metrics: Mapping[str, Any], *path: str) -> Any:
    cur: Any = metrics
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def review(
    metrics: Mapping[str, Any], *, intake_flags: Sequence[str] = (), policy: ReviewPolicy | None = None
) -> GateVerdict:
    """Decide on one asset.

    Parameters
    ----------
    metrics
        The metrics dict of `build_asset` (keys `validation`, `limits`, `asset` (topology welded
        by position), `input_view`, `color_error`, `seams`, `scale`); missing parts are treated as
        unknown.
    intake_flags
        Flags raised by the intake stage for the source photo.
    policy
        Thresholds (default: the packaged policy).

    Returns
    -------
    GateVerdict
        `rejected` if any reject rule fires, else `needs_review` if any review rule fires, else
        `auto_approved`; `reasons` lists every rule that fired, `notes` what a reviewer should see
        without it holding the asset (an `unscaled` asset, unless `hold_unscaled`).
    """
    p = policy or load_policy()
    reject: list[GateReason] = []
    hold: list[GateReason] = []

    def fired(into: list[GateReason], message: str, rule: str, threshold: Any = None, value: Any = None) -> None:
        into.append(GateReason(message, rule=rule, threshold=threshold, value=value))

    errors = _get(metrics, "validation", "errors")
    if errors is None:
        fired(hold, "no glTF validation result", "validation", 0, None)
    elif errors > 0:
        fired(reject, f"glTF validator reported {errors} errors", "validation", 0, errors)
    limits_ok = _get(metrics, "limits", "ok")
    if limits_ok is False:
        failures = _get(metrics, "limits", "failures") or []
        fired(reject, "preset limits not met: " + "; ".join(failures), "preset_limits", None, list(failures))
    for flag in sorted(set(intake_flags)):
        if flag in p.reject_intake_flags:
            fired(reject, f"intake flag {flag}", "reject_intake_flags", sorted(p.reject_intake_flags), flag)
        elif flag in p.review_intake_flags:
            fired(hold, f"intake flag {flag}", "review_intake_flags", sorted(p.review_intake_flags), flag)
        else:
            fired(hold, f"unknown intake flag {flag}", "review_intake_flags", sorted(p.review_intake_flags), flag)
    iou = _get(metrics, "input_view", "silhouette_iou")
    psnr = _get(metrics, "input_view", "masked_psnr_db")
    if iou is None:
        if p.require_input_view_metrics:
            fired(hold, "no input-view silhouette IoU", "require_input_view_metrics", True, None)
    elif iou < p.reject_below_silhouette_iou:
        fired(reject, f"silhouette IoU {iou:.3f} < {p.reject_below_silhouette_iou} (reject_below_silhouette_iou)",
              "reject_below_silhouette_iou", p.reject_below_silhouette_iou, iou)  # fmt: skip
    elif iou < p.approve_min_silhouette_iou:
        fired(hold, f"silhouette IoU {iou:.3f} < {p.approve_min_silhouette_iou} (approve_min_silhouette_iou)",
              "approve_min_silhouette_iou", p.approve_min_silhouette_iou, iou)  # fmt: skip
    if psnr is not None and psnr < p.approve_min_masked_psnr_db:
        fired(hold, f"masked PSNR {psnr:.1f} dB < {p.approve_min_masked_psnr_db} (approve_min_masked_psnr_db)",
              "approve_min_masked_psnr_db", p.approve_min_masked_psnr_db, psnr)  # fmt: skip
    color = _get(metrics, "color_error", "mean_abs")
    if color is not None and max(color) > p.approve_max_color_error:
        fired(hold, f"colour error {max(color):.2f}/255 > {p.approve_max_color_error} (approve_max_color_error)",
              "approve_max_color_error", p.approve_max_color_error, max(color))  # fmt: skip
    seam = _get(metrics, "seams", "p95_abs")
    if seam is not None and seam > p.approve_max_seam_p95:
        fired(hold, f"seam colour jump p95 {seam:.1f}/255 > {p.approve_max_seam_p95} (approve_max_seam_p95)",
              "approve_max_seam_p95", p.approve_max_seam_p95, seam)  # fmt: skip
    comps = _get(metrics, "asset", "components")
    if comps is not None and comps > p.approve_max_components:
        fired(hold, f"{comps} components > {p.approve_max_components} (approve_max_components)",
              "approve_max_components", p.approve_max_components, comps)  # fmt: skip
    boundary = _get(metrics, "asset", "boundary_edges")
    if boundary is not None and boundary > p.approve_max_boundary_edges:
        fired(hold, f"{boundary} boundary edges > {p.approve_max_boundary_edges} (approve_max_boundary_edges)",
              "approve_max_boundary_edges", p.approve_max_boundary_edges, boundary)  # fmt: skip
    notes: list[GateReason] = []
    mismatch = _get(metrics, "scale", "aspect_mismatch")
    if mismatch is not None and mismatch > p.review_max_aspect_mismatch:
        fired(hold, f"aspect mismatch {mismatch:.2f} > {p.review_max_aspect_mismatch} (review_max_aspect_mismatch): "
              "the model's proportions differ from the product's dimensions",
              "review_max_aspect_mismatch", p.review_max_aspect_mismatch, mismatch)  # fmt: skip
    if _get(metrics, "scale", "unscaled") is True:
        note = "unscaled: no product dimensions, the model's own size is written as metres"
        if p.hold_unscaled:
            fired(hold, note + " (hold_unscaled)", "hold_unscaled", True, True)
        else:
            fired(notes, note, "hold_unscaled", False, True)
    if reject:
        return GateVerdict(GateDecision.rejected, reject + hold, notes)
    if hold:
        return GateVerdict(GateDecision.needs_review, hold, notes)
    return GateVerdict(GateDecision.auto_approved, [], notes)
