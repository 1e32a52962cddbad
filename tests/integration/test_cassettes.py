"""Real recorded API responses (public SDK test cassettes, tests/fixtures/cassettes/README.md)
replayed through the providers.

Streamed recordings are served over real HTTP by a local server and go through
``.complete()`` end to end: the SDK's own stream parser, then ours. Our providers always ask
for a stream, and the SDKs' stream readers get nothing out of a plain JSON body (checked
below: that is an error, never an empty answer), so a recorded non-streamed JSON response
goes through the parsing function that turns the SDK's response object into ours:
``from_anthropic`` for Anthropic, ``ChatAccumulator`` for the Chat Completions shape.

What each recording parses to is checked against the recording itself, read here
independently of the SDKs (text, tool calls, thinking with its signature byte for byte,
redacted thinking, usage, stop reason), and a parsed thinking block is checked to go back
in the next request exactly as it came.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import pytest
import yaml
from mistralai.client.models import ChatCompletionResponse
from openai.types.chat import ChatCompletion

from swarm.providers.anthropic_provider import AnthropicProvider, from_anthropic
from swarm.providers.base import ProviderError
from swarm.providers.convert import ChatAccumulator, chat_usage
from swarm.providers.mistral_provider import MistralProvider
from swarm.providers.openai_provider import OpenAIProvider
from swarm.providers.types import (
    Message,
    ModelResponse,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)

CASSETTES = Path(__file__).resolve().parent.parent / "fixtures" / "cassettes"
TOOLS = [
    ToolSpec(
        name="lookup",
        description="Look something up.",
        input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
    )
]
SSE = "text/event-stream; charset=utf-8"


# --- the recordings --------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    body: bytes
    content_type: str

    @property
    def is_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def json(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value

    def events(self) -> list[dict[str, Any]]:
        """The stream's `data:` payloads, read the plain way (not by an SDK): events are
        separated by a blank line; `[DONE]` ends a Chat Completions stream."""
        out: list[dict[str, Any]] = []
        for block in self.body.decode().replace("\r\n", "\n").split("\n\n"):
            data = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
            if data and data[0] != "[DONE]":
                out.append(json.loads("\n".join(data)))
        return out


def recorded(name: str) -> Recorded:
    """A vendored recording: a raw body (.sse, .json) or one interaction of a VCR cassette
    in either of the layouts pydantic-ai and vcrpy write (body.string, parsed_body, or
    body.type/content)."""
    path = CASSETTES / name
    if path.suffix == ".sse":
        return Recorded(path.read_bytes(), SSE)
    if path.suffix == ".json":
        return Recorded(path.read_bytes(), "application/json")
    response = yaml.safe_load(path.read_text())["interactions"][0]["response"]
    headers = {k.lower(): v for k, v in response["headers"].items()}
    content_type = headers["content-type"][0]
    if "parsed_body" in response:
        return Recorded(json.dumps(response["parsed_body"]).encode(), content_type)
    body = response["body"]
    if "string" in body:
        return Recorded(body["string"].encode(), content_type)
    if body["type"] == "json":
        return Recorded(json.dumps(body["content"]).encode(), content_type)
    return Recorded(body["content"].encode(), content_type)


def anthropic_blocks(rec: Recorded) -> list[dict[str, Any]]:
    """The content blocks a recorded Messages response holds: the JSON's `content`, or a
    stream's blocks rebuilt from its events (deltas joined in order)."""
    if not rec.is_stream:
        return list(rec.json()["content"])
    blocks: dict[int, dict[str, Any]] = {}
    partial: dict[int, str] = {}
    for e in rec.events():
        if e["type"] == "content_block_start":
            blocks[e["index"]] = dict(e["content_block"])
        elif e["type"] == "content_block_delta":
            block, delta = blocks[e["index"]], e["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[e["index"]] = partial.get(e["index"], "") + delta["partial_json"]
    for index, raw in partial.items():
        if raw:
            blocks[index]["input"] = json.loads(raw)
    return [blocks[i] for i in sorted(blocks)]


def anthropic_usage(rec: Recorded) -> dict[str, int]:
    """The recorded usage: the JSON's, or message_start's overridden by message_delta's."""
    if not rec.is_stream:
        return dict(rec.json()["usage"])
    usage: dict[str, Any] = {}
    for e in rec.events():
        if e["type"] == "message_start":
            usage.update(e["message"]["usage"])
        elif e["type"] == "message_delta":
            usage.update({k: v for k, v in e["usage"].items() if v is not None})
    return usage


def anthropic_stop(rec: Recorded) -> str:
    if not rec.is_stream:
        return str(rec.json()["stop_reason"])
    return next(
        str(e["delta"]["stop_reason"]) for e in rec.events() if e["type"] == "message_delta"
    )


def expected_blocks(blocks: list[dict[str, Any]]) -> list[Any]:
    """Recorded Messages content blocks in our neutral types, built by hand."""
    out: list[Any] = []
    for b in blocks:
        if b["type"] == "thinking":
            out.append(ThinkingBlock(thinking=b["thinking"], signature=b["signature"]))
        elif b["type"] == "redacted_thinking":
            out.append(RedactedThinkingBlock(data=b["data"]))
        elif b["type"] == "text":
            out.append(TextBlock(text=b["text"]))
        elif b["type"] == "tool_use":
            out.append(ToolCall(id=b["id"], name=b["name"], input=b["input"]))
    return out


# --- a local server that answers with a recording ----------------------------------------


@dataclass
class Replay:
    """Answers every POST with `recording` (in pieces, chunked, as a live stream comes) and
    keeps what was asked."""

    url: str = ""
    recording: Recorded | None = None
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def serve(self, rec: Recorded) -> None:
        self.recording = rec


@pytest.fixture
def replay() -> Iterator[Replay]:
    state = Replay()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("content-length") or 0)
            state.requests.append((self.path, json.loads(self.rfile.read(length) or b"{}")))
            rec = state.recording
            assert rec is not None
            self.send_response(200)
            self.send_header("content-type", rec.content_type)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for start in range(0, len(rec.body), 700):  # pieces that cut events in two
                piece = rec.body[start : start + 700]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def complete(provider: Any, model: str, messages: list[Message] | None = None) -> Any:
    try:
        return await provider.complete(
            model=model,
            system="s",
            messages=messages or [Message.user_text("hi")],
            tools=TOOLS,
            max_tokens=1024,
        )
    finally:
        await provider.aclose()


