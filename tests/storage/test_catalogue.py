"""The catalogue service layer, on SQLite and on PostgreSQL (a fresh, migrated database per test)."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from storage.catalogue import (
    AssetStatus,
    Catalogue,
    CatalogueUnavailable,
    InvalidInput,
    MetricFilter,
    NotFound,
    PhotoRecord,
    ReviewDecision,
    RunStatus,
    TransitionRefused,
    conversion_key,
    params_hash,
)

WEIGHTS = hashlib.sha256(b"official TripoSR weights").hexdigest()
WEIGHTS_V2 = hashlib.sha256(b"fine-tuned weights").hexdigest()
WEB = {"preset": "web", "mc_resolution": 256, "faces": 20000}
WEB_HASH = params_hash(WEB)


def sha(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


def add_photo(cat: Catalogue, sku: str = "SKU-1", name: str = "front", content: str | None = None) -> PhotoRecord:
    key = f"{sku}/{name}.png"
    return cat.upsert_photo(
        sku, uri=f"s3://photos/{key}", bucket="photos", key=key, sha256=sha(content or key),
        size_bytes=1234, width=820, height=480,
    )  # fmt: skip


def add_asset(
    cat: Catalogue,
    photo: PhotoRecord,
    *,
    status: AssetStatus = AssetStatus.needs_review,
    params: str = WEB_HASH,
    weights: str = WEIGHTS,
    metrics: dict[str, float] | None = None,
) -> int:
    asset, created = cat.record_asset(
        photo_id=photo.id, params_hash=params, weights_sha256=weights, preset="web", status=status,
        glb_uri=f"s3://assets/{photo.key}.glb", faces=20000, vertices=10002, metrics=metrics,
    )  # fmt: skip
    assert created
    return asset.id


# -- products, photos, runs ----------------------------------------------------------------------------------


def test_upserts_are_idempotent_and_track_sightings(catalogue: Catalogue) -> None:
    p1 = catalogue.upsert_product("SKU-1", title="Lamp", height_m=0.42)
    p2 = catalogue.upsert_product("SKU-1", width_m=0.2)
    assert p1.id == p2.id and (p2.title, p2.height_m, p2.width_m) == ("Lamp", 0.42, 0.2)
    t0 = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    first = catalogue.upsert_photo(
        "SKU-1", uri="s3://photos/SKU-1/front.png", bucket="photos", key="SKU-1/front.png", sha256=sha("a"),
        size_bytes=10, seen_at=t0,
    )  # fmt: skip
    again = catalogue.upsert_photo(
        "SKU-1", uri="s3://photos/SKU-1/front.png", bucket="photos", key="SKU-1/front.png", sha256=sha("a"),
        size_bytes=10, etag="e2", seen_at=t0 + timedelta(days=1),
    )  # fmt: skip
    assert again.id == first.id
    assert again.first_seen == t0 and again.last_seen == t0 + timedelta(days=1)
    assert again.etag == "e2" and again.sku == "SKU-1"
    assert first.first_seen.tzinfo is not None  # aware UTC on both engines


def test_runs_start_idempotently_per_flow_run_and_finish(catalogue: Catalogue) -> None:
    run = catalogue.start_run(
        model_id="stabilityai/TripoSR", weights_sha256=WEIGHTS, pipeline_version="0.1.0", parameters=WEB,
        flow_run_id="flow-123", host="worker-1",
    )  # fmt: skip
    again = catalogue.start_run(model_id="x", weights_sha256=WEIGHTS, pipeline_version="0.1.0", flow_run_id="flow-123")
    assert again.id == run.id and again.model_id == "stabilityai/TripoSR"
    assert run.status is RunStatus.running and run.parameters == WEB and run.host == "worker-1"
    done = catalogue.finish_run(run.id, "failed")
    assert done.status is RunStatus.failed and done.finished_at is not None and done.finished_at >= done.started_at
    with pytest.raises(InvalidInput):
        catalogue.finish_run(run.id, "running")
    with pytest.raises(NotFound):
        catalogue.finish_run(9999)


def test_bad_inputs_are_named(catalogue: Catalogue) -> None:
    with pytest.raises(InvalidInput, match="not a lower-case hex SHA-256"):
        catalogue.upsert_photo("SKU-1", uri="s3://p/x", bucket="p", key="x", sha256="ABC", size_bytes=1)
    with pytest.raises(InvalidInput, match="SKU"):
        catalogue.upsert_product(" padded ")
    photo = add_photo(catalogue)
    with pytest.raises(InvalidInput, match="not finite") as exc:
        catalogue.record_asset(
            photo_id=photo.id, params_hash=WEB_HASH, weights_sha256=WEIGHTS, preset="web", metrics={"chamfer": float("nan")}
        )
    assert exc.value.reason == "invalid_metric"
    assert catalogue.counts_by_status()[AssetStatus.pending] == 0  # nothing half-written


# -- idempotency and versions -------------------------------------------------------------------------------


def test_same_conversion_recorded_twice_is_one_asset(catalogue: Catalogue) -> None:
    photo = add_photo(catalogue)
    a1, created1 = catalogue.record_asset(photo_id=photo.id, params_hash=WEB_HASH, weights_sha256=WEIGHTS, preset="web")
    a2, created2 = catalogue.record_asset(
        photo_id=photo.id, params_hash=WEB_HASH, weights_sha256=WEIGHTS, preset="web", glb_uri="s3://other"
    )
    assert (created1, created2) == (True, False)
    assert a2.id == a1.id and a2.glb_uri is None  # the existing asset, unchanged
    assert a1.conversion_key == conversion_key(photo.sha256, WEB_HASH, WEIGHTS)
    assert sum(catalogue.counts_by_status().values()) == 1


def test_params_hash_ignores_key_order_and_keys_are_sha256() -> None:
    assert params_hash({"a": 1, "b": [1, 2]}) == params_hash({"b": [1, 2], "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
    key = conversion_key(sha("p"), WEB_HASH, WEIGHTS)
    assert len(key) == 64 and key != conversion_key(sha("p"), WEB_HASH, WEIGHTS_V2)
    with pytest.raises(InvalidInput):
        params_hash({"x": float("inf")})


def test_new_model_or_params_make_new_versions_superseding_only_on_publish(catalogue: Catalogue) -> None:
    photo = add_photo(catalogue)
    v1 = add_asset(catalogue, photo, status=AssetStatus.auto_approved)
    assert catalogue.publish(v1) == []
    v2 = add_asset(catalogue, photo, weights=WEIGHTS_V2)
    v3 = add_asset(catalogue, photo, params=params_hash({**WEB, "faces": 50000}), status=AssetStatus.auto_approved)
    assert [catalogue.get_asset(i).version for i in (v1, v2, v3)] == [1, 2, 3]
    assert catalogue.get_asset(v1).status is AssetStatus.auto_approved  # not superseded yet: v2, v3 unpublished

    with pytest.raises(TransitionRefused) as exc:
        catalogue.publish(v2)  # needs_review: not publishable
    assert exc.value.reason == "not_publishable"

    assert catalogue.publish(v3) == [v1, v2]
    old = catalogue.get_asset(v1)
    assert old.status is AssetStatus.superseded and old.superseded_by_id == v3
    assert catalogue.get_asset(v2).status is AssetStatus.superseded
    assert catalogue.get_asset(v3).published_at is not None
    assert catalogue.publish(v3) == []  # publishing twice changes nothing


def test_older_version_cannot_be_published_over_a_newer_one(catalogue: Catalogue) -> None:
    photo = add_photo(catalogue)
    v1 = add_asset(catalogue, photo, status=AssetStatus.needs_review)
    v2 = add_asset(catalogue, photo, weights=WEIGHTS_V2, status=AssetStatus.auto_approved)
    catalogue.publish(v2)
    assert catalogue.get_asset(v1).status is AssetStatus.superseded
    with pytest.raises(TransitionRefused):
        catalogue.approve(v1, reviewer="ana")


def test_changed_photo_bytes_give_a_new_conversion(catalogue: Catalogue) -> None:
    photo = add_photo(catalogue, content="v1 bytes")
    add_asset(catalogue, photo)
    changed = add_photo(catalogue, content="v2 bytes")
    assert changed.id == photo.id and changed.sha256 != photo.sha256
    asset, created = catalogue.record_asset(photo_id=photo.id, params_hash=WEB_HASH, weights_sha256=WEIGHTS, preset="web")
    assert created and asset.version == 2 and asset.photo_sha256 == changed.sha256


# -- status transitions -------------------------------------------------------------------------------------


def test_review_writes_an_event_with_the_status_change(catalogue: Catalogue) -> None:
    asset = add_asset(catalogue, add_photo(catalogue))
    event = catalogue.review(asset, "approve", reviewer="ana", comment="looks right")
    assert (event.decision, event.from_status, event.to_status) == (
        ReviewDecision.approve, AssetStatus.needs_review, AssetStatus.approved,
    )  # fmt: skip
    assert (event.reviewer, event.comment, event.asset_id) == ("ana", "looks right", asset)
    detail = catalogue.asset_detail(asset)
    assert detail.asset.status is AssetStatus.approved
    assert [e.id for e in detail.reviews] == [event.id]


def test_rejected_to_approved_needs_a_comment(catalogue: Catalogue) -> None:
    asset = add_asset(catalogue, add_photo(catalogue))
    catalogue.reject(asset, reviewer="ana", comment="holes in the base")
    with pytest.raises(TransitionRefused) as exc:
        catalogue.approve(asset, reviewer="bo")
    assert exc.value.reason == "comment_required"
    with pytest.raises(TransitionRefused):
        catalogue.approve(asset, reviewer="bo", comment="   ")
    assert catalogue.get_asset(asset).status is AssetStatus.rejected
    assert len(catalogue.asset_detail(asset).reviews) == 1  # the refused attempts wrote nothing
    catalogue.approve(asset, reviewer="bo", comment="holes are the product's feet")
    assert catalogue.get_asset(asset).status is AssetStatus.approved


@pytest.mark.parametrize(
    ("start", "decision", "reason"),
    [
        (AssetStatus.failed, "approve", "failed_asset"),
        (AssetStatus.failed, "reject", "failed_asset"),
        (AssetStatus.pending, "approve", "not_ready"),
        (AssetStatus.needs_review, "request_review", "no_change"),
    ],
)
def test_refused_reviews_leave_no_trace(catalogue: Catalogue, start: AssetStatus, decision: str, reason: str) -> None:
    asset = add_asset(catalogue, add_photo(catalogue), status=start)
    with pytest.raises(TransitionRefused) as exc:
        catalogue.review(asset, decision, reviewer="ana", comment="please")
    assert exc.value.reason == reason and f"asset {asset}" in str(exc.value)
    detail = catalogue.asset_detail(asset)
    assert detail.asset.status is start and detail.reviews == ()


def test_review_of_unknown_asset_and_bad_decisions(catalogue: Catalogue) -> None:
    with pytest.raises(NotFound, match="no asset with id 424242"):
        catalogue.approve(424242, reviewer="ana")
    asset = add_asset(catalogue, add_photo(catalogue))
    with pytest.raises(InvalidInput, match="review decision 'maybe'"):
        catalogue.review(asset, "maybe", reviewer="ana")
    with pytest.raises(InvalidInput, match="reviewer"):
        catalogue.approve(asset, reviewer="  ")


def test_pipeline_status_changes_are_validated(catalogue: Catalogue) -> None:
    asset = add_asset(catalogue, add_photo(catalogue), status=AssetStatus.pending)
    assert catalogue.set_status(asset, "needs_review").status is AssetStatus.needs_review
    with pytest.raises(TransitionRefused):
        catalogue.set_status(asset, AssetStatus.approved)  # approvals are reviews, not pipeline verdicts
    catalogue.set_status(asset, "failed")
    with pytest.raises(TransitionRefused):
        catalogue.set_status(asset, "auto_approved")


def test_status_is_constrained_in_the_database(catalogue: Catalogue) -> None:
    asset = add_asset(catalogue, add_photo(catalogue))
    with pytest.raises(IntegrityError), catalogue.engine.begin() as conn:
        conn.execute(text("UPDATE assets SET status = 'published' WHERE id = :id"), {"id": asset})
    assert catalogue.get_asset(asset).status is AssetStatus.needs_review


# -- queries ------------------------------------------------------------------------------------------------


def test_review_queue_order_and_filters(catalogue: Catalogue) -> None:
    a = add_asset(catalogue, add_photo(catalogue, "SKU-1", "front"), status=AssetStatus.auto_approved, metrics={"faces": 30000})
    b = add_asset(catalogue, add_photo(catalogue, "SKU-2", "front"), metrics={"faces": 90000, "chamfer": 0.02})
    c = add_asset(catalogue, add_photo(catalogue, "SKU-1", "side"), metrics={"faces": 40000, "chamfer": 0.01})
    d = add_asset(catalogue, add_photo(catalogue, "SKU-3", "front"), status=AssetStatus.failed)
    assert [x.id for x in catalogue.review_queue()] == [b, c, a, d]  # needs_review first, then oldest first
    assert [x.id for x in catalogue.review_queue(statuses=["needs_review"])] == [b, c]
    assert [x.id for x in catalogue.review_queue(sku="SKU-1")] == [c, a]
    assert [x.id for x in catalogue.review_queue(metric_filters=[MetricFilter.parse("faces<=50000")])] == [c, a]
    both = [MetricFilter("faces", ">", 35000), MetricFilter("chamfer", "<", 0.015)]
    assert [x.id for x in catalogue.review_queue(metric_filters=both)] == [c]
    assert [x.id for x in catalogue.review_queue(limit=2)] == [b, c]
    assert [x.id for x in catalogue.review_queue(limit=2, offset=2)] == [a, d]
    assert catalogue.review_queue()[0].sku == "SKU-2"
    with pytest.raises(InvalidInput):
        MetricFilter.parse("faces~3")


def test_asset_detail_has_photo_run_metrics_and_history(catalogue: Catalogue) -> None:
    catalogue.upsert_product("SKU-1", title="Desk lamp")
    photo = add_photo(catalogue)
    run = catalogue.start_run(model_id="stabilityai/TripoSR", weights_sha256=WEIGHTS, pipeline_version="0.1.0", parameters=WEB)
    asset, _ = catalogue.record_asset(
        photo_id=photo.id, run_id=run.id, params_hash=WEB_HASH, weights_sha256=WEIGHTS, preset="web",
        status="needs_review", preview_uris=["s3://previews/a.png"], metrics={"faces": 20000, "chamfer": 0.012},
        units={"chamfer": "m"},
    )  # fmt: skip
    catalogue.record_metrics(asset.id, {"chamfer": 0.011, "iou": 0.8})
    catalogue.reject(asset.id, reviewer="ana", comment="floating bits")
    catalogue.approve(asset.id, reviewer="bo", comment="bits are the lamp's chain")
    d = catalogue.asset_detail(asset.id)
    assert d.photo.uri == photo.uri and d.product.title == "Desk lamp"
    assert d.run is not None and d.run.id == run.id and d.run.parameters == WEB
    assert {k: m.value for k, m in d.metrics.items()} == {"chamfer": 0.011, "faces": 20000.0, "iou": 0.8}
    assert d.metrics["chamfer"].unit == "m"
    assert [(e.reviewer, e.to_status) for e in d.reviews] == [("ana", AssetStatus.rejected), ("bo", AssetStatus.approved)]
    assert d.asset.preview_uris == ("s3://previews/a.png",)
    with pytest.raises(NotFound):
        catalogue.asset_detail(99999)


def test_failures_since_newest_first_with_secrets_masked(catalogue: Catalogue) -> None:
    photo = add_photo(catalogue)
    run = catalogue.start_run(model_id="m", weights_sha256=WEIGHTS, pipeline_version="0.1.0")
    t0 = datetime(2024, 5, 1, tzinfo=UTC)
    catalogue.record_failure(stage="rembg", reason="no_object", message="empty mask", photo_id=photo.id, at=t0)
    catalogue.record_failure(
        stage="publish", reason="upload", message="postgresql+psycopg://bot:s3cr3t@db/cat refused", run_id=run.id,
        at=t0 + timedelta(hours=2),
    )  # fmt: skip
    all_ = catalogue.failures_since()
    assert [f.stage for f in all_] == ["publish", "rembg"]
    assert "s3cr3t" not in all_[0].message and "bot:***@db" in all_[0].message
    assert all_[1].sku == "SKU-1" and all_[1].photo_uri == photo.uri
    assert [f.stage for f in catalogue.failures_since(t0 + timedelta(hours=1))] == ["publish"]
    with pytest.raises(InvalidInput, match="timezone"):
        catalogue.failures_since(datetime(2024, 5, 1))


def test_counts_and_metric_distributions(catalogue: Catalogue) -> None:
    for i in range(1, 21):
        add_asset(catalogue, add_photo(catalogue, "SKU-1", f"p{i}"), metrics={"faces": float(i)})
    old = add_asset(catalogue, add_photo(catalogue, "SKU-9", "x"), status=AssetStatus.auto_approved, metrics={"faces": 1e6})
    catalogue.record_asset(
        photo_id=catalogue.get_asset(old).photo_id, params_hash=WEB_HASH, weights_sha256=WEIGHTS_V2, preset="web",
        status="auto_approved",
    )  # fmt: skip
    new = catalogue.review_queue(sku="SKU-9", statuses=["auto_approved"])[-1].id
    catalogue.publish(new)
    counts = catalogue.counts_by_status()
    assert counts[AssetStatus.needs_review] == 20 and counts[AssetStatus.superseded] == 1
    assert counts[AssetStatus.auto_approved] == 1 and counts[AssetStatus.rejected] == 0
    assert set(counts) == set(AssetStatus)
    faces = catalogue.metric_distributions()["faces"]  # the superseded 1e6 is left out
    assert (faces.count, faces.min, faces.max) == (20, 1.0, 20.0)
    assert faces.median == pytest.approx(10.5)
    assert faces.p95 == pytest.approx(19.05)  # linear interpolation: 19 + 0.05 * (20 - 19)
    assert catalogue.metric_distributions(statuses=["superseded"])["faces"].max == 1e6


def test_sku_history_includes_superseded_versions(catalogue: Catalogue) -> None:
    front, side = add_photo(catalogue, "SKU-1", "front"), add_photo(catalogue, "SKU-1", "side")
    v1 = add_asset(catalogue, front, status=AssetStatus.auto_approved)
    v2 = add_asset(catalogue, front, weights=WEIGHTS_V2, status=AssetStatus.auto_approved)
    s1 = add_asset(catalogue, side)
    add_asset(catalogue, add_photo(catalogue, "SKU-2", "front"))
    catalogue.publish(v2)
    history = catalogue.sku_history("SKU-1")
    assert [(a.id, a.version, a.status) for a in history] == [
        (v1, 1, AssetStatus.superseded), (v2, 2, AssetStatus.auto_approved), (s1, 1, AssetStatus.needs_review),
    ]  # fmt: skip
    with pytest.raises(NotFound, match="SKU-404"):
        catalogue.sku_history("SKU-404")


def test_photos_not_yet_converted_with_current_model_and_params(catalogue: Catalogue) -> None:
    front, side, failed = (add_photo(catalogue, "SKU-1", n) for n in ("front", "side", "broken"))
    add_asset(catalogue, front)
    catalogue.record_failure(stage="reconstruct", reason="oom", message="CUDA out of memory", photo_id=failed.id)

    def todo(**kw: str) -> list[int]:
        return [p.id for p in catalogue.photos_to_convert(params_hash=kw.get("p", WEB_HASH), weights_sha256=kw.get("w", WEIGHTS))]

    assert todo() == [side.id, failed.id]  # a failure without an asset is retried
    assert todo(w=WEIGHTS_V2) == [front.id, side.id, failed.id]
    assert todo(p=params_hash({"preset": "marketplace"})) == [front.id, side.id, failed.id]
    add_photo(catalogue, "SKU-1", "front", content="re-shot")
    assert todo() == [front.id, side.id, failed.id]
    assert [p.id for p in catalogue.photos_to_convert(params_hash=WEB_HASH, weights_sha256=WEIGHTS, limit=1)] == [front.id]


# -- connection errors --------------------------------------------------------------------------------------


def test_unreachable_database_error_hides_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cat = Catalogue("postgresql+psycopg://bot:hunter2-secret@127.0.0.1:1/catalogue?connect_timeout=2")
    assert "hunter2" not in cat.url and "***" in cat.url
    with pytest.raises(CatalogueUnavailable) as exc:
        cat.counts_by_status()
    assert exc.value.reason == "unreachable" and exc.value.transient
    assert "hunter2" not in str(exc.value) and "127.0.0.1" in str(exc.value)
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    assert "hunter2" not in caplog.text


def test_unmigrated_database_says_what_to_do(catalogue_url: str) -> None:
    cat = Catalogue(catalogue_url)
    with pytest.raises(CatalogueUnavailable, match="asset3d db upgrade") as exc:
        cat.review_queue()
    assert exc.value.reason == "not_migrated"
    cat.close()
