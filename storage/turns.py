"""Conversation turns: each Discord message processed at most once (the `turns` table, 0009).

Claiming a message inserts its row; the primary key on the message id makes the database the referee, so
when two gateways (or a restarted bot and a redelivered event) race for one message exactly one insert
wins and the other gets False. A claimed turn ends queued (with its generation, recorded in the same
transaction as the generation: `Store.create_generation(turn_message_id=...)`), answered (an action or
a refusal that made no generation here) or failed. Turns still claimed after a crash are listed by
`unfinished` for the restarted bot to finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Turn, TurnState, utcnow
from .records import TurnRecord

Unit = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class TurnNotFound(LookupError):
    def __init__(self, message_id: int) -> None:
        super().__init__(f"no turn for message {message_id}")
        self.message_id = message_id


async def attach_generation(session: AsyncSession, message_id: int, generation_id: int) -> None:
    """The claimed turn is now a queued generation (called in the transaction that creates it)."""
    turn = await session.get(Turn, message_id, with_for_update=True)
    if turn is None:
        raise TurnNotFound(message_id)
    turn.generation_id, turn.state, turn.finished_at = generation_id, TurnState.QUEUED, utcnow()


class TurnLog:
    """The Store's turn methods (`store.turns`): one session per call, records out."""

    def __init__(self, writing: Unit, reading: Unit) -> None:
        self._writing = writing
        self._reading = reading

    async def claim_message(self, message_id: int, *, channel_id: int, author_id: int | None = None) -> bool:
        """True when this call took the message; False when it was already taken (by anyone, ever)."""
        try:
            async with self._writing() as session:
                session.add(Turn(message_id=message_id, channel_id=channel_id, author_id=author_id,
                                 state=TurnState.CLAIMED, created_at=utcnow()))
                await session.flush()
        except IntegrityError:
            return False
        return True

    async def finish(self, message_id: int, state: TurnState | str, *, generation_id: int | None = None,
                     reason: str | None = None) -> TurnRecord:
        """Record how a claimed turn ended (queued with its generation, answered, or failed and why)."""
        async with self._writing() as session:
            turn = await session.get(Turn, message_id, with_for_update=True)
            if turn is None:
                raise TurnNotFound(message_id)
            turn.state, turn.reason, turn.finished_at = TurnState(state), reason, utcnow()
            if generation_id is not None:
                turn.generation_id = generation_id
            await session.flush()
            return TurnRecord.from_row(turn)

    async def get(self, message_id: int) -> TurnRecord | None:
        async with self._reading() as session:
            turn = await session.get(Turn, message_id)
            return TurnRecord.from_row(turn) if turn is not None else None

    async def unfinished(self, *, since: datetime | None = None, limit: int = 100) -> Sequence[TurnRecord]:
        """Turns claimed but never finished (the bot stopped in between), oldest first."""
        statement = select(Turn).where(Turn.state == TurnState.CLAIMED)
        if since is not None:
            statement = statement.where(Turn.created_at >= since)
        async with self._reading() as session:
            rows = await session.scalars(statement.order_by(Turn.created_at, Turn.message_id).limit(limit))
            return [TurnRecord.from_row(row) for row in rows]
