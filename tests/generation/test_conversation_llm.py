"""The LLM interpreter against a real OpenAI-compatible HTTP server on 127.0.0.1 started by the test:
a good answer, an answer that does not hold, a malformed one, a server error and a server that never answers
(it waits on an event the test sets when done: no sleeps, no wall-clock assertions)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from generation.conversation import InterpreterConfig, Kind, TurnContext, interpret, interpret_llm
from generation.conversation.llm import ANSWER_SCHEMA
from generation.request import GenerationRequest

PARENT = GenerationRequest(prompt="a castle on a hill at sunset, oil painting", seed=1234, width=512, height=512,
                           model="sd15", count=4)


def answer(**fields: Any) -> dict[str, Any]:
    """A complete answer object: every schema property, null unless given."""
    return {name: fields.get(name) for name in ANSWER_SCHEMA["properties"]}


class CompletionsServer:
    """Answers POST /v1/chat/completions like an OpenAI-compatible server, as the test tells it to."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.content = ""
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()  # a hanging request returns once the test is done
        self.url = ""

    async def completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "error":
            return web.json_response({"error": {"message": "model not loaded", "type": "server_error"}}, status=500)
        return web.json_response({
            "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.content}}],
        })


@pytest.fixture
async def server():
    fake = CompletionsServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    fake.release.set()
    await runner.cleanup()


def config(server: CompletionsServer, timeout_s: float = 5.0) -> InterpreterConfig:
    return InterpreterConfig(url=server.url, model="test-model", api_key="test-key", timeout_s=timeout_s)


def context(words: str) -> TurnContext:
    return TurnContext(words=words, parent=PARENT, image_count=4)


async def test_a_good_answer_is_used_and_the_request_carries_the_schema(server):
    server.content = json.dumps(answer(kind="action", action="upscale", image=2))
    reading = await interpret(context("upscale the second one"), config(server))
    assert (reading.kind, reading.action, reading.image, reading.fallback) == (Kind.ACTION, "upscale", 2, None)
    assert reading.summary == "→ Upscale image 2 2×"
    sent = server.requests[0]
    assert sent["model"] == "test-model"
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == ANSWER_SCHEMA
    assert "upscale the second one" in sent["messages"][-1]["content"]


async def test_a_prompt_change_from_the_model_is_applied_like_the_rules_one(server):
    server.content = json.dumps(answer(kind="prompt", prompt_edit="replace",
                                       prompt="a castle on a hill at night, oil painting"))
    reading = await interpret(context("make it night"), config(server))
    assert reading.category == "prompt/replace" and reading.fallback is None
    assert reading.summary == "→ a castle on a hill at night, oil painting · seed 1234 kept"
    server.content = json.dumps(answer(kind="param", aspect="16:9", num_inference_steps=30))
    wider = await interpret(context("widescreen, 30 steps"), config(server))
    assert wider.changes["num_inference_steps"] == 30 and wider.changes["width"] > wider.changes["height"]


@pytest.mark.parametrize("content, why", [
    ("this is not json {", "not usable"),
    (json.dumps(["kind", "action"]), "not usable"),
    (json.dumps(answer(kind="action", action="upscale", image=9)), "image 9"),  # the parent has 4
    (json.dumps(answer(kind="param", num_inference_steps=500)), "steps"),  # over the declared bound
    (json.dumps(answer(kind="action", action="teleport")), "unknown action"),
    (json.dumps(answer(kind="prompt", prompt_edit="instruction", instruction="make it night")), "instruction"),
])
async def test_an_answer_that_does_not_hold_falls_back_to_the_rules(server, content, why):
    server.content = content
    reading = await interpret_llm(context("zoom out a bit"), config(server))
    assert reading.fallback is not None and why in reading.fallback
    assert (reading.action, reading.factor) == ("zoom", 1.5)  # the rules' reading


async def test_a_server_error_falls_back_to_the_rules(server):
    server.mode = "error"
    reading = await interpret_llm(context("again"), config(server))
    assert reading.action == "reroll" and reading.fallback is not None and "failed" in reading.fallback


async def test_a_server_that_never_answers_times_out_to_the_rules(server):
    server.mode = "hang"
    reading = await interpret_llm(context("show more on the left"), config(server, timeout_s=0.2))
    assert (reading.action, reading.direction) == ("pan", "left")
    assert reading.fallback is not None and "did not answer" in reading.fallback
    assert len(server.requests) == 1  # one bounded try, no retries


async def test_no_url_means_the_rules_alone(server):
    reading = await interpret(context("again"), InterpreterConfig(url=None))
    assert reading.action == "reroll" and reading.fallback is None and server.requests == []
