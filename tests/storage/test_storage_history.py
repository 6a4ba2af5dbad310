"""/history pages, text search, lineage and stats as a user would see them."""

from __future__ import annotations

from sqlalchemy import event

from storage import GenerationKind, Store
from storage_helpers import OWNER, finish, queue

OTHER = OWNER + 1


async def test_pages_stay_stable_while_new_generations_arrive(store: Store) -> None:
    created = [(await queue(store, prompt=f"prompt {n}")).id for n in range(25)]
    await queue(store, OTHER, prompt="someone else")

    page1 = await store.history(OWNER, limit=10)
    assert [r.id for r in page1] == created[::-1][:10]
    for n in range(5):  # the user keeps generating while paging
        await queue(store, prompt=f"newer {n}")
    page2 = await store.history(OWNER, before_id=page1[-1].id, limit=10)
    page3 = await store.history(OWNER, before_id=page2[-1].id, limit=10)
    assert await store.history(OWNER, before_id=page3[-1].id, limit=10) == []

    seen = [r.id for r in page1 + page2 + page3]
    assert seen == created[::-1]  # each original exactly once, newest first, no gaps
    assert await store.count_history(OWNER) == 30
    assert await store.count_history(OTHER) == 1


async def test_text_filter_is_a_case_insensitive_substring(store: Store) -> None:
    cat = await queue(store, prompt="A Red CAT sitting")
    await queue(store, prompt="a blue dog")
    percent = await queue(store, prompt="100% cotton_shirt")
    await queue(store, prompt="1000 cottons")
    await queue(store, OTHER, prompt="red cat of another user")

    assert [r.id for r in await store.history(OWNER, query="red cat")] == [cat.id]
    assert await store.count_history(OWNER, query="RED") == 1
    # % and _ are literal text, not wildcards
    assert [r.id for r in await store.history(OWNER, query="0% cotton_")] == [percent.id]
    assert await store.count_history(OWNER, query="zebra") == 0


async def test_history_hides_deleted_and_carries_images(store: Store) -> None:
    kept = await finish(store, (await queue(store, prompt="keep")).id)
    gone = await queue(store, prompt="delete me")
    await store.delete_generation(gone.id)
    page = await store.history(OWNER)
    assert [r.prompt for r in page] == ["keep"]
    assert page[0].images == kept.images and len(page[0].images) == 2
    assert await store.count_history(OWNER) == 1


async def test_a_history_page_is_one_query_whatever_its_size(store: Store) -> None:
    for n in range(12):
        await finish(store, (await queue(store, prompt=f"grid {n}")).id)
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        page = await store.history(OWNER, limit=10)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)
    assert len(page) == 10 and all(len(r.images) == 2 for r in page)
    assert len(statements) == 1  # the page and its images together: no query per row


async def test_lineage_walks_parents_and_lists_children(store: Store) -> None:
    root = await queue(store, prompt="castle")
    variation = await queue(store, kind="variation", parent_id=root.id, prompt="castle", variation_seed=9,
                            variation_strength=0.3)
    reroll = await queue(store, kind=GenerationKind.REROLL, parent_id=variation.id, prompt="castle", seed=77)
    upscale = await queue(store, kind="upscale", parent_id=variation.id, prompt="castle", count=1)
    grandchild = await queue(store, kind="edit", parent_id=reroll.id, prompt="castle at night")

    lineage = await store.lineage(reroll.id)
    assert [r.id for r in lineage.ancestors] == [root.id, variation.id]
    assert [r.id for r in lineage.children] == [grandchild.id]
    assert [r.id for r in (await store.lineage(variation.id)).children] == [reroll.id, upscale.id]
    assert (await store.lineage(root.id)).ancestors == []
    assert lineage.ancestors[1].kind is GenerationKind.VARIATION
    assert lineage.ancestors[1].request_params["variation_seed"] == 9

    # A deleted middle link disappears from the view but the chain above it is still found.
    await store.delete_generation(variation.id)
    lineage = await store.lineage(reroll.id)
    assert [r.id for r in lineage.ancestors] == [root.id]


async def test_stats_count_and_render_time(store: Store) -> None:
    await finish(store, (await queue(store)).id, duration_s=1.5)
    await finish(store, (await queue(store, count=1)).id, duration_s=2.0)
    failing = await queue(store)
    await store.mark_failed(failing.id, "bad prompt")
    await finish(store, (await queue(store, OTHER)).id, duration_s=9.0)

    stats = await store.stats(OWNER)
    assert (stats.count, stats.done, stats.images, stats.total_render_s) == (3, 2, 3, 3.5)
    assert (await store.stats(OWNER + 99)).count == 0
