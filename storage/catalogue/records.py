"""What the catalogue hands out: frozen dataclass records (never ORM objects), and their JSON form.

Every `storage.catalogue.service.Catalogue` method returns these; `to_jsonable` turns them (and lists or
dicts of them) into plain JSON values for ``--json`` output: ISO-8601 times, enum values, lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Literal

from storage.catalogue.errors import InvalidInput
from storage.catalogue.models import (
    Asset,
    AssetStatus,
    Photo,
    Product,
    ReviewDecision,
    ReviewEvent,
    Run,
    RunStatus,
)

#: Metric names: lower-case letters, digits, ``_`` and ``.``, starting with a letter, at most 64.
METRIC_NAME = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


@dataclass(frozen=True)
class ProductRecord:
    """A product: SKU, optional title and real-world size in metres."""

    id: int
    sku: str
    title: str | None
    width_m: float | None
    height_m: float | None
    depth_m: float | None
    created_at: datetime


@dataclass(frozen=True)
class PhotoRecord:
    """A source photo: where it is (URI, bucket, key), what its bytes are (sha256, ETag, size), when it was seen."""

    id: int
    sku: str
    uri: str
    bucket: str
    key: str
    etag: str | None
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class RunRecord:
    """A conversion run: flow run, status, times, parameters, model, weights sha256, pipeline version, host."""

    id: int
    flow_run_id: str | None
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    parameters: dict[str, Any]
    model_id: str
    weights_sha256: str
    pipeline_version: str
    host: str | None
    pid: int | None = None


@dataclass(frozen=True)
class AssetRecord:
    """An asset: its photo, run, status, version, conversion identity, GLB and previews, and times."""

    id: int
    sku: str
    photo_id: int
    run_id: int | None
    status: AssetStatus
    version: int
    preset: str
    conversion_key: str
    photo_sha256: str
    params_hash: str
    weights_sha256: str
    glb_uri: str | None
    glb_sha256: str | None
    size_bytes: int | None
    faces: int | None
    vertices: int | None
    preview_uris: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None
    superseded_by_id: int | None
    #: the review gate's verdict: ``{"decision", "reasons": [{"rule", "threshold", "value", "message"}], "intake"}``
    gate: dict[str, Any] | None = None


@dataclass(frozen=True)
class MetricRecord:
    """One metric value of an asset."""

    name: str
    value: float
    unit: str | None
    recorded_at: datetime


@dataclass(frozen=True)
class ReviewRecord:
    """One review event: who decided what, the status before and after, and why."""

    id: int
    asset_id: int
    reviewer: str
    decision: ReviewDecision
    from_status: AssetStatus
    to_status: AssetStatus
    comment: str | None
    created_at: datetime
    #: assets this decision's publication superseded (older versions of the same photo)
    superseded_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class ConvertedPhoto:
    """A photo that already has an asset for its current bytes, these parameters and these weights."""

    uri: str
    etag: str | None
    sha256: str
    asset_id: int
    status: AssetStatus
    published: bool
    glb_uri: str | None
    faces: int | None


@dataclass(frozen=True)
class FailureRecord:
    """A failed stage, with the photo (URI, SKU) when there is one."""

    id: int
    photo_id: int | None
    run_id: int | None
    asset_id: int | None
    sku: str | None
    photo_uri: str | None
    stage: str
    reason: str
    message: str
    created_at: datetime


@dataclass(frozen=True)
class AssetDetail:
    """An asset with everything about it: its photo and product, run, metrics and review history."""

    asset: AssetRecord
    photo: PhotoRecord
    product: ProductRecord
    run: RunRecord | None
    metrics: dict[str, MetricRecord]
    reviews: tuple[ReviewRecord, ...]


@dataclass(frozen=True)
class Distribution:
    """Summary of one metric over assets: count, min, median, 95th percentile (linear), max."""

    count: int
    min: float
    median: float
    p95: float
    max: float


@dataclass(frozen=True)
class MetricFilter:
    """A threshold on one metric, e.g. ``MetricFilter("faces", "<=", 50000)``; assets lacking it fail it."""

    name: str
    op: Literal["<", "<=", ">", ">=", "=="]
    value: float

    _OPS = ("<=", ">=", "==", "<", ">")

    @classmethod
    def parse(cls, text: str) -> MetricFilter:
        """Parse ``"name<=value"`` (operators ``<``, ``<=``, ``>``, ``>=``, ``==``)."""
        for op in cls._OPS:
            name, sep, value = text.partition(op)
            if sep:
                try:
                    number = float(value)
                except ValueError:
                    raise InvalidInput(f"metric filter {text!r}: {value!r} is not a number") from None
                if not METRIC_NAME.match(name.strip()):
                    raise InvalidInput(f"metric filter {text!r}: {name!r} is not a metric name")
                return cls(name.strip(), op, number)  # type: ignore[arg-type]
        raise InvalidInput(f"metric filter {text!r}: expected NAME<OP>VALUE with OP one of < <= > >= ==")


def to_jsonable(value: Any) -> Any:
    """Records (and containers of them) as JSON-ready values: ISO-8601 times, enum values, lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in fields(value) if not f.name.startswith("_")}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def product_record(p: Product) -> ProductRecord:
    return ProductRecord(p.id, p.sku, p.title, p.width_m, p.height_m, p.depth_m, p.created_at)


def photo_record(p: Photo, sku: str) -> PhotoRecord:
    return PhotoRecord(
        p.id, sku, p.uri, p.bucket, p.key, p.etag, p.sha256, p.size_bytes, p.width, p.height, p.first_seen, p.last_seen
    )


def run_record(r: Run) -> RunRecord:
    return RunRecord(
        r.id, r.flow_run_id, RunStatus(r.status), r.started_at, r.finished_at, dict(r.parameters or {}),
        r.model_id, r.weights_sha256, r.pipeline_version, r.host, r.pid,
    )  # fmt: skip


def asset_record(a: Asset, sku: str) -> AssetRecord:
    return AssetRecord(
        id=a.id, sku=sku, photo_id=a.photo_id, run_id=a.run_id, status=AssetStatus(a.status), version=a.version,
        preset=a.preset, conversion_key=a.conversion_key, photo_sha256=a.photo_sha256, params_hash=a.params_hash,
        weights_sha256=a.weights_sha256, glb_uri=a.glb_uri, glb_sha256=a.glb_sha256, size_bytes=a.size_bytes,
        faces=a.faces, vertices=a.vertices, preview_uris=tuple(a.preview_uris or ()), created_at=a.created_at,
        updated_at=a.updated_at, published_at=a.published_at, superseded_by_id=a.superseded_by_id,
        gate=dict(a.gate) if a.gate else None,
    )  # fmt: skip


def review_record(e: ReviewEvent) -> ReviewRecord:
    return ReviewRecord(
        e.id, e.asset_id, e.reviewer, ReviewDecision(e.decision), AssetStatus(e.from_status),
        AssetStatus(e.to_status), e.comment, e.created_at,
    )  # fmt: skip
