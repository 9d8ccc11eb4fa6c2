"""The review app's JSON API (OpenAPI schema at ``/openapi.json``).

    GET  /api/assets                     the queue: needs_review first, then newest (status, sku, run, metric, limit, offset)
    GET  /api/assets/{asset_id}          an asset in full, with its file URLs
    POST /api/assets/{asset_id}/review   {"decision": "approved"|"rejected", "comment": "..."}
    GET  /api/overview                   counts by status, metric distributions, recent failures
    GET  /api/failures                   failures, newest first (since, limit)
    GET  /api/metrics                    the metric names filters take
    GET  /api/me                         who the credentials name

Reads need a reviewer unless ``anonymous_read`` is set; the review needs a reviewer from the
``Authorization`` header (bearer token, or basic auth with name and token) and a JSON body. Errors are
``{"detail": "...", "reason": "..."}``: 400 bad filter, 401 no or wrong credentials, 404 unknown asset id,
409 a transition the rules refuse, 415 not JSON, 502 publishing failed, 503 catalogue or bucket unreachable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from asset3d.web.present import failure_json
from asset3d.web.security import Identity
from asset3d.web.state import api_writer, get_state, reader
from asset3d.web.views import apply_review, load_asset, overview, parse_queue, queue_item_json, queue_page

router = APIRouter(prefix="/api", tags=["review"])
Reader = Annotated[Identity | None, Depends(reader)]
Writer = Annotated[Identity, Depends(api_writer)]


class UnsupportedMediaType(Exception):
    """A write whose body is not ``application/json`` (415)."""

    reason = "unsupported_media_type"
    transient = False


class ReviewRequest(BaseModel):
    """A reviewer's decision; the reviewer is the authenticated identity, never a field."""

    model_config = {"extra": "forbid"}

    decision: Literal["approved", "rejected"] = Field(description="approve (publishes) or reject (unpublishes)")
    comment: str | None = Field(None, max_length=4000, description="why; required when overturning an earlier review")


class ReviewResponse(BaseModel):
    asset_id: int
    decision: str
    reviewer: str
    comment: str | None
    from_status: str
    to_status: str
    event_id: int
    published: bool
    manifest_uri: str | None
    withdrawn: list[int]


@router.get("/assets", summary="The review queue")
def list_assets(
    request: Request,
    me: Reader,
    status: Annotated[list[str] | None, Query(description="asset status (repeatable; default all but superseded)")] = None,
    sku: str | None = None,
    run: Annotated[int | None, Query(description="conversion run id")] = None,
    metric: Annotated[list[str] | None, Query(description="threshold NAME<OP>VALUE, e.g. asset.faces<=50000")] = None,
    limit: Annotated[int | None, Query(ge=1, le=500)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    st = get_state(request)
    cat = st.catalogue()
    q = parse_queue(cat, status or [], sku, run, metric or [])
    size = limit or st.settings.page_size
    assets, total = queue_page(cat, q, limit=size, offset=offset)
    return {"items": [queue_item_json(a) for a in assets], "total": total, "limit": size, "offset": offset, "filters": q.as_dict()}


@router.get("/assets/{asset_id}", summary="One asset in full")
def get_asset(request: Request, asset_id: int, me: Reader) -> dict[str, Any]:
    st = get_state(request)
    return load_asset(st.catalogue(), st.buckets, asset_id).as_json()


@router.post("/assets/{asset_id}/review", summary="Approve or reject an asset", response_model=ReviewResponse)
def review_asset(request: Request, asset_id: int, body: ReviewRequest, me: Writer) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType(f"send the review as application/json, not {media or 'no content type'}")
    st = get_state(request)
    return apply_review(st.catalogue(), asset_id, body.decision, reviewer=me.reviewer, comment=body.comment)


@router.get("/overview", summary="Counts by status, metric distributions, recent failures")
def get_overview(request: Request, me: Reader) -> dict[str, Any]:
    return overview(get_state(request).catalogue()).as_json()


@router.get("/failures", summary="Failures, newest first")
def list_failures(
    request: Request,
    me: Reader,
    since: Annotated[datetime | None, Query(description="ISO time; UTC when it has no offset")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    when = since if since is None or since.tzinfo is not None else since.replace(tzinfo=UTC)
    return [failure_json(f) for f in get_state(request).catalogue().failures_since(when, limit=limit)]


@router.get("/metrics", summary="Metric names the filters take")
def list_metrics(request: Request, me: Reader) -> dict[str, list[str]]:
    return {"names": get_state(request).catalogue().metric_names()}


@router.get("/me", summary="Who the credentials name")
def whoami(request: Request, me: Reader) -> JSONResponse:
    st = get_state(request)
    return JSONResponse({"reviewer": me.reviewer if me else None, "via": me.via if me else None,
                         "anonymous_read": st.settings.anonymous_read})  # fmt: skip