# --- Anthropic -------------------------------------------------------------------------

ANTHROPIC_STREAMS = [
    "anthropic_thinking_stream.yaml",
    "anthropic_redacted_thinking_stream.yaml",
    "anthropic_parallel_tools_stream.yaml",
    "anthropic_refusal_stream.yaml",
]
ANTHROPIC_JSON = [
    "anthropic_thinking_tool_use.yaml",
    "anthropic_thinking_tool_input.yaml",
    "anthropic_thinking_text.yaml",
    "anthropic_cache_usage.yaml",
]
STOP = {"end_turn": "end_turn", "tool_use": "tool_use", "refusal": "refusal"}


def check_anthropic(resp: ModelResponse, rec: Recorded) -> None:
    """Everything the recording says, as our neutral response says it."""
    assert resp.message.role == "assistant"
    assert resp.message.content == expected_blocks(anthropic_blocks(rec))
    usage = anthropic_usage(rec)
    assert resp.usage == Usage(
        input_tokens=usage["input_tokens"],
        output_tokens=usage["output_tokens"],
        cache_read_tokens=usage.get("cache_read_input_tokens") or 0,
        cache_creation_tokens=usage.get("cache_creation_input_tokens") or 0,
    )
    assert resp.raw_stop_reason == anthropic_stop(rec)
    assert resp.stop_reason == STOP[anthropic_stop(rec)]


@pytest.mark.parametrize("name", ANTHROPIC_STREAMS)
async def test_anthropic_stream_over_http(replay: Replay, name: str) -> None:
    rec = recorded(name)
    assert rec.is_stream
    replay.serve(rec)
    resp = await complete(
        AnthropicProvider(api_key="test", base_url=replay.url), "claude-sonnet-4-5"
    )
    check_anthropic(resp, rec)
    start = rec.events()[0]
    assert resp.model == start["message"]["model"]
    path, sent = replay.requests[0]
    assert path == "/v1/messages" and sent["stream"] is True


@pytest.mark.parametrize("name", ANTHROPIC_JSON)
def test_anthropic_json_through_from_anthropic(name: str) -> None:
    rec = recorded(name)
    assert not rec.is_stream
    resp = from_anthropic(anthropic.types.Message.model_validate(rec.json()))
    check_anthropic(resp, rec)
    assert resp.model == rec.json()["model"]


