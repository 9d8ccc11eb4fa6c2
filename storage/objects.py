"""One object-store interface, two backends: S3 buckets and local folders.

Open a store from a URI and use the same seven operations whatever is behind it::

    from storage import open_store   # storage.stores: the URI -> backend switch

    photos = open_store("s3://shop-photos/incoming")      # or "file:///srv/buckets/photos", "buckets/photos"
    for obj in photos.list("sku-123/"):                     # ObjectInfo(key, size, etag, last_modified)
        data = photos.get(obj.key, max_bytes=50 << 20)      # ObjectTooLarge above the cap
    info = photos.put("sku-123/front.png", data, content_type="image/png", metadata={"sku": "123"},
                      if_absent=True)                       # PreconditionFailed when the key exists
    info.sha256                                             # hex SHA-256 of the bytes, verified on upload

Keys are relative, ``/``-separated object names, validated identically by every backend before any I/O
(`validate_key`): no empty, ``.`` or ``..`` segments, no leading ``/``, no backslash, no control
characters or NUL, no percent-encoded form of any of those, at most 1024 UTF-8 bytes, and no segment
starting with ``.asset3d-`` (reserved for the local backend's temporary files and metadata). A refused key
raises `InvalidKey` naming the key and the rule it broke.

Errors are the `storage.errors` hierarchy; `err.transient` says whether a retry can help.

Semantics shared by both backends (the contract suite in ``tests/storage`` checks them):

* ``list(prefix)`` yields objects whose key starts with ``prefix`` (a plain string prefix, as in S3), in
  UTF-8 byte order of the key; the objects carry key, size, ETag and last-modified (not content type,
  user metadata or SHA-256: use `head` for those).
* ``put`` stores the bytes with a content type, user metadata (lower-case ASCII names) and their SHA-256,
  which `head` returns as ``info.sha256``; ``if_absent=True`` refuses to overwrite, atomically.
* ``delete`` of a missing key is not an error (as in S3).
* ``copy`` copies within one store, keeping content type, metadata and SHA-256.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

from storage.errors import InvalidKey, ObjectNotFound, PermanentStorageError

#: Longest key accepted, in UTF-8 bytes (the S3 limit).
MAX_KEY_BYTES = 1024
#: Segment prefix reserved for the local backend's own files; refused in keys by every backend.
RESERVED_SEGMENT_PREFIX = ".asset3d-"
#: The user-metadata name under which the SHA-256 of the bytes is stored; refused as a user name.
SHA256_METADATA_NAME = "sha256"
#: Content type used when the caller gives none.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_METADATA_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_MAX_METADATA_BYTES = 2048  # S3's limit on all user metadata together


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object.

    Attributes
    ----------
    key
        The key relative to the store's root (without the store's own prefix).
    size
        Size in bytes.
    etag
        The backend's entity tag, without quotes; opaque, changes when the bytes change.
    last_modified
        Time of the last write, timezone-aware UTC.
    content_type, metadata, sha256
        Filled by `ObjectStore.head` and `ObjectStore.put`; ``None`` / empty in `ObjectStore.list` results.
    """

    key: str
    size: int
    etag: str
    last_modified: datetime
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    sha256: str | None = None


def _decoded_forms(text: str) -> list[str]:
    """``text`` and its successive percent-decodings (up to three levels), stopping when stable."""
    forms = [text]
    for _ in range(3):
        nxt = unquote(forms[-1])
        if nxt == forms[-1]:
            break
        forms.append(nxt)
    return forms


