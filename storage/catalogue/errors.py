"""The catalogue's exceptions: one base class with a machine-readable ``reason``.

::

    CatalogueError                reason: str
    +-- NotFound                  reason "not_found": unknown asset, photo, run or SKU
    +-- TransitionRefused         reason e.g. "comment_required", "failed_asset", "superseded", "no_change"
    +-- InvalidInput              reason "invalid_input" / "invalid_metric": a malformed argument
    +-- CatalogueUnavailable      reason "unreachable" / "not_migrated" / "bad_url"; ``transient`` when unreachable

Messages never contain a database password (URLs are shown redacted).
"""

from __future__ import annotations


class CatalogueError(Exception):
    """Base class of catalogue errors; ``reason`` is machine-readable, the message names the item and cause."""

    default_reason = "catalogue_error"
    transient = False

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason: str = reason or self.default_reason


class NotFound(CatalogueError):
    """An id or SKU that is not in the catalogue."""

    default_reason = "not_found"


class TransitionRefused(CatalogueError):
    """A status change the rules do not allow (see docs/catalogue.md)."""

    default_reason = "transition_refused"


class InvalidInput(CatalogueError, ValueError):
    """A malformed argument: not a sha256, a non-finite metric, an empty reviewer name, ..."""

    default_reason = "invalid_input"


class CatalogueUnavailable(CatalogueError):
    """The database cannot be reached, has no schema yet, or its URL is malformed."""

    default_reason = "unreachable"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.transient = self.reason == "unreachable"
