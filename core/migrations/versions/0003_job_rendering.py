"""What ran: `jobs.rendering`, the runtime that rendered each stage.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable `jobs.rendering` (NULL for jobs registered before it existed)."""
    op.add_column("jobs", sa.Column("rendering", JSONB()))


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_column("jobs", "rendering")