def _check_name(value: str, *, what: str, allow_trailing_slash: bool) -> None:
    for form in _decoded_forms(value):
        encoded = "" if form is value else " (after percent-decoding)"
        if "\x00" in form:
            raise InvalidKey(f"{what} {value!r} refused: contains NUL{encoded}", key=value)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in form):
            raise InvalidKey(f"{what} {value!r} refused: contains a control character{encoded}", key=value)
        if "\\" in form:
            raise InvalidKey(f"{what} {value!r} refused: contains a backslash{encoded}", key=value)
        if form.startswith("/"):
            raise InvalidKey(f"{what} {value!r} refused: absolute (starts with '/'){encoded}", key=value)
        segments = form.split("/")
        if allow_trailing_slash and segments and segments[-1] == "":
            segments = segments[:-1]
        for seg in segments:
            if seg in ("", ".", ".."):
                shown = seg or "an empty segment"
                raise InvalidKey(f"{what} {value!r} refused: {shown!s} is not a valid segment{encoded}", key=value)
            if seg.startswith(RESERVED_SEGMENT_PREFIX):
                raise InvalidKey(
                    f"{what} {value!r} refused: segments starting with {RESERVED_SEGMENT_PREFIX!r} are reserved",
                    key=value,
                )


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe object key, else raise `InvalidKey` saying why.

    Parameters
    ----------
    key
        A relative, ``/``-separated object name such as ``"sku-123/front.png"``.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"key {key!r} refused: keys are str, not {type(key).__name__}", key=str(key))
    if not key:
        raise InvalidKey("key '' refused: empty", key=key)
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"key {key[:40]!r}... refused: longer than {MAX_KEY_BYTES} UTF-8 bytes", key=key)
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"key {key!r} refused: not valid Unicode (lone surrogate)", key=key) from None
    _check_name(key, what="key", allow_trailing_slash=False)
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a safe listing prefix (``""``, ``"a/"``, ``"a/b-"``), else raise `InvalidKey`."""
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix {prefix!r} refused: prefixes are str", key=str(prefix))
    if prefix:
        if len(prefix.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise InvalidKey(f"prefix {prefix[:40]!r}... refused: too long", key=prefix)
        _check_name(prefix, what="prefix", allow_trailing_slash=True)
    return prefix


def validate_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Check user metadata: lower-case ASCII names, printable ASCII values, 2 KiB in all.

    Raises
    ------
    InvalidKey
        With ``reason="invalid_metadata"``, naming the offending entry.
    """
    out: dict[str, str] = {}
    total = 0
    for name, value in (metadata or {}).items():
        if not isinstance(name, str) or not _METADATA_NAME.match(name):
            raise InvalidKey(
                f"metadata name {name!r} refused: use lower-case ASCII letters, digits and '-'",
                reason="invalid_metadata",
            )
        if name == SHA256_METADATA_NAME:
            raise InvalidKey(f"metadata name {name!r} is reserved for the checksum", reason="invalid_metadata")
        if not isinstance(value, str) or not all(32 <= ord(c) < 127 for c in value):
            raise InvalidKey(f"metadata {name!r}: value must be printable ASCII text", reason="invalid_metadata")
        total += len(name) + len(value)
        out[name] = value
    if total > _MAX_METADATA_BYTES:
        raise InvalidKey(f"metadata refused: {total} bytes, more than {_MAX_METADATA_BYTES}", reason="invalid_metadata")
    return out


class ObjectStore(ABC):
    """The interface of every object store. Public methods validate, then call the backend's ``_`` methods.

    Subclasses implement `_list`, `_head`, `_get`, `_put`, `_copy`, `_delete` and `uri_for`; they receive
    keys that already passed `validate_key` and metadata that passed `validate_metadata`.
    """

    #: The URI this store was opened from, normalised (``s3://bucket/prefix`` or ``file:///abs/path``).
    uri: str

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with ``prefix``, in UTF-8 byte order of the key."""
        return self._list(validate_prefix(prefix))

    def head(self, key: str) -> ObjectInfo:
        """Return the object's size, ETag, last-modified, content type, user metadata and SHA-256.

        Raises
        ------
        ObjectNotFound
            No object under ``key``.
        """
        return self._head(validate_key(key))

    def exists(self, key: str) -> bool:
        """True when an object is stored under ``key``."""
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def get(self, key: str, max_bytes: int | None = None) -> bytes:
        """Return the object's bytes.

        Parameters
        ----------
        key
            The object's key.
        max_bytes
            Refuse (``ObjectTooLarge``) objects larger than this, before reading them.
        """
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        return self._get(validate_key(key), max_bytes)

    def put(
        self,
        key: str,
        data: bytes | Path,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
        metadata: Mapping[str, str] | None = None,
        if_absent: bool = False,
    ) -> ObjectInfo:
        """Store ``data`` (bytes, or a file streamed from a `Path`) under ``key``.

        The SHA-256 of the bytes is computed here, sent for verification where the backend supports it,
        stored with the object and returned in ``info.sha256``.

        Parameters
        ----------
        if_absent
            Only write when nothing is stored under ``key`` yet; otherwise raise `PreconditionFailed`.
            Atomic on both backends (S3 ``If-None-Match: *``, a hard link locally).
        """
        if not isinstance(data, bytes | bytearray | memoryview | Path):
            raise TypeError(f"put({key!r}): data must be bytes or a pathlib.Path, not {type(data).__name__}")
        if isinstance(data, Path) and not data.is_file():
            raise PermanentStorageError(f"put({key!r}): source file {data} does not exist", reason="no_source", key=key)
        if not content_type or not all(32 <= ord(c) < 127 for c in content_type):
            raise InvalidKey(f"put({key!r}): content type {content_type!r} is not printable ASCII", reason="invalid_metadata")
        payload = data if isinstance(data, Path) else bytes(data)
        return self._put(validate_key(key), payload, content_type, validate_metadata(metadata), if_absent)

    def copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        """Copy one object to another key of the same store, keeping content type, metadata and SHA-256."""
        return self._copy(validate_key(src_key), validate_key(dst_key))

    def delete(self, key: str) -> None:
        """Delete the object under ``key``; deleting a missing key is not an error."""
        self._delete(validate_key(key))

    @abstractmethod
    def uri_for(self, key: str) -> str:
        """The full URI of ``key`` in this store (``s3://bucket/prefix/key`` or ``file:///root/key``)."""

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def _head(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def _get(self, key: str, max_bytes: int | None) -> bytes: ...

    @abstractmethod
    def _put(
        self, key: str, data: bytes | Path, content_type: str, metadata: dict[str, str], if_absent: bool
    ) -> ObjectInfo: ...

    @abstractmethod
    def _copy(self, src_key: str, dst_key: str) -> ObjectInfo: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"
