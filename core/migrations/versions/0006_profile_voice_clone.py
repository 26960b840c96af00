"""Which profiles have a cloned voice: `profiles.voice_clone_engine`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable `profiles.voice_clone_engine`.

    NULL for profiles trained before it existed: the planner then treats their voice as a fitted pace,
    which is what a profile trained before cloning has; one cloned since is trained again to say so.
    """
    op.add_column("profiles", sa.Column("voice_clone_engine", sa.Text()))


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_column("profiles", "voice_clone_engine")
