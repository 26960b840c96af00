"""Batches: `batches` (one `POST /api/batches`) and `jobs.batch_id`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-16
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add `batches` and the nullable, indexed `jobs.batch_id` (NULL for jobs submitted on their own)."""
    op.create_table(
        "batches",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("request", JSONB(), nullable=False),
        sa.Column("job_ids", JSONB(), nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("idempotency_key", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_batches_user_id_idempotency_key"),
    )
    op.create_index("ix_batches_user_id_created_at_id", "batches", ["user_id", "created_at", "id"])
    op.add_column("jobs", sa.Column("batch_id", sa.Text()))
    op.create_foreign_key("fk_jobs_batch_id_batches", "jobs", "batches", ["batch_id"], ["id"])
    op.create_index("ix_jobs_batch_id", "jobs", ["batch_id"])


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_index("ix_jobs_batch_id", "jobs")
    op.drop_constraint("fk_jobs_batch_id_batches", "jobs")
    op.drop_column("jobs", "batch_id")
    op.drop_index("ix_batches_user_id_created_at_id", "batches")
    op.drop_table("batches")
