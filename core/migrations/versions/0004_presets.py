"""Saved presets: `presets` (a user's named option sets) and `jobs.preset`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-09
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMPTZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add `presets` and the nullable `jobs.preset` (NULL for jobs that named no preset)."""
    op.create_table(
        "presets",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("body", JSONB(), nullable=False),
        sa.Column("created_at", TIMESTAMPTZ, nullable=False, server_default=sa.func.now()),
        sa.PrimaryKeyConstraint("id", name="pk_presets"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_presets_user_id_users", ondelete="CASCADE"),
        sa.UniqueConstraint("user_id", "name", name="uq_presets_user_id_name"),
    )
    op.add_column("jobs", sa.Column("preset", sa.Text()))


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_column("jobs", "preset")
    op.drop_table("presets")
