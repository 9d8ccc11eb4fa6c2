"""What went wrong at which stage, and whether trying again can help: one protocol for every error.

Every error the pipeline records speaks `ReasonedError`: a machine-readable ``reason`` and a ``transient``
flag. The libraries' families all do (`intake.IntakeError`, `meshing.MeshingError`, `storage.StorageError`,
`storage.catalogue.CatalogueError`, `triposr.ModelNotAvailable` / `UnsafeCheckpoint`,
`asset3d.pipeline.settings.SettingsError`), and the pipeline's own refusals are `StageError`.
`describe` and `is_transient` dispatch on the protocol only; an exception outside it (a bug, or a driver
error nobody mapped) is ``unexpected_error``, or ``transient`` when it is a connection or timeout error.
"""

from __future__ import annotations

import errno
import socket
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ReasonedError(Protocol):
    """The protocol: ``reason`` (a string, or a `StrEnum` member) and ``transient`` (a retry may succeed)."""

    reason: Any
    transient: bool


class StageError(Exception):
    """A refusal of one pipeline stage that no other package's error type describes.

    Parameters
    ----------
    stage
        ``discover``, ``fetch``, ``intake``, ``reconstruct``, ``build``, ``publish`` or ``record``.
    reason
        Machine-readable cause (``empty_surface``, ``bad_sku``, ...).
    message
        Names the photo and the cause.
    transient
        True when a retry may succeed.
    facts
        What is known of the photo when the bytes were read before the refusal (a
        `asset3d.pipeline.photos.PhotoFacts`), so the catalogue can name the photo.
    """

    def __init__(self, stage: str, reason: str, message: str, *, transient: bool = False, facts: Any = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.reason = reason
        self.message = message
        self.transient = transient
        self.facts = facts

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its keyword arguments (cached task results)
        return (_rebuild, (self.stage, self.reason, self.message, self.transient, self.facts))


def _rebuild(stage: str, reason: str, message: str, transient: bool, facts: Any) -> StageError:
    return StageError(stage, reason, message, transient=transient, facts=facts)


def is_transient(exc: BaseException) -> bool:
    """True for failures a retry can fix: S3 5xx / throttling / resets, a lost database, timeouts.

    A 403, a missing object, a corrupt photo, a validation failure or a bad setting is never transient.
    """
    if isinstance(exc, ReasonedError):
        return bool(exc.transient)
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.ECONNREFUSED, errno.EPIPE, errno.ETIMEDOUT):
        return True
    try:
        from sqlalchemy.exc import DBAPIError, DisconnectionError
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        return False
    if isinstance(exc, DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def describe(exc: BaseException) -> tuple[str, str]:
    """``(reason, message)`` of any error, for failure rows and summaries."""
    if isinstance(exc, ReasonedError):
        reason = str(getattr(exc.reason, "value", exc.reason))
        message = str(exc) or reason
    else:
        reason = "transient" if is_transient(exc) else "unexpected_error"
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return reason, message
