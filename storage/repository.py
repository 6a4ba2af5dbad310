"""Repository functions: each takes a session and leaves the transaction to the caller.

State changes go through `_transition`, which refuses illegal moves (done -> running, ...):
that is what makes "a finished job is never rendered or posted twice" hold in the data layer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from .models import (
    PARAM_FIELDS,
    REFERENCE_IMAGE_FIELDS,
    Generation,
    GenerationKind,
    GenerationStatus,
    GuildConfig,
    Image,
    User,
    utcnow,
)
from .records import GUILD_CONFIG_FIELDS, ImageRecord

log = logging.getLogger(__name__)

S = GenerationStatus
LEGAL_TRANSITIONS: dict[GenerationStatus, frozenset[GenerationStatus]] = {
    # queued -> done is allowed: the render service may finish a job before anyone saw it start.
    S.QUEUED: frozenset({S.RUNNING, S.DONE, S.FAILED, S.CANCELLED}),
    # running -> queued happens only in recover(), for a job interrupted by a restart.
    S.RUNNING: frozenset({S.DONE, S.FAILED, S.CANCELLED, S.QUEUED}),
    S.DONE: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}
FINAL = frozenset({S.DONE, S.FAILED, S.CANCELLED})
# How often a job may be interrupted (process killed while rendering) before it fails for good.
DEFAULT_MAX_ATTEMPTS = 2


def _times(attempts: int) -> str:
    return "once" if attempts == 1 else "twice" if attempts == 2 else f"{attempts} times"


def interrupted_reason(attempts: int) -> str:
    """The process rendering this job died while rendering it, each time: the request is the likely cause."""
    return f"this request stopped the renderer {_times(attempts)}; try a smaller size or fewer images"


def lost_lease_reason(attempts: int) -> str:
    """Shared queue: the workers holding this job stopped heartbeating (machine gone, network lost), each time."""
    return (f"the render workers stopped responding {_times(attempts)} while rendering it; "
            "it was not your request — try again")


class GenerationNotFound(LookupError):
    def __init__(self, generation_id: int) -> None:
        super().__init__(f"generation {generation_id} does not exist")
        self.generation_id = generation_id


class InvalidTransition(Exception):
    """A state change the lifecycle forbids, e.g. rendering a generation that is already done."""

    def __init__(self, generation_id: int, current: str, wanted: str) -> None:
        super().__init__(f"generation {generation_id} is {current}; cannot become {wanted}")
        self.generation_id = generation_id
        self.current = GenerationStatus(current)
        self.wanted = wanted  # a status value, or "delivered"


class LeaseLost(InvalidTransition):
    """A worker of the shared queue tried to finish a job it no longer holds (its lease expired and another
    worker took the job, or it was cancelled): another worker finishes it, or nobody should."""

    def __init__(self, generation_id: int, current: str, wanted: str, holder: str | None) -> None:
        super().__init__(generation_id, current, wanted)
        self.holder = holder


def _check_lease(row: Generation, worker_id: str | None, wanted: GenerationStatus) -> None:
    """With `worker_id` (a shared-queue worker): the row must be running under that worker's lease."""
    if worker_id is not None and (row.status is not S.RUNNING or row.lease_owner != worker_id):
        raise LeaseLost(row.id, row.status.value, wanted.value, row.lease_owner)


# ---- users ---------------------------------------------------------------------------------


async def ensure_user(session: AsyncSession, user_id: int) -> None:
    """Insert the user row if missing; safe against a concurrent insert of the same user."""
    dialect = session.bind.dialect.name if session.bind is not None else ""
    values = {"id": user_id, "settings": {}, "created_at": utcnow()}
    statement: Executable
    if dialect == "sqlite":
        statement = sqlite.insert(User).values(values).on_conflict_do_nothing()
    elif dialect == "postgresql":
        statement = postgresql.insert(User).values(values).on_conflict_do_nothing()
    else:
        if await session.get(User, user_id) is None:
            session.add(User(**values))
            await session.flush()
        return
    await session.execute(statement)


