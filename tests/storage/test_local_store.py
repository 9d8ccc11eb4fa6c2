"""What only the local backend has: plain files, atomic writes, symlinks, stale metadata, URIs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from storage import InvalidKey, PermanentStorageError, open_store
from storage.local import META_DIR, LocalStore


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def test_objects_are_plain_files_under_the_root(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    store.put("sku-1/front.png", b"png bytes", content_type="image/png")
    assert (tmp_path / "bucket" / "sku-1" / "front.png").read_bytes() == b"png bytes"
    assert _all_files(tmp_path / "bucket") == [f"{META_DIR}/sku-1/front.png.json", "sku-1/front.png"]


def test_no_temporary_file_survives_a_failed_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "bucket")
    store.put("a.bin", b"old")
    before = _all_files(tmp_path / "bucket")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.put("a.bin", b"new bytes that never land")
    monkeypatch.undo()
    assert store.get("a.bin") == b"old"
    assert _all_files(tmp_path / "bucket") == before


def test_symlinked_folder_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    root = tmp_path / "bucket"
    root.mkdir()
    (root / "evil").symlink_to(outside, target_is_directory=True)
    store = LocalStore(root)
    for op in (
        lambda: store.get("evil/secret.txt"),
        lambda: store.head("evil/secret.txt"),
        lambda: store.put("evil/planted.txt", b"x"),
        lambda: store.delete("evil/secret.txt"),
    ):
        with pytest.raises(InvalidKey) as exc:
            op()
        assert exc.value.reason == "outside_root"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "secret"
    assert [o.key for o in store.list()] == []


def test_symlinked_file_pointing_outside_is_refused_and_not_listed(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("root:x:0:0")
    root = tmp_path / "bucket"
    root.mkdir()
    (root / "link.txt").symlink_to(tmp_path / "passwd")
    store = LocalStore(root)
    with pytest.raises(InvalidKey):
        store.get("link.txt")
    with pytest.raises(InvalidKey):
        store.put("link.txt", b"overwrite through the link")
    assert (tmp_path / "passwd").read_text() == "root:x:0:0"
    assert list(store.list()) == []


def test_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    store.put("real/photo.png", b"img")
    (tmp_path / "bucket" / "alias").symlink_to(tmp_path / "bucket" / "real", target_is_directory=True)
    assert store.get("alias/photo.png") == b"img"


def test_root_that_is_a_symlink_works(tmp_path: Path) -> None:
    real = tmp_path / "real-bucket"
    real.mkdir()
    (tmp_path / "bucket").symlink_to(real, target_is_directory=True)
    store = LocalStore(tmp_path / "bucket")
    store.put("k.txt", b"v")
    assert (real / "k.txt").read_bytes() == b"v"


def test_a_file_replaced_by_hand_gets_fresh_checksum_and_etag(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    old = store.put("photo.png", b"original", content_type="image/png")
    path = tmp_path / "bucket" / "photo.png"
    tmp = path.with_name("swap")
    tmp.write_bytes(b"edited by hand")
    os.replace(tmp, path)
    head = store.head("photo.png")
    assert head.sha256 == hashlib.sha256(b"edited by hand").hexdigest()
    assert head.etag != old.etag
    assert head.content_type == "application/octet-stream"  # the old metadata no longer describes it


def test_delete_leaves_no_empty_folders(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    store.put("a/b/c/deep.txt", b"x")
    store.delete("a/b/c/deep.txt")
    assert list((tmp_path / "bucket").iterdir()) == []


def test_a_key_below_an_object_is_a_clear_conflict(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "bucket")
    store.put("a", b"file")
    with pytest.raises(PermanentStorageError) as exc:
        store.put("a/b", b"x")
    assert exc.value.reason == "key_conflict" and "'a/b'" in str(exc.value)


def test_open_store_accepts_file_uris_and_plain_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    by_uri = open_store((tmp_path / "b").as_uri())
    by_path = open_store(str(tmp_path / "b"))
    by_relative = open_store("b")
    assert isinstance(by_uri, LocalStore)
    assert by_uri.root == by_path.root == by_relative.root == (tmp_path / "b").resolve()
    by_uri.put("x.txt", b"1")
    assert by_relative.get("x.txt") == b"1"
    spaced = open_store((tmp_path / "with space").as_uri())
    assert isinstance(spaced, LocalStore) and spaced.root.name == "with space"


@pytest.mark.parametrize("uri", ["gs://bucket/x", "http://example.com/x", "file://otherhost/x", "s3://", ""])
def test_open_store_refuses_unsupported_uris(uri: str) -> None:
    with pytest.raises(PermanentStorageError) as exc:
        open_store(uri)
    assert exc.value.reason == "unsupported_uri"
