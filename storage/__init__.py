"""Where the pipeline's bytes and records live: object stores and the SQL asset catalogue.

* `storage.objects` -- the `ObjectStore` interface and key rules; `storage.stores` -- `open_store(uri)` for ``s3://bucket/prefix``,
  ``file:///abs/path`` or a plain path; backends in `storage.s3` and `storage.local`.
* `storage.errors` -- `StorageError` and its subclasses; ``err.transient`` says whether to retry.
* `storage.catalogue` -- the SQL catalogue (SQLAlchemy 2.0 ORM + the `Catalogue` service layer); import it
  explicitly, importing `storage` alone does not load SQLAlchemy.

Nothing here imports Prefect.
"""

from storage.errors import (
    InvalidKey,
    ObjectNotFound,
    ObjectTooLarge,
    PermanentStorageError,
    PreconditionFailed,
    StorageError,
    TransientStorageError,
)
from storage.objects import ObjectInfo, ObjectStore, validate_key, validate_prefix
from storage.stores import open_store

__all__ = [
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectTooLarge",
    "PermanentStorageError",
    "PreconditionFailed",
    "StorageError",
    "TransientStorageError",
    "open_store",
    "validate_key",
    "validate_prefix",
]
