"""Masked edits (Zoom Out, Make Square, Pan, Vary (Region)) and /blend: their recorded parameters.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

An edit's canvas and mask are derived from these and the init image (the parent's image, or for a
blend the source images side by side), so the edit re-renders bit-exact: `edit_mode` (zoom, square,
pan, region, blend), `edit_factor` (zoom), `edit_direction` (pan: left/right/up/down), `edit_region`
(cells of a 3×3 grid, 0–8, joined with "+"). Null for every other generation.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("edit_mode", sa.String(length=16), nullable=True))
    op.add_column("generations", sa.Column("edit_factor", sa.Float(), nullable=True))
    op.add_column("generations", sa.Column("edit_direction", sa.String(length=8), nullable=True))
    op.add_column("generations", sa.Column("edit_region", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        for column in ("edit_region", "edit_direction", "edit_factor", "edit_mode"):
            batch.drop_column(column)
