"""The SQL asset catalogue: what exists, where it came from, how good it is, who reviewed it.

* `storage.catalogue.models` -- the tables (SQLAlchemy 2.0 typed ORM) and the status enums.
* `storage.catalogue.service` -- `Catalogue`, the service layer (writes, review transitions, queries).
* `storage.catalogue.records` -- the frozen dataclasses it returns, and `to_jsonable` for JSON output.
* `storage.catalogue.settings` -- the URL setting (``ASSET3D_CATALOGUE_URL``), engines, redaction.
* `storage.catalogue.errors` -- `CatalogueError` and subclasses, each with a ``reason``.

The schema is managed by Alembic (``migrations/``; ``asset3d db upgrade``). See docs/catalogue.md.
"""

from storage.catalogue.errors import (
    CatalogueError,
    CatalogueUnavailable,
    InvalidInput,
    NotFound,
    TransitionRefused,
)
from storage.catalogue.models import AssetStatus, Base, ReviewDecision, RunStatus
from storage.catalogue.records import (
    AssetDetail,
    AssetRecord,
    ConvertedPhoto,
    Distribution,
    FailureRecord,
    MetricFilter,
    MetricRecord,
    PhotoRecord,
    ProductRecord,
    ReviewRecord,
    RunRecord,
    to_jsonable,
)
from storage.catalogue.service import (
    PIPELINE_TRANSITIONS,
    REVIEW_TRANSITIONS,
    Catalogue,
    conversion_key,
    params_hash,
)
from storage.catalogue.settings import (
    DEFAULT_URL,
    ENV_URL,
    catalogue_url,
    make_engine,
    redact_secrets,
    redact_url,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "PIPELINE_TRANSITIONS",
    "REVIEW_TRANSITIONS",
    "AssetDetail",
    "AssetRecord",
    "AssetStatus",
    "Base",
    "Catalogue",
    "CatalogueError",
    "ConvertedPhoto",
    "CatalogueUnavailable",
    "Distribution",
    "FailureRecord",
    "InvalidInput",
    "MetricFilter",
    "MetricRecord",
    "NotFound",
    "PhotoRecord",
    "ProductRecord",
    "ReviewDecision",
    "ReviewRecord",
    "RunRecord",
    "RunStatus",
    "TransitionRefused",
    "catalogue_url",
    "conversion_key",
    "make_engine",
    "params_hash",
    "redact_secrets",
    "redact_url",
    "to_jsonable",
]
