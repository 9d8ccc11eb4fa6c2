"""The exceptions of the object stores.

Every failure of an object store is a `StorageError` carrying a machine-readable `reason`, the `key` (or
URI) it concerns, and a `transient` flag. Callers that retry (the pipeline's tasks) retry only when
`err.transient` is true: S3 5xx answers, throttling, timeouts and connection resets. Everything else is
permanent and retrying it would give the same answer.

Hierarchy::

    StorageError                      reason: str, key: str | None, transient: bool
    +-- InvalidKey                    reason "invalid_key": the key was refused before any I/O
    +-- ObjectNotFound                reason "not_found"
    +-- PreconditionFailed            reason "precondition_failed": put(..., if_absent=True) on an existing key
    +-- ObjectTooLarge                reason "too_large": get(..., max_bytes=N) on a bigger object
    +-- PermanentStorageError         any other permanent failure (access denied, no such bucket, bad URI)
    +-- TransientStorageError         transient=True: worth retrying with back-off
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of all object-store errors.

    Parameters
    ----------
    message
        Human-readable explanation naming the item and the cause.
    reason
        Machine-readable cause (``"not_found"``, ``"invalid_key"``, ``"throttled"``, ...).
    key
        The key or URI concerned, when there is one.
    """

    transient: bool = False
    default_reason: str = "storage_error"

    def __init__(self, message: str, *, reason: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.reason: str = reason or self.default_reason
        self.key: str | None = key


class InvalidKey(StorageError, ValueError):
    """A key (or prefix) that could escape the store's root or is not a valid object name."""

    default_reason = "invalid_key"


class ObjectNotFound(StorageError, KeyError):
    """No object under this key."""

    default_reason = "not_found"

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class PreconditionFailed(StorageError):
    """A conditional write was refused (the key already exists)."""

    default_reason = "precondition_failed"


class ObjectTooLarge(StorageError):
    """The object is larger than the caller's `max_bytes` cap."""

    default_reason = "too_large"


class PermanentStorageError(StorageError):
    """A failure that retrying will not fix (access denied, missing bucket, unsupported URI, ...)."""

    default_reason = "permanent"


class TransientStorageError(StorageError):
    """A failure worth retrying: server errors, throttling, timeouts, connection resets."""

    transient = True
    default_reason = "transient"
