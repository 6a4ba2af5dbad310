"""The render side's settings, from the environment or `.env` (see `.env.example`): what a render worker
(`python -m generation.worker`) reads, and what the bot's Settings (bot/settings.py) build on.

Each setting is declared once, here or in bot/settings.py; nothing reads settings at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .cpu_threads import configured_cpu_threads


def split_list(value: object) -> object:
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


class RenderSettings(BaseSettings):
    """What rendering, the database and image store, a shared-queue worker and the operator's port need."""

    # An empty value in .env means "not set" (None), as the comments in .env.example say.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      env_parse_none_str="")

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
    # A render worker of the shared queue (PostgreSQL only): see generation/queue/shared.py and README "Deployment".
    worker_id: str | None = None
    worker_jobs: int = 1
    lease_s: float = 30.0
    queue_poll_s: float = 5.0
    image_store: str | None = None

    min_size: int = 32
    max_size: int = 1024
    max_pixels: int = 1024 * 1024
    max_steps: int = 50
    max_count: int = 4

    queue_per_user: int = 5
    queue_total: int = 50
    max_render_attempts: int = 2

    log_level: str = "INFO"
    # Operating it (README): /metrics, /healthz, /readyz on this port (None: off; 0: any free port);
    # log lines as text or one JSON object each; the salt of the owner hash in log lines.
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    log_format: Literal["human", "json"] = "human"
    log_salt: str | None = None

    # Where an image is checked for NSFW content: a transformers image-classification model id or folder.
    nsfw_classifier: str | None = None
    nsfw_classifier_labels: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["nsfw", "porn", "hentai", "sexy"])
    nsfw_classifier_threshold: float = 0.5

    _split_render_lists = field_validator("extra_models", "nsfw_classifier_labels", mode="before")(split_list)

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

    def with_cpu_thread_default(self) -> Self:
        """CPU_THREADS left empty: what the configured models' entries declare (the shipped tiny model: 1,
        faster on any machine and by far on a loaded one; see README, Benchmarks), else torch's default.
        Every entry point (the bot, the render worker, the playground) starts through here; the CLI and the
        bench ask generation.cpu_threads the same way."""
        if self.cpu_threads is not None:
            return self
        threads = configured_cpu_threads(self.model_names, self.models_file)
        return self if threads is None else self.model_copy(update={"cpu_threads": threads})
