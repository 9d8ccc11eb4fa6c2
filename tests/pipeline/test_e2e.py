"""End to end on loopback: moto S3, PostgreSQL and SQLite, the Prefect test harness, the tiny model.

`asset3d run-batch` converts the shared photos plus a corrupt file from an S3 prefix and publishes to
another bucket; then everything the issue promises is checked in S3 and in the catalogue, and a second run
must convert nothing. A loopback proxy injects S3 503s (retried) and a 403 (not retried).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import S3FaultProxy, upload_photos

from asset3d.cli import main
from meshing.validate import validate_glb
from storage.catalogue import AssetStatus, Catalogue

pytestmark = pytest.mark.usefixtures("prefect_harness", "result_cache")


def _run_batch(source: str, dest: str, url: str, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    rc = main(["run-batch", source, "--dest", dest, "--catalogue-url", url, "--config", str(config), "--json"])
    out = capsys.readouterr()
    return rc, json.loads(out.out), out.err


def _objects(s3: Any, bucket: str) -> dict[str, tuple[str, Any]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}


def _check_published(s3: Any, bucket: str, manifest_key: str, tmp_path: Path) -> dict[str, Any]:
    """The manifest lists every file with its real checksum, size and content type; the GLB validates."""
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    folder = manifest_key.rsplit("/", 1)[0]
    names = {f["key"] for f in manifest["files"]}
    assert {"model.glb", "metrics.json"} <= names and any(n.startswith("previews/") for n in names)
    for f in manifest["files"]:
        obj = s3.get_object(Bucket=bucket, Key=f"{folder}/{f['key']}")
        data = obj["Body"].read()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        assert len(data) == f["bytes"]
        assert obj["ContentType"] == f["content_type"]
        if f["key"] == "model.glb":
            assert f["content_type"] == "model/gltf-binary"
            path = tmp_path / f"{folder.replace('/', '_')}.glb"
            path.write_bytes(data)
            report = validate_glb(path)
            assert report.errors == 0
    return manifest


@pytest.mark.slow
def test_batch_end_to_end(
    s3: Any, bucket: str, catalogue_url: str, config_file: Path, photo_bytes: dict[str, bytes], tiny_model: Path,
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    keys = upload_photos(s3, bucket, photo_bytes)
    source, dest = f"s3://{bucket}/incoming", f"s3://{bucket}/assets"

    rc, report, err = _run_batch(source, dest, catalogue_url, config_file, capsys)

    assert rc == 2, err  # the corrupt photo
    counts = report["counts"]
    good = len(photo_bytes) - 1
    assert counts == {"published": good, "needs_review": 0, "rejected": 0, "failed": 1, "skipped": 0, "other_run": 0}
    assert "broken.png" in err and "fetch" in err  # one line per failure
    rows = {Path(p["uri"]).name: p for p in report["photos"]}
    assert rows["broken.png"]["stage"] == "fetch" and rows["broken.png"]["reason"] in ("truncated", "corrupt")
    for name in keys:
        if name != "broken.png":
            assert rows[name]["timings_s"]["reconstruct"] > 0  # really reconstructed in this test

    cat = Catalogue(catalogue_url)
    try:
        (run_row,) = [cat.get_run(i) for i in report["run_ids"]]
        assert run_row.flow_run_id == report["flow_run_id"] and run_row.flow_run_id
        from triposr import sha256_file

        assert run_row.weights_sha256 == sha256_file(tiny_model / "model.ckpt")
        assets = cat.review_queue(limit=None)
        published = [a for a in assets if a.status is AssetStatus.auto_approved]
        assert len(published) == good and all(a.published_at is not None for a in published)
        for a in published:
            assert a.run_id == run_row.id and a.weights_sha256 == run_row.weights_sha256
            detail = cat.asset_detail(a.id)
            assert {"file.bytes", "asset.faces", "input_view.silhouette_iou"} <= set(detail.metrics)
            assert detail.metrics["asset.faces"].value == a.faces > 0
            glb_key = a.glb_uri.removeprefix(f"s3://{bucket}/")
            manifest = _check_published(s3, bucket, glb_key.rsplit("/", 1)[0] + "/manifest.json", tmp_path)
            prov = manifest["provenance"]
            assert prov["flow_run_id"] == run_row.flow_run_id
            assert prov["model"]["weights_sha256"] == run_row.weights_sha256
            assert prov["photo"]["sha256"] == detail.photo.sha256 == a.photo_sha256
            assert prov["asset_id"] == a.id and prov["catalogue_run_id"] == run_row.id  # the manifest names its row
            assert prov["conversion_key"] == a.conversion_key and f"/{a.sku}/{a.conversion_key}/" in a.glb_uri
        (failure,) = cat.failures_since()
        assert failure.stage == "fetch" and failure.photo_uri == f"s3://{bucket}/{keys['broken.png']}"
        assert failure.reason in ("truncated", "corrupt") and "broken.png" in failure.message
    finally:
        cat.close()

    before = _objects(s3, bucket)
    rc2, report2, err2 = _run_batch(source, dest, catalogue_url, config_file, capsys)
    assert rc2 == 0, err2
    assert report2["counts"] == {"published": 0, "needs_review": 0, "rejected": 0, "failed": 0, "skipped": len(photo_bytes), "other_run": 0}
    assert _objects(s3, bucket) == before  # nothing downloaded twice, nothing written
    cat = Catalogue(catalogue_url)
    try:
        assert len(cat.review_queue(limit=None)) == len(photo_bytes)  # good assets + the corrupt photo's failed one
        assert len(cat.failures_since()) == 1
    finally:
        cat.close()


def _prefect_artifacts(flow_run_id: str) -> dict[str, Any]:
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    return {a.key: a for a in found}


@pytest.mark.slow
def test_s3_errors_transient_retried_permanent_not(
    s3_endpoint: str, s3: Any, bucket: str, photo_bytes: dict[str, bytes], fast_options: dict[str, Any], worker_env: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """503 on the first download of each photo and the first upload of each GLB: every one is retried by
    the task (botocore retries are off) and the batch ends complete; a 403 photo fails once, unretried."""
    from flows.convert import convert_batch

    photos = {n: photo_bytes[n] for n in ("chair.png", "robot.png", "hamburger.png")}
    keys = upload_photos(s3, bucket, photos)
    denied = f"/{bucket}/{keys['hamburger.png']}"

    def rule(method: str, path: str, nth: int) -> tuple[int, str] | None:
        if method == "GET" and path == denied:
            return (403, "AccessDenied")
        if nth == 0 and method == "GET" and path.startswith(f"/{bucket}/incoming/"):
            return (503, "ServiceUnavailable")
        if nth == 0 and method == "PUT" and path.endswith("/model.glb"):
            return (503, "SlowDown")
        return None

    proxy = S3FaultProxy(s3_endpoint, rule).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no botocore retries: only the task's
        url = f"sqlite:///{tmp_path / 'catalogue.db'}"
        report = convert_batch(f"s3://{bucket}/incoming", dest=f"s3://{bucket}/assets", catalogue_url=url)
    finally:
        proxy.stop()

    assert report["counts"]["published"] == 2 and report["counts"]["failed"] == 1
    transient = [i for i in proxy.injected if i[2] == 503]
    assert len([i for i in transient if i[0] == "GET"]) == 2 and len([i for i in transient if i[0] == "PUT"]) == 2
    for method, path, _ in transient:
        assert proxy.seen[(method, path)] == 2  # failed once, retried once, then succeeded
    assert proxy.seen[("GET", denied)] == 1  # a 403 is never retried
    row = next(p for p in report["photos"] if p["uri"].endswith("hamburger.png"))
    assert row["stage"] == "fetch" and row["reason"] == "accessdenied"
    cat = Catalogue(url)
    try:
        failures = cat.failures_since()
        assert [(f.stage, f.reason) for f in failures] == [("fetch", "accessdenied")]
        published = [a for a in cat.review_queue(limit=None) if a.published_at is not None]
        assert len(published) == 2
    finally:
        cat.close()
    for a in published:
        key = a.glb_uri.removeprefix(f"s3://{bucket}/").rsplit("/", 1)[0] + "/manifest.json"
        _check_published(s3, bucket, key, tmp_path)

    artifacts = _prefect_artifacts(report["flow_run_id"])
    key = f"convert-batch-{report['flow_run_id']}"  # each run's artifacts under keys of their own
    assert {f"{key}-progress", f"{key}-photos", f"{key}-summary"} <= set(artifacts)
    assert float(artifacts[f"{key}-progress"].data) == pytest.approx(100.0)
    rows = artifacts[f"{key}-photos"].data
    rows = json.loads(rows) if isinstance(rows, str) else rows
    assert sorted(r["status"] for r in rows) == ["failed", "published", "published"]
    assert "| published | 2 |" in artifacts[f"{key}-summary"].data
