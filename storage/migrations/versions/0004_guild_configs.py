"""Per-server configuration (/config) and NSFW flags on images.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

`guild_configs` holds one row per server that changed a setting; `images.nsfw` records what flagged
an image as not safe for work (the model's safety checker or the classifier), null when nothing did.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guild_configs",
        sa.Column("guild_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("allowed_channel_ids", sa.JSON(), nullable=False),
        sa.Column("defaults", sa.JSON(), nullable=False),
        sa.Column("nsfw_policy", sa.String(length=16), nullable=True),
        sa.Column("banned_words", sa.JSON(), nullable=False),
        sa.Column("queue_cap", sa.Integer(), nullable=True),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("allowed_models", sa.JSON(), nullable=False),
        sa.Column("mod_log_channel_id", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guild_id", name=op.f("pk_guild_configs")),
    )
    op.add_column("images", sa.Column("nsfw", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("nsfw")
    op.drop_table("guild_configs")
