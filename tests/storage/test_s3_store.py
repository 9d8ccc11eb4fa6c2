"""What only the S3 backend has: multipart with SHA-256 checksums, the AWS configuration chain, retries and
the transient/permanent split. All against real HTTP endpoints on loopback (moto, or a tiny failing server)."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from loopback import unused_port

from storage import (
    ObjectNotFound,
    PermanentStorageError,
    StorageError,
    TransientStorageError,
    open_store,
)
from storage.s3 import DEFAULT_MULTIPART_THRESHOLD, S3Store


def _b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_small_put_sends_a_sha256_checksum_s3_verified(s3_store: S3Store, s3_admin: Any) -> None:
    data = b"a small photo"
    s3_store.put("one.png", data)
    head = s3_admin.head_object(Bucket=s3_store.bucket, Key="incoming/v1/one.png", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == _b64sha(data)
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_20_mb_put_is_multipart_with_per_part_sha256(s3_store: S3Store, s3_admin: Any) -> None:
    data = random.Random(7).randbytes(20 * 1024 * 1024)
    info = s3_store.put("big.glb", data, content_type="model/gltf-binary")
    parts = [data[i : i + DEFAULT_MULTIPART_THRESHOLD] for i in range(0, len(data), DEFAULT_MULTIPART_THRESHOLD)]
    assert len(parts) == 3
    assert info.etag.endswith("-3")  # S3's multipart ETag: md5-of-md5s, dash, number of parts
    head = s3_admin.head_object(Bucket=s3_store.bucket, Key="incoming/v1/big.glb", ChecksumMode="ENABLED")
    composite = _b64sha(b"".join(hashlib.sha256(p).digest() for p in parts))
    assert head["ChecksumSHA256"].split("-")[0] == composite  # checksum of the parts' SHA-256 digests
    assert info.sha256 == hashlib.sha256(data).hexdigest()  # and the whole-object digest in metadata


def test_listing_stays_inside_the_store_prefix(s3_store: S3Store, s3_admin: Any) -> None:
    s3_admin.put_object(Bucket=s3_store.bucket, Key="incoming/v10/other.png", Body=b"x")
    s3_admin.put_object(Bucket=s3_store.bucket, Key="elsewhere.png", Body=b"x")
    for i in range(7):  # more than two pages of 3
        s3_store.put(f"k{i}.txt", b"v")
    assert [o.key for o in s3_store.list()] == [f"k{i}.txt" for i in range(7)]
    with pytest.raises(ObjectNotFound):
        s3_store.get("other.png")  # lives under incoming/v10/, not this store's incoming/v1/


def test_endpoint_from_aws_endpoint_url(s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    store = open_store(f"s3://{s3_bucket}/photos")
    assert isinstance(store, S3Store) and store.endpoint_url == s3_endpoint
    store.put("p.png", b"img")
    assert store.get("p.png") == b"img"
    assert store.uri_for("p.png") == f"s3://{s3_bucket}/photos/p.png"


def test_profile_from_shared_config_files(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config").write_text(f"[profile shop]\nregion = eu-west-1\nendpoint_url = {s3_endpoint}\n")
    (tmp_path / "credentials").write_text("[shop]\naws_access_key_id = profilekey\naws_secret_access_key = profilesecret\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_PROFILE", "shop")
    store = open_store(f"s3://{s3_bucket}")
    assert isinstance(store, S3Store) and store.endpoint_url == s3_endpoint
    store.put("via-profile.txt", b"ok")
    assert [o.key for o in store.list()] == ["via-profile.txt"]


def test_missing_bucket_is_permanent(s3_endpoint: str) -> None:
    store = S3Store("no-such-bucket-here", endpoint_url=s3_endpoint, max_attempts=1)
    with pytest.raises(PermanentStorageError) as exc:
        store.put("k", b"v")
    assert exc.value.reason == "nosuchbucket" and not exc.value.transient


def test_connection_refused_is_transient() -> None:
    store = S3Store("bucket", endpoint_url=f"http://127.0.0.1:{unused_port()}", max_attempts=1, connect_timeout=2)
    with pytest.raises(TransientStorageError) as exc:
        store.get("k")
    assert exc.value.transient and exc.value.reason == "connection"


class _FailingS3(BaseHTTPRequestHandler):
    """Answers every request with the configured S3 error; counts requests."""

    status = 503
    code = "SlowDown"
    hits = 0
    lock = threading.Lock()

    def _fail(self) -> None:
        with self.lock:
            type(self).hits += 1
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = f"<Error><Code>{self.code}</Code><Message>injected</Message></Error>".encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _fail

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def failing_s3(aws_env: None) -> Iterator[type[_FailingS3]]:
    handler = type("Handler", (_FailingS3,), {"hits": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    thread.join()


@pytest.mark.parametrize(("status", "code", "reason"), [(503, "SlowDown", "throttled"), (500, "InternalError", "server_error")])
def test_server_errors_are_retried_then_transient(
    failing_s3: type[_FailingS3], status: int, code: str, reason: str
) -> None:
    failing_s3.status, failing_s3.code = status, code
    store = S3Store("bucket", endpoint_url=failing_s3.url, max_attempts=3)  # type: ignore[attr-defined]
    with pytest.raises(TransientStorageError) as exc:
        store.get("k")
    assert exc.value.transient and exc.value.reason == reason
    assert code in str(exc.value)
    assert failing_s3.hits == 3  # adaptive retries made every allowed attempt


def test_access_denied_is_permanent_and_not_retried(failing_s3: type[_FailingS3]) -> None:
    failing_s3.status, failing_s3.code = 403, "AccessDenied"
    store = S3Store("bucket", endpoint_url=failing_s3.url, max_attempts=3)  # type: ignore[attr-defined]
    with pytest.raises(StorageError) as exc:
        store.put("k", b"v")
    assert not exc.value.transient and exc.value.reason == "accessdenied"
    assert failing_s3.hits == 1
