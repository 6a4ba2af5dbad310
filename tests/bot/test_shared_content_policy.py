"""NSFW_CLASSIFIER on the shared queue (SHARED_QUEUE=true, PostgreSQL): the render worker runs the same finish
step as the in-process queue, so the classifier flags results there too (it once never ran there)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_content_policy import BLUE, set_policy, tiny_classifier  # noqa: F401  (a fixture, used by name)

from bot.settings import Settings
from generation.queue.shared import SharedQueue


@pytest.fixture
def bot_settings(tmp_path: Path, postgres_database: str, tiny_classifier: Path) -> Settings:  # noqa: F811
    # One process: the gateway with a render worker inside (LOCAL_WORKER). No periodic look at the database
    # and no lease renewal within the test (in SimCord a timer would keep the bot busy forever).
    return Settings(_env_file=None, data_dir=tmp_path / "data", device="cpu", dtype="float32", default_steps=4,
                    cpu_threads=1, database_url=postgres_database, shared_queue=True, local_worker=True,
                    queue_poll_s=0, lease_s=3600, nsfw_classifier=str(tiny_classifier),
                    nsfw_classifier_labels="nsfw")


@pytest.mark.system(reason="the shared queue on PostgreSQL")
async def test_the_classifier_runs_on_results_of_the_shared_queue(world) -> None:
    assert isinstance(world.bot.queue, SharedQueue)
    await set_policy(world, "spoiler")
    result = await world.alice.slash(world.channel, "imagine", prompt=BLUE, steps=4, seed=3)
    assert result.response.attachments[0].filename.startswith("SPOILER_")
    assert [image.nsfw for image in (await world.store.get(1)).images] == ["classifier"]
