"""Files only from the configured buckets (escape attempts refused), S3 serving and an approval on the moto
S3 server, and clear pages when the catalogue or a bucket is unreachable."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loopback import unused_port
from web_helpers import Converted, bearer, convert_photos

import migrations
from storage.catalogue import Catalogue, params_hash

Client = Callable[..., Any]
SECRET = "top-secret-bytes"


@pytest.fixture(scope="module")
def chair(shared: Path, hold_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Converted:
    """One held asset (chair), converted into a SQLite catalogue and a local bucket."""
    root = tmp_path_factory.mktemp("chair")
    return convert_photos(shared, root, f"sqlite:///{root / 'catalogue.db'}", hold_config, ("chair.png",))


def _record(url: str, sku: str, *, photo_uri: str, glb_uri: str, previews: list[str], status: str = "needs_review") -> int:
    """An asset row pointing wherever the test says (the catalogue is real; the URIs are the test's)."""
    cat = Catalogue(url)
    try:
        photo = cat.upsert_photo(
            sku, uri=photo_uri, bucket=photo_uri.rsplit("/", 1)[0], key=photo_uri.rsplit("/", 1)[1],
            sha256=hashlib.sha256(photo_uri.encode()).hexdigest(), size_bytes=10,
        )  # fmt: skip
        asset, _ = cat.record_asset(
            photo_id=photo.id, params_hash=params_hash({"test": sku}), weights_sha256=hashlib.sha256(b"w").hexdigest(),
            preset="web", status=status, glb_uri=glb_uri, preview_uris=previews, metrics={"asset.faces": 12},
        )  # fmt: skip
        return asset.id
    finally:
        cat.close()


def test_no_parameter_reaches_outside_the_buckets(
    tmp_path: Path, make_client: Client, reviewers: tuple[Path, dict[str, str]]
) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    migrations.upgrade(url, "head")
    assets, photos, outside = tmp_path / "assets", tmp_path / "photos", tmp_path / "outside"
    for folder in (assets / "sku" / "k", photos, outside):
        folder.mkdir(parents=True)
    (outside / "model.glb").write_text(SECRET)
    (outside / "photo.png").write_text(SECRET)
    (assets / "sku" / "k" / "model.glb").symlink_to(outside / "model.glb")  # a link inside the bucket, to outside
    root = assets.as_uri()
    rogue = {
        "plain": _record(url, "a", photo_uri=(outside / "photo.png").as_uri(), glb_uri=(outside / "model.glb").as_uri(), previews=[]),
        "dotdot": _record(url, "b", photo_uri=f"{photos.as_uri()}/../outside/photo.png",
                          glb_uri=f"{root}/../outside/model.glb", previews=[f"{root}/sku/../../outside/photo.png"]),
        "encoded": _record(url, "c", photo_uri=f"{photos.as_uri()}/%2e%2e/outside/photo.png",
                           glb_uri=f"{root}/%2e%2e/outside/model.glb", previews=[]),
        "symlink": _record(url, "d", photo_uri=photos.as_uri() + "/none.png", glb_uri=f"{root}/sku/k/model.glb", previews=[]),
        "other_bucket": _record(url, "e", photo_uri="s3://someone-else/photo.png", glb_uri="s3://someone-else/model.glb", previews=[]),
    }  # fmt: skip
    client = make_client(catalogue_url=url, buckets=(str(assets), str(photos)))
    auth = bearer(reviewers[1]["ana"])
    for case, asset_id in rogue.items():
        for path in (f"/files/{asset_id}/model.glb", f"/files/{asset_id}/photo", f"/files/{asset_id}/previews/0"):
            r = client.get(path, headers=auth)
            assert r.status_code in (403, 404), (case, path, r.status_code)
            assert SECRET not in r.text, (case, path)
        assert client.get(f"/files/{asset_id}/model.glb", headers=auth).status_code == 403, case
    for path in (
        "/vendor/..%2F..%2Fpyproject.toml", "/vendor/../../pyproject.toml", "/static/..%2Fapp.py", "/static/%2e%2e%2Fapp.py",
        f"/files/{rogue['symlink']}/intake/..%2Fmodel.glb", f"/files/{rogue['symlink']}/previews/..%2F..%2Fx",
    ):  # fmt: skip
        r = client.get(path, headers=auth)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert SECRET not in r.text and "[build-system]" not in r.text


def test_s3_files_are_streamed_and_an_approval_publishes_to_s3(
    chair: Converted, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, make_client: Client,
    reviewers: tuple[Path, dict[str, str]],
) -> None:  # fmt: skip
    import boto3

    from storage import open_store

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    suffix = os.urandom(4).hex()
    assets_bucket, photos_bucket = f"assets-{suffix}", f"photos-{suffix}"
    for b in (assets_bucket, photos_bucket):
        s3.create_bucket(Bucket=b)
    folder = chair.folder("chair")
    dest = open_store(f"s3://{assets_bucket}/chair/{folder.name}")
    types = {".glb": "model/gltf-binary", ".png": "image/png", ".json": "application/json"}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".asset3d-meta" not in p.parts):
        dest.put(path.relative_to(folder).as_posix(), path.read_bytes(), content_type=types[path.suffix])
    open_store(f"s3://{photos_bucket}").put("chair.png", (chair.photos / "chair.png").read_bytes(), content_type="image/png")
    url = chair.url
    asset_id = _record(
        url, "chair-s3", photo_uri=f"s3://{photos_bucket}/chair.png", glb_uri=dest.uri_for("model.glb"),
        previews=[dest.uri_for("previews/view_00.png")],
    )  # fmt: skip
    client = make_client(catalogue_url=url, buckets=(f"s3://{assets_bucket}", f"s3://{photos_bucket}"))
    auth = bearer(reviewers[1]["ana"])

    glb = client.get(f"/files/{asset_id}/model.glb", headers=auth)
    assert glb.status_code == 200 and glb.headers["content-type"] == "model/gltf-binary"
    assert glb.content == (folder / "model.glb").read_bytes()
    assert client.get(f"/files/{asset_id}/previews/0", headers=auth).headers["content-type"] == "image/png"
    photo = client.get(f"/files/{asset_id}/photo", headers=auth)
    assert photo.status_code == 200 and photo.content == (chair.photos / "chair.png").read_bytes()
    page = client.get(f"/assets/{asset_id}", headers=auth)
    assert page.status_code == 200 and "silhouette" in page.text  # the verdict, read from metrics.json in S3

    r = client.post(f"/api/assets/{asset_id}/review", json={"decision": "approved", "comment": "s3 ok"}, headers=auth)
    assert r.status_code == 200 and r.json()["published"] is True, r.text
    manifest = json.loads(s3.get_object(Bucket=assets_bucket, Key=f"chair/{folder.name}/manifest.json")["Body"].read())
    for f in manifest["files"]:
        body = s3.get_object(Bucket=assets_bucket, Key=f"chair/{folder.name}/{f['key']}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == f["sha256"], f["key"]


@pytest.fixture
def dead_s3(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An S3 endpoint nothing listens on, tried once."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{unused_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    yield "s3://gone-bucket"


def test_unreachable_catalogue_or_bucket_is_a_clear_page(
    tmp_path: Path, dead_s3: str, make_client: Client, reviewers: tuple[Path, dict[str, str]]
) -> None:
    auth = bearer(reviewers[1]["ana"])
    down = make_client(catalogue_url=f"postgresql+psycopg://bot:pw-123@127.0.0.1:{unused_port()}/x?connect_timeout=2",
                       buckets=(str(tmp_path),))  # fmt: skip
    page = down.get("/", headers=auth)
    assert page.status_code == 503 and "The catalogue is unreachable" in page.text
    assert "Traceback" not in page.text and "pw-123" not in page.text and "bot:***@" in page.text
    api = down.get("/api/assets", headers=auth)
    assert api.status_code == 503 and api.json()["reason"] == "unreachable"

    missing = tmp_path / "nowhere" / "catalogue.db"
    absent = make_client(catalogue_url=f"sqlite:///{missing}", buckets=(str(tmp_path),))
    r = absent.get("/overview", headers=auth)
    assert r.status_code == 503 and "no database file" in r.text
    assert not missing.exists() and not missing.parent.exists()  # read-only: nothing created

    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    migrations.upgrade(url, "head")
    asset_id = _record(url, "gone", photo_uri=f"{dead_s3}/p.png", glb_uri=f"{dead_s3}/sku/k/model.glb",
                       previews=[f"{dead_s3}/sku/k/previews/view_00.png"])  # fmt: skip
    client = make_client(catalogue_url=url, buckets=(dead_s3,))
    page = client.get(f"/assets/{asset_id}", headers=auth)
    assert page.status_code == 503 and "A bucket is unreachable" in page.text and "Traceback" not in page.text
    glb = client.get(f"/files/{asset_id}/model.glb", headers=auth)
    assert glb.status_code == 503 and glb.json()["reason"] == "connection"