async def get_member_defaults(session: AsyncSession, user_id: int) -> dict[str, Any]:
    settings = await session.scalar(select(User.settings).where(User.id == user_id))
    return dict(settings or {})


async def set_member_defaults(session: AsyncSession, user_id: int, values: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `values` into the user's defaults; a value of None removes that key.

    Which keys exist is the bot's business (derived from the request's parameter table).
    """
    await ensure_user(session, user_id)
    user = await session.scalar(select(User).where(User.id == user_id).with_for_update())
    assert user is not None
    merged = dict(user.settings or {})
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    user.settings = merged  # a new dict, so the JSON column is seen as changed
    await session.flush()
    return dict(merged)


# ---- servers -------------------------------------------------------------------------------


async def update_guild_config(session: AsyncSession, guild_id: int, changes: Mapping[str, Any]) -> GuildConfig:
    """Set the given fields of a server's configuration, creating its row on first use."""
    unknown = set(changes) - set(GUILD_CONFIG_FIELDS)
    if unknown:
        raise ValueError(f"unknown guild setting(s): {', '.join(sorted(unknown))}")
    row = await session.scalar(select(GuildConfig).where(GuildConfig.guild_id == guild_id).with_for_update())
    if row is None:
        row = GuildConfig(guild_id=guild_id, allowed_channel_ids=[], defaults={}, banned_words=[],
                          allowed_models=[], updated_at=utcnow())
        session.add(row)
    for name, value in changes.items():
        # Lists and dicts are stored as new objects, so the JSON columns are seen as changed.
        if isinstance(value, (list, tuple)):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        setattr(row, name, value)
    row.updated_at = utcnow()
    await session.flush()
    return row


# ---- generations: create and read ----------------------------------------------------------


async def create_generation(
    session: AsyncSession,
    *,
    owner_id: int,
    guild_id: int | None,
    channel_id: int | None,
    kind: GenerationKind | str,
    parent_id: int | None,
    params: Mapping[str, Any],
    source_index: int | None = None,
    init_image_url: str | None = None,
    interaction_token: str | None = None,
    interaction_expires_at: datetime | None = None,
    turn_text: str | None = None,
    turn_reading: Mapping[str, Any] | None = None,
) -> Generation:
    unknown = set(params) - set(PARAM_FIELDS) - set(REFERENCE_IMAGE_FIELDS)  # the pictures: Store writes files
    if unknown:
        raise ValueError(f"unknown generation parameter(s): {', '.join(sorted(unknown))}")
    if not isinstance(params.get("prompt"), str):
        raise ValueError("params must include the prompt (a str)")
    await ensure_user(session, owner_id)
    row = Generation(
        owner_id=owner_id,
        guild_id=guild_id,
        channel_id=channel_id,
        kind=GenerationKind(kind),
        parent_id=parent_id,
        status=GenerationStatus.QUEUED,
        attempts=0,
        source_index=source_index,
        init_image_url=init_image_url,
        interaction_token=interaction_token,
        interaction_expires_at=interaction_expires_at,
        turn_text=turn_text,
        turn_reading=dict(turn_reading) if turn_reading is not None else None,
        created_at=utcnow(),
        **{name: params.get(name) for name in PARAM_FIELDS},
    )
    session.add(row)
    await session.flush()
    log.info("generation %d queued (%s, owner %d)", row.id, row.kind.value, owner_id)
    return row


def with_images(statement: Any) -> Any:
    """Load the images of the selected generations in one extra query (records carry them)."""
    return statement.options(selectinload(Generation.images))


async def get_generation(
    session: AsyncSession, generation_id: int, *, include_deleted: bool = False, for_update: bool = False
) -> Generation | None:
    statement = with_images(select(Generation).where(Generation.id == generation_id))
    if not include_deleted:
        statement = statement.where(Generation.deleted_at.is_(None))
    if for_update:
        statement = statement.with_for_update()
    return await session.scalar(statement)


