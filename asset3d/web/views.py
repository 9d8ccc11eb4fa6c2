"""What the pages and the API show, gathered from the catalogue and the buckets (no HTML, no HTTP).

* `parse_queue` turns query parameters into a `QueueQuery` (`BadQuery` for an unknown status or metric);
* `load_asset` gathers an asset, the gate's verdict (from ``metrics.json`` when the catalogue has none),
  which intake images exist, and which metrics a reason is about;
* `overview` counts, distributions and recent failures;
* `apply_review` is a reviewer's decision through `asset3d.pipeline.review.decide`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from asset3d.web.files import Buckets, OutsideBuckets
from asset3d.web.present import (
    GateReason,
    GateView,
    asset_json,
    asset_summary_json,
    failing_metrics,
    failure_json,
    gate_from_metrics_document,
    gate_view,
    unknown_metric_message,
)
from storage import ObjectNotFound
from storage.catalogue import (
    AssetDetail,
    AssetRecord,
    AssetStatus,
    Catalogue,
    Distribution,
    FailureRecord,
    InvalidInput,
    MetricFilter,
    ReviewDecision,
)

#: the decisions a reviewer sends (API and form) -> the catalogue's decision
DECISIONS: dict[str, ReviewDecision] = {"approved": ReviewDecision.approve, "rejected": ReviewDecision.reject}
INTAKE_FILES = ("input.png", "mask.png")
_MAX_METRICS_JSON = 8 << 20


class BadQuery(ValueError):
    """A filter the catalogue cannot answer: an unknown status or metric, a malformed threshold."""

    reason = "bad_query"
    transient = False


@dataclass(frozen=True)
class QueueQuery:
    """The queue's filters, validated."""

    statuses: list[str] | None = None
    sku: str | None = None
    run_id: int | None = None
    metrics: list[MetricFilter] = field(default_factory=list)
    raw_metrics: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.statuses or [], "sku": self.sku, "run": self.run_id, "metric": self.raw_metrics}


def parse_queue(
    cat: Catalogue, statuses: Sequence[str], sku: str | None, run: str | int | None, metrics: Sequence[str]
) -> QueueQuery:
    """Validate the queue's query parameters (empty values mean "any").

    Raises
    ------
    BadQuery
        An unknown status, a run that is not an integer, a malformed threshold, or a metric name the
        catalogue never recorded (the message lists the known names).
    """
    known_statuses = [s.value for s in AssetStatus]
    wanted = [s.strip() for s in statuses if s and s.strip()]
    bad = [s for s in wanted if s not in known_statuses]
    if bad:
        raise BadQuery(f"unknown status {', '.join(map(repr, bad))}; statuses: {', '.join(known_statuses)}")
    run_id: int | None = None
    if run is not None and str(run).strip():
        try:
            run_id = int(str(run).strip())
        except ValueError:
            raise BadQuery(f"run {run!r} is not a run id (an integer)") from None
    raw = [m.strip() for m in metrics if m and m.strip()]
    filters = []
    for text in raw:
        try:
            filters.append(MetricFilter.parse(text))
        except InvalidInput as err:
            raise BadQuery(str(err)) from None
    message = unknown_metric_message(filters, cat.metric_names()) if filters else None
    if message is not None:
        raise BadQuery(message)
    return QueueQuery(wanted or None, (sku or "").strip() or None, run_id, filters, raw)


def queue_page(cat: Catalogue, q: QueueQuery, *, limit: int, offset: int) -> tuple[list[AssetRecord], int]:
    """One page of the queue: ``needs_review`` first, then newest first."""
    return cat.find_assets(
        statuses=q.statuses, sku=q.sku, run_id=q.run_id, metric_filters=q.metrics, newest_first=True, limit=limit,
        offset=offset,
    )  # fmt: skip


def queue_item_json(a: AssetRecord) -> dict[str, Any]:
    """An asset of the queue, with its page and thumbnail URLs."""
    return {
        **asset_summary_json(a),
        "url": f"/assets/{a.id}",
        "api_url": f"/api/assets/{a.id}",
        "thumbnail_url": f"/files/{a.id}/previews/0" if a.preview_uris else None,
    }


@dataclass(frozen=True)
class AssetView:
    """An asset as its page shows it."""

    detail: AssetDetail
    gate: GateView
    #: where the verdict came from: ``catalogue``, ``metrics.json`` or ``none``
    gate_source: str
    files: dict[str, Any]
    failing: dict[str, GateReason]

    def as_json(self) -> dict[str, Any]:
        return {**asset_json(self.detail, self.gate), "gate_source": self.gate_source, "files": self.files}


