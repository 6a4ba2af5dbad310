"""Style and object references (--sref/--sw, --oref/--ow; generation.references).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

Each reference is like the init image: the URL the user gave (still to download: the job fetches it
after the row exists), then the stored file and its sha256, which Reroll/Vary/re-render reuse; plus its
weight (Midjourney's 0–1000; null means 100).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("sref", "oref")


def upgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        for kind in KINDS:
            batch.add_column(sa.Column(f"{kind}_url", sa.Text(), nullable=True))
            batch.add_column(sa.Column(f"{kind}_path", sa.String(255), nullable=True))
            batch.add_column(sa.Column(f"{kind}_sha256", sa.String(64), nullable=True))
            batch.add_column(sa.Column(f"{kind}_weight", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("generations") as batch:
        for kind in KINDS:
            for column in ("url", "path", "sha256", "weight"):
                batch.drop_column(f"{kind}_{column}")
