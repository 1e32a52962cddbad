"""Streams that break half way are retryable errors, never a partial answer; what the
provider had done by then is counted (the error's usage, recorded by the agent)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarm import agent as agent_module
from swarm.blackboard.board import Blackboard
from swarm.hosting import agent_specs, run_agent
from swarm.llmstub import StubScript, StubServer
from swarm.llmstub.wire import partial_text
from swarm.plan import make_plan, store_plan
from swarm.providers.anthropic_provider import AnthropicProvider
from swarm.providers.base import Provider, ProviderError, estimate_tokens
from swarm.providers.mistral_provider import MistralProvider
from swarm.providers.openai_provider import OpenAIProvider
from swarm.providers.pricing import cost_usd
from swarm.providers.retry import RetryPolicy
from swarm.providers.types import Message, Usage

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 5,
            "output_tokens": 0,
            "cache_read_input_tokens": 700,
            "cache_creation_input_tokens": 30,
        },
    },
}
BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
DELTA = {
    "type": "content_block_delta",
    "index": 0,
    "delta": {"type": "text_delta", "text": "I will now start fixing the"},
}
CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": "I will"}, "finish_reason": None}
    ],
}


def sse(events: list[dict[str, object]], named: bool) -> bytes:
    out = b""
    for e in events:
        if named:
            out += f"event: {e['type']}\n".encode()
        out += f"data: {json.dumps(e)}\n\n".encode()
    return out


async def serve(body: bytes, end_cleanly: bool) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        await reader.readexactly(length)
        if end_cleanly:  # a complete HTTP response whose stream simply stops
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        else:  # chunked, then the connection drops before the last chunk
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
                + f"{len(body):x}\r\n".encode()
                + body
                + b"\r\n"
            )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.mark.parametrize("end_cleanly", [False, True], ids=["dropped", "ended-early"])
async def test_anthropic_broken_stream_is_retryable(end_cleanly: bool) -> None:
    async for url in serve(sse([START, BLOCK, DELTA], named=True), end_cleanly):
        provider = AnthropicProvider(api_key="k", base_url=url)
        with pytest.raises(ProviderError) as info:
            await provider.complete(
                model="claude-sonnet-5-5",
                system="s",
                messages=[Message.user_text("hi")],
                tools=[],
                max_tokens=10,
            )
        await provider.aclose()
        assert info.value.retryable, str(info.value)
        # message_start said what the input cost; the output so far is estimated from the
        # text that arrived ("I will now start fixing the": 27 characters)
        assert info.value.usage == Usage(
            input_tokens=5, output_tokens=7, cache_read_tokens=700, cache_creation_tokens=30
        )


@pytest.mark.parametrize("end_cleanly", [False, True], ids=["dropped", "ended-early"])
async def test_openai_broken_stream_is_retryable(end_cleanly: bool) -> None:
    async for url in serve(sse([CHUNK], named=False), end_cleanly):
        provider = OpenAIProvider(api_key="k", base_url=f"{url}/v1")
        args: dict[str, Any] = dict(
            model="gpt-5", system="s", messages=[Message.user_text("hi")], tools=[], max_tokens=10
        )
        with pytest.raises(ProviderError) as info:
            await provider.complete(**args)
        await provider.aclose()
        assert info.value.retryable, str(info.value)
        # usage comes only at the end of a chat stream: estimated from the request's size
        # (all of it read by the provider) and the output that arrived ("I will")
        body = provider.request_body(**args)
        assert info.value.usage == Usage(
            input_tokens=estimate_tokens(len(body)), output_tokens=estimate_tokens(6)
        )


# --- through the scripted server: every provider, and the agent's accounting ------------

TEXT = "All done: the parser now handles nested quotes and the tests pass."
USAGE = {
    "input_tokens": 1000,
    "output_tokens": 40,
    "cache_read_tokens": 300,
    "cache_creation_tokens": 200,
}


def stub_provider(provider: str, base: str) -> Provider:
    if provider == "anthropic":
        return AnthropicProvider(api_key="k", base_url=base)
    if provider == "openai":
        return OpenAIProvider(api_key="k", base_url=f"{base}/v1")
    return MistralProvider(api_key="k", base_url=base)


@pytest.mark.parametrize("provider", ["anthropic", "openai", "mistral"])
async def test_the_cost_of_a_broken_attempt_comes_with_its_error(provider: str) -> None:
    """A stream broken half way carries what it cost; a refusal before any work (an HTTP
    error) carries nothing."""
    turn = {"text": TEXT, "usage": USAGE, "faults": [{"kind": "stream_error"}, {"status": 529}]}
    script = StubScript.model_validate({"conversations": [{"turns": [turn]}]})
    with StubServer(script) as stub:
        p = stub_provider(provider, stub.base_url)
        errors: list[ProviderError] = []
        for _ in range(2):
            with pytest.raises(ProviderError) as info:
                await p.complete(
                    model="m",
                    system="Agent: dev\n",
                    messages=[Message.user_text("Task a: A")],
                    tools=[],
                    max_tokens=100,
                )
            errors.append(info.value)
        await p.aclose()
    broken, refused = errors
    assert broken.retryable and broken.usage is not None
    assert refused.status == 529 and refused.usage is None
    output = estimate_tokens(len(partial_text(TEXT)))
    if provider == "anthropic":  # message_start's usage is exact
        assert broken.usage == Usage(**{**USAGE, "output_tokens": output})
    else:  # estimated: the request as uncached input, the text that arrived as output
        assert broken.usage.output_tokens == output
        assert 0 < broken.usage.input_tokens < 400  # a short request: a few hundred chars
        assert broken.usage.cache_read_tokens == broken.usage.cache_creation_tokens == 0


HEAD = """\
name: broken
goal: test the accounting of broken streams
model: {model}
agents:
  - {{name: dev, role: developer}}
