"""Words the shipped model cannot read: a result says which it skipped; a prompt of nothing else is refused."""

from __future__ import annotations

from bot_helpers import embed_field


async def test_a_result_names_the_words_the_model_skipped(world):
    result = await world.alice.slash(world.channel, "imagine", prompt="🔴 a red circle 🌈 on a blue background",
                                     steps=2, seed=3)
    assert result.response.attachments and not result.response.ephemeral
    assert embed_field(result.response, "⚠️ Note") == "tinyshapes cannot read 🔴 🌈, so it skipped them."
    plain = await world.alice.slash(world.channel, "imagine", prompt="a red circle on a blue background", steps=2)
    assert "⚠️ Note" not in str(plain.response.components) + str(plain.response.embeds)


async def test_a_prompt_the_model_cannot_read_at_all_is_refused_privately(world):
    refused = await world.alice.slash(world.channel, "imagine", prompt="青い背景に赤い丸")
    assert refused.response.ephemeral
    assert refused.response.content.startswith("tinyshapes cannot read any word of this prompt (青い背景に赤い丸)")
    assert "nothing was queued" in refused.response.content
    assert await world.store.history(world.alice.id) == []
