"""Where each image sat in the pipeline call that rendered it: batch size and position.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Compatible requests are rendered together in one call; an image re-renders bit-exact (on the same
device type) only in the same place, so each image records the number of images in its call and its
position there. Existing rows were rendered alone: 1 and 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("batch_size", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("batch_index", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("batch_index")
        batch.drop_column("batch_size")
