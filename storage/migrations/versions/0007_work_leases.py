"""Several render workers on one PostgreSQL database: job leases and the workers table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

A worker that claims a job leases it: `lease_owner` (its worker id) and `lease_expires_at`, renewed by
heartbeats; an expired lease returns the job to the queue. `owner_turns` keeps the round-robin order
across owners (the claim number of each owner's latest job) for every worker. `workers` lists the
render workers: what they can render, what they render now, their throughput and last heartbeat.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("lease_owner", sa.String(length=64), nullable=True))
    op.add_column("generations", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "owner_turns",
        sa.Column("owner_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_claim", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_owner_turns")),
    )
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("max_size", sa.Integer(), nullable=False),
        sa.Column("loaded_model", sa.String(length=128), nullable=True),
        sa.Column("current_jobs", sa.JSON(), nullable=False),
        sa.Column("jobs_done", sa.Integer(), nullable=False),
        sa.Column("images_done", sa.Integer(), nullable=False),
        sa.Column("render_s", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("owner_turns")
    op.drop_column("generations", "lease_expires_at")
    op.drop_column("generations", "lease_owner")
