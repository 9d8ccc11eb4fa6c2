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
    reasons: list[str]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "reasons": list(self.reasons), "notes": list(self.notes)}


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
    reject: list[str] = []
    hold: list[str] = []
    errors = _get(metrics, "validation", "errors")
    if errors is None:
        hold.append("no glTF validation result")
    elif errors > 0:
        reject.append(f"glTF validator reported {errors} errors")
    limits_ok = _get(metrics, "limits", "ok")
    if limits_ok is False:
        reject.append("preset limits not met: " + "; ".join(_get(metrics, "limits", "failures") or []))
    for flag in sorted(set(intake_flags)):
        if flag in p.reject_intake_flags:
            reject.append(f"intake flag {flag}")
        elif flag in p.review_intake_flags:
            hold.append(f"intake flag {flag}")
        else:
            hold.append(f"unknown intake flag {flag}")
    iou = _get(metrics, "input_view", "silhouette_iou")
    psnr = _get(metrics, "input_view", "masked_psnr_db")
    if iou is None:
        if p.require_input_view_metrics:
            hold.append("no input-view silhouette IoU")
    elif iou < p.reject_below_silhouette_iou:
        reject.append(
            f"silhouette IoU {iou:.3f} < {p.reject_below_silhouette_iou} (reject_below_silhouette_iou)"
        )
    elif iou < p.approve_min_silhouette_iou:
        hold.append(f"silhouette IoU {iou:.3f} < {p.approve_min_silhouette_iou} (approve_min_silhouette_iou)")
    if psnr is not None and psnr < p.approve_min_masked_psnr_db:
        hold.append(
            f"masked PSNR {psnr:.1f} dB < {p.approve_min_masked_psnr_db} (approve_min_masked_psnr_db)"
        )
    color = _get(metrics, "color_error", "mean_abs")
    if color is not None and max(color) > p.approve_max_color_error:
        hold.append(
            f"colour error {max(color):.2f}/255 > {p.approve_max_color_error} (approve_max_color_error)"
        )
    seam = _get(metrics, "seams", "p95_abs")
    if seam is not None and seam > p.approve_max_seam_p95:
        hold.append(f"seam colour jump p95 {seam:.1f}/255 > {p.approve_max_seam_p95} (approve_max_seam_p95)")
    comps = _get(metrics, "asset", "components")
    if comps is not None and comps > p.approve_max_components:
        hold.append(f"{comps} components > {p.approve_max_components} (approve_max_components)")
    boundary = _get(metrics, "asset", "boundary_edges")
    if boundary is not None and boundary > p.approve_max_boundary_edges:
        hold.append(
            f"{boundary} boundary edges > {p.approve_max_boundary_edges} (approve_max_boundary_edges)"
        )
    notes: list[str] = []
    mismatch = _get(metrics, "scale", "aspect_mismatch")
    if mismatch is not None and mismatch > p.review_max_aspect_mismatch:
        hold.append(
            f"aspect mismatch {mismatch:.2f} > {p.review_max_aspect_mismatch} (review_max_aspect_mismatch): "
            "the model's proportions differ from the product's dimensions"
        )
    if _get(metrics, "scale", "unscaled") is True:
        note = "unscaled: no product dimensions, the model's own size is written as metres"
        if p.hold_unscaled:
            hold.append(f"{note} (hold_unscaled)")
        else:
            notes.append(note)
    if reject:
        return GateVerdict(GateDecision.rejected, reject + hold, notes)
    if hold:
        return GateVerdict(GateDecision.needs_review, hold, notes)
    return GateVerdict(GateDecision.auto_approved, [], notes)
