"""Plain frozen records the Store hands out: detached from any session, safe to keep around."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .models import PARAM_FIELDS, Generation, GenerationKind, GenerationStatus, GuildConfig, Image, Turn, TurnState

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

RecordT = TypeVar("RecordT", bound="DataclassInstance")


def from_columns(record: type[RecordT], row: object, **derived: Any) -> RecordT:
    """A record from an ORM row: every field read from the row's attribute of the same name, except the
    `derived` ones (computed by the caller; a relationship is never touched unless asked for)."""
    names = [item.name for item in fields(record) if item.name not in derived]
    return record(**{name: getattr(row, name) for name in names}, **derived)


@dataclass(frozen=True)
class ImageInput:
    """One rendered image handed to mark_done, as the PNG file to keep (its metadata written by the caller)."""

    index: int
    png: bytes
    seed: int
    variation_seed: int | None = None
    variation_strength: float = 0.0
    nsfw: str | None = None  # what flagged it as not safe for work ("safety_checker", "classifier")
    batch_size: int = 1  # images in the pipeline call that rendered it (0008)
    batch_index: int = 0  # its position in that call


@dataclass(frozen=True)
class ImageRecord:
    index: int
    seed: int
    variation_seed: int | None
    variation_strength: float
    width: int
    height: int
    path: str  # relative to the data directory
    sha256: str
    nsfw: str | None = None  # what flagged it as not safe for work; None = nothing did
    batch_size: int = 1  # images in the pipeline call that rendered it: a re-render pads to this (0008)
    batch_index: int = 0  # its position in that call

    @classmethod
    def from_row(cls, row: Image) -> ImageRecord:
        return from_columns(cls, row)


@dataclass(frozen=True)
class GenerationRecord:
    id: int
    owner_id: int
    guild_id: int | None
    channel_id: int | None
    kind: GenerationKind
    parent_id: int | None
    status: GenerationStatus
    failure_reason: str | None
    attempts: int  # render attempts started
    source_index: int | None  # a pick: which image of the parent

    prompt: str
    negative_prompt: str | None
    width: int | None
    height: int | None
    num_inference_steps: int | None
    guidance_scale: float | None
    seed: int | None
    sampler: str | None
    count: int | None
    strength: float | None
    edit_mode: str | None
    edit_factor: float | None
    edit_direction: str | None
    edit_region: str | None
    variation_seed: int | None
    variation_strength: float | None
    model: str | None
    tiling: bool | None
    sref_url: str | None  # references (0010): the URL given, its weight, and the stored picture's sha256
    sref_weight: int | None
    oref_url: str | None
    oref_weight: int | None
    sref_sha256: str | None
    oref_sha256: str | None
    sref_path: str | None  # the stored reference pictures (None: none, or still to download)
    oref_path: str | None
    has_init_image: bool
    init_image_url: str | None  # still to download (the job does that before rendering)
    interaction_token: str | None = field(repr=False)  # a secret: never in logs or reprs
    interaction_expires_at: datetime | None

    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None

    message_id: int | None
    message_channel_id: int | None
    delivered_at: datetime | None
    delivery_failure: str | None
    delivery_started_at: datetime | None
    deleted: bool
    images: tuple[ImageRecord, ...] = field(default=())
    turn_text: str | None = None  # a conversation turn: the member's words (0009)
    turn_reading: dict[str, Any] | None = None  # and what they were understood as

    @property
    def request_params(self) -> dict[str, Any]:
        """The render parameters as GenerationRequest keyword arguments (unset ones left out)."""
        params = {name: getattr(self, name) for name in PARAM_FIELDS}
        return {name: value for name, value in params.items() if value is not None}

    @classmethod
    def from_row(cls, row: Generation, *, with_images: bool = True) -> GenerationRecord:
        return from_columns(
            cls, row,
            has_init_image=row.init_image_path is not None or row.init_image_url is not None,
            deleted=row.deleted_at is not None,
            images=tuple(ImageRecord.from_row(image) for image in row.images) if with_images else (),
        )


@dataclass(frozen=True)
class TurnRecord:
    """A Discord message claimed as a turn (0009), and how it ended."""

    message_id: int
    channel_id: int
    author_id: int | None
    generation_id: int | None
    state: TurnState
    reason: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Turn) -> TurnRecord:
        return from_columns(cls, row)


@dataclass(frozen=True)
class Recovery:
    """What startup must do: render these (in order), then post these (rendered, never posted)."""

    to_render: list[GenerationRecord]
    to_deliver: list[GenerationRecord]
    failed: list[GenerationRecord]  # interrupted too often; marked failed during this recovery


@dataclass(frozen=True)
class Lineage:
    ancestors: list[GenerationRecord]  # root first, ending with the direct parent
    children: list[GenerationRecord]  # direct children, oldest first


@dataclass(frozen=True)
class Stats:
    count: int  # generations (not deleted), any status
    done: int
    images: int
    total_render_s: float


@dataclass(frozen=True)
class GuildConfigRecord:
    """One server's /config values; a server that never changed one gets the empty defaults."""

    guild_id: int
    allowed_channel_ids: tuple[int, ...] = ()  # empty = every channel
    defaults: dict[str, Any] = field(default_factory=dict)  # request field -> value
    nsfw_policy: str | None = None
    banned_words: tuple[str, ...] = ()
    queue_cap: int | None = None
    daily_quota: int | None = None
    allowed_models: tuple[str, ...] = ()  # empty = every model
    mod_log_channel_id: int | None = None
    updated_at: datetime | None = None  # None = never configured

    @classmethod
    def from_row(cls, row: GuildConfig) -> GuildConfigRecord:
        return from_columns(
            cls, row,
            allowed_channel_ids=tuple(int(value) for value in row.allowed_channel_ids or ()),
            defaults=dict(row.defaults or {}),
            banned_words=tuple(row.banned_words or ()),
            allowed_models=tuple(row.allowed_models or ()),
        )


# The fields of a guild configuration that `Store.update_guild_config` changes.
GUILD_CONFIG_FIELDS: tuple[str, ...] = (
    "allowed_channel_ids", "defaults", "nsfw_policy", "banned_words", "queue_cap", "daily_quota",
    "allowed_models", "mod_log_channel_id",
)