phases:
  - name: one
    tasks:
      - {{id: a, title: A, agent: dev}}
"""
MODELS = {"anthropic": "anthropic/claude-sonnet-5-5", "openai": "openai/gpt-5"}


async def run_swarm(
    board: Blackboard, tmp_path: Path, provider: str, turn: dict[str, Any], monkeypatch: Any
) -> StubServer:
    (tmp_path / "swarm.yaml").write_text(HEAD.format(model=MODELS[provider]))
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    stub = StubServer(StubScript.model_validate({"conversations": [{"turns": [turn]}]}))
    stub.start()
    base = stub.base_url if provider == "anthropic" else f"{stub.base_url}/v1"
    monkeypatch.setenv(f"{provider.upper()}_BASE_URL", base)
    monkeypatch.setenv(f"{provider.upper()}_API_KEY", "test-key")
    try:
        plan = make_plan(tmp_path / "swarm.yaml", repo, board.run_id, tmp_path / ".swarm")
        await store_plan(board, plan)
        specs = agent_specs(plan, board.url, tmp_path / "run")
        await asyncio.wait_for(asyncio.gather(*(run_agent(s) for s in specs)), 60)
    finally:
        stub.stop()
    return stub


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_retried_broken_stream_counts_in_the_usage_and_budget(
    board: Blackboard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """The agent's retry callback records what the broken attempt cost: the usage (run,
    agent, task) that the budget reads holds both attempts, not only the one answered."""
    turn = {"text": TEXT, "usage": USAGE, "faults": [{"kind": "stream_error"}]}
    stub = await run_swarm(board, tmp_path, provider, turn, monkeypatch)
    assert [r.fault for r in stub.requests] == ["stream_error", None]
    assert [t.status for t in await board.tasks()] == ["completed"]
    usage = await board.usage("task", "a")
    [retry] = [e.data for e in await board.events() if e.type == "provider_retry"]
    spent = retry["spent"]  # the broken attempt, as recorded
    output = estimate_tokens(len(partial_text(TEXT)))
    assert spent["output_tokens"] == output
    if provider == "anthropic":
        assert spent["input_tokens"] == 1000 and spent["cache_read_tokens"] == 300
        assert usage["input_tokens"] == 2000 and usage["cache_read_tokens"] == 600
        assert usage["cache_creation_tokens"] == 400
    else:  # the request's size, estimated, as uncached input
        assert spent["input_tokens"] > 500  # the system prompt and tools are in it
        assert usage["input_tokens"] == 1000 + spent["input_tokens"]
    assert usage["output_tokens"] == 40 + output
    answered = cost_usd(MODELS[provider], Usage(**USAGE))
    assert spent["usd"] == pytest.approx(
        cost_usd(MODELS[provider], Usage(**{k: int(spent[k]) for k in USAGE}))
    )
    assert usage["usd"] == pytest.approx(answered + spent["usd"])
    assert await board.usage() == await board.usage("agent", "dev") == usage
    assert usage["requests"] == 2 and usage["turns"] == 1


async def test_a_broken_stream_that_exhausts_the_retries_still_counts(
    board: Blackboard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last attempt's error is not retried (no callback): the failure path of the turn
    records it before the reservation goes. Three attempts ran; all three count."""
    fast = RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.01)
    monkeypatch.setattr(agent_module, "RetryPolicy", lambda: fast)
    monkeypatch.setattr(agent_module, "OUTAGE_BACKOFF_S", (0.05,) * 5)
    faults = [{"kind": "stream_error"}, {"kind": "stream_error"}]
    turn = {"text": TEXT, "usage": USAGE, "faults": faults}
    stub = await run_swarm(board, tmp_path, "anthropic", turn, monkeypatch)
    # two broken attempts (the retries ran out: the task went back), then it was claimed again
    assert [r.fault for r in stub.requests] == ["stream_error", "stream_error", None]
    assert [t.status for t in await board.tasks()] == ["completed"]
    kinds = [e.type for e in await board.events()]
    assert kinds.count("provider_retry") == 1 and kinds.count("provider_error") == 1
    usage = await board.usage("task", "a")
    assert usage["input_tokens"] == 3000 and usage["cache_read_tokens"] == 900
    assert usage["cache_creation_tokens"] == 600
    output = estimate_tokens(len(partial_text(TEXT)))
    assert usage["output_tokens"] == 40 + 2 * output
    expected = cost_usd(MODELS["anthropic"], Usage(**USAGE)) + 2 * cost_usd(
        MODELS["anthropic"], Usage(**{**USAGE, "output_tokens": output})
    )
    assert usage["usd"] == pytest.approx(expected)
    assert await board.r.hgetall(board.k.budget) == {}  # no reservation left behind
