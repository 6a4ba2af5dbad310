"""Gateway sharding (SHARD_COUNT, SHARD_IDS): which gateway process posts which job.

Discord routes a server's events to shard `(guild_id >> 22) % shard_count`, so a job made in a server is
followed and posted by the gateway that runs that shard; DMs and user installs without a server belong to
shard 0's gateway. Every gateway shares one PostgreSQL queue, so at start-up each one recovers only the
jobs of its own shards: a job is posted by exactly one gateway, and a gateway that died posts its jobs
when it returns (the other gateways leave them alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage import GenerationRecord, Recovery

DM_SHARD = 0  # the shard whose gateway posts jobs made outside servers


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard of a server (Discord's formula); DMs go to shard 0."""
    return DM_SHARD if guild_id is None else (guild_id >> 22) % shard_count


@dataclass(frozen=True)
class ShardPlan:
    """The shards of this gateway process: `shard_ids` of `shard_count` (None: this process has all)."""

    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ShardPlan:
        if settings.shard_count is None:
            if settings.shard_ids:
                raise ValueError("SHARD_IDS needs SHARD_COUNT (the number of shards of all gateways together)")
            return cls()
        if settings.shard_count < 1:
            raise ValueError(f"SHARD_COUNT must be at least 1, not {settings.shard_count}")
        ids = tuple(settings.shard_ids) or tuple(range(settings.shard_count))
        wrong = [shard for shard in ids if not 0 <= shard < settings.shard_count]
        if wrong or len(set(ids)) != len(ids):
            raise ValueError(f"SHARD_IDS must be distinct shards between 0 and {settings.shard_count - 1}: "
                             f"{', '.join(map(str, settings.shard_ids))}")
        return cls(settings.shard_count, ids)

    @property
    def split(self) -> bool:
        """Whether other gateway processes run some of the shards."""
        return self.shard_count is not None and self.shard_ids is not None and \
            len(self.shard_ids) < self.shard_count

    def owns(self, record: GenerationRecord) -> bool:
        """Whether this gateway follows and posts `record`."""
        if not self.split:
            return True
        assert self.shard_count is not None and self.shard_ids is not None
        return shard_of(record.guild_id, self.shard_count) in self.shard_ids

    def mine(self, recovery: Recovery) -> Recovery:
        """The part of a start-up recovery that belongs to this gateway's shards."""
        if not self.split:
            return recovery
        return type(recovery)(to_render=[record for record in recovery.to_render if self.owns(record)],
                              to_deliver=[record for record in recovery.to_deliver if self.owns(record)],
                              failed=[record for record in recovery.failed if self.owns(record)])
