"""From a URI to its backend: ``s3://bucket/prefix`` (`storage.s3`), ``file:///abs`` or a plain path
(`storage.local`). The one place that knows every backend; `storage.objects` knows none of them.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage.errors import PermanentStorageError
from storage.local import LocalStore
from storage.objects import ObjectStore


def open_store(uri: str | Path) -> ObjectStore:
    """Open the store a URI names.

    Parameters
    ----------
    uri
        ``s3://bucket`` or ``s3://bucket/prefix`` (boto3 with the standard configuration chain:
        ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE``, ``AWS_REGION``, credentials),
        ``file:///absolute/path``, or a plain filesystem path (relative paths resolve against the current
        directory).

    Raises
    ------
    PermanentStorageError
        ``reason="unsupported_uri"`` for any other scheme, or a malformed URI.
    """
    text = str(uri)
    if not text:
        raise PermanentStorageError("store URI is empty", reason="unsupported_uri")
    if "://" not in text:
        return LocalStore(Path(text))
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise PermanentStorageError(f"store URI {text!r} has no bucket", reason="unsupported_uri", key=text)
        if parts.query or parts.fragment:
            raise PermanentStorageError(f"store URI {text!r}: query and fragment are not supported", reason="unsupported_uri", key=text)
        from storage.s3 import S3Store

        return S3Store(parts.netloc, parts.path.strip("/"))
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise PermanentStorageError(
                f"store URI {text!r}: remote file hosts are not supported (use file:///abs/path)",
                reason="unsupported_uri",
                key=text,
            )
        return LocalStore(Path(unquote(parts.path)))
    raise PermanentStorageError(
        f"store URI {text!r}: unsupported scheme {scheme!r} (use s3://, file:// or a plain path)",
        reason="unsupported_uri",
        key=text,
    )
