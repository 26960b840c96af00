"""Initial schema: profiles, jobs, artifacts, worker_capabilities.

Revision ID: 0001
Revises:
Create Date: 2025-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the four tables."""
    op.create_table(
        "profiles",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="new"),
        sa.Column("lora_id", sa.Text()),
        sa.Column("voice_id", sa.Text()),
        sa.Column("portrait_uri", sa.Text()),
        sa.Column("images", JSONB(), nullable=False, server_default="[]"),
        sa.Column("audio", JSONB(), nullable=False, server_default="[]"),
        sa.Column("error", sa.Text()),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_profiles"),
        sa.UniqueConstraint("user_id", "name", name="uq_profiles_user_id_name"),
        # op.f: the name is final; without it the models' naming convention would prefix it again.
        sa.CheckConstraint("status IN ('new', 'training', 'ready', 'failed')", name=op.f("ck_profiles_status")),
    )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Text(), nullable=False),  # = Temporal workflow id
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("mode", sa.Text(), nullable=False),
        sa.Column("variant", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("request", JSONB(), nullable=False),
        sa.Column("graph", JSONB(), nullable=False),
        sa.Column("profile_id", sa.Text()),
        sa.Column("script", JSONB()),
        sa.Column("script_source", sa.Text()),
        sa.Column("video_uri", sa.Text()),
        sa.Column("thumbnail_uri", sa.Text()),
        sa.Column("duration", sa.Double()),
        sa.Column("error", sa.Text()),
        sa.Column("failed_stage", sa.Text()),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("finished_at", TIMESTAMPTZ),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    # Serves lookups by user and keyset paging of one user's jobs, newest first:
    # WHERE user_id = ? AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC.
    op.create_index("ix_jobs_user_id_created_at_id", "jobs", ["user_id", "created_at", "id"])

    op.create_table(
        "artifacts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("content_type", sa.Text()),
        sa.Column("size_bytes", sa.BigInteger()),
        sa.Column("partial", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_artifacts_job_id_jobs", ondelete="CASCADE"),
        # A retried or reset activity upserts on this key instead of adding a duplicate.
        sa.UniqueConstraint("job_id", "kind", "key", name="uq_artifacts_job_id_kind_key"),
    )

    op.create_table(
        "worker_capabilities",
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("plane", sa.Text(), nullable=False),
        sa.Column("task_queue", sa.Text(), nullable=False),
        sa.Column("manifest", JSONB(), nullable=False),
        sa.Column("last_seen", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("worker_id", name="pk_worker_capabilities"),
    )
    op.create_index("ix_worker_capabilities_last_seen", "worker_capabilities", ["last_seen"])


def downgrade() -> None:
    """Drop the four tables."""
    op.drop_table("worker_capabilities")
    op.drop_table("artifacts")
    op.drop_table("jobs")
    op.drop_table("profiles")
