"""storage: everything a user made, in SQL (SQLAlchemy 2.0 async) plus PNG files on disk.

The bot uses only the `Store` facade; `repository` holds the session-level functions.
"""

from .files import CorruptImage
from .models import GenerationKind, GenerationStatus, TurnState
from .records import (
    GUILD_CONFIG_FIELDS,
    GenerationRecord,
    GuildConfigRecord,
    ImageInput,
    ImageRecord,
    Lineage,
    Recovery,
    Stats,
    TurnRecord,
)
from .repository import GenerationNotFound, InvalidTransition
from .store import Store
from .turns import TurnNotFound

__all__ = [
    "CorruptImage",
    "GenerationKind",
    "GenerationNotFound",
    "GenerationRecord",
    "GenerationStatus",
    "GUILD_CONFIG_FIELDS",
    "GuildConfigRecord",
    "ImageInput",
    "ImageRecord",
    "InvalidTransition",
    "Lineage",
    "Recovery",
    "Stats",
    "Store",
    "TurnNotFound",
    "TurnRecord",
    "TurnState",
]