async def get_by_message(session: AsyncSession, message_id: int) -> Generation | None:
    statement = with_images(
        select(Generation)
        .where(Generation.message_id == message_id, Generation.deleted_at.is_(None))
        .order_by(Generation.id.desc())
        .limit(1)
    )
    return await session.scalar(statement)


async def _require(session: AsyncSession, generation_id: int) -> Generation:
    row = await get_generation(session, generation_id, for_update=True)
    if row is None:
        raise GenerationNotFound(generation_id)
    return row


def _transition(row: Generation, wanted: GenerationStatus, detail: str = "") -> None:
    current = row.status
    if wanted not in LEGAL_TRANSITIONS[current]:
        raise InvalidTransition(row.id, current.value, wanted.value)
    row.status = wanted
    log.info("generation %d %s -> %s%s", row.id, current.value, wanted.value, detail)


# ---- generations: lifecycle ----------------------------------------------------------------


async def mark_running(session: AsyncSession, generation_id: int) -> Generation:
    """The worker took the job: count the attempt now, before the model loads (a crash there counts)."""
    row = await _require(session, generation_id)
    row.attempts += 1
    _transition(row, S.RUNNING, f" (attempt {row.attempts})")
    row.started_at = utcnow()
    await session.flush()
    return row


async def check_can_finish(session: AsyncSession, generation_id: int, worker_id: str | None = None) -> Generation:
    """Raise now if mark_done would be refused (so no PNG gets encoded for nothing)."""
    row = await get_generation(session, generation_id)
    if row is None:
        raise GenerationNotFound(generation_id)
    _check_lease(row, worker_id, S.DONE)
    if S.DONE not in LEGAL_TRANSITIONS[row.status]:
        raise InvalidTransition(row.id, row.status, S.DONE.value)
    return row


async def mark_done(
    session: AsyncSession, generation_id: int, images: Sequence[ImageRecord], duration_s: float,
    worker_id: str | None = None,
) -> Generation:
    """Record the images (their files are written by the caller) and mark the generation done.

    `worker_id`: a shared-queue worker finishes only a job it holds the lease of (LeaseLost otherwise)."""
    row = await _require(session, generation_id)
    _check_lease(row, worker_id, S.DONE)
    row.lease_expires_at = None
    _transition(row, S.DONE, f" ({len(images)} image(s), {duration_s:.2f}s)")
    now = utcnow()
    row.finished_at = now
    row.started_at = row.started_at or now
    row.duration_s = duration_s
    row.failure_reason = None
    # ImageRecord's fields are the images table's columns.
    row.images = [Image(**asdict(image)) for image in sorted(images, key=lambda image: image.index)]
    await session.flush()
    return row


async def mark_failed(session: AsyncSession, generation_id: int, reason: str, worker_id: str | None = None,
                      ) -> Generation:
    row = await _require(session, generation_id)
    _check_lease(row, worker_id, S.FAILED)
    row.lease_expires_at = None
    _transition(row, S.FAILED, f": {reason}")
    row.failure_reason = reason
    row.finished_at = utcnow()
    row.interaction_token = None
    await session.flush()
    return row


async def mark_cancelled(session: AsyncSession, generation_id: int, reason: str | None = None) -> Generation:
    """Cancelling twice is harmless (a cancel button and the job's own JobCancelled both report
    it; deleting cancels too), so an already cancelled row is returned unchanged."""
    row = await get_generation(session, generation_id, include_deleted=True, for_update=True)
    if row is None:
        raise GenerationNotFound(generation_id)
    if row.status is S.CANCELLED:
        return row
    _transition(row, S.CANCELLED, f": {reason}" if reason else "")
    row.failure_reason = reason
    row.finished_at = utcnow()
    row.interaction_token = None
    await session.flush()
    return row


async def record_delivery(
    session: AsyncSession, generation_id: int, channel_id: int | None, message_id: int
) -> Generation:
    """Remember the Discord message that shows the finished result (posted once)."""
    row = await _require(session, generation_id)
    if row.status not in FINAL:
        raise InvalidTransition(row.id, row.status.value, "delivered")
    if row.message_id is not None and row.message_id != message_id:
        log.warning("generation %d re-delivered: message %d replaces %d", row.id, message_id, row.message_id)
    row.message_id = message_id
    row.message_channel_id = channel_id
    row.delivered_at = utcnow()
    row.delivery_failure = None
    row.interaction_token = None
    log.info("generation %d delivered as message %d", row.id, message_id)
    await session.flush()
    return row