def _folder(glb_uri: str) -> str:
    return glb_uri.rsplit("/", 1)[0]


def _exists(buckets: Buckets, uri: str) -> bool:
    """True when ``uri`` is in a configured bucket and stored (bucket errors other than "missing" raise)."""
    try:
        buckets.head(buckets.locate(uri))
    except (ObjectNotFound, OutsideBuckets):
        return False
    return True


def _gate_from_bucket(buckets: Buckets, glb_uri: str) -> dict[str, Any] | None:
    try:
        located = buckets.locate(f"{_folder(glb_uri)}/metrics.json")
        doc = json.loads(located.store.get(located.key, max_bytes=_MAX_METRICS_JSON))
    except (ObjectNotFound, OutsideBuckets, ValueError):
        return None
    return gate_from_metrics_document(doc) if isinstance(doc, dict) else None


def load_asset(cat: Catalogue, buckets: Buckets, asset_id: int) -> AssetView:
    """An asset, its verdict, its files' URLs (intake images only when stored) and its failing metrics.

    Raises
    ------
    storage.catalogue.NotFound
        Unknown asset id.
    storage.StorageError
        A bucket cannot be reached.
    """
    d = cat.asset_detail(asset_id)
    a = d.asset
    gate, source = gate_view(a.gate), "catalogue"
    if not gate.recorded:
        found = _gate_from_bucket(buckets, a.glb_uri) if a.glb_uri else None
        gate, source = (gate_view(found), "metrics.json") if found else (gate, "none")
    files: dict[str, Any] = {
        "glb": f"/files/{a.id}/model.glb" if a.glb_uri else None,
        "photo": f"/files/{a.id}/photo",
        "previews": [
            {"name": PurePosixPath(uri).name, "url": f"/files/{a.id}/previews/{i}"} for i, uri in enumerate(a.preview_uris)
        ],
    }
    for name in INTAKE_FILES:
        stored = bool(a.glb_uri) and _exists(buckets, f"{_folder(a.glb_uri or '')}/intake/{name}")
        files[f"intake_{name.removesuffix('.png')}"] = f"/files/{a.id}/intake/{name}" if stored else None
    return AssetView(d, gate, source, files, failing_metrics(gate.reasons, d.metrics))


@dataclass(frozen=True)
class Overview:
    """The catalogue at a glance: counts by status, metric distributions, recent failures."""

    counts: dict[str, int]
    distributions: dict[str, Distribution]
    failures: list[FailureRecord]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "total": self.total,
            "metrics": {name: vars(d) for name, d in self.distributions.items()},
            "failures": [failure_json(f) for f in self.failures],
        }


def overview(cat: Catalogue, *, failures: int = 20) -> Overview:
    """Counts by status, metric distributions (assets not superseded), the most recent failures."""
    counts = {s.value: n for s, n in cat.counts_by_status().items()}
    return Overview(counts, cat.metric_distributions(), cat.failures_since(limit=failures))


def apply_review(cat: Catalogue, asset_id: int, decision: str, *, reviewer: str, comment: str | None) -> dict[str, Any]:
    """A reviewer's decision through `asset3d.pipeline.review.decide` (publishes on approval, unpublishes
    on rejection); the JSON the API answers with.

    Raises
    ------
    BadQuery
        ``decision`` is not ``approved`` or ``rejected``.
    storage.catalogue.NotFound, TransitionRefused, InvalidInput
    asset3d.pipeline.errors.StageError, storage.StorageError
        Publishing or withdrawing failed; the asset keeps its status.
    """
    from asset3d.pipeline.review import decide

    if decision not in DECISIONS:
        raise BadQuery(f"decision {decision!r}: use one of {', '.join(DECISIONS)}")
    note = (comment or "").strip() or None
    out = decide(cat, asset_id, DECISIONS[decision], reviewer=reviewer, comment=note)
    return {
        "asset_id": out.asset_id, "decision": decision, "reviewer": reviewer, "comment": note,
        "from_status": out.from_status.value, "to_status": out.to_status.value, "event_id": out.event_id,
        "published": out.published, "manifest_uri": out.manifest_uri, "withdrawn": list(out.withdrawn),
    }  # fmt: skip
