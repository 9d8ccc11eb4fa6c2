"""Files served from the buckets: only URIs the catalogue names for an asset, only under the bucket roots.

A request names an asset id and a kind of file (its GLB, preview N, its photo, its intake mask); the
catalogue gives the URI; `Buckets.locate` maps the URI to a configured bucket root and a key, refusing
(`OutsideBuckets`) anything that is not under one of the roots, and the key passes the stores'
`storage.validate_key` (no ``..``, no absolute or percent-encoded escapes). A local file is resolved and
must stay under its root (symlinks included). Bytes are streamed (64 KiB chunks) from the local file or
the S3 object, with the content type of the file's extension, its ETag, and caching headers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from storage import ObjectInfo, ObjectStore, StorageError, open_store, validate_key
from storage.local import LocalStore

CHUNK = 64 * 1024

#: content types by extension; anything else is served as application/octet-stream
CONTENT_TYPES: dict[str, str] = {
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".json": "application/json",
    ".usdz": "model/vnd.usdz+zip",
}


class OutsideBuckets(Exception):
    """A URI that lies under none of the configured bucket roots (never served)."""

    reason = "outside_buckets"
    transient = False


def content_type_of(key: str) -> str:
    return CONTENT_TYPES.get(PurePosixPath(key).suffix.lower(), "application/octet-stream")


@dataclass(frozen=True)
class Located:
    """A URI inside a bucket root: the root's store and the key under it."""

    store: ObjectStore
    key: str


@dataclass
class Buckets:
    """The bucket roots files may come from (``s3://bucket/prefix``, ``file:///abs`` or a folder)."""

    roots: Sequence[str]
    stores: list[ObjectStore] = field(init=False)
    _s3_client: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.stores = [open_store(root) for root in self.roots]

    @property
    def uris(self) -> list[str]:
        return [s.uri for s in self.stores]

    def locate(self, uri: str) -> Located:
        """The bucket root and key of ``uri``.

        Raises
        ------
        OutsideBuckets
            ``uri`` is under no root, or its key is not a valid key (``..``, ``//``, encoded escapes).
        """
        for store in self.stores:
            key = _key_under(store, uri)
            if key is None:
                continue
            try:
                return Located(store, validate_key(key))
            except StorageError:
                break
        raise OutsideBuckets(f"{uri} is not under a configured bucket ({', '.join(self.uris) or 'none configured'})")

    def head(self, located: Located) -> ObjectInfo:
        """Size, ETag and last-modified of the object (`storage.ObjectNotFound` when missing)."""
        return located.store.head(located.key)

    def stream(self, located: Located) -> Iterator[bytes]:
        """The object's bytes in chunks, read as they are sent.

        Raises
        ------
        OutsideBuckets
            A local file that resolves outside its root (a symlink).
        storage.StorageError
            The S3 object cannot be read.
        """
        store, key = located.store, located.key
        if isinstance(store, LocalStore):
            path = store.root.joinpath(*key.split("/")).resolve()
            if not path.is_relative_to(store.root):
                raise OutsideBuckets(f"{store.uri_for(key)} resolves outside its bucket root {store.root}")
            return _file_chunks(path)
        from storage.s3 import S3Store

        if isinstance(store, S3Store):
            return self._s3_chunks(store, key)
        return iter((store.get(key),))

    def _s3_chunks(self, store: Any, key: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        from storage.s3 import translate_error

        full = f"{store.prefix}/{key}" if store.prefix else key
        try:
            body = self._s3().get_object(Bucket=store.bucket, Key=full)["Body"]
        except (ClientError, BotoCoreError) as err:
            raise translate_error(err, key, f"get {store.uri_for(key)}") from err
        return _s3_body_chunks(body)

    def _s3(self) -> Any:
        """One S3 client for streaming (the standard configuration chain, AWS_ENDPOINT_URL included)."""
        if self._s3_client is None:
            import boto3
            from botocore.config import Config

            attempts = int(os.environ.get("AWS_MAX_ATTEMPTS", "3"))
            config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "total_max_attempts": attempts})
            self._s3_client = boto3.session.Session().client("s3", config=config)
        return self._s3_client


def _key_under(store: ObjectStore, uri: str) -> str | None:
    """The part of ``uri`` under ``store``'s root, or None when it is not under it."""
    from storage.s3 import S3Store

    if isinstance(store, S3Store):
        parts = urlsplit(uri)
        if parts.scheme.lower() != "s3" or parts.netloc != store.bucket or parts.query or parts.fragment:
            return None
        path = parts.path.lstrip("/")
        if not store.prefix:
            return path
        return path[len(store.prefix) + 1 :] if path.startswith(store.prefix + "/") else None
    if isinstance(store, LocalStore):
        if "://" in uri:
            parts = urlsplit(uri)
            if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
                return None
            path = unquote(parts.path)
        else:
            path = str(Path(uri).absolute())
        root = store.root.as_posix().rstrip("/") + "/"
        return path[len(root) :] if path.startswith(root) else None
    return None


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _s3_body_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()