async def clear_interaction(session: AsyncSession, generation_id: int) -> None:
    """The outcome has been shown (or can no longer be): forget the interaction token."""
    row = await _require(session, generation_id)
    row.interaction_token = None
    await session.flush()


async def record_delivery_started(session: AsyncSession, generation_id: int) -> Generation:
    """About to post in a channel: recovery looks for that post before posting again."""
    row = await _require(session, generation_id)
    row.delivery_started_at = utcnow()
    await session.flush()
    return row


async def record_delivery_failure(session: AsyncSession, generation_id: int, reason: str) -> Generation:
    """Posting failed for good; recover() will not try to deliver it again."""
    row = await _require(session, generation_id)
    row.delivery_failure = reason
    row.interaction_token = None
    log.info("generation %d delivery failed: %s", row.id, reason)
    await session.flush()
    return row


async def soft_delete(session: AsyncSession, generation_id: int) -> list[str]:
    """Mark the generation deleted, drop its image rows; returns the file paths to remove.

    A queued or running generation is cancelled first so recover() never renders it.
    """
    row = await _require(session, generation_id)
    if row.status in (S.QUEUED, S.RUNNING):
        _transition(row, S.CANCELLED, ": deleted")
        row.failure_reason = "deleted"
        row.finished_at = utcnow()
    paths = [image.path for image in row.images]
    if row.init_image_path:
        paths.append(row.init_image_path)
    paths += [path for path in (row.sref_path, row.oref_path) if path]  # references (0010)
    row.images = []
    row.init_image_path = None
    row.init_image_sha256 = None
    row.init_image_url = None
    row.sref_path = row.oref_path = None
    row.interaction_token = None
    row.deleted_at = utcnow()
    log.info("generation %d deleted (%d file(s))", row.id, len(paths))
    await session.flush()
    return paths


# ---- recovery ------------------------------------------------------------------------------


async def recover(
    session: AsyncSession, max_attempts: int = DEFAULT_MAX_ATTEMPTS, *, requeue_running: bool = True
) -> tuple[list[Generation], list[Generation], list[Generation]]:
    """After a restart: (to_render, to_deliver, failed_now).

    A running row means the process died while working on it (loading the model or rendering):
    it is queued again, unless it has already been started `max_attempts` times, then it fails.
    """
    live = Generation.deleted_at.is_(None)
    # With the shared queue (`requeue_running=False`) running jobs belong to live workers: claims.expire_leases
    # takes back only those whose lease ran out.
    interrupted = (
        await session.scalars(
            with_images(select(Generation).where(Generation.status == S.RUNNING.value, live))
            .order_by(Generation.id)
            .with_for_update()
        )
    ).all() if requeue_running else []
    failed_now: list[Generation] = []
    for row in interrupted:
        if row.attempts < max_attempts:
            _transition(row, S.QUEUED, f" (interrupted by a restart after {row.attempts} attempt(s))")
            row.started_at = None
        else:
            reason = interrupted_reason(row.attempts)
            _transition(row, S.FAILED, f": {reason}")
            row.failure_reason = reason
            row.finished_at = utcnow()
            failed_now.append(row)
    await session.flush()
    to_render = (
        await session.scalars(
            with_images(select(Generation).where(Generation.status == S.QUEUED, live))
            .order_by(Generation.id)
        )
    ).all()
    to_deliver = (
        await session.scalars(
            with_images(
                select(Generation).where(
                    Generation.status == S.DONE,
                    Generation.message_id.is_(None),
                    Generation.delivery_failure.is_(None),
                    live,
                )
            ).order_by(Generation.id)
        )
    ).all()
    return list(to_render), list(to_deliver), failed_now
