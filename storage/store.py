"""The Store facade the bot uses: one session per unit of work, records out, no SQL leaks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import claims, files, queries, references, repository, turns
from .images import ImageStore, LocalImageStore, open_image_store
from .engine import WRITE_OPTION, create_engine, default_url, is_sqlite, make_sessionmaker, migrate
from .models import Generation, GenerationKind, GenerationStatus, GuildConfig
from .records import GenerationRecord, GuildConfigRecord, ImageInput, ImageRecord, Lineage, Recovery, Stats

log = logging.getLogger(__name__)


class Store:
    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], data_dir: Path,
                 images: ImageStore | None = None) -> None:
        self.engine = engine
        self.data_dir = Path(data_dir)
        # Where image files live (IMAGE_STORE): the data directory unless given.
        self.images = images or LocalImageStore(self.data_dir)
        self._sessions = sessions
        # SQLite has one writer at a time: queueing writers here (instead of on busy_timeout)
        # keeps them fair and fast; BEGIN IMMEDIATE still guards against other processes.
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self.turns = turns.TurnLog(self._writing, self._reading)  # messages claimed as conversation turns

    @classmethod
    async def open(cls, url: str | None = None, data_dir: Path | str = Path("data"),
                   image_store: str | None = None) -> Store:
        """Connect, apply migrations up to head, and return a ready Store.

        `url` defaults to the SQLite file `<data_dir>/imagine.db`; any SQLAlchemy async URL
        (e.g. postgresql+asyncpg://...) works the same. `image_store` is where image files go (see
        images.py: None = the data directory, or a folder, or an fsspec URL such as s3://bucket/prefix).
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        url = url or default_url(data_dir)
        engine = create_engine(url)
        try:
            await migrate(engine)
        except BaseException:
            await engine.dispose()
            raise
        log.info("store open: %s (%s), data in %s", engine.url.render_as_string(hide_password=True),
                 "sqlite" if is_sqlite(url) else engine.dialect.name, data_dir)
        return cls(engine, make_sessionmaker(engine), data_dir, open_image_store(image_store, data_dir))

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- units of work ---------------------------------------------------------------------

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncSession]:
        """One write transaction: committed on success, rolled back on any exception."""
        if self._write_lock is None:
            async with self._sessions() as session, session.begin():
                yield session
            return
        async with self._write_lock:
            async with self._sessions(execution_options={WRITE_OPTION: True}) as session, session.begin():
                yield session

    # ---- lifecycle -------------------------------------------------------------------------

    async def create_generation(
        self,
        *,
        owner_id: int,
        guild_id: int | None,
        channel_id: int | None,
        kind: GenerationKind | str,
        parent_id: int | None,
        params: Mapping[str, Any],
        init_image: bytes | None = None,
        init_image_url: str | None = None,
        source_index: int | None = None,
        interaction_token: str | None = None,
        interaction_expires_at: datetime | None = None,
        turn_text: str | None = None,
        turn_reading: Mapping[str, Any] | None = None,
        turn_message_id: int | None = None,
    ) -> GenerationRecord:
        """Queue a new generation. `params` uses GenerationRequest field names (not init_image).

        The init image is either given (written now) or an `init_image_url` still to download
        (`attach_init_image` later). The interaction token lets a restarted bot edit the reply. A turn's
        generation records its words and reading; its claimed message (`turn_message_id`) turns queued in
        the same transaction.
        """
        written: list[str] = []
        try:
            async with self._writing() as session:
                row = await repository.create_generation(
                    session, owner_id=owner_id, guild_id=guild_id, channel_id=channel_id,
                    kind=kind, parent_id=parent_id, params=params, source_index=source_index,
                    init_image_url=init_image_url, interaction_token=interaction_token,
                    interaction_expires_at=interaction_expires_at, turn_text=turn_text, turn_reading=turn_reading,
                )
                if turn_message_id is not None:
                    await turns.attach_generation(session, turn_message_id, row.id)
                for prefix, path, data in references.pictures_to_store(row.id, init_image, params):
                    await asyncio.to_thread(self.images.write, path, data)
                    written.append(path)
                    setattr(row, f"{prefix}_path", path)  # init_image_path, sref_path, oref_path (0010)
                    setattr(row, f"{prefix}_sha256", files.sha256_hex(data))
                record = GenerationRecord.from_row(row, with_images=False)
        except BaseException:
            await asyncio.to_thread(self.images.remove, written)
            raise
        return record

    async def attach_init_image(self, generation_id: int, init_image: bytes,
                                size: tuple[int, int] | None = None) -> GenerationRecord:
        """Store the downloaded init image of a generation created with `init_image_url`; `size`: the width
        and height it renders at, known only now (an instruction edit keeps its picture's size)."""
        path = files.init_image_path(generation_id, init_image)
        return await self._attach_file(path, init_image, lambda session: references.attach_init_image(
            session, generation_id, path, files.sha256_hex(init_image), size))

    async def attach_reference(self, generation_id: int, kind: str, data: bytes) -> GenerationRecord:
        """Store the downloaded style ("sref") or object ("oref") reference of a generation created with
        its URL only; a shared-queue worker claims the job once every reference given has its file."""
        path = files.reference_path(generation_id, kind, data)
        return await self._attach_file(path, data, lambda session: references.attach_reference(
            session, generation_id, kind, path, files.sha256_hex(data)))

    async def _attach_file(self, path: str, data: bytes,
                           attach: Callable[[AsyncSession], Awaitable[Generation]]) -> GenerationRecord:
        """Write a downloaded picture, then record it on its row; the file goes again if recording fails."""
        await asyncio.to_thread(self.images.write, path, data)
        try:
            async with self._writing() as session:
                return GenerationRecord.from_row(await attach(session))
        except BaseException:
            await asyncio.to_thread(self.images.remove, [path])
            raise

    async def read_references(self, generation_id: int) -> dict[str, bytes]:
        """{"sref_image"/"oref_image": bytes} of the stored references (checked against their sha256), to
        put back into a request: Reroll, Vary and re-render reuse the exact pictures."""
        async with self._reading() as session:
            row = await repository.get_generation(session, generation_id)
            if row is None:
                raise repository.GenerationNotFound(generation_id)
            stored = references.stored_references(row)
        return {f"{kind}_image": await asyncio.to_thread(self.images.read_checked, path, digest)
                for kind, (path, digest) in stored.items()}

    async def mark_running(self, generation_id: int) -> GenerationRecord:
        """Count a started attempt (call when the worker takes the job, before the model loads)."""
        async with self._writing() as session:
            return GenerationRecord.from_row(await repository.mark_running(session, generation_id))

    async def mark_done(
        self, generation_id: int, images: Sequence[ImageInput], duration_s: float, *, worker_id: str | None = None
    ) -> GenerationRecord:
        """Write each image's PNG (as given: the caller writes its metadata), then record it done.

        Refused with InvalidTransition if the generation already finished: nothing is
        overwritten and no file is written. `worker_id` (a shared-queue worker): refused with LeaseLost
        unless that worker still holds the job's lease, so exactly one worker finishes a job.
        """
        async with self._reading() as session:
            current = GenerationRecord.from_row(await repository.check_can_finish(session, generation_id, worker_id))
        encoded = await asyncio.to_thread(_describe_all, current, images)
        written: list[str] = []
        try:
            async with self._writing() as session:
                row = await repository.mark_done(session, generation_id, [new for new, _ in encoded], duration_s,
                                                 worker_id)
                for new, data in encoded:
                    await asyncio.to_thread(self.images.write, new.path, data)
                    written.append(new.path)
                record = GenerationRecord.from_row(row)
        except BaseException:
            await asyncio.to_thread(self.images.remove, written)
            raise
        return record

    async def mark_failed(self, generation_id: int, reason: str, *, worker_id: str | None = None,
                          ) -> GenerationRecord:
        async with self._writing() as session:
            return GenerationRecord.from_row(await repository.mark_failed(session, generation_id, reason, worker_id))

    async def mark_cancelled(self, generation_id: int, reason: str | None = None) -> GenerationRecord:
        async with self._writing() as session:
            return GenerationRecord.from_row(await repository.mark_cancelled(session, generation_id, reason))

    async def record_delivery(self, generation_id: int, channel_id: int | None, message_id: int) -> GenerationRecord:
        async with self._writing() as session:
            row = await repository.record_delivery(session, generation_id, channel_id, message_id)
            return GenerationRecord.from_row(row)

    async def record_delivery_started(self, generation_id: int) -> GenerationRecord:
        async with self._writing() as session:
            return GenerationRecord.from_row(await repository.record_delivery_started(session, generation_id))

    async def clear_interaction(self, generation_id: int) -> None:
        async with self._writing() as session:
            await repository.clear_interaction(session, generation_id)

    async def record_delivery_failure(self, generation_id: int, reason: str) -> GenerationRecord:
        async with self._writing() as session:
            return GenerationRecord.from_row(await repository.record_delivery_failure(session, generation_id, reason))

    async def recover(self, max_attempts: int = repository.DEFAULT_MAX_ATTEMPTS) -> Recovery:
        """Call once at startup, before new work: see repository.recover for the rules."""
        async with self._writing() as session:
            to_render, to_deliver, failed = await repository.recover(session, max_attempts)
            recovery = Recovery(
                to_render=[GenerationRecord.from_row(row) for row in to_render],
                to_deliver=[GenerationRecord.from_row(row) for row in to_deliver],
                failed=[GenerationRecord.from_row(row) for row in failed],
            )
        log.info("recovery: %d to render, %d to deliver, %d failed",
                 len(recovery.to_render), len(recovery.to_deliver), len(recovery.failed))
        return recovery

    # ---- the shared queue (PostgreSQL; see claims.py) -----------------------------------------

    @property
    def shared(self) -> bool:
        """Whether this database can be the shared queue of several render workers (PostgreSQL)."""
        return self.engine.dialect.name == "postgresql"

    def _require_shared(self) -> None:
        if not self.shared:
            raise RuntimeError("the shared queue needs PostgreSQL (DATABASE_URL=postgresql+asyncpg://...)")

    async def claim(self, worker_id: str, *, models: Sequence[str], max_size: int, loaded_model: str | None,
                    lease_s: float, limit: int = 1, max_attempts: int = repository.DEFAULT_MAX_ATTEMPTS,
                    ) -> tuple[list[GenerationRecord], list[GenerationRecord]]:
        """Claim up to `limit` jobs in fair order: (claimed, failed because their lease expired too often)."""
        self._require_shared()
        async with self._writing() as session:
            claimed, failed = await claims.claim(session, worker_id, models=models, max_size=max_size,
                                                 loaded_model=loaded_model, lease_s=lease_s, limit=limit,
                                                 max_attempts=max_attempts)
            return ([GenerationRecord.from_row(row) for row in claimed],
                    [GenerationRecord.from_row(row) for row in failed])

    async def renew_leases(self, worker_id: str, generation_ids: Sequence[int], lease_s: float) -> set[int]:
        """Extend the worker's leases; returns the ids it still holds (stop rendering the others)."""
        self._require_shared()
        async with self._writing() as session:
            return await claims.renew(session, worker_id, generation_ids, lease_s)

    async def expire_leases(self, max_attempts: int = repository.DEFAULT_MAX_ATTEMPTS,
                            ) -> tuple[list[GenerationRecord], list[GenerationRecord]]:
        """Jobs whose worker stopped renewing: (queued again, failed now)."""
        self._require_shared()
        async with self._writing() as session:
            requeued, failed = await claims.expire_leases(session, max_attempts)
            return ([GenerationRecord.from_row(row) for row in requeued],
                    [GenerationRecord.from_row(row) for row in failed])

    async def recover_shared(self, max_attempts: int = repository.DEFAULT_MAX_ATTEMPTS) -> Recovery:
        """The gateway's start-up with the shared queue: jobs with an expired lease are queued again (or fail);
        `to_render` is every queued or running job (workers render them: the gateway follows them),
        `to_deliver` every done job never posted."""
        self._require_shared()
        async with self._writing() as session:
            _, failed = await claims.expire_leases(session, max_attempts)
            open_rows = (await session.scalars(
                repository.with_images(select(Generation).where(
                    Generation.status.in_([GenerationStatus.QUEUED.value, GenerationStatus.RUNNING.value]),
                    Generation.deleted_at.is_(None))).order_by(Generation.id))).all()
            _, to_deliver, _ = await repository.recover(session, max_attempts, requeue_running=False)
            recovery = Recovery(to_render=[GenerationRecord.from_row(row) for row in open_rows],
                                to_deliver=[GenerationRecord.from_row(row) for row in to_deliver],
                                failed=[GenerationRecord.from_row(row) for row in failed])
        log.info("shared recovery: %d queued or rendering, %d to deliver, %d failed",
                 len(recovery.to_render), len(recovery.to_deliver), len(recovery.failed))
        return recovery

    async def register_worker(self, worker_id: str, *, host: str, models: Sequence[str], max_size: int) -> None:
        self._require_shared()
        async with self._writing() as session:
            await claims.register_worker(session, worker_id, host=host, models=models, max_size=max_size)

    async def worker_heartbeat(self, worker_id: str, *, loaded_model: str | None, current_jobs: Sequence[int],
                               jobs_done: int = 0, images_done: int = 0, render_s: float = 0.0,
                               stopped: bool = False) -> None:
        async with self._writing() as session:
            await claims.worker_heartbeat(session, worker_id, loaded_model=loaded_model, current_jobs=current_jobs,
                                          jobs_done=jobs_done, images_done=images_done, render_s=render_s,
                                          stopped=stopped)

    async def workers(self) -> list[claims.WorkerRecord]:
        async with self._reading() as session:
            return [claims.WorkerRecord.from_row(row) for row in await claims.list_workers(session)]

    async def shared_queue(self) -> list[claims.QueuedJob]:
        """Every queued and rendering job, rendering first, then in the order workers will claim them."""
        async with self._reading() as session:
            return await claims.shared_queue(session)

    async def cancel_and_notify(self, generation_id: int, channel: str, reason: str | None = None,
                                ) -> GenerationRecord:
        """Cancel a queued or running job and NOTIFY `channel` with its id in the same transaction: whoever
        renders it hears of it the moment the row says so."""
        async with self._writing() as session:
            row = await repository.mark_cancelled(session, generation_id, reason)
            if self.shared:
                await session.execute(select(func.pg_notify(channel, str(generation_id))))
            return GenerationRecord.from_row(row)

    async def ping(self) -> None:
        """A round trip to the database (readiness probes); raises when it cannot be reached."""
        async with self._reading() as session:
            await session.execute(select(1))

    async def database_now(self) -> datetime:
        async with self._reading() as session:
            return await claims.db_now(session)

    async def notify(self, channel: str, payload: str) -> None:
        """PostgreSQL NOTIFY (payloads stay small: ids and step counts); nothing on SQLite."""
        if not self.shared:
            return
        async with self._sessions() as session, session.begin():
            await session.execute(select(func.pg_notify(channel, payload)))

    async def delete_generation(self, generation_id: int) -> None:
        """Soft-delete the row (kept for lineage), remove its image files."""
        async with self._writing() as session:
            paths = await repository.soft_delete(session, generation_id)
        # Files go after the commit: a crash in between leaves orphan files, never a record
        # pointing at files that are gone.
        await asyncio.to_thread(self.images.remove, paths)

    # ---- reads -----------------------------------------------------------------------------

    async def get(self, generation_id: int, *, include_deleted: bool = False) -> GenerationRecord | None:
        """A generation; a deleted one only with `include_deleted` (its row stays for lineage)."""
        async with self._reading() as session:
            row = await repository.get_generation(session, generation_id, include_deleted=include_deleted)
            return GenerationRecord.from_row(row) if row else None

    async def get_by_message(self, message_id: int) -> GenerationRecord | None:
        async with self._reading() as session:
            row = await repository.get_by_message(session, message_id)
            return GenerationRecord.from_row(row) if row else None

    async def history(
        self, owner_id: int, *, before_id: int | None = None, limit: int = 10, query: str | None = None
    ) -> list[GenerationRecord]:
        async with self._reading() as session:
            rows = await queries.history(session, owner_id, before_id=before_id, limit=limit, query=query)
            return [GenerationRecord.from_row(row) for row in rows]

    async def count_history(self, owner_id: int, query: str | None = None) -> int:
        async with self._reading() as session:
            return await queries.count_history(session, owner_id, query)

    async def lineage(self, generation_id: int) -> Lineage:
        async with self._reading() as session:
            ancestors, children = await queries.lineage(session, generation_id)
            return Lineage(
                ancestors=[GenerationRecord.from_row(row) for row in ancestors],
                children=[GenerationRecord.from_row(row) for row in children],
            )

    async def stats(self, owner_id: int) -> Stats:
        async with self._reading() as session:
            count, done, images, total = await queries.stats(session, owner_id)
        return Stats(count=count, done=done, images=images, total_render_s=total)

    async def member_defaults(self, user_id: int) -> dict[str, Any]:
        """A member's own defaults for the request parameters they leave out (field name -> value)."""
        async with self._reading() as session:
            return await repository.get_member_defaults(session, user_id)

    async def set_member_defaults(self, user_id: int, values: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `values` into the member's defaults; None clears one. Returns them all."""
        async with self._writing() as session:
            return await repository.set_member_defaults(session, user_id, values)

    # ---- servers -----------------------------------------------------------------------------

    async def guild_config(self, guild_id: int) -> GuildConfigRecord:
        """A server's /config values (empty ones for a server that never set any)."""
        async with self._reading() as session:
            row = await session.get(GuildConfig, guild_id)
            return GuildConfigRecord.from_row(row) if row is not None else GuildConfigRecord(guild_id)

    async def update_guild_config(self, guild_id: int, **changes: Any) -> GuildConfigRecord:
        """Set some fields of a server's configuration (see GUILD_CONFIG_FIELDS); returns all of them."""
        async with self._writing() as session:
            return GuildConfigRecord.from_row(await repository.update_guild_config(session, guild_id, changes))

    async def images_made_since(self, owner_id: int, guild_id: int | None, since: datetime) -> int:
        """Images a member asked for in a server (None = outside servers) since `since` (UTC), from the
        rows: queued, running and done jobs count their requested images (deleted ones too); failed and
        cancelled ones count nothing, picks (copies) never do."""
        async with self._reading() as session:
            return await queries.images_made_since(session, owner_id, guild_id, since)

    async def read_image(self, image: ImageRecord) -> bytes:
        """The PNG bytes, checked against the recorded sha256 (CorruptImage if they differ)."""
        return await asyncio.to_thread(self.images.read_checked, image.path, image.sha256)

    async def read_init_image(self, generation_id: int) -> bytes | None:
        async with self._reading() as session:
            row = await repository.get_generation(session, generation_id)
            if row is None:
                raise repository.GenerationNotFound(generation_id)
            path, digest = row.init_image_path, row.init_image_sha256
        if path is None or digest is None:
            return None
        return await asyncio.to_thread(self.images.read_checked, path, digest)


def _describe_all(
    record: GenerationRecord, images: Sequence[ImageInput]
) -> list[tuple[ImageRecord, bytes]]:
    """Each PNG with the record of it: size read from its header, path from ids, checksum (a thread's work)."""
    described = []
    for image in images:
        width, height = files.png_size(image.png)
        new = ImageRecord(
            index=image.index, seed=image.seed, variation_seed=image.variation_seed,
            variation_strength=image.variation_strength, width=width, height=height,
            path=files.image_path(record.id, image.index), sha256=files.sha256_hex(image.png), nsfw=image.nsfw,
            batch_size=image.batch_size, batch_index=image.batch_index,
        )
        described.append((new, image.png))
    return described
