"""Catalogue records as reviewers see them: the gate's verdict, intake flags, assets as JSON.

Pure functions over `storage.catalogue` records (no web framework, no I/O): ``asset3d catalogue show
--json`` and the review app's ``GET /api/assets/{asset_id}`` print the same object, `asset_json`.

Two identifiers, never mixed up: the **asset id** is the catalogue row's integer (``asset_id`` in JSON);
the **conversion key** is the 64-hex SHA-256 naming the asset's folder in the bucket (``conversion_key``).

The gate's verdict (``AssetRecord.gate``) is ``{"decision", "reasons", "notes", "intake"}``; a reason is a
dict ``{"rule", "threshold", "value", "message"}`` or, in verdicts recorded before those existed, a plain
string such as ``"silhouette IoU 0.234 < 0.9 (approve_min_silhouette_iou)"``: `gate_view` reads both.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.catalogue import AssetDetail, AssetRecord, AssetStatus, FailureRecord, MetricFilter, ReviewRecord

#: Statuses whose assets the gate (or a reviewer) holds back: their first reason is shown in lists.
HELD = frozenset({AssetStatus.needs_review, AssetStatus.rejected})

_RULE_IN_TEXT = re.compile(r"\(([a-z][a-z0-9_]*)\)")
#: rules whose metric is not named by the rule itself (the rest: the rule minus its approve_/reject_ prefix)
_RULE_METRICS: dict[str, tuple[str, ...]] = {
    "approve_max_color_error": ("color_error.mean_abs_all",),
    "approve_max_seam_p95": ("seams.p95_abs",),
    "approve_max_components": ("asset.components",),
    "approve_max_boundary_edges": ("asset.boundary_edges",),
    "review_max_aspect_mismatch": ("scale.aspect_mismatch",),
}
_RULE_PREFIXES = ("approve_min_", "approve_max_", "reject_below_", "reject_above_", "review_min_", "review_max_")


@dataclass(frozen=True)
class GateReason:
    """One rule that held or rejected an asset.

    Attributes
    ----------
    rule
        The policy field that fired (``approve_min_silhouette_iou``), None when unknown.
    threshold, value
        The rule's threshold and the asset's value (None when the verdict did not record them).
    message
        The sentence the gate wrote.
    """

    rule: str | None
    threshold: Any
    value: Any
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "threshold": self.threshold, "value": self.value, "message": self.message}

    def line(self) -> str:
        """``rule: value V, threshold T: message`` (the parts that are known)."""
        facts = []
        if self.value is not None:
            facts.append(f"value {fmt_number(self.value)}")
        if self.threshold is not None:
            facts.append(f"threshold {fmt_number(self.threshold)}")
        head = self.rule or "reason"
        return f"{head}: {', '.join(facts)}: {self.message}" if facts else f"{head}: {self.message}"


@dataclass(frozen=True)
class GateView:
    """The gate's verdict on one asset, normalised for people and JSON.

    Attributes
    ----------
    recorded
        False when the catalogue holds no verdict for the asset (recorded before verdicts were kept).
    decision
        ``auto_approved``, ``needs_review`` or ``rejected`` (None when not recorded).
    reasons
        Every rule that fired, in the gate's order.
    notes
        Facts the gate noted without holding the asset (e.g. ``unscaled: ...``).
    intake_flags
        The intake flags raised for the photo (``clipped``, ``tiny_object``, ...).
    intake
        The intake summary as recorded.
    unscaled
        True when the asset has no real-world size (no product dimensions: its own units are metres).
    """

    recorded: bool
    decision: str | None
    reasons: tuple[GateReason, ...]
    notes: tuple[str, ...]
    intake_flags: tuple[str, ...]
    intake: Mapping[str, Any]
    unscaled: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "decision": self.decision,
            "reasons": [r.as_dict() for r in self.reasons],
            "notes": list(self.notes),
            "intake_flags": list(self.intake_flags),
            "intake": dict(self.intake),
            "unscaled": self.unscaled,
        }

    @property
    def first_reason(self) -> str | None:
        """The first reason's message, with ``(+N more)`` when there are others."""
        if not self.reasons:
            return None
        more = len(self.reasons) - 1
        return self.reasons[0].message + (f" (+{more} more)" if more else "")