def test_anthropic_thinking_stream_values() -> None:
    """The values llm-anthropic's own test asserts for this recording (independent of the
    event reading above)."""
    rec = recorded("anthropic_thinking_stream.yaml")
    blocks = expected_blocks(anthropic_blocks(rec))
    assert blocks == [
        ThinkingBlock(
            thinking=(
                "The person is asking for two names for a pet pelican, and they want me to be "
                "brief in my response. I'll provide two concise, creative names that would "
                "suit a pelican:\n\n1. Something that relates to their large beak/pouch\n2. "
                "Something that relates to water/fishing\n\nI'll keep my response very short "
                "as requested."
            ),
            signature=(
                "EuYBCkQYAiJAZFFuoMD/kqVzMZ887Sa1rJBpa5UU5W+YVHe0PV1dh0T1ZHHOQcSUTMB9iPC6hhdu"
                "yszf501Ao1McU4sUwlL2UhIM0nyNDklwN6dy0bkUGgx7Ny7JpGHlGJ3+mR8iMHcNBzvnVJwp6XmC"
                "s9jieB8BWgth2vmVOuSU+mUYw2bT4pkzVkVsxFnA1lh2T1kjRSpQltDXxi/Pyq3WdD/W4gnV9HIJ"
                "4Cb5olNXUrMvKUyoim0MfvyOU7wuyAi7J74CVw0Te6DW8GQf3/1jVYxeMEEBszuSU5IuyxB0BKWW"
                "5TfALM0="
            ),
        ),
        TextBlock(text="Scoop and Beaky"),
    ]
    assert anthropic_usage(rec)["input_tokens"] == 45
    assert anthropic_usage(rec)["output_tokens"] == 94


async def test_anthropic_parallel_tool_calls_stream(replay: Replay) -> None:
    replay.serve(recorded("anthropic_parallel_tools_stream.yaml"))
    resp = await complete(
        AnthropicProvider(api_key="test", base_url=replay.url), "claude-sonnet-4-5"
    )
    assert resp.message.text == (
        "I'll help you generate two names for a pet pelican using the pelican name generator tool."
    )
    assert resp.message.tool_calls == [
        ToolCall(id="toolu_017ngBid8gmdReTeroVSZf7r", name="pelican_name_generator", input={}),
        ToolCall(id="toolu_01FJrHJrmnfEqR6NxkQ3yhpu", name="pelican_name_generator", input={}),
    ]
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(input_tokens=310, output_tokens=82)


async def test_anthropic_refusal_stream(replay: Replay) -> None:
    """A streamed refusal with no content at all (stop_details explains it)."""
    replay.serve(recorded("anthropic_refusal_stream.yaml"))
    resp = await complete(
        AnthropicProvider(api_key="test", base_url=replay.url), "claude-sonnet-4-5"
    )
    assert resp.message.content == []
    assert (resp.stop_reason, resp.raw_stop_reason) == ("refusal", "refusal")
    assert resp.usage == Usage(input_tokens=97, output_tokens=0)


def sent_assistant_blocks(body: bytes) -> list[dict[str, Any]]:
    messages = json.loads(body)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    blocks = messages[1]["content"]
    assert isinstance(blocks, list)
    return blocks


THINKING_RECORDINGS = [
    "anthropic_thinking_stream.yaml",
    "anthropic_redacted_thinking_stream.yaml",
    "anthropic_thinking_tool_use.yaml",
    "anthropic_thinking_tool_input.yaml",
    "anthropic_thinking_text.yaml",
]


@pytest.mark.parametrize("name", THINKING_RECORDINGS)
async def test_anthropic_thinking_goes_back_unchanged(replay: Replay, name: str) -> None:
    """The next request carries each parsed thinking block exactly as recorded (type,
    thinking, signature; redacted data), in its place among the other blocks."""
    rec = recorded(name)
    if rec.is_stream:
        replay.serve(rec)
        resp = await complete(
            AnthropicProvider(api_key="test", base_url=replay.url), "claude-sonnet-4-5"
        )
    else:
        resp = from_anthropic(anthropic.types.Message.model_validate(rec.json()))
    calls = resp.message.tool_calls
    follow_up = (
        Message(role="user", content=[ToolResult(tool_call_id=c.id, content="ok") for c in calls])
        if calls
        else Message.user_text("and then?")
    )
    transcript = [Message.user_text("hi"), resp.message, follow_up]
    want = [
        {k: b[k] for k in ("type", "thinking", "signature", "data") if k in b}
        for b in anthropic_blocks(rec)
        if b["type"] in ("thinking", "redacted_thinking")
    ]
    assert want, "the recording has thinking"

    provider = AnthropicProvider(api_key="test", base_url=replay.url)
    body = provider.request_body(
        model="claude-sonnet-4-5", system="s", messages=transcript, tools=TOOLS, max_tokens=1024
    )
    blocks = sent_assistant_blocks(body)
    assert [b for b in blocks if b["type"] in ("thinking", "redacted_thinking")] == want
    assert blocks[: len(want)] == want  # thinking first, as the API requires

    # and what actually goes over the wire on the next turn
    replay.requests.clear()
    replay.serve(recorded("anthropic_thinking_stream.yaml"))
    await complete(provider, "claude-sonnet-4-5", transcript)
    wire = replay.requests[0][1]["messages"][1]["content"]
    assert [b for b in wire if b["type"] in ("thinking", "redacted_thinking")] == want


