"""Plain frozen records the Store hands out: detached from any session, safe to keep around."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from PIL import Image as PILImage

from .models import PARAM_FIELDS, Generation, GenerationKind, GenerationStatus, Image


@dataclass(frozen=True)
class ImageInput:
    """One rendered image handed to mark_done."""

    index: int
    image: PILImage.Image
    seed: int
    variation_seed: int | None = None
    variation_strength: float = 0.0


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

    @classmethod
    def from_row(cls, row: Image) -> ImageRecord:
        return cls(
            index=row.index,
            seed=row.seed,
            variation_seed=row.variation_seed,
            variation_strength=row.variation_strength,
            width=row.width,
            height=row.height,
            path=row.path,
            sha256=row.sha256,
        )


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
    variation_seed: int | None
    variation_strength: float | None
    model: str | None
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

    @property
    def request_params(self) -> dict[str, Any]:
        """The render parameters as GenerationRequest keyword arguments (unset ones left out)."""
        params = {name: getattr(self, name) for name in PARAM_FIELDS}
        return {name: value for name, value in params.items() if value is not None}

    @classmethod
    def from_row(cls, row: Generation, *, with_images: bool = True) -> GenerationRecord:
        return cls(
            id=row.id,
            owner_id=row.owner_id,
            guild_id=row.guild_id,
            channel_id=row.channel_id,
            kind=row.kind,
            parent_id=row.parent_id,
            status=row.status,
            failure_reason=row.failure_reason,
            attempts=row.attempts,
            source_index=row.source_index,
            **{name: getattr(row, name) for name in PARAM_FIELDS},
            has_init_image=row.init_image_path is not None or row.init_image_url is not None,
            init_image_url=row.init_image_url,
            interaction_token=row.interaction_token,
            interaction_expires_at=row.interaction_expires_at,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            duration_s=row.duration_s,
            message_id=row.message_id,
            message_channel_id=row.message_channel_id,
            delivered_at=row.delivered_at,
            delivery_failure=row.delivery_failure,
            delivery_started_at=row.delivery_started_at,
            deleted=row.deleted_at is not None,
            images=tuple(ImageRecord.from_row(image) for image in row.images) if with_images else (),
        )


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
