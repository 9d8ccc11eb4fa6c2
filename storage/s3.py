"""The S3 backend of `storage.objects.ObjectStore` (boto3).

Configuration comes from the standard AWS chain, nothing of our own: the endpoint from
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (MinIO, Ceph, a local moto server), the profile from
``AWS_PROFILE``, the region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, credentials from the
environment, the shared files or an instance role. Constructor arguments override them for one store.

* Retries: botocore's ``adaptive`` mode (exponential back-off plus client-side rate limiting on
  throttling), ``max_attempts`` attempts in all (default `DEFAULT_MAX_ATTEMPTS`, or ``AWS_MAX_ATTEMPTS``).
* Timeouts: `DEFAULT_CONNECT_TIMEOUT_S` to connect, `DEFAULT_READ_TIMEOUT_S` for each read of the socket
  (an answer, or the next bytes of a body, that does not come). They are sized with the pipeline's
  retries so that a stalled object fails within the fetch deadline: a call whose answer stalls waits
  ``max_attempts x read timeout`` plus botocore's back-off (2 x 10 s + under 1 s by default), and the
  task's 1 + 3 attempts of that, with their 2 + 4 + 8 s of delay, take about 100 s, under the default
  120 s (the deadline itself stops any retry that would end later: docs/reliability.md). A body cut short
  of its ``Content-Length`` and a read that timed out are transient (``incomplete_read``, ``timeout``).
* Uploads go through boto3's transfer manager: one ``PutObject`` below ``multipart_threshold``, a
  multipart upload above it. Every request carries a SHA-256 checksum (``ChecksumAlgorithm=SHA256``) that
  S3 verifies; the SHA-256 of the whole object is also stored as user metadata ``sha256`` and returned by
  `head` as ``info.sha256``.
* ``if_absent=True`` sends ``If-None-Match: *`` on ``PutObject`` / ``CompleteMultipartUpload``, so the
  existence check and the write are one atomic server-side step.
* ``copy`` is a server-side ``CopyObject`` (objects up to 5 GB).
* Errors become the `storage.errors` hierarchy: 404 -> `ObjectNotFound`, 412 -> `PreconditionFailed`,
  5xx, throttling, 409 conditional conflicts, timeouts and connection failures -> `TransientStorageError`,
  the rest -> `PermanentStorageError` with the S3 error code (lower-cased) as ``reason``.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.errors import (
    ObjectNotFound,
    ObjectTooLarge,
    PermanentStorageError,
    PreconditionFailed,
    StorageError,
    TransientStorageError,
)
from storage.objects import DEFAULT_CONTENT_TYPE, SHA256_METADATA_NAME, ObjectInfo, ObjectStore

T = TypeVar("T")

#: Objects at least this big are uploaded in parts (boto3's default, 8 MiB).
DEFAULT_MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: Attempts per request, retries included (botocore's default in adaptive mode is 3; boto3's legacy 5).
DEFAULT_MAX_ATTEMPTS = 2
#: Seconds to open a connection, and to wait for each read of the socket (botocore's defaults: 60 and 60).
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_READ_TIMEOUT_S = 10.0
#: Error codes S3 and S3-compatible servers use for "slow down".
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "SlowDown",
    }
)
#: Other error codes worth retrying (besides every 5xx answer).
TRANSIENT_CODES = THROTTLING_CODES | {
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "ConditionalRequestConflict",
}


def translate_error(err: Exception, key: str | None, where: str) -> StorageError:
    """Map a botocore exception to the `storage.errors` hierarchy.

    Parameters
    ----------
    err
        A `botocore.exceptions.ClientError` or `BotoCoreError`.
    key
        The key (or URI) the call concerned, for the message.
    where
        What was being done, e.g. ``"head s3://bucket/key"``.
    """
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = f"{where}: {code} (HTTP {status}) {error.get('Message', '')}".rstrip()
        if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return PermanentStorageError(message, reason=code.lower(), key=key)
        if status == 404 or code in ("NoSuchKey", "NotFound", "404"):
            return ObjectNotFound(message, key=key)
        if status == 412 or code == "PreconditionFailed":
            return PreconditionFailed(message, key=key)
        if status >= 500 or status == 429 or code in TRANSIENT_CODES:
            reason = "throttled" if code in THROTTLING_CODES or status == 429 else "server_error"
            return TransientStorageError(message, reason=reason, key=key)
        return PermanentStorageError(message, reason=code.lower(), key=key)
    if isinstance(err, ReadTimeoutError):
        return TransientStorageError(f"{where}: read timed out, no answer within the read timeout ({err})", reason="timeout", key=key)
    if isinstance(err, IncompleteReadError | ResponseStreamingError):
        return TransientStorageError(f"{where}: the body was cut short ({err})", reason="incomplete_read", key=key)
    if isinstance(err, BotoConnectionError | HTTPClientError):
        return TransientStorageError(f"{where}: {err}", reason="connection", key=key)
    return PermanentStorageError(f"{where}: {err}", reason="client_error", key=key)


def _strip_etag(etag: str) -> str:
    return etag.strip('"')


class S3Store(ObjectStore):
    """Objects in one S3 bucket, optionally under a key prefix.

    Parameters
    ----------
    bucket
        The bucket name.
    prefix
        Key prefix inside the bucket (``"incoming"`` stores key ``k`` as ``incoming/k``).
    endpoint_url, region_name, profile_name
        Override the standard configuration chain for this store.
    max_attempts
        Total attempts per request, retries included (botocore adaptive mode); default ``AWS_MAX_ATTEMPTS``,
        else `DEFAULT_MAX_ATTEMPTS`.
    multipart_threshold
        Upload in parts at and above this size; parts are this size too.
    connect_timeout, read_timeout
        Socket timeouts in seconds (see the module docstring for how they are sized).
    list_page_size
        Keys per ``ListObjectsV2`` page (S3's maximum and default is 1000).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        profile_name: str | None = None,
        max_attempts: int | None = None,
        multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout: float = DEFAULT_READ_TIMEOUT_S,
        list_page_size: int = 1000,
    ) -> None:
        if not bucket:
            raise PermanentStorageError("S3 store needs a bucket name", reason="unsupported_uri")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            from storage.objects import validate_key

            validate_key(self.prefix)
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        attempts = max_attempts if max_attempts is not None else int(os.environ.get("AWS_MAX_ATTEMPTS", str(DEFAULT_MAX_ATTEMPTS)))
        config = Config(
            retries={"mode": "adaptive", "total_max_attempts": attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Checksums only where we ask for them (SHA-256 on uploads); keeps S3-compatible servers happy.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._session = boto3.session.Session(profile_name=profile_name, region_name=region_name)
        self._config = config
        self._client = self._session.client("s3", endpoint_url=endpoint_url, config=config)
        self._if_absent: Any = None
        self._list_page_size = list_page_size
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold, use_threads=True
        )

    # -- helpers -----------------------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """The endpoint this store talks to (resolved from the configuration chain)."""
        return str(self._client.meta.endpoint_url)

    @property
    def _if_absent_client(self) -> Any:
        """A twin client whose writes are conditional (``If-None-Match: *``), for ``put(..., if_absent=True)``.

        The transfer manager does not pass ``IfNoneMatch`` through, so this client adds the header to
        every ``PutObject`` and ``CompleteMultipartUpload`` it sends.
        """
        if self._if_absent is None:
            client = self._session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
            for op in ("PutObject", "CompleteMultipartUpload"):
                client.meta.events.register(f"before-parameter-build.s3.{op}", _add_if_none_match)
            self._if_absent = client
        return self._if_absent

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def _call(self, where: str, key: str | None, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (ClientError, BotoCoreError) as err:
            raise translate_error(err, key, f"{where} {self.uri_for(key) if key else self.uri}") from err

    def check_access(self) -> None:
        """Fail fast when this store cannot be used: no credentials, the endpoint does not answer, the bucket
        does not exist or refuses us (one ``HeadBucket``; nothing is read or written).

        Raises
        ------
        PermanentStorageError
            ``no_credentials``, ``nosuchbucket``, ``accessdenied``, ... naming the bucket and the cause.
        TransientStorageError
            ``connection``: the endpoint did not answer.
        """
        if self._session.get_credentials() is None:
            raise PermanentStorageError(
                f"{self.uri}: no AWS credentials found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                reason="no_credentials",
            )
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as err:
            code = str(err.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise PermanentStorageError(f"{self.uri}: bucket {self.bucket!r} does not exist at {self.endpoint_url}", reason="nosuchbucket") from None
            if code in ("403", "AccessDenied", "Forbidden"):
                raise PermanentStorageError(f"{self.uri}: access to bucket {self.bucket!r} denied", reason="accessdenied") from None
            raise translate_error(err, None, f"check {self.uri}") from None
        except BotoCoreError as err:
            raise translate_error(err, None, f"check {self.uri} at {self.endpoint_url}") from None

    # -- operations --------------------------------------------------------------------------------------

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        full_prefix = self._full(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full_prefix, PaginationConfig={"PageSize": self._list_page_size}
        )
        iterator = iter(pages)
        while True:
            page = self._call("list", None, lambda: next(iterator, None))
            if page is None:
                return
            for obj in page.get("Contents", []):
                yield ObjectInfo(
                    key=obj["Key"][strip:],
                    size=int(obj["Size"]),
                    etag=_strip_etag(obj["ETag"]),
                    last_modified=obj["LastModified"].astimezone(UTC),
                )

    def _head(self, key: str) -> ObjectInfo:
        r = self._call("head", key, lambda: self._client.head_object(Bucket=self.bucket, Key=self._full(key)))
        metadata = dict(r.get("Metadata", {}))
        sha = metadata.pop(SHA256_METADATA_NAME, None)
        return ObjectInfo(
            key=key,
            size=int(r["ContentLength"]),
            etag=_strip_etag(r["ETag"]),
            last_modified=r["LastModified"].astimezone(UTC),
            content_type=r.get("ContentType") or DEFAULT_CONTENT_TYPE,
            metadata=metadata,
            sha256=sha,
        )

    def _get(self, key: str, max_bytes: int | None) -> bytes:
        r = self._call("get", key, lambda: self._client.get_object(Bucket=self.bucket, Key=self._full(key)))
        body = r["Body"]
        try:
            size = int(r["ContentLength"])
            if max_bytes is not None and size > max_bytes:
                raise ObjectTooLarge(
                    f"object {self.uri_for(key)} is {size} bytes, more than the cap of {max_bytes}", key=key
                )
            return self._call("get", key, body.read)
        finally:
            body.close()

    def _put(
        self, key: str, data: bytes | Path, content_type: str, metadata: dict[str, str], if_absent: bool
    ) -> ObjectInfo:
        sha = hashlib.sha256()
        if isinstance(data, Path):
            with data.open("rb") as f:
                while chunk := f.read(1 << 20):
                    sha.update(chunk)
        else:
            sha.update(data)
        digest = sha.hexdigest()
        extra: dict[str, Any] = {
            "ContentType": content_type,
            "Metadata": {**metadata, SHA256_METADATA_NAME: digest},
            "ChecksumAlgorithm": "SHA256",
        }
        client = self._if_absent_client if if_absent else self._client

        def upload() -> None:
            if isinstance(data, Path):
                with data.open("rb") as f:
                    client.upload_fileobj(f, self.bucket, self._full(key), ExtraArgs=extra, Config=self._transfer)
            else:
                client.upload_fileobj(
                    io.BytesIO(data), self.bucket, self._full(key), ExtraArgs=extra, Config=self._transfer
                )

        self._call("put", key, upload)
        return self._head(key)

    def _copy(self, src_key: str, dst_key: str) -> ObjectInfo:
        self._call(
            "copy",
            src_key,
            lambda: self._client.copy_object(
                Bucket=self.bucket,
                Key=self._full(dst_key),
                CopySource={"Bucket": self.bucket, "Key": self._full(src_key)},
                MetadataDirective="COPY",
            ),
        )
        return self._head(dst_key)

    def _delete(self, key: str) -> None:
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=self._full(key)))


def _add_if_none_match(params: dict[str, Any], **_: Any) -> None:
    params["IfNoneMatch"] = "*"
