"""The local-folder backend of `storage.objects.ObjectStore`.

Objects are plain files under the root, so a bucket folder can be browsed and opened directly::

    root/sku-123/front.png                        the bytes of key "sku-123/front.png"
    root/.asset3d-meta/sku-123/front.png.json     its content type, user metadata, SHA-256 and ETag

Writes are atomic: the bytes go to a temporary file in the destination folder, are fsynced, then renamed
over the destination (or hard-linked for ``if_absent``, which fails atomically when the key exists), and
the folder is fsynced. A reader sees the old object or the new one, never a partial file.

The metadata file records the inode, size and modification time of the data file it describes; when they
no longer match (a crash between the two renames, or someone replaced the file by hand) the metadata is
ignored and SHA-256 and ETag are recomputed from the bytes.

Safety: keys pass `storage.objects.validate_key` first, then the resolved path (symlinks followed) must
stay inside the resolved root, checked again after creating folders; anything else is `InvalidKey`
(``reason="outside_root"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from storage.errors import (
    InvalidKey,
    ObjectNotFound,
    ObjectTooLarge,
    PermanentStorageError,
    PreconditionFailed,
)
from storage.objects import DEFAULT_CONTENT_TYPE, RESERVED_SEGMENT_PREFIX, ObjectInfo, ObjectStore

META_DIR = RESERVED_SEGMENT_PREFIX + "meta"
_TMP_PREFIX = RESERVED_SEGMENT_PREFIX + "tmp-"
_CHUNK = 1 << 20


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest_file(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (created on the first write).

    Parameters
    ----------
    root
        The folder; relative paths resolve against the current directory.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    # -- paths -------------------------------------------------------------------------------------------

    def _inside(self, path: Path, key: str) -> Path:
        resolved = path.resolve()
        if resolved != self.root and not resolved.is_relative_to(self.root):
            raise InvalidKey(f"key {key!r} refused: resolves outside the store root {self.root}", reason="outside_root", key=key)
        return resolved

    def _data_path(self, key: str) -> Path:
        return self._inside(self.root.joinpath(*key.split("/")), key)

    def _meta_path(self, key: str) -> Path:
        *folders, name = key.split("/")
        return self._inside(self.root.joinpath(META_DIR, *folders, name + ".json"), key)

    def _prepare_parent(self, path: Path, key: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise PermanentStorageError(
                f"key {key!r}: a parent of it is stored as an object, so it cannot also be a folder here",
                reason="key_conflict",
                key=key,
            ) from None
        self._inside(path.parent, key)  # folders created through a swapped-in symlink are caught here

    def uri_for(self, key: str) -> str:
        return self.root.joinpath(*key.split("/")).as_uri()

    # -- metadata ----------------------------------------------------------------------------------------

    def _read_meta(self, key: str, path: Path, st: os.stat_result) -> dict[str, object]:
        try:
            meta = json.loads(self._meta_path(key).read_text("utf-8"))
        except (OSError, ValueError):
            meta = {}
        if meta.get("stat") != [st.st_ino, st.st_size, st.st_mtime_ns]:
            sha, md5 = _digest_file(path)  # missing or stale: trust the bytes
            meta = {"sha256": sha, "etag": md5, "content_type": DEFAULT_CONTENT_TYPE, "metadata": {}}
        return meta

    def _write_meta(self, key: str, path: Path, meta: dict[str, object]) -> None:
        st = path.stat()
        meta = {**meta, "stat": [st.st_ino, st.st_size, st.st_mtime_ns]}
        meta_path = self._meta_path(key)
        self._prepare_parent(meta_path, key)
        self._write_atomic(meta_path, json.dumps(meta, sort_keys=True).encode(), if_absent=False, key=key)

    def _info(self, key: str, path: Path, *, full: bool) -> ObjectInfo:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.uri}", key=key) from None
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r} in {self.uri} (it is a folder)", key=key)
        meta = self._read_meta(key, path, st)
        modified = datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)
        if not full:
            return ObjectInfo(key=key, size=st.st_size, etag=str(meta["etag"]), last_modified=modified)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            etag=str(meta["etag"]),
            last_modified=modified,
            content_type=str(meta.get("content_type") or DEFAULT_CONTENT_TYPE),
            metadata=dict(meta.get("metadata") or {}),  # type: ignore[call-overload]
            sha256=str(meta["sha256"]),
        )

    # -- writing -----------------------------------------------------------------------------------------

    def _write_atomic(self, path: Path, data: bytes | Path, *, if_absent: bool, key: str) -> tuple[str, str]:
        """Write ``data`` to ``path`` atomically; return its (sha256, md5) hex digests."""
        sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o644)
                if isinstance(data, Path):
                    with data.open("rb") as src:
                        while chunk := src.read(_CHUNK):
                            sha.update(chunk)
                            md5.update(chunk)
                            out.write(chunk)
                else:
                    sha.update(data)
                    md5.update(data)
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if if_absent:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    raise PreconditionFailed(f"key {key!r} already exists in {self.uri}", key=key) from None
            else:
                os.replace(tmp, path)
            _fsync_dir(path.parent)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return sha.hexdigest(), md5.hexdigest()

    def _put(
        self, key: str, data: bytes | Path, content_type: str, metadata: dict[str, str], if_absent: bool
    ) -> ObjectInfo:
        path = self._data_path(key)
        if path.is_dir():
            raise PermanentStorageError(f"key {key!r} is a folder of other objects here", reason="key_conflict", key=key)
        self._prepare_parent(path, key)
        sha, md5 = self._write_atomic(path, data, if_absent=if_absent, key=key)
        self._write_meta(key, path, {"sha256": sha, "etag": md5, "content_type": content_type, "metadata": metadata})
        return self._info(key, path, full=True)

    def _copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        src = self.head(src_key)
        return self._put(
            dst_key, self._data_path(src_key), src.content_type or DEFAULT_CONTENT_TYPE, dict(src.metadata), False
        )

    def _delete(self, key: str) -> None:
        path = self._data_path(key)
        if path.is_dir():
            return
        for p in (path, self._meta_path(key)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            self._prune(p.parent)

    def _prune(self, folder: Path) -> None:
        """Remove folders left empty by a delete, up to the root (S3 has no folders to leave behind)."""
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    # -- reading -----------------------------------------------------------------------------------------

    def _head(self, key: str) -> ObjectInfo:
        return self._info(key, self._data_path(key), full=True)

    def _get(self, key: str, max_bytes: int | None) -> bytes:
        path = self._data_path(key)
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                if max_bytes is not None and size > max_bytes:
                    raise ObjectTooLarge(f"object {key!r} is {size} bytes, more than the cap of {max_bytes}", key=key)
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r} in {self.uri}", key=key) from None

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        folder_part = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*folder_part.split("/")) if folder_part else self.root
        if not start.is_dir() or not start.resolve().is_relative_to(self.root):
            return
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(start):
            dirnames[:] = [d for d in dirnames if not d.startswith(RESERVED_SEGMENT_PREFIX)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith(RESERVED_SEGMENT_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        keys.sort(key=lambda k: k.encode("utf-8"))
        for key in keys:
            path = self.root.joinpath(*key.split("/"))
            if path.is_symlink() and not path.resolve().is_relative_to(self.root):
                continue  # a link pointing out of the root is not an object of this store
            try:
                yield self._info(key, path.resolve(), full=False)
            except ObjectNotFound:
                continue  # deleted while listing
