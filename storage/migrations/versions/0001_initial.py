"""Initial schema: users, generations (the durable queue), images.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Written out in full (not from the models) so it stays what it was when later revisions
change the models.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_table(
        "generations",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("owner_id", sa.BigInteger(), nullable=False),
        sa.Column("guild_id", sa.BigInteger(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", RowId, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("negative_prompt", sa.Text(), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("num_inference_steps", sa.Integer(), nullable=True),
        sa.Column("guidance_scale", sa.Float(), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("sampler", sa.String(64), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.Column("strength", sa.Float(), nullable=True),
        sa.Column("variation_seed", sa.BigInteger(), nullable=True),
        sa.Column("variation_strength", sa.Float(), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("init_image_path", sa.String(255), nullable=True),
        sa.Column("init_image_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("started_at", When, nullable=True),
        sa.Column("finished_at", When, nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("message_channel_id", sa.BigInteger(), nullable=True),
        sa.Column("delivered_at", When, nullable=True),
        sa.Column("deleted_at", When, nullable=True),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name="fk_generations_owner_id_users"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["generations.id"],
            name="fk_generations_parent_id_generations", ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_generations"),
    )
    op.create_index("ix_generations_owner_id_id", "generations", ["owner_id", "id"])
    op.create_index("ix_generations_parent_id", "generations", ["parent_id"])
    op.create_index("ix_generations_message_id", "generations", ["message_id"])
    op.create_index("ix_generations_status", "generations", ["status"])
    op.create_table(
        "images",
        sa.Column("id", RowId, autoincrement=True, nullable=False),
        sa.Column("generation_id", RowId, nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("variation_seed", sa.BigInteger(), nullable=True),
        sa.Column("variation_strength", sa.Float(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"], ["generations.id"],
            name="fk_images_generation_id_generations", ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
        sa.UniqueConstraint("generation_id", "index", name="uq_images_generation_id_index"),
    )


def downgrade() -> None:
    op.drop_table("images")
    op.drop_index("ix_generations_status", table_name="generations")
    op.drop_index("ix_generations_message_id", table_name="generations")
    op.drop_index("ix_generations_parent_id", table_name="generations")
    op.drop_index("ix_generations_owner_id_id", table_name="generations")
    op.drop_table("generations")
    op.drop_table("users")
