"""The catalogue's tables, as a SQLAlchemy 2.0 typed ORM (``Mapped[...]`` + ``mapped_column``).

::

    products 1--* photos 1--* assets *--1 runs
                     |           |--* metrics         (asset, name) unique; value is a float, queryable
                     |           |--* review_events   every review decision, with from/to status
                     *--* failures *--1 runs          a stage that failed for a photo in a run

* ``(assets.photo_id, assets.conversion_key)`` is unique: the key is sha256 of (photo sha256, parameters
  hash, weights sha256), see `storage.catalogue.service.conversion_key`; two photos with the same bytes (two
  SKUs) share the key and have an asset each. ``(photo_id, version)`` is unique too: a new model or new
  parameters for the same photo give version N+1.
* ``assets.status`` is constrained (CHECK) to `AssetStatus`; ``runs.status`` to `RunStatus`.
* All times are timezone-aware UTC (`UTCDateTime`), on SQLite as well.
* `Base.metadata` carries a naming convention, so constraints have stable names in migrations.

The migrations in ``migrations/versions`` must describe exactly these models: ``asset3d db check`` fails
otherwise. Change a model, then add a revision.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Dialect,
    Double,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import DateTime as _DateTime
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class AssetStatus(enum.StrEnum):
    """Where an asset stands. See docs/catalogue.md for the allowed transitions."""

    pending = "pending"  # recorded, quality gate not applied yet
    auto_approved = "auto_approved"  # passed the automatic quality gate
    needs_review = "needs_review"  # the gate wants a person to look
    approved = "approved"  # a reviewer approved it
    rejected = "rejected"  # a reviewer rejected it
    failed = "failed"  # the conversion or its validation failed
    superseded = "superseded"  # a newer version of the same photo was published


class RunStatus(enum.StrEnum):
    """The state of one conversion run (one flow run)."""

    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class ReviewDecision(enum.StrEnum):
    """What a reviewer decided."""

    approve = "approve"
    reject = "reject"
    request_review = "request_review"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and always returns aware UTC datetimes (SQLite too)."""

    impl = _DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the catalogue stores timezone-aware times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        validate_strings=True,
        values_callable=lambda e: [m.value for m in e],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class Product(Base):
    """A product of the catalogue, by SKU; real-world size in metres scales its assets."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(128), unique=True)
    title: Mapped[str | None] = mapped_column(String(512))
    width_m: Mapped[float | None] = mapped_column(Double)
    height_m: Mapped[float | None] = mapped_column(Double)
    depth_m: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    photos: Mapped[list[Photo]] = relationship(back_populates="product")


class Photo(Base):
    """A source photo in a bucket; ``sha256`` identifies its bytes, ``uri`` its place."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    uri: Mapped[str] = mapped_column(String(2048), unique=True)
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(1024))
    etag: Mapped[str | None] = mapped_column(String(128))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)

    product: Mapped[Product] = relationship(back_populates="photos")
    assets: Mapped[list[Asset]] = relationship(back_populates="photo", foreign_keys="Asset.photo_id")


class Run(Base):
    """One conversion run: which flow run, model, weights, parameters and code produced the assets."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    flow_run_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[RunStatus] = mapped_column(_enum(RunStatus, "run_status"), default=RunStatus.running)
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_id: Mapped[str] = mapped_column(String(256))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    pipeline_version: Mapped[str] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)


class Asset(Base):
    """One GLB made from one photo with one model and one set of parameters."""

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("photo_id", "version"),
        UniqueConstraint("photo_id", "conversion_key"),
        Index("ix_assets_status_created_at", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    conversion_key: Mapped[str] = mapped_column(String(64), index=True)
    photo_sha256: Mapped[str] = mapped_column(String(64))
    params_hash: Mapped[str] = mapped_column(String(64))
    weights_sha256: Mapped[str] = mapped_column(String(64))
    preset: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[AssetStatus] = mapped_column(_enum(AssetStatus, "asset_status"), default=AssetStatus.pending)
    glb_uri: Mapped[str | None] = mapped_column(String(2048))
    glb_sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    faces: Mapped[int | None] = mapped_column(Integer)
    vertices: Mapped[int | None] = mapped_column(Integer)
    preview_uris: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column()
    superseded_by_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    #: the review gate's verdict: decision, reasons (rule, threshold, value, message), intake summary
    gate: Mapped[dict[str, Any] | None] = mapped_column()

    photo: Mapped[Photo] = relationship(back_populates="assets", foreign_keys=[photo_id])
    run: Mapped[Run | None] = relationship()
    metrics: Mapped[list[Metric]] = relationship(back_populates="asset", order_by="Metric.name")
    reviews: Mapped[list[ReviewEvent]] = relationship(back_populates="asset", order_by="ReviewEvent.id")


class Metric(Base):
    """One quality number of one asset (e.g. ``faces``, ``chamfer_l1``), queryable by threshold."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("asset_id", "name"), Index("ix_metrics_name_value", "name", "value"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Double)
    unit: Mapped[str | None] = mapped_column(String(16))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)

    asset: Mapped[Asset] = relationship(back_populates="metrics")


class ReviewEvent(Base):
    """One review decision; written in the same transaction as the status change it caused."""

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id"), index=True)
    reviewer: Mapped[str] = mapped_column(String(128))
    decision: Mapped[ReviewDecision] = mapped_column(_enum(ReviewDecision, "review_decision"))
    from_status: Mapped[AssetStatus] = mapped_column(_enum(AssetStatus, "from_status"))
    to_status: Mapped[AssetStatus] = mapped_column(_enum(AssetStatus, "to_status"))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    asset: Mapped[Asset] = relationship(back_populates="reviews")


class Lease(Base):
    """A conversion (by conversion key) claimed by a running run until ``expires_at``."""

    __tablename__ = "leases"

    conversion_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Failure(Base):
    """A stage that failed for a photo (or a whole run), with a machine-readable reason."""

    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("photos.id"), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), index=True)
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("assets.id"))
    photo_uri: Mapped[str | None] = mapped_column(String(2048), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