# --- OpenAI Chat Completions -----------------------------------------------------------


def chat_expected_usage(usage: dict[str, Any]) -> Usage:
    """Chat usage counts cached tokens inside prompt_tokens; ours counts them apart."""
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Usage(
        input_tokens=usage["prompt_tokens"] - cached,
        output_tokens=usage["completion_tokens"],
        cache_read_tokens=cached,
    )


def chat_stream_usage(rec: Recorded) -> dict[str, Any]:
    return next(e["usage"] for e in rec.events() if e.get("usage"))


async def test_openai_refusal_stream(replay: Replay) -> None:
    rec = recorded("openai_chat_refusal_stream.sse")
    replay.serve(rec)
    resp = await complete(OpenAIProvider(api_key="test", base_url=replay.url + "/v1"), "gpt-4o")
    refusal = "".join(
        e["choices"][0]["delta"].get("refusal") or "" for e in rec.events() if e["choices"]
    )
    assert refusal == "I'm sorry, but I can't assist with that request."
    assert resp.message.content == [TextBlock(text=refusal)]
    assert (resp.stop_reason, resp.raw_stop_reason) == ("refusal", "stop")
    assert (
        resp.usage
        == chat_expected_usage(chat_stream_usage(rec))
        == Usage(input_tokens=17, output_tokens=12)
    )
    assert resp.model == "gpt-4o-2024-08-06"
    path, sent = replay.requests[0]
    assert path == "/v1/chat/completions" and sent["stream"] is True


async def test_openai_length_stream(replay: Replay) -> None:
    rec = recorded("openai_chat_length_stream.sse")
    replay.serve(rec)
    resp = await complete(OpenAIProvider(api_key="test", base_url=replay.url + "/v1"), "gpt-4o")
    assert resp.message.content == [TextBlock(text='{"')]
    assert (resp.stop_reason, resp.raw_stop_reason) == ("max_tokens", "length")
    assert (
        resp.usage
        == chat_expected_usage(chat_stream_usage(rec))
        == Usage(input_tokens=17, output_tokens=1)
    )


async def test_openai_parallel_tool_calls_stream(replay: Replay) -> None:
    rec = recorded("openai_chat_parallel_tools_stream.sse")
    replay.serve(rec)
    resp = await complete(OpenAIProvider(api_key="test", base_url=replay.url + "/v1"), "gpt-4o")
    assert resp.message.content == [
        ToolCall(
            id="call_lQnnsesjFMWMQ5IeWPHzR4th",
            name="GetWeatherArgs",
            input={"city": "Edinburgh", "country": "UK", "units": "c"},
        ),
        ToolCall(
            id="call_2xjOUgaCdiwAcl9ZBL9LyMUU",
            name="get_stock_price",
            input={"ticker": "AAPL", "exchange": "NASDAQ"},
        ),
    ]
    assert (resp.stop_reason, resp.raw_stop_reason) == ("tool_use", "tool_calls")
    assert (
        resp.usage
        == chat_expected_usage(chat_stream_usage(rec))
        == Usage(input_tokens=149, output_tokens=60)
    )


def accumulate(message: Any, finish_reason: str | None, usage: Usage) -> ChatAccumulator:
    """A whole (non-streamed) Chat Completions choice fed to the accumulator the providers
    parse with: content, refusal, each tool call, the finish reason."""
    acc = ChatAccumulator()
    acc.add_text(message.content if isinstance(message.content, str) else None)
    acc.add_refusal(getattr(message, "refusal", None))
    for index, call in enumerate(message.tool_calls or []):
        acc.add_tool_delta(index, call.id, call.function.name, call.function.arguments)
    acc.finish(finish_reason)
    acc.usage = usage
    return acc


