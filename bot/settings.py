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


class Settings(BaseSettings):
    # An empty value in .env means "not set" (None), as the comments in .env.example say.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_parse_none_str="")

    discord_token: SecretStr | None = None
    model: str = "tinyshapes"
    extra_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
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

    default_width: int | None = None
    default_height: int | None = None
    default_steps: int = 20
    default_guidance: float = 5.0
    default_sampler: str = "DPM++ 2M"
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

    # Content policy: what happens to an image flagged NSFW outside age-restricted channels where a
    # server chose nothing with /config (and in DMs and user installs): block | spoiler | allow.
    nsfw_policy: Literal["block", "spoiler", "allow"] = "block"
    nsfw_classifier: str | None = None  # a transformers image-classification model id or folder
    nsfw_classifier_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["nsfw", "porn", "hentai", "sexy"])
    nsfw_classifier_threshold: float = 0.5

    playground_port: int = 8765
    playground_settle_s: float = 60.0

    _split = field_validator("extra_models", "allowed_guilds", "nsfw_classifier_labels", mode="before")(_split_list)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'imagine.db').resolve()}"

    @property
    def model_names(self) -> list[str]:
        return [self.model, *[m for m in self.extra_models if m != self.model]]
    # /describe for models other than the shipped one: a transformers image-to-text model id or folder.
    describe_model: str | None = None
    # How results look: "gallery" (Components V2: a container with a media gallery and the buttons) or
    # "embed" (the classic embed with the picture, for clients that need it).
    result_layout: Literal["gallery", "embed"] = "embed"

