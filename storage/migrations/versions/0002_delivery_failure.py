"""Record why a delivery failed for good; indexes for recovery and fast history counts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Before this, a result whose Discord post failed permanently (channel deleted, bot kicked)
stayed "done, no message" and every restart tried to post it again. And count_history read
every row of the user to check deleted_at (about 20 ms at 100k generations); with deleted_at
in the index it reads the index only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("delivery_failure", sa.Text(), nullable=True))
    # recover() asks for status = 'done' AND message_id IS NULL: one range on (status, message_id).
    op.drop_index("ix_generations_status", table_name="generations")
    op.create_index("ix_generations_status_message_id", "generations", ["status", "message_id"])
    op.drop_index("ix_generations_owner_id_id", table_name="generations")
    op.create_index(
        "ix_generations_owner_id_deleted_at_id", "generations", ["owner_id", "deleted_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_generations_owner_id_deleted_at_id", table_name="generations")
    op.create_index("ix_generations_owner_id_id", "generations", ["owner_id", "id"])
    op.drop_index("ix_generations_status_message_id", table_name="generations")
    op.create_index("ix_generations_status", "generations", ["status"])
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("delivery_failure")
