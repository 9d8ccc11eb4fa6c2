"""What went wrong at which stage, and whether trying again can help.

Every stage raises the error type of the package it calls (`intake.IntakeError`, `meshing.MeshingError`,
`storage.StorageError`, `storage.catalogue.CatalogueError`, `triposr.ModelNotAvailable`) or a
`StageError` of its own. `describe` turns any of them into ``(reason, message)`` for the catalogue's
failure rows; `is_transient` says whether a retry can succeed (the tasks' retry condition).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

#: Storage and catalogue reasons that mean "try again later", never "this photo is bad".
TRANSIENT_REASONS = frozenset({"server_error", "throttled", "connection", "transient", "unreachable"})


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
    flag = getattr(exc, "transient", None)
    if isinstance(flag, bool):
        return flag
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
    """``(reason, message)`` of any stage error, for failure rows and summaries."""
    reason = getattr(exc, "reason", None)
    if reason is not None and not isinstance(reason, str | int):
        reason = getattr(reason, "value", str(reason))
    if reason is None:
        if is_transient(exc):
            reason = "transient"
        elif type(exc).__name__ == "ModelNotAvailable":
            reason = "model_unavailable"
        else:
            reason = type(exc).__name__.lower()
    message = str(exc) or type(exc).__name__
    return str(reason), message
