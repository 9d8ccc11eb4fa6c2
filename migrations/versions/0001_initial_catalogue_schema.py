"""Initial catalogue schema: products, photos, runs, assets, metrics, review events, failures.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Frozen on purpose: types and status lists are spelled out here, not imported from the models, so this
revision keeps meaning what it meant when later revisions change the models.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ASSET_STATUSES = ("pending", "auto_approved", "needs_review", "approved", "rejected", "failed", "superseded")
RUN_STATUSES = ("running", "completed", "failed", "cancelled")
REVIEW_DECISIONS = ("approve", "reject", "request_review")


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _status(column: str, values: Sequence[str], name: str) -> sa.Column:
    enum = sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)
    return sa.Column(column, enum, nullable=False)


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=False),
        sa.Column("title", sa.String(length=512), nullable=True),
        sa.Column("width_m", sa.Double(), nullable=True),
        sa.Column("height_m", sa.Double(), nullable=True),
        sa.Column("depth_m", sa.Double(), nullable=True),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("sku", name=op.f("uq_products_sku")),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        _when("started_at"),
        _when("finished_at", nullable=True),
        _status("status", RUN_STATUSES, "run_status"),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("model_id", sa.String(length=256), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("pipeline_version", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("flow_run_id", name=op.f("uq_runs_flow_run_id")),
    )
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.String(length=2048), nullable=False),
        sa.Column("bucket", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("etag", sa.String(length=128), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        _when("first_seen"),
        _when("last_seen"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_photos_product_id_products")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photos")),
        sa.UniqueConstraint("uri", name=op.f("uq_photos_uri")),
    )
    op.create_index(op.f("ix_photos_product_id"), "photos", ["product_id"])
    op.create_index(op.f("ix_photos_sha256"), "photos", ["sha256"])
    op.create_table(
        "assets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("conversion_key", sa.String(length=64), nullable=False),
        sa.Column("photo_sha256", sa.String(length=64), nullable=False),
        sa.Column("params_hash", sa.String(length=64), nullable=False),
        sa.Column("weights_sha256", sa.String(length=64), nullable=False),
        sa.Column("preset", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _status("status", ASSET_STATUSES, "asset_status"),
        sa.Column("glb_uri", sa.String(length=2048), nullable=True),
        sa.Column("glb_sha256", sa.String(length=64), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("faces", sa.Integer(), nullable=True),
        sa.Column("vertices", sa.Integer(), nullable=True),
        sa.Column("preview_uris", sa.JSON(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        _when("published_at", nullable=True),
        sa.Column("superseded_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], name=op.f("fk_assets_photo_id_photos")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_assets_run_id_runs")),
        sa.ForeignKeyConstraint(["superseded_by_id"], ["assets.id"], name=op.f("fk_assets_superseded_by_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_assets")),
        sa.UniqueConstraint("conversion_key", name=op.f("uq_assets_conversion_key")),
        sa.UniqueConstraint("photo_id", "version", name=op.f("uq_assets_photo_id_version")),
    )
    op.create_index(op.f("ix_assets_photo_id"), "assets", ["photo_id"])
    op.create_index(op.f("ix_assets_run_id"), "assets", ["run_id"])
    op.create_index("ix_assets_status_created_at", "assets", ["status", "created_at"])
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("photo_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("asset_id", sa.Integer(), nullable=True),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_failures_asset_id_assets")),
        sa.ForeignKeyConstraint(["photo_id"], ["photos.id"], name=op.f("fk_failures_photo_id_photos")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_failures_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_failures")),
    )
    op.create_index(op.f("ix_failures_created_at"), "failures", ["created_at"])
    op.create_index(op.f("ix_failures_photo_id"), "failures", ["photo_id"])
    op.create_index(op.f("ix_failures_run_id"), "failures", ["run_id"])
    op.create_table(
        "metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=True),
        _when("recorded_at"),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_metrics_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metrics")),
        sa.UniqueConstraint("asset_id", "name", name=op.f("uq_metrics_asset_id_name")),
    )
    op.create_index("ix_metrics_name_value", "metrics", ["name", "value"])
    op.create_table(
        "review_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=128), nullable=False),
        _status("decision", REVIEW_DECISIONS, "review_decision"),
        _status("from_status", ASSET_STATUSES, "from_status"),
        _status("to_status", ASSET_STATUSES, "to_status"),
        sa.Column("comment", sa.Text(), nullable=True),
        _when("created_at"),
        sa.ForeignKeyConstraint(["asset_id"], ["assets.id"], name=op.f("fk_review_events_asset_id_assets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_events")),
    )
    op.create_index(op.f("ix_review_events_asset_id"), "review_events", ["asset_id"])


def downgrade() -> None:
    for table in ("review_events", "metrics", "failures", "assets", "photos", "runs", "products"):
        op.drop_table(table)  # indexes and constraints go with their table
