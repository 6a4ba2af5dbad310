"""Conversation turns: the words and their reading on the generation, and each message processed once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04

`generations.turn_text` holds a member's words when a generation came from a turn (a reply, a mention, a
DM, a thread message) and `turn_reading` what they were understood as (the interpreter's reading, JSON).
`turns` is keyed by the Discord message id: inserting it is how a gateway claims a message, so a message
is processed at most once across restarts and gateways; `state` and `generation_id` record how it ended.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("turn_text", sa.Text(), nullable=True))
    op.add_column("generations", sa.Column("turn_reading", sa.JSON(), nullable=True))
    op.create_table(
        "turns",
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=True),
        sa.Column("generation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["generation_id"], ["generations.id"], name=op.f("fk_turns_generation_id_generations"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_turns")),
    )
    op.create_index("ix_turns_state_created_at", "turns", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_turns_state_created_at", table_name="turns")
    op.drop_table("turns")
    with op.batch_alter_table("generations") as batch:
        batch.drop_column("turn_reading")
        batch.drop_column("turn_text")
