"""Which photos a run may read: a batch's source must lie under one of the configured sources.

A flow run's ``source`` comes from whoever started it: an ``asset3d.batch.arrived`` event, a run of the
deployment created through the API, a fan-out parent. None of them is trusted to name what a worker reads
and publishes; the worker's own settings are (``allowed_sources``, else its ``source``). This module is the
one check, pure and without Prefect:

1. each URI is resolved to a canonical `Location` (``s3``: bucket and the key's path segments, refusing
   ``.``/``..`` segments and empty ones; a local path or ``file://`` URI: the absolute path with symlinks
   and ``..`` resolved, so a link or a climb cannot leave the folder);
2. a location lies under an allowed one when the scheme and bucket are equal and the allowed segments are
   a prefix of its segments (``s3://shop/incoming`` allows ``s3://shop/incoming/batch-1/``, never
   ``s3://shop/incoming-old/``);
3. `check_source` refuses the whole batch at the first URI outside, naming it; nothing is read.

::

    from asset3d.pipeline.sources import check_source

    check_source("s3://shop/incoming/batch-1/", ["s3://shop/incoming"])          # passes
    check_source(["s3://shop/incoming/a/1.png", "/etc/passwd"], ["s3://shop/incoming"])  # SourceRefused
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

#: One batch item: a URI, or ``{"uri": ..., "sku": ...}`` (what `convert_batch` accepts).
SourceItem = str | Mapping[str, object]


class SourceRefused(ValueError):
    """A source outside every allowed source, or one that is not a store URI; the message names it."""

    reason = "source_refused"
    transient = False


@dataclass(frozen=True)
class Location:
    """A store location in canonical form: ``scheme`` (``s3`` or ``file``), ``bucket`` (S3 only) and path segments."""

    scheme: str
    bucket: str
    parts: tuple[str, ...]

    def within(self, other: Location) -> bool:
        """True when this location is ``other`` or lies below it."""
        return (
            self.scheme == other.scheme
            and self.bucket == other.bucket
            and self.parts[: len(other.parts)] == other.parts
        )  # fmt: skip

    @property
    def uri(self) -> str:
        """The location as a folder URI, with a trailing ``/`` (``s3://bucket/a/b/``, ``file:///abs/``)."""
        path = "".join(f"{p}/" for p in self.parts)
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{path}"
        return "file:///" + path


def locate(uri: str | Path) -> Location:
    """The canonical `Location` of a store URI or a local path.

    Raises
    ------
    SourceRefused
        An empty URI, another scheme, an S3 URI without a bucket, with a query, or with ``.``, ``..`` or
        empty segments in its key (S3 keeps them literally, so they could name keys that look elsewhere).
    """
    text = str(uri).strip()
    if not text:
        raise SourceRefused("empty source")
    if "://" not in text:
        return _local(Path(text))
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise SourceRefused(f"source {text!r}: use file:///absolute/path")
        return _local(Path(unquote(parts.path)))
    if scheme != "s3":
        raise SourceRefused(f"source {text!r}: unsupported scheme {scheme!r} (s3://, file:// or a folder)")
    if not parts.netloc:
        raise SourceRefused(f"source {text!r}: no bucket")
    if parts.query or parts.fragment:
        raise SourceRefused(f"source {text!r}: a store URI has no query or fragment")
    key = parts.path.lstrip("/")
    segments = key.split("/") if key else []
    if segments and segments[-1] == "":
        segments.pop()  # one trailing slash names the same folder
    if any(s in ("", ".", "..") for s in segments):
        raise SourceRefused(f"source {text!r}: empty, '.' or '..' segments in the key")
    return Location("s3", parts.netloc, tuple(segments))


def _local(path: Path) -> Location:
    resolved = path.expanduser().resolve(strict=False)  # symlinks and '..' resolved: what the worker would read
    return Location("file", "", PurePosixPath(resolved.as_posix()).parts[1:])


def item_uri(item: SourceItem) -> str:
    """The URI of one batch item (a string, or a mapping with ``uri``)."""
    if isinstance(item, Mapping):
        uri = item.get("uri")
        if not isinstance(uri, str):
            raise SourceRefused(f"batch item {dict(item)!r}: no 'uri'")
        return uri
    return str(item)


def allowed_location(uri: str | Path, allowed: Sequence[Location]) -> Location | None:
    """The allowed location ``uri`` lies under (the longest one), or None."""
    here = locate(uri)
    inside = [a for a in allowed if here.within(a)]
    return max(inside, key=lambda a: len(a.parts)) if inside else None


def check_source(source: str | Path | Sequence[SourceItem], allowed: Iterable[str | Path]) -> None:
    """Refuse ``source`` (a prefix, a folder, or a list of photo URIs) unless all of it lies under ``allowed``.

    Raises
    ------
    SourceRefused
        No allowed source configured, a malformed URI, or the first URI outside every allowed source.
    """
    roots = [locate(a) for a in allowed]
    if not roots:
        raise SourceRefused("no allowed source is configured (set ASSET3D_ALLOWED_SOURCES or ASSET3D_SOURCE)")
    items: Sequence[SourceItem] = [str(source)] if isinstance(source, str | Path) else source
    for item in items:
        uri = item_uri(item)
        if allowed_location(uri, roots) is None:
            names = ", ".join(r.uri for r in roots)
            raise SourceRefused(f"source {uri} is outside the allowed sources ({names})")


def batch_id(prefix: str) -> str:
    """A short stable name of a batch prefix (the event resource's id suffix), from its canonical URI."""
    try:
        canonical = locate(prefix).uri
    except SourceRefused:
        canonical = prefix
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def batch_of(uri: str, allowed: Sequence[Location], depth: int) -> str | None:
    """The batch prefix of a photo URI: its allowed source plus the first ``depth`` folders below it.

    Returns None when the photo lies under no allowed source. A photo directly in the source (or with
    fewer folders than ``depth``) belongs to the batch of the folders it has.
    """
    root = allowed_location(uri, allowed)
    if root is None:
        return None
    here = locate(uri)
    folders = here.parts[len(root.parts) : -1][:depth]
    return Location(root.scheme, root.bucket, root.parts + folders).uri


def fnmatch_prefix(location: Location) -> str:
    """A glob (Prefect's event-label matching) for every URI at or below ``location``, special characters escaped."""
    escaped = "".join(f"[{c}]" if c in "*?[]" else c for c in location.uri)
    return escaped + "*"
