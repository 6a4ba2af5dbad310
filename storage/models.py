"""The schema as typed ORM models (the head revision; migrations/ holds how we got here).

Column names of the render parameters are exactly the GenerationRequest field names so a
record converts to a request and back without a mapping table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    JSON,
    Enum as SQLEnum,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class GenerationStatus(str, Enum):
    """The one job-state enum: a generation's row is the job (the render service keeps no states of its own)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class GenerationKind(str, Enum):
    IMAGINE = "imagine"
    REROLL = "reroll"
    VARIATION = "variation"
    UPSCALE = "upscale"
    EDIT = "edit"
    PICK = "pick"  # U1–U4: one image of a grid on its own (copied, not rendered again)
    ZOOM = "zoom"  # Zoom Out 1.5×/2×, Custom Zoom (0006)
    SQUARE = "square"  # Make Square
    PAN = "pan"  # Pan ⬅️➡️⬆️⬇️
    REGION = "region"  # Vary (Region)
    BLEND = "blend"  # /blend


def _enum_column(enum: type[Enum]) -> SQLEnum:
    """A str Enum stored as its value in a VARCHAR(16) (no native type, no CHECK: new members need no DDL)."""
    return SQLEnum(enum, native_enum=False, create_constraint=False, length=16,
                   values_callable=lambda members: [member.value for member in members])


# Render parameters stored one column each (init_image is a file, see files.py).
PARAM_FIELDS: tuple[str, ...] = (
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "sampler",
    "count",
    "edit_mode",
    "edit_factor",
    "edit_direction",
    "edit_region",
    "strength",
    "variation_seed",
    "variation_strength",
    "model",
    "tiling",
    "sref_url",
    "sref_weight",
    "oref_url",
    "oref_weight",
)
# Reference pictures (0010) come in `params` as bytes and are kept as files, like the init image.
REFERENCE_IMAGE_FIELDS: tuple[str, ...] = ("sref_image", "oref_image")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite would otherwise hand back naive datetimes."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Discord snowflakes need 64 bits; on SQLite an INTEGER PRIMARY KEY is the rowid (autoincrementing).
Snowflake = BigInteger
RowId = BigInteger().with_variant(Integer(), "sqlite")

# Stable constraint names so Alembic can alter them on every backend.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Generation(Base):
    __tablename__ = "generations"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(Snowflake, ForeignKey("users.id"))
    guild_id: Mapped[int | None] = mapped_column(Snowflake)
    channel_id: Mapped[int | None] = mapped_column(Snowflake)
    kind: Mapped[GenerationKind] = mapped_column(_enum_column(GenerationKind))
    parent_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("generations.id", ondelete="SET NULL")
    )
    status: Mapped[GenerationStatus] = mapped_column(_enum_column(GenerationStatus), default=GenerationStatus.QUEUED)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Render attempts started: counted when the worker takes the job, before the model loads (0003).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # For a pick (U1–U4): which image of the parent this generation is (0003).
    source_index: Mapped[int | None] = mapped_column(Integer)

    prompt: Mapped[str] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    num_inference_steps: Mapped[int | None] = mapped_column(Integer)
    guidance_scale: Mapped[float | None] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    sampler: Mapped[str | None] = mapped_column(String(64))
    count: Mapped[int | None] = mapped_column(Integer)
    strength: Mapped[float | None] = mapped_column(Float)
    variation_seed: Mapped[int | None] = mapped_column(BigInteger)
    variation_strength: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str | None] = mapped_column(String(128))
    tiling: Mapped[bool | None] = mapped_column(Boolean)  # 0005
    init_image_path: Mapped[str | None] = mapped_column(String(255))
    init_image_sha256: Mapped[str | None] = mapped_column(String(64))
    # A Discord attachment still to download as the init image: the row exists before that slow step (0003).
    init_image_url: Mapped[str | None] = mapped_column(Text)
    # A masked edit or blend (0006): canvas and mask are derived from these and the init image.
    edit_mode: Mapped[str | None] = mapped_column(String(16))
    edit_factor: Mapped[float | None] = mapped_column(Float)
    edit_direction: Mapped[str | None] = mapped_column(String(8))
    edit_region: Mapped[str | None] = mapped_column(String(32))
    # Style and object references (0010): a URL still to download, then the file, its sha256 and its weight.
    sref_url: Mapped[str | None] = mapped_column(Text)
    sref_path: Mapped[str | None] = mapped_column(String(255))
    sref_sha256: Mapped[str | None] = mapped_column(String(64))
    sref_weight: Mapped[int | None] = mapped_column(Integer)
    oref_url: Mapped[str | None] = mapped_column(Text)
    oref_path: Mapped[str | None] = mapped_column(String(255))
    oref_sha256: Mapped[str | None] = mapped_column(String(64))
    oref_weight: Mapped[int | None] = mapped_column(Integer)

    # The interaction that asked for it, so a restart can still edit its message while the token lives;
    # cleared once the job is finished and posted (0003). A secret: never logged.
    interaction_token: Mapped[str | None] = mapped_column(Text)
    interaction_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_s: Mapped[float | None] = mapped_column(Float)

    # The Discord message that shows the finished result (null = not delivered yet).
    message_id: Mapped[int | None] = mapped_column(Snowflake)
    message_channel_id: Mapped[int | None] = mapped_column(Snowflake)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Added in revision 0002: why posting failed for good, so recovery stops retrying it.
    delivery_failure: Mapped[str | None] = mapped_column(Text)
    # Set just before a channel post (0003): recovery then looks for that post before posting again.
    delivery_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Shared queue (PostgreSQL, several workers): who rendered it last and until when its claim holds (0007).
    # Null for the in-process worker; an expired lease puts the job back in the queue.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A conversation turn (0009): the member's words, and what they were understood as (the interpreter's
    # reading as JSON). Null for generations asked for by command or button.
    turn_text: Mapped[str | None] = mapped_column(Text)
    turn_reading: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    images: Mapped[list[Image]] = relationship(
        back_populates="generation",
        order_by="Image.index",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    __table_args__ = (
        # /history: WHERE owner_id = ? AND deleted_at IS NULL AND id < ? ORDER BY id DESC is one
        # range scan of this index, and count_history never touches the table (revision 0002).
        Index("ix_generations_owner_id_deleted_at_id", "owner_id", "deleted_at", "id"),
        Index("ix_generations_parent_id", "parent_id"),
        Index("ix_generations_message_id", "message_id"),
        # recover(): queued/running rows, and done rows with no message yet.
        Index("ix_generations_status_message_id", "status", "message_id"),
        # the shared queue's claim: one owner's queued jobs, oldest first (0011).
        Index("ix_generations_status_owner_id_id", "status", "owner_id", "id"),
    )


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True)
    generation_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("generations.id", ondelete="CASCADE")
    )
    index: Mapped[int] = mapped_column(Integer)  # position in the grid, 0-based
    seed: Mapped[int] = mapped_column(BigInteger)
    variation_seed: Mapped[int | None] = mapped_column(BigInteger)
    variation_strength: Mapped[float] = mapped_column(Float, default=0.0)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(255))  # relative to the data directory
    sha256: Mapped[str] = mapped_column(String(64))
    # Flagged as not safe for work, and by what ("safety_checker", "classifier"); null = not flagged (0004).
    nsfw: Mapped[str | None] = mapped_column(String(32))
    # Its place in the pipeline call that rendered it (0008): images in the call, and its position there.
    # A re-render is bit-exact (same device type) in the same place; storage keeps the numbers only.
    batch_size: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    batch_index: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    generation: Mapped[Generation] = relationship(back_populates="images")

    __table_args__ = (UniqueConstraint("generation_id", "index"),)


