"""Read-side repository functions: /history pages, counts, lineage and stats.

Like repository.py, each takes a session; the caller owns the transaction.
"""

from __future__ import annotations

from typing import Any

from datetime import datetime

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from .models import Generation, GenerationKind, GenerationStatus, Image


def _history_filter(session: AsyncSession, owner_id: int, query: str | None) -> list[Any]:
    conditions = [Generation.owner_id == owner_id, Generation.deleted_at.is_(None)]
    if query:
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        if session.bind is not None and session.bind.dialect.name == "sqlite":
            # SQLite's LIKE is already case-insensitive (ASCII, as lower() is); skipping lower()
            # on every row makes a filter that matches little about 30% faster.
            conditions.append(Generation.prompt.like(pattern, escape="\\"))
        else:
            conditions.append(Generation.prompt.ilike(pattern, escape="\\"))
    return conditions


async def history(
    session: AsyncSession, owner_id: int, *, before_id: int | None = None, limit: int = 10, query: str | None = None
) -> list[Generation]:
    """Newest first. Keyset pagination: pass the last id of a page as `before_id` for the next,
    so rows created meanwhile never shift or repeat a page."""
    conditions = _history_filter(session, owner_id, query)
    if before_id is not None:
        conditions.append(Generation.id < before_id)
    # One round trip: the page (a LIMIT subquery) joined to its images.
    statement = (
        select(Generation)
        .where(*conditions)
        .order_by(Generation.id.desc())
        .limit(limit)
        .options(joinedload(Generation.images))
    )
    return list((await session.scalars(statement)).unique().all())


async def count_history(session: AsyncSession, owner_id: int, query: str | None = None) -> int:
    statement = select(func.count()).select_from(Generation).where(*_history_filter(session, owner_id, query))
    return int(await session.scalar(statement) or 0)


async def lineage(session: AsyncSession, generation_id: int) -> tuple[list[Generation], list[Generation]]:
    """(ancestors root-first, direct children oldest-first); deleted rows are skipped."""
    chain = (
        select(Generation.id, Generation.parent_id, literal(0).label("depth"))
        .where(Generation.id == generation_id)
        .cte("chain", recursive=True)
    )
    parent = select(Generation.id, Generation.parent_id, (chain.c.depth + 1).label("depth")).join(
        chain, Generation.id == chain.c.parent_id
    )
    chain = chain.union_all(parent)
    # Ids first, rows second: joining the CTE back to generations made SQLite build a bloom
    # filter over the whole table (14 ms at 100k rows instead of well under 1 ms).
    depths = dict((await session.execute(select(chain.c.id, chain.c.depth).where(chain.c.depth > 0))).tuples().all())
    rows = (
        await session.scalars(
            select(Generation)
            .where(Generation.id.in_(list(depths)), Generation.deleted_at.is_(None))
            .options(joinedload(Generation.images))
        )
    ).unique().all()
    ancestors = sorted(rows, key=lambda row: depths[row.id], reverse=True)
    children_statement = (
        select(Generation)
        .where(Generation.parent_id == generation_id, Generation.deleted_at.is_(None))
        .order_by(Generation.id)
        .options(joinedload(Generation.images))
    )
    children = list((await session.scalars(children_statement)).unique().all())
    return ancestors, children


async def stats(session: AsyncSession, owner_id: int) -> tuple[int, int, int, float]:
    """(generations, done, images, total render seconds) for one user, deleted ones excluded."""
    mine = (Generation.owner_id == owner_id, Generation.deleted_at.is_(None))
    count, done, total = (
        await session.execute(
            select(
                func.count(),
                func.count().filter(Generation.status == GenerationStatus.DONE),
                func.coalesce(func.sum(Generation.duration_s), 0.0),
            ).where(*mine)
        )
    ).one()
    images = await session.scalar(select(func.count(Image.id)).join(Generation).where(*mine))
    return int(count), int(done), int(images or 0), float(total or 0.0)  # coalesce: never None


async def images_made_since(session: AsyncSession, owner_id: int, guild_id: int | None, since: datetime) -> int:
    """Images of a member's generations in a server since `since`: each queued, running or done one
    counts the images it asked for (deleted ones too); failed, cancelled and picks (copies) count nothing."""
    statement = select(func.coalesce(func.sum(func.coalesce(Generation.count, 1)), 0)).where(
        Generation.owner_id == owner_id,
        Generation.guild_id.is_(None) if guild_id is None else Generation.guild_id == guild_id,
        Generation.created_at >= since,
        Generation.kind != GenerationKind.PICK,
        Generation.status.in_((GenerationStatus.QUEUED, GenerationStatus.RUNNING, GenerationStatus.DONE)),
    )
    return int(await session.scalar(statement) or 0)
