"""A claim of the shared queue reads a few index entries, not the whole queue.

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-04

`ix_owner_turns_last_claim`: the claim walks owners in round-robin order (their latest claim number) and
stops at the first with a job the worker can render; `ix_generations_status_owner_id_id`: that owner's
queued jobs, oldest first. On PostgreSQL (the only database the shared queue runs on) a trigger keeps
`owner_turns` complete: a job that becomes queued gives a new owner a row (its turn: that job's id minus
2^39, so never-served owners go first, in the order they came) or wakes a row the claim set aside (an owner
with nothing queued, moved out of the walk by subtracting 2^40, so the claim does not step over every owner
it ever served; adding it back restores its place).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Kept equal to storage.claims' (a migration does not import the code it migrates for).
NEWCOMER_BASE = 2**39
IDLE_OFFSET = 2**40

TRIGGER_FUNCTION = f"""
CREATE OR REPLACE FUNCTION imagine_owner_turn_on_queued() RETURNS trigger AS $$
BEGIN
    -- Always an update on conflict: it takes the row's lock, so a claim setting this owner aside
    -- (under FOR UPDATE SKIP LOCKED) either sees this job or is seen by it.
    INSERT INTO owner_turns (owner_id, last_claim) VALUES (NEW.owner_id, NEW.id - {NEWCOMER_BASE})
    ON CONFLICT (owner_id) DO UPDATE SET last_claim = CASE
        WHEN owner_turns.last_claim < -{NEWCOMER_BASE} THEN owner_turns.last_claim + {IDLE_OFFSET}
        ELSE owner_turns.last_claim END;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_index("ix_generations_status_owner_id_id", "generations", ["status", "owner_id", "id"])
    op.create_index("ix_owner_turns_last_claim", "owner_turns", ["last_claim"])
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(TRIGGER_FUNCTION)
    op.execute("CREATE TRIGGER imagine_owner_turn_on_insert AFTER INSERT ON generations FOR EACH ROW "
               "WHEN (NEW.status = 'queued') EXECUTE FUNCTION imagine_owner_turn_on_queued()")
    op.execute("CREATE TRIGGER imagine_owner_turn_on_requeue AFTER UPDATE OF status ON generations FOR EACH ROW "
               "WHEN (NEW.status = 'queued' AND OLD.status IS DISTINCT FROM 'queued') "
               "EXECUTE FUNCTION imagine_owner_turn_on_queued()")
    # Owners queued before this revision and never served get their row now.
    op.execute(f"INSERT INTO owner_turns (owner_id, last_claim) SELECT owner_id, min(id) - {NEWCOMER_BASE} "
               "FROM generations WHERE status = 'queued' GROUP BY owner_id ON CONFLICT (owner_id) DO NOTHING")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS imagine_owner_turn_on_requeue ON generations")
        op.execute("DROP TRIGGER IF EXISTS imagine_owner_turn_on_insert ON generations")
        op.execute("DROP FUNCTION IF EXISTS imagine_owner_turn_on_queued()")
        # Rows set aside return to their place; never-served owners had no row before this revision.
        op.execute(f"UPDATE owner_turns SET last_claim = last_claim + {IDLE_OFFSET} "
                   f"WHERE last_claim < -{NEWCOMER_BASE}")
        op.execute("DELETE FROM owner_turns WHERE last_claim < 0")
    op.drop_index("ix_owner_turns_last_claim", table_name="owner_turns")
    op.drop_index("ix_generations_status_owner_id_id", table_name="generations")
