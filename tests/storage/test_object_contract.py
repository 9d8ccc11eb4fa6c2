"""The object-store contract: every test runs on the local backend and on S3 (a real moto HTTP endpoint)."""

from __future__ import annotations

import hashlib
import random
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storage import (
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    PreconditionFailed,
    StorageError,
    open_store,
)
from storage.s3 import S3Store


def _payload(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def test_put_then_head_and_get_round_trip(store: ObjectStore) -> None:
    data = b"front photo bytes"
    before = datetime.now(UTC) - timedelta(seconds=5)
    info = store.put("sku-1/front.png", data, content_type="image/png", metadata={"sku": "sku-1", "angle": "front"})
    assert info.key == "sku-1/front.png"
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.etag and '"' not in info.etag
    assert info.last_modified.tzinfo is not None and info.last_modified >= before
    head = store.head("sku-1/front.png")
    assert (head.size, head.etag, head.sha256) == (info.size, info.etag, info.sha256)
    assert head.content_type == "image/png"
    assert dict(head.metadata) == {"sku": "sku-1", "angle": "front"}
    assert store.get("sku-1/front.png") == data
    assert store.exists("sku-1/front.png") and not store.exists("sku-1/back.png")


def test_overwrite_changes_bytes_etag_and_checksum(store: ObjectStore) -> None:
    first = store.put("a.bin", b"one")
    second = store.put("a.bin", b"two!", content_type="text/plain")
    assert store.get("a.bin") == b"two!"
    assert second.etag != first.etag and second.sha256 != first.sha256
    assert store.head("a.bin").content_type == "text/plain"
    assert store.head("a.bin").size == 4


def test_put_accepts_a_file_path(store: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "photo.jpg"
    src.write_bytes(_payload(70_000, seed=1))
    info = store.put("from-file.jpg", src, content_type="image/jpeg")
    assert info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert store.get("from-file.jpg") == src.read_bytes()


def test_if_absent_refuses_to_overwrite(store: ObjectStore) -> None:
    store.put("glb/asset.glb", b"v1", if_absent=True)
    with pytest.raises(PreconditionFailed) as exc:
        store.put("glb/asset.glb", b"v2", if_absent=True)
    assert exc.value.reason == "precondition_failed" and not exc.value.transient
    assert "glb/asset.glb" in str(exc.value)
    assert store.get("glb/asset.glb") == b"v1"


def test_if_absent_is_atomic_under_concurrent_writers(store: ObjectStore) -> None:
    winners: list[int] = []
    losers: list[int] = []
    start = threading.Barrier(6)

    def write(i: int) -> None:
        start.wait()
        try:
            store.put("race/key.bin", f"writer {i}".encode(), if_absent=True)
            winners.append(i)
        except PreconditionFailed:
            losers.append(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(winners) == 1 and len(losers) == 5
    assert store.get("race/key.bin") == f"writer {winners[0]}".encode()


def test_missing_objects_raise_not_found(store: ObjectStore) -> None:
    for op in (lambda: store.get("nope.png"), lambda: store.head("nope.png"), lambda: store.copy("nope.png", "x.png")):
        with pytest.raises(ObjectNotFound) as exc:
            op()
        assert exc.value.reason == "not_found" and not exc.value.transient
        assert "nope.png" in str(exc.value)


def test_get_size_cap(store: ObjectStore) -> None:
    store.put("big.bin", _payload(1000))
    assert len(store.get("big.bin", max_bytes=1000)) == 1000
    with pytest.raises(ObjectTooLarge) as exc:
        store.get("big.bin", max_bytes=999)
    assert exc.value.reason == "too_large"
    assert "1000" in str(exc.value) and "999" in str(exc.value)


def test_list_is_a_sorted_string_prefix_listing(store: ObjectStore) -> None:
    keys = ["sku-1/front.png", "sku-1/side.png", "sku-10/front.png", "sku-2/a/b/c.png", "top.txt", "sku-1/back.png"]
    for i, key in enumerate(keys):
        store.put(key, b"x" * (i + 1))
    listed = list(store.list())
    assert [o.key for o in listed] == sorted(keys)
    for obj in listed:
        head = store.head(obj.key)
        assert (obj.size, obj.etag) == (head.size, head.etag)
        assert obj.last_modified.tzinfo is not None
    assert [o.key for o in store.list("sku-1/")] == ["sku-1/back.png", "sku-1/front.png", "sku-1/side.png"]
    assert [o.key for o in store.list("sku-1")] == [
        "sku-1/back.png", "sku-1/front.png", "sku-1/side.png", "sku-10/front.png",
    ]  # fmt: skip
    assert [o.key for o in store.list("sku-2/a/")] == ["sku-2/a/b/c.png"]
    assert list(store.list("absent/")) == []


def test_copy_keeps_content_type_metadata_and_checksum(store: ObjectStore) -> None:
    src = store.put("src/model.glb", b"glTF....", content_type="model/gltf-binary", metadata={"preset": "web"})
    dst = store.copy("src/model.glb", "published/model.glb")
    assert dst.key == "published/model.glb"
    assert (dst.sha256, dst.size, dst.content_type, dict(dst.metadata)) == (
        src.sha256, src.size, "model/gltf-binary", {"preset": "web"},
    )  # fmt: skip
    assert store.get("published/model.glb") == b"glTF...."
    assert store.get("src/model.glb") == b"glTF...."


def test_delete_removes_and_is_idempotent(store: ObjectStore) -> None:
    store.put("d/one.txt", b"1")
    store.put("d/two.txt", b"2")
    store.delete("d/one.txt")
    store.delete("d/one.txt")  # a missing key is not an error
    store.delete("never/was.txt")
    assert [o.key for o in store.list()] == ["d/two.txt"]
    with pytest.raises(ObjectNotFound):
        store.get("d/one.txt")


@pytest.mark.parametrize(
    "key",
    [
        "../escape.txt",
        "a/../../escape.txt",
        "a/..",
        "./a.txt",
        "a/./b.txt",
        "/etc/passwd",
        "a\\..\\b.txt",
        "a\x00b",
        "a\nb",
        "%2e%2e/escape.txt",
        "a/%2E%2E/%2e%2e/escape.txt",
        "%252e%252e/escape.txt",
        "%2Fetc/passwd",
        "a%5C..%5Cb",
        "a%00b",
        "a//b",
        "a/",
        "",
        ".asset3d-meta/x.json",
        "k" * 1025,
    ],
)
def test_unsafe_keys_are_refused_everywhere(store: ObjectStore, key: str) -> None:
    store.put("ok.txt", b"ok")
    ops = [
        lambda: store.put(key, b"payload"),
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: store.delete(key),
        lambda: store.copy("ok.txt", key),
        lambda: store.copy(key, "ok2.txt"),
    ]
    for op in ops:
        with pytest.raises(InvalidKey) as exc:
            op()
        assert exc.value.reason == "invalid_key" and not exc.value.transient
    assert [o.key for o in store.list()] == ["ok.txt"]


@pytest.mark.parametrize("prefix", ["../", "a/../../", "%2e%2e/", "/abs", "a\\b"])
def test_unsafe_list_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidKey):
        list(store.list(prefix))


@pytest.mark.parametrize("key", ["sku 1/front (2).png", "ünïcode/é.png", "50%off.png", "a..b/c...d.txt", "x/.hidden"])
def test_unusual_but_safe_keys_work(store: ObjectStore, key: str) -> None:
    store.put(key, key.encode())
    assert store.get(key) == key.encode()
    assert [o.key for o in store.list()] == [key]


@pytest.mark.parametrize("metadata", [{"Upper": "x"}, {"sha256": "forged"}, {"ok": "caf\u00e9"}, {"bad name": "x"}])
def test_bad_user_metadata_is_refused(store: ObjectStore, metadata: dict[str, str]) -> None:
    with pytest.raises(InvalidKey) as exc:
        store.put("m.txt", b"x", metadata=metadata)
    assert exc.value.reason == "invalid_metadata"
    assert not store.exists("m.txt")


@pytest.mark.parametrize("source", ["bytes", "path"])
def test_20_mb_upload_keeps_bytes_and_checksum(store: ObjectStore, tmp_path: Path, source: str) -> None:
    data = _payload(20 * 1024 * 1024, seed=3)
    payload: bytes | Path = data
    if source == "path":
        payload = tmp_path / "big.glb"
        payload.write_bytes(data)
    info = store.put("assets/big.glb", payload, content_type="model/gltf-binary", if_absent=True)
    digest = hashlib.sha256(data).hexdigest()
    assert info.size == len(data) and info.sha256 == digest
    assert store.head("assets/big.glb").sha256 == digest
    assert hashlib.sha256(store.get("assets/big.glb")).hexdigest() == digest
    with pytest.raises(PreconditionFailed):
        store.put("assets/big.glb", payload, if_absent=True)


def test_uri_round_trips_through_open_store(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    if isinstance(store, S3Store):  # open_store finds the endpoint the standard way: AWS_ENDPOINT_URL_S3
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", store.endpoint_url)
    store.put("sku-1/front.png", b"img")
    assert store.uri_for("sku-1/front.png").startswith(store.uri + "/")
    again = open_store(store.uri)
    assert type(again) is type(store)
    assert [o.key for o in again.list()] == ["sku-1/front.png"]
    assert again.get("sku-1/front.png") == b"img"


def test_errors_share_one_hierarchy(store: ObjectStore) -> None:
    with pytest.raises(StorageError):
        store.get("missing")
    with pytest.raises(StorageError):
        store.put("../x", b"")
