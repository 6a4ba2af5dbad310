"""Every setting imagine-bot reads, from the environment or `.env` (see `.env.example`): the render side's
(generation.settings.RenderSettings, which a render worker reads alone) and the bot's own below.

Built once in `main` and injected; nothing reads settings at import time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from generation.settings import RenderSettings, split_list


class Settings(RenderSettings):
    """The render side's settings (inherited) and the Discord gateway's."""

    discord_token: SecretStr | None = None
    # The shared queue (PostgreSQL only): see generation/queue/shared.py and README "Deployment".
    shared_queue: bool = False
    local_worker: bool = True

    default_width: int | None = None
    default_height: int | None = None
    # None: each model's own default (its family's, or what MODELS_FILE sets for it).
    default_steps: int | None = None
    default_guidance: float | None = None
    default_sampler: str | None = None

    share_results: bool = True

    allowed_guilds: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # Gateway sharding: SHARD_COUNT shards in all (None: one process, Discord's recommendation), of which
    # this process runs SHARD_IDS (empty: all). DMs and user installs belong to the gateway of shard 0.
    shard_count: int | None = None
    shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # Content policy: what happens to an image flagged NSFW outside age-restricted channels where a
    # server chose nothing with /config (and in DMs and user installs): block | spoiler | allow.
    nsfw_policy: Literal["block", "spoiler", "allow"] = "block"  # NSFW_CLASSIFIER: see RenderSettings

    # /describe for models other than the shipped one: a transformers image-to-text model id or folder.
    describe_model: str | None = None
    # How results look: "gallery" (Components V2: a container with a media gallery and the buttons) or
    # "embed" (the classic embed with the picture, for clients that need it).
    result_layout: Literal["gallery", "embed"] = "gallery"

    # Conversation turns (replies, mentions, DMs, threads). MESSAGE_CONTENT=true declares Discord's privileged
    # Message Content intent (enable it in the Developer Portal too): plain replies and thread messages
    # without a mention become readable. INTERPRETER_URL: an OpenAI-compatible endpoint that reads turns;
    # empty = the embedded rules alone (they also answer whenever the model fails or times out).
    message_content: bool = False
    interpreter_url: str | None = None
    interpreter_model: str = "llama3.1"
    interpreter_api_key: SecretStr | None = None
    interpreter_timeout_s: float = Field(default=10.0, gt=0)

    playground_port: int = 8765
    playground_settle_s: float = 60.0

    _split_bot_lists = field_validator("allowed_guilds", "shard_ids", mode="before")(split_list)
