"""Users and hashed credentials; idempotent submission; training consent.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add `users`, `credentials`, `jobs.idempotency_key` and `profiles.consent_at`."""
    op.create_table(
        "users",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_table(
        "credentials",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("secret_sha256", sa.Text(), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TIMESTAMPTZ),
        sa.PrimaryKeyConstraint("id", name="pk_credentials"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_credentials_user_id_users", ondelete="CASCADE"),
        sa.UniqueConstraint("secret_sha256", name="uq_credentials_secret_sha256"),
        sa.CheckConstraint("kind IN ('api_key', 'session')", name=op.f("ck_credentials_kind")),
    )
    op.create_index("ix_credentials_user_id", "credentials", ["user_id"])
    op.add_column("jobs", sa.Column("idempotency_key", sa.Text()))
    op.create_unique_constraint("uq_jobs_user_id_idempotency_key", "jobs", ["user_id", "idempotency_key"])
    op.add_column("profiles", sa.Column("consent_at", TIMESTAMPTZ))


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_column("profiles", "consent_at")
    op.drop_constraint("uq_jobs_user_id_idempotency_key", "jobs")
    op.drop_column("jobs", "idempotency_key")
    op.drop_table("credentials")
    op.drop_table("users")
