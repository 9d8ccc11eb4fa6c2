"""Which process runs a conversion run, and leases on conversions in progress.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

* ``runs.pid``: the process of a run started without Prefect (``asset3d convert``), with ``host`` it tells
  `asset3d gc` whether a run still marked ``running`` lost its process;
* ``leases``: a photo's conversion claimed by a running run until ``expires_at``, so an overlapping run does
  not convert the same photo again;
* ``assets``: the conversion key is unique per photo, no longer in the whole table: two photos with the same
  bytes (the same product photo under two SKUs) are two assets of one shared computation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
    op.create_table(
        "leases",
        sa.Column("conversion_key", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_leases_run_id_runs")),
        sa.PrimaryKeyConstraint("conversion_key", name=op.f("pk_leases")),
    )
    op.create_index(op.f("ix_leases_expires_at"), "leases", ["expires_at"])
    with op.batch_alter_table("assets") as batch:
        batch.drop_constraint("uq_assets_conversion_key", type_="unique")
        batch.create_unique_constraint("uq_assets_photo_id_conversion_key", ["photo_id", "conversion_key"])
        batch.create_index("ix_assets_conversion_key", ["conversion_key"])


def downgrade() -> None:
    with op.batch_alter_table("assets") as batch:
        batch.drop_index("ix_assets_conversion_key")
        batch.drop_constraint("uq_assets_photo_id_conversion_key", type_="unique")
        batch.create_unique_constraint("uq_assets_conversion_key", ["conversion_key"])
    op.drop_table("leases")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pid")
