"""Gateway sharding (SHARD_COUNT=2): two gateway processes, one shard each, and one render worker on a
throwaway PostgreSQL. Each job is posted once, by the gateway whose shard holds its server; a gateway killed
with SIGKILL posts its jobs when it returns, and the other gateway's recovery leaves them alone."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from test_shared_queue import Processes, all_records, finish, posted_ids, processes, shared_env  # noqa: F401

from bot.settings import Settings
from bot.sharding import ShardPlan, shard_of
from storage import GenerationStatus

SHARD_HARNESS = Path(__file__).with_name("shard_harness.py")
JOBS_PER_GATEWAY = 6


def sharded_gateway(processes: Processes, shard: int, phase: str, die_after: int | None = None,
                    ) -> subprocess.Popen[str]:
    extra = [str(die_after)] if die_after is not None else []
    return processes.start(f"gateway-{shard}-{phase}", [str(SHARD_HARNESS), str(shard), phase, *extra],
                           {**processes.env, "QUEUE_POLL_S": "0", "SHARD_COUNT": "2", "SHARD_IDS": str(shard)},
                           read_stdout=True)


def test_shard_plan_owns_its_servers_and_shard_0_the_dms() -> None:
    first = ShardPlan.from_settings(Settings(_env_file=None, shard_count=2, shard_ids=[0]))
    second = ShardPlan.from_settings(Settings(_env_file=None, shard_count=2, shard_ids=[1]))
    everything = ShardPlan.from_settings(Settings(_env_file=None))
    assert shard_of(1 << 22, 2) == 1 and shard_of(2 << 22, 2) == 0 and shard_of(None, 2) == 0
    assert first.split and second.split and not everything.split
    with pytest.raises(ValueError, match="SHARD_IDS must be distinct shards between 0 and 1"):
        ShardPlan.from_settings(Settings(_env_file=None, shard_count=2, shard_ids=[2]))
    with pytest.raises(ValueError, match="SHARD_IDS needs SHARD_COUNT"):
        ShardPlan.from_settings(Settings(_env_file=None, shard_ids=[1]))


@pytest.mark.system(reason="gateway and worker processes on PostgreSQL, killed and restarted")
async def test_two_sharded_gateways_post_each_job_once_and_a_killed_one_posts_its_jobs_on_return(
        processes: Processes, shared_env: dict[str, str], tmp_path: Path) -> None:
    processes.worker("w1")
    # Gateway 1 dies (SIGKILL) right after acknowledging its sixth command: its jobs are queued, unposted.
    doomed = sharded_gateway(processes, 1, "jobs", die_after=JOBS_PER_GATEWAY)
    code, out_doomed, log = finish(doomed)
    assert code == -9 and out_doomed.count("ACK ") == JOBS_PER_GATEWAY, log[-3000:]
    code, out_first, log = finish(sharded_gateway(processes, 0, "jobs"))
    assert code == 0, log[-3000:]
    assert "SHARDS [0]" in out_first
    # Gateway 0 starts again: its recovery must leave shard 1's jobs alone (rendering or done, unposted).
    code, out_again, log = finish(sharded_gateway(processes, 0, "recover"))
    assert code == 0, log[-3000:]
    code, out_back, log = finish(sharded_gateway(processes, 1, "recover"))
    assert code == 0, log[-3000:]
    assert "SHARDS [1]" in out_back
    processes.stop_workers()

    records = await all_records(shared_env["DATABASE_URL"], tmp_path / "check")
    assert len(records) == 2 * JOBS_PER_GATEWAY
    assert all(record.status is GenerationStatus.DONE and record.message_id is not None for record in records)
    by_shard = Counter(shard_of(record.guild_id, 2) for record in records)
    assert by_shard == {0: JOBS_PER_GATEWAY, 1: JOBS_PER_GATEWAY}
    posted_by = {0: posted_ids(out_first) + posted_ids(out_again), 1: posted_ids(out_doomed) + posted_ids(out_back)}
    for record in records:
        shard = shard_of(record.guild_id, 2)
        assert posted_by[shard][record.id] == 1, (record.id, shard, posted_by)  # once, by its shard's gateway
        assert posted_by[1 - shard][record.id] == 0, (record.id, shard, posted_by)
    assert posted_ids(out_again) == Counter()  # its own were posted before; shard 1's are not its to post
