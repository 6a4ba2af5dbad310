"""Every setting imagine-bot reads, from the environment or `.env` (see `.env.example`).

Built once in `main` and injected; nothing reads settings at import time.
"""

from __future__ import annotations

from pathlib import Path

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: object) -> object:
    """Accept "a,b,c" (the .env form) as well as a JSON list."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _models_file_names(path: Path) -> tuple[str, ...]:
    """The model names a models file lists, in order (the file is read once; it is checked in full when loaded)."""
    import tomllib

    try:
        return tuple(tomllib.loads(path.read_text()).get("models", {})) or ("tinyshapes",)
    except (OSError, tomllib.TOMLDecodeError):
        return ("tinyshapes",)  # build_service reports the problem with the file's name and line


class Settings(BaseSettings):
    # An empty value in .env means "not set" (None), as the comments in .env.example say.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_parse_none_str="")

    discord_token: SecretStr | None = None
    model: str = "tinyshapes"
    extra_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    models_file: Path | None = None
    lora_dir: Path | None = None
    ip_adapter_dir: Path | None = None  # IP-Adapter weights for --sref/--oref on SD 1.x/SDXL (models file: ip_adapter)
    offload: Literal["none", "model", "sequential"] = "none"
    device: str = "auto"
    dtype: str = "auto"
    cpu_threads: int | None = None
    # Images one pipeline call may render together (compatible requests share it): a number, or auto
    # (CPU: a quick probe per model; CUDA: grow while images/s improves, halve on out-of-memory).
    batch_images: Literal["auto"] | Annotated[int, Field(ge=1)] = "auto"
    # CUDA only: torch.compile the UNet/transformer (regional, warmed at load; batch sizes bucketed).
    torch_compile: bool = False
    data_dir: Path = Path("data")
    database_url: str | None = None
    # Several render workers (PostgreSQL only): see generation/queue/shared.py and README "Deployment".
    shared_queue: bool = False
    local_worker: bool = True
    worker_id: str | None = None
    worker_jobs: int = 1
    lease_s: float = 30.0
    queue_poll_s: float = 5.0
    image_store: str | None = None

    default_width: int | None = None
    default_height: int | None = None
    # None: each model's own default (its family's, or what MODELS_FILE sets for it).
    default_steps: int | None = None
    default_guidance: float | None = None
    default_sampler: str | None = None
    min_size: int = 32
    max_size: int = 1024
    max_pixels: int = 1024 * 1024
    max_steps: int = 50
    max_count: int = 4

    queue_per_user: int = 5
    queue_total: int = 50
    max_render_attempts: int = 2
    share_results: bool = True

    allowed_guilds: Annotated[list[int], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    # Operating it (README): /metrics, /healthz, /readyz on this port (None: off; 0: any free port);
    # log lines as text or one JSON object each; the salt of the owner hash in log lines.
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    log_format: Literal["human", "json"] = "human"
    log_salt: str | None = None
    # Gateway sharding: SHARD_COUNT shards in all (None: one process, Discord's recommendation), of which
    # this process runs SHARD_IDS (empty: all). DMs and user installs belong to the gateway of shard 0.
    shard_count: int | None = None
    shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # Content policy: what happens to an image flagged NSFW outside age-restricted channels where a
    # server chose nothing with /config (and in DMs and user installs): block | spoiler | allow.
    nsfw_policy: Literal["block", "spoiler", "allow"] = "block"
    nsfw_classifier: str | None = None  # a transformers image-classification model id or folder
    nsfw_classifier_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["nsfw", "porn", "hentai", "sexy"])
    nsfw_classifier_threshold: float = 0.5

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

    _split = field_validator("extra_models", "allowed_guilds", "nsfw_classifier_labels", "shard_ids",
                             mode="before")(_split_list)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'imagine.db').resolve()}"

    @property
    def model_names(self) -> list[str]:
        """The models members may pick, the default first: MODELS_FILE's, else MODEL and EXTRA_MODELS."""
        if self.models_file is not None:
            return list(_models_file_names(self.models_file))
        return [self.model, *[m for m in self.extra_models if m != self.model]]

    @property
    def default_model(self) -> str:
        return self.model_names[0]