def reason_of(item: Any) -> GateReason:
    """One recorded reason (a dict, or a plain string from older verdicts) as a `GateReason`."""
    if isinstance(item, Mapping):
        rule = item.get("rule")
        message = str(item.get("message") or rule or "")
        return GateReason(str(rule) if rule else None, item.get("threshold"), item.get("value"), message)
    text = str(item)
    found = _RULE_IN_TEXT.findall(text)
    return GateReason(found[-1] if found else None, None, None, text)


def raised_flags(flags: Any) -> tuple[str, ...]:
    """The names of the intake flags that are raised: a list of names, or a mapping name -> value (True)."""
    if isinstance(flags, Mapping):
        return tuple(sorted(str(k) for k, v in flags.items() if v is True))
    if isinstance(flags, list | tuple | set | frozenset):
        return tuple(sorted(str(f) for f in flags))
    return ()


def gate_view(gate: Mapping[str, Any] | None) -> GateView:
    """The verdict as recorded in ``AssetRecord.gate`` (or `gate_from_metrics_document`), normalised."""
    if not gate:
        return GateView(False, None, (), (), (), {}, False)
    reasons = tuple(reason_of(r) for r in gate.get("reasons") or ())
    noted = tuple(reason_of(n) for n in gate.get("notes") or ())
    notes = tuple(n.message for n in noted)
    intake = gate.get("intake") if isinstance(gate.get("intake"), Mapping) else {}
    scale = gate.get("scale") if isinstance(gate.get("scale"), Mapping) else {}
    unscaled = (
        gate.get("unscaled") is True
        or scale.get("unscaled") is True
        or intake.get("unscaled") is True
        or any(r.rule == "hold_unscaled" or r.message.lower().startswith("unscaled") for r in reasons + noted)
    )
    decision = gate.get("decision") or gate.get("status")
    return GateView(
        True, str(decision) if decision else None, reasons, notes, raised_flags(intake.get("flags")), dict(intake), unscaled
    )


def gate_from_metrics_document(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The gate's verdict in the shape of ``AssetRecord.gate``, from an asset's ``metrics.json``.

    For assets whose catalogue row has no verdict: ``metrics.json`` keeps ``review`` (status, reasons,
    notes), ``intake`` and ``metrics.scale.unscaled``.
    """
    review = doc.get("review")
    if not isinstance(review, Mapping):
        return None
    metrics = doc.get("metrics") if isinstance(doc.get("metrics"), Mapping) else {}
    scale = metrics.get("scale") if isinstance(metrics.get("scale"), Mapping) else {}
    return {
        "decision": review.get("decision") or review.get("status"),
        "reasons": list(review.get("reasons") or ()),
        "notes": list(review.get("notes") or ()),
        "intake": dict(doc["intake"]) if isinstance(doc.get("intake"), Mapping) else {},
        "unscaled": scale.get("unscaled") is True,
    }


def failing_metrics(reasons: Iterable[GateReason], names: Iterable[str]) -> dict[str, GateReason]:
    """The metrics a reason is about (to highlight them), by flattened name.

    A rule names its metric (``approve_min_silhouette_iou`` -> ``input_view.silhouette_iou``); a few rules
    are mapped explicitly (`_RULE_METRICS`).
    """
    known = list(names)
    out: dict[str, GateReason] = {}
    for r in reasons:
        if not r.rule:
            continue
        wanted = _RULE_METRICS.get(r.rule)
        if wanted is None:
            stem = next((r.rule[len(p) :] for p in _RULE_PREFIXES if r.rule.startswith(p)), r.rule)
            wanted = tuple(n for n in known if n == stem or n.endswith("." + stem))
        for name in wanted:
            if name in known:
                out.setdefault(name, r)
    return out


def unknown_metric_message(filters: Sequence[MetricFilter], known: Sequence[str]) -> str | None:
    """None when every filter names a recorded metric; else a message listing the known names.

    Suggests the flattened name when a filter gives only its last part (``faces`` -> ``asset.faces``).
    """
    unknown = [f.name for f in filters if f.name not in known]
    if not unknown:
        return None
    parts = []
    for name in dict.fromkeys(unknown):
        close = [k for k in known if k.endswith("." + name)] or difflib.get_close_matches(name, known, n=3)
        parts.append(f"{name!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    listing = ", ".join(known) if known else "none recorded yet"
    return f"unknown metric {'; '.join(parts)}; known metrics: {listing}"


def fmt_number(value: Any) -> str:
    """A number for people: integers without decimals, floats to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}" if abs(value) >= 10_000 else str(int(value))
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return f"{value:.4g}"