class GuildConfig(Base):
    """One server's own rules, set by its admins with /config (0004). Null/empty = not set.

    Storage keeps the values as given; what they mean (and their bounds) is the bot's business.
    """

    __tablename__ = "guild_configs"

    guild_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)
    allowed_channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)  # empty = every channel
    defaults: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # request field -> server default
    nsfw_policy: Mapped[str | None] = mapped_column(String(16))  # block | spoiler | allow
    banned_words: Mapped[list[str]] = mapped_column(JSON, default=list)
    queue_cap: Mapped[int | None] = mapped_column(Integer)  # jobs queued or rendering per member
    daily_quota: Mapped[int | None] = mapped_column(Integer)  # images per member per UTC day
    allowed_models: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty = every model
    mod_log_channel_id: Mapped[int | None] = mapped_column(Snowflake)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OwnerTurn(Base):
    """Round-robin across owners for every worker: the claim number of each owner's latest job (0007)."""

    __tablename__ = "owner_turns"

    owner_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)
    last_claim: Mapped[int] = mapped_column(BigInteger)

    # the claim walks owners in this order (0011)
    __table_args__ = (Index("ix_owner_turns_last_claim", "last_claim"),)


class Worker(Base):
    """A render worker process (0007): what it can render, what it renders now, how fast, last heartbeat."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    models: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_size: Mapped[int] = mapped_column(Integer)
    loaded_model: Mapped[str | None] = mapped_column(String(128))
    current_jobs: Mapped[list[int]] = mapped_column(JSON, default=list)
    jobs_done: Mapped[int] = mapped_column(Integer, default=0)
    images_done: Mapped[int] = mapped_column(Integer, default=0)
    render_s: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TurnState(str, Enum):
    CLAIMED = "claimed"  # taken by one gateway; its answer is not recorded yet
    QUEUED = "queued"  # recorded as a generation (generation_id): the render path finishes it
    ANSWERED = "answered"  # answered without a generation (an action routed elsewhere, a refusal)
    FAILED = "failed"  # could not be answered; `reason` says why


class Turn(Base):
    """A Discord message read as a turn (0009). The message id is the key: a message is processed at most
    once, across restarts and across several gateways (the database resolves the race on insert)."""

    __tablename__ = "turns"

    message_id: Mapped[int] = mapped_column(Snowflake, primary_key=True, autoincrement=False)
    channel_id: Mapped[int] = mapped_column(Snowflake)
    author_id: Mapped[int | None] = mapped_column(Snowflake)
    generation_id: Mapped[int | None] = mapped_column(RowId, ForeignKey("generations.id", ondelete="SET NULL"))
    state: Mapped[TurnState] = mapped_column(_enum_column(TurnState), default=TurnState.CLAIMED)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Restart recovery: the turns still claimed, oldest first.
    __table_args__ = (Index("ix_turns_state_created_at", "state", "created_at"),)
