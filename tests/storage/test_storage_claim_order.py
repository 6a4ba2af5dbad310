"""The shared queue's claim reads its fair order from indexes (revision 0011): owners with nothing queued are
set aside from the walk and come back in their place; a job held by another transaction is passed over."""

from __future__ import annotations

from sqlalchemy import select, text
from storage_helpers import claim_next, queue

from storage import Store
from storage.claims import IDLE_OFFSET, NEWCOMER_BASE
from storage.models import OwnerTurn

ALICE, BOB, CAROL = 2001, 2002, 2003


async def claim_one(store: Store, worker: str = "w") -> int | None:
    claimed = await claim_next(store, worker)
    return claimed.id if claimed else None


async def turns(store: Store) -> dict[int, int]:
    async with store.engine.connect() as connection:
        return {row.owner_id: row.last_claim for row in await connection.execute(select(OwnerTurn))}


async def test_a_queued_job_gives_its_owner_a_turn_ahead_of_everyone_served_in_arrival_order(
        shared: Store) -> None:
    first = await queue(shared, ALICE)
    await queue(shared, ALICE)
    bob = await queue(shared, BOB)
    assert await turns(shared) == {ALICE: first.id - NEWCOMER_BASE, BOB: bob.id - NEWCOMER_BASE}


async def test_idle_owners_leave_the_walk_and_come_back_in_their_place(shared: Store) -> None:
    alice_first, bob_first, carol_first = [await queue(shared, owner) for owner in (ALICE, BOB, CAROL)]
    assert [await claim_one(shared) for _ in range(3)] == [alice_first.id, bob_first.id, carol_first.id]
    served = await turns(shared)
    carol_later = await queue(shared, CAROL)
    assert await claim_one(shared) == carol_later.id
    # ALICE and BOB, with nothing queued, were walked over: set aside, their claim numbers kept below.
    assert (await turns(shared))[ALICE] == served[ALICE] - IDLE_OFFSET
    assert (await turns(shared))[BOB] == served[BOB] - IDLE_OFFSET
    bob_again, alice_again = await queue(shared, BOB), await queue(shared, ALICE)
    assert (await turns(shared))[ALICE] == served[ALICE]  # back in its place: served before BOB
    assert [await claim_one(shared) for _ in range(3)] == [alice_again.id, bob_again.id, None]


async def test_a_requeued_job_of_an_owner_set_aside_is_claimed_again(shared: Store) -> None:
    job = await queue(shared, ALICE)
    claimed, _ = await shared.claim("dead", models=["tinyshapes"], max_size=1024, loaded_model=None, lease_s=0)
    assert [record.id for record in claimed] == [job.id]
    assert await claim_one(shared, "idle") is not None  # the expired lease puts it back, and it is taken again


async def test_a_job_held_by_another_transaction_is_passed_over(shared: Store) -> None:
    held, free = await queue(shared, ALICE), await queue(shared, BOB)
    async with shared.engine.connect() as connection, connection.begin():
        await connection.execute(text("SELECT id FROM generations WHERE id = :id FOR UPDATE"), {"id": held.id})
        assert await claim_one(shared) == free.id
    assert await claim_one(shared) == held.id


async def test_the_migration_gives_owners_already_queued_their_turn(shared: Store) -> None:
    carol = await queue(shared, CAROL)
    async with shared.engine.begin() as connection:
        await connection.execute(text("DELETE FROM owner_turns"))
        await connection.execute(text("UPDATE alembic_version SET version_num = '0010'"))  # 0011's down_revision
        await connection.execute(text("DROP TRIGGER imagine_owner_turn_on_insert ON generations"))
        await connection.execute(text("DROP TRIGGER imagine_owner_turn_on_requeue ON generations"))
        await connection.execute(text("DROP INDEX ix_owner_turns_last_claim"))
        await connection.execute(text("DROP INDEX ix_generations_status_owner_id_id"))
    await shared.close()
    reopened = await Store.open(shared.engine.url.render_as_string(hide_password=False), shared.data_dir)
    try:
        assert await turns(reopened) == {CAROL: carol.id - NEWCOMER_BASE}
    finally:
        await reopened.close()