# -- JSON shapes ---------------------------------------------------------------------------------------------


def _iso(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def asset_summary_json(a: AssetRecord) -> dict[str, Any]:
    """One asset of a list: ids, status, SKU, GLB, and the gate's first reason for held assets."""
    gate = gate_view(a.gate)
    return {
        "asset_id": a.id,
        "conversion_key": a.conversion_key,
        "sku": a.sku,
        "status": a.status.value,
        "version": a.version,
        "preset": a.preset,
        "run_id": a.run_id,
        "created_at": _iso(a.created_at),
        "published": a.published_at is not None,
        "faces": a.faces,
        "glb_uri": a.glb_uri,
        "gate_decision": gate.decision,
        "first_reason": gate.first_reason if a.status in HELD else None,
    }


def review_json(e: ReviewRecord) -> dict[str, Any]:
    return {
        "event_id": e.id,
        "asset_id": e.asset_id,
        "reviewer": e.reviewer,
        "decision": e.decision.value,
        "from_status": e.from_status.value,
        "to_status": e.to_status.value,
        "comment": e.comment,
        "created_at": _iso(e.created_at),
    }


def failure_json(f: FailureRecord) -> dict[str, Any]:
    return {
        "failure_id": f.id,
        "created_at": _iso(f.created_at),
        "stage": f.stage,
        "reason": f.reason,
        "message": f.message,
        "asset_id": f.asset_id,
        "photo_id": f.photo_id,
        "run_id": f.run_id,
        "sku": f.sku,
        "photo_uri": f.photo_uri,
    }


def asset_json(d: AssetDetail, gate: GateView | None = None) -> dict[str, Any]:
    """An asset in full: ids, status, GLB and previews, the gate's verdict, photo, product, run, metrics,
    reviews. ``gate`` overrides the catalogue's verdict (the app reads ``metrics.json`` when it has none)."""
    a, photo, product, run = d.asset, d.photo, d.product, d.run
    g = gate if gate is not None else gate_view(a.gate)
    return {
        "asset_id": a.id,
        "conversion_key": a.conversion_key,
        "sku": a.sku,
        "status": a.status.value,
        "version": a.version,
        "preset": a.preset,
        "created_at": _iso(a.created_at),
        "updated_at": _iso(a.updated_at),
        "published_at": _iso(a.published_at),
        "superseded_by_id": a.superseded_by_id,
        "glb": {"uri": a.glb_uri, "sha256": a.glb_sha256, "bytes": a.size_bytes, "faces": a.faces, "vertices": a.vertices},
        "previews": list(a.preview_uris),
        "gate": g.as_dict(),
        "photo": {
            "photo_id": photo.id, "uri": photo.uri, "sha256": photo.sha256, "etag": photo.etag,
            "bytes": photo.size_bytes, "width": photo.width, "height": photo.height,
        },  # fmt: skip
        "product": {
            "sku": product.sku, "title": product.title, "width_m": product.width_m, "height_m": product.height_m,
            "depth_m": product.depth_m,
        },  # fmt: skip
        "run": None if run is None else {
            "run_id": run.id, "status": run.status.value, "model_id": run.model_id, "weights_sha256": run.weights_sha256,
            "pipeline_version": run.pipeline_version, "flow_run_id": run.flow_run_id, "host": run.host,
            "parameters": dict(run.parameters), "started_at": _iso(run.started_at), "finished_at": _iso(run.finished_at),
        },  # fmt: skip
        "params_hash": a.params_hash,
        "metrics": {m.name: {"value": m.value, "unit": m.unit} for m in sorted(d.metrics.values(), key=lambda m: m.name)},
        "reviews": [review_json(e) for e in d.reviews],
    }
