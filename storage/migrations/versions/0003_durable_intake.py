"""Durable intake: interaction token, pending init image, pick index, attempts counted at start.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Rows are now written before the user sees "thinking…", so the slow parts of a command (downloading
the init image) and its reply target (the interaction token) live on the row. `attempts` now counts
started attempts (it was the 1-based number of the next attempt): queued rows go down by one.
"""

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS: dict[str, Callable[[], Any]] = {
    "source_index": sa.Integer,
    "init_image_url": sa.Text,
    "interaction_token": sa.Text,
    "interaction_expires_at": lambda: sa.DateTime(timezone=True),
    "delivery_started_at": lambda: sa.DateTime(timezone=True),
}


def upgrade() -> None:
    for name, column_type in COLUMNS.items():
        op.add_column("generations", sa.Column(name, column_type(), nullable=True))
    op.execute("UPDATE generations SET attempts = attempts - 1 WHERE status = 'queued' AND attempts > 0")


def downgrade() -> None:
    op.execute("UPDATE generations SET attempts = attempts + 1 WHERE status = 'queued'")
    with op.batch_alter_table("generations") as batch:
        for name in reversed(list(COLUMNS)):
            batch.drop_column(name)
