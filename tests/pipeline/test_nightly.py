"""`nightly_catalogue`: new, changed and not-yet-converted photos are converted; the rest are skipped,
without a download when their ETag is unchanged, with one download and no conversion when only it changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import S3FaultProxy, upload_photos

from asset3d.cli import main
from storage.catalogue import AssetStatus, Catalogue

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "result_cache")]


def _multipart_same_bytes(s3: Any, bucket: str, key: str) -> None:
    """Upload the object's bytes again as a one-part multipart upload: same bytes, a different ETag."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    before = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=body)
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]}
    )
    assert s3.head_object(Bucket=bucket, Key=key)["ETag"] != before


def test_nightly_converts_only_what_is_new_or_changed(
    s3_endpoint: str, s3: Any, bucket: str, photo_bytes: dict[str, bytes], config_file: Path,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    keys = upload_photos(s3, bucket, {n: photo_bytes[n] for n in ("chair.png", "robot.png", "cerebro.jpg")})
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    monkeypatch.setenv("ASSET3D_SOURCE", f"s3://{bucket}/incoming")
    monkeypatch.setenv("ASSET3D_DEST", f"s3://{bucket}/assets")
    monkeypatch.setenv("ASSET3D_CATALOGUE_URL", url)
    argv = ["nightly", "--config", str(config_file), "--json"]

    def night(extra: tuple[str, ...] = ()) -> tuple[dict[str, Any], S3FaultProxy]:
        proxy = S3FaultProxy(s3_endpoint, lambda *_: None).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        try:
            assert main([*argv, *extra]) == 0
        finally:
            proxy.stop()
            monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
        return json.loads(capsys.readouterr().out), proxy

    first, _ = night()
    assert first["kind"] == "nightly-catalogue" and first["counts"]["published"] == 3

    s3.put_object(Bucket=bucket, Key=keys["robot.png"], Body=photo_bytes["hamburger.png"])  # re-shot
    _multipart_same_bytes(s3, bucket, keys["cerebro.jpg"])  # same bytes, new ETag
    upload_photos(s3, bucket, {"teapot.png": photo_bytes["teapot.png"]})  # new
    second, proxy = night()
    by_name = {Path(p["uri"]).name: p["status"] for p in second["photos"]}
    assert by_name == {"chair.png": "skipped", "robot.png": "published", "cerebro.jpg": "skipped", "teapot.png": "published"}
    gets = {path.rsplit("/", 1)[-1]: n for (method, path), n in proxy.seen.items() if method == "GET" and "/incoming/" in path}
    assert "chair.png" not in gets  # unchanged ETag: never downloaded again
    assert gets["cerebro.jpg"] == 1 and gets["robot.png"] == 1 and gets["teapot.png"] == 1

    cat = Catalogue(url)
    try:
        robot = cat.sku_history("SKU-robot")
        assert [(a.version, a.status) for a in robot] == [(1, AssetStatus.superseded), (2, AssetStatus.auto_approved)]
        assert robot[0].superseded_by_id == robot[1].id
        assert len(cat.sku_history("SKU-cerebro")) == 1
    finally:
        cat.close()

    third, proxy = night()  # the new ETag was recorded: nothing is downloaded now
    assert third["counts"]["skipped"] == 4
    assert not [p for (m, p) in proxy.seen if m == "GET" and "/incoming/SKU" in p]

    fourth, _ = night(("--preset", "web", "--batch-size", "2"))  # not conversion parameters: still all skipped
    assert fourth["counts"]["skipped"] == 4
    monkeypatch.setenv("ASSET3D_MC_RESOLUTION", "24")  # new parameters: every photo again, as a new version
    fifth, _ = night()
    assert fifth["counts"]["published"] == 4