@pytest.mark.parametrize(
    ("name", "text", "calls", "stop"),
    [
        (
            "openai_chat_text.yaml",
            "Hello! I'm just a computer program, so I don't have feelings, but I'm here and "
            "ready to help you. How can I assist you today?",
            [],
            ("end_turn", "stop"),
        ),
        (
            "openai_chat_tool_call.yaml",
            "",
            [
                ToolCall(
                    id="call_p39CVeTmIRmqTlopIZn7hsic",
                    name="final_result",
                    input={"city": "Mexico City", "country": "Mexico"},
                )
            ],
            ("tool_use", "tool_calls"),
        ),
    ],
)
def test_openai_json_through_accumulator(
    name: str, text: str, calls: list[ToolCall], stop: tuple[str, str]
) -> None:
    rec = recorded(name)
    completion = ChatCompletion.model_validate(rec.json())
    u = completion.usage
    assert u is not None
    details = u.prompt_tokens_details
    usage = chat_usage(
        u.prompt_tokens, u.completion_tokens, (details.cached_tokens or 0) if details else 0
    )
    choice = completion.choices[0]
    resp = accumulate(choice.message, choice.finish_reason, usage).response("gpt-4o")
    assert resp.message.text == text
    assert resp.message.tool_calls == calls
    assert (resp.stop_reason, resp.raw_stop_reason) == stop
    assert resp.usage == chat_expected_usage(rec.json()["usage"])


# --- Mistral ---------------------------------------------------------------------------


async def test_mistral_stream_over_http(replay: Replay) -> None:
    rec = recorded("mistral_stream.sse")
    replay.serve(rec)
    resp = await complete(MistralProvider(api_key="test", base_url=replay.url), "magistral-small")
    assert resp.message.content == [TextBlock(text="323")]
    assert (resp.stop_reason, resp.raw_stop_reason) == ("end_turn", "stop")
    assert (
        resp.usage
        == chat_expected_usage(chat_stream_usage(rec))
        == Usage(input_tokens=28, output_tokens=4)
    )
    assert resp.model == "magistral-small-latest"
    path, sent = replay.requests[0]
    assert path == "/v1/chat/completions" and sent["stream"] is True


@pytest.mark.parametrize(
    ("name", "text", "calls", "stop"),
    [
        ("mistral_text.json", "323", [], ("end_turn", "stop")),
        (
            "mistral_tool_call.yaml",
            "",
            [ToolCall(id="9v45XkLNV", name="get_image", input={})],
            ("tool_use", "tool_calls"),
        ),
    ],
)
def test_mistral_json_through_accumulator(
    name: str, text: str, calls: list[ToolCall], stop: tuple[str, str]
) -> None:
    rec = recorded(name)
    completion = ChatCompletionResponse.model_validate(rec.json())
    u = completion.usage
    usage = chat_usage(u.prompt_tokens or 0, u.completion_tokens or 0)
    choice = completion.choices[0]
    resp = accumulate(choice.message, str(choice.finish_reason), usage).response("m")
    assert resp.message.text == text
    assert resp.message.tool_calls == calls
    assert (resp.stop_reason, resp.raw_stop_reason) == stop
    assert resp.usage == chat_expected_usage(rec.json()["usage"])


# --- a JSON answer to a streaming request ------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "name"),
    [
        *[("anthropic", n) for n in ANTHROPIC_JSON],
        ("openai", "openai_chat_text.yaml"),
        ("openai", "openai_chat_tool_call.yaml"),
        ("mistral", "mistral_text.json"),
        ("mistral", "mistral_tool_call.yaml"),
    ],
)
async def test_json_answer_to_a_stream_request_is_an_error(
    replay: Replay, provider: str, name: str
) -> None:
    """A server that ignores `"stream": true` and answers with the whole JSON: the SDKs'
    stream readers find no events in it, and that is a retryable error, never an empty
    answer taken as the model's."""
    replay.serve(recorded(name))
    made: Any
    if provider == "anthropic":
        made, model = AnthropicProvider(api_key="test", base_url=replay.url), "claude-sonnet-4-5"
    elif provider == "openai":
        made, model = OpenAIProvider(api_key="test", base_url=replay.url + "/v1"), "gpt-4o"
    else:
        made, model = MistralProvider(api_key="test", base_url=replay.url), "mistral-small"
    with pytest.raises(ProviderError) as err:
        await complete(made, model)
    assert err.value.retryable
