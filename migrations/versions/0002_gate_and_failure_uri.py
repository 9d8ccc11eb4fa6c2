"""The gate's verdict on each asset, and the photo URI on every failure row.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

* ``assets.gate``: JSON ``{"decision", "reasons": [{"rule", "threshold", "value", "message"}], "intake": {...}}``,
  what `asset3d catalogue show` and the review app print for a held asset (NULL for assets recorded earlier);
* ``failures.photo_uri``: the photo a failure concerns, also when its bytes were never read (so no photo row
  exists); readers no longer recover it from the message.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.add_column(sa.Column("gate", sa.JSON(), nullable=True))
    with op.batch_alter_table("failures") as batch:
        batch.add_column(sa.Column("photo_uri", sa.String(length=2048), nullable=True))
    op.create_index(op.f("ix_failures_photo_uri"), "failures", ["photo_uri"])
    # rows written before this revision: the URI of their photo row, where they have one
    op.execute(
        "UPDATE failures SET photo_uri = (SELECT photos.uri FROM photos WHERE photos.id = failures.photo_id) "
        "WHERE photo_id IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_failures_photo_uri"), table_name="failures")
    with op.batch_alter_table("failures") as batch:
        batch.drop_column("photo_uri")
    with op.batch_alter_table("assets") as batch:
        batch.drop_column("gate")
