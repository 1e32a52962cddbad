"""Request bodies built from per-message JSON cached across turns and sent through the SDK
client's `post` (OpenAIProvider, AnthropicProvider): byte for byte, headers included, what
the previous code sent through `chat.completions.create` / `messages.stream`, for every
transcript and after every kind of change to it; errors still map as before."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any, cast

import httpx2
import openai
import pytest

from swarm.providers.anthropic_provider import (
    AnthropicProvider,
    to_anthropic,
    with_cache_breakpoint,
)
from swarm.providers.base import ProviderError
from swarm.providers.convert import (
    ID_RULES,
    ChatTranscriptCache,
    _hashed_id,
    chat_tools,
    normalize_tool_ids,
    to_chat_messages,
)
from swarm.providers.copilot_provider import CopilotProvider
from swarm.providers.openai_provider import OpenAIProvider
from swarm.providers.types import Message, TextBlock, ToolCall, ToolResult, ToolSpec

SSE_OK = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m-1",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"done"},'
    b'"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m-1",'
    b'"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,'
    b'"prompt_tokens_details":{"cached_tokens":2}}}\n\n'
    b"data: [DONE]\n\n"
)
TOOLS = [
    ToolSpec(
        name="read",
        description="Read a file — «quoted»",
        input_schema={"type": "object", "properties": {"file_path": {"type": "string"}}},
    ),
    ToolSpec(name="bash", description="Run a command", input_schema={"type": "object"}),
]
LONG_ID = "toolu_" + "a" * 40  # valid for Anthropic, too long for OpenAI
DOTTED_ID = "call.1:x"  # characters OpenAI refuses


class Captured:
    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []
        self.response: Callable[[httpx2.Request], httpx2.Response] = lambda _: httpx2.Response(
            200, content=SSE_OK, headers={"content-type": "text/event-stream"}
        )

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.requests.append(request)
        return self.response(request)

    @property
    def last(self) -> httpx2.Request:
        return self.requests[-1]


def mocked(provider: OpenAIProvider) -> Captured:
    captured = Captured()
    provider.client = provider.client.copy(
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(captured))
    )
    return captured


async def previous_body(
    provider: OpenAIProvider,
    captured: Captured,
    *,
    system: str,
    messages: list[Message],
    tools: list[ToolSpec],
    model: str = "gpt-x",
    max_tokens: int = 321,
) -> httpx2.Request:
    """The request the provider sent before bodies were cached: the whole transcript
    converted and handed to `chat.completions.create` (the previous code, verbatim)."""
    wire = to_chat_messages(system, normalize_tool_ids(messages, provider.name))
    by_name = provider.max_tokens_param == "max_tokens"
    stream = await provider.client.chat.completions.create(
        model=model,
        messages=cast(Any, wire),
        tools=cast(Any, chat_tools(tools)) if tools else openai.omit,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=provider._extra_headers,
        max_tokens=max_tokens if by_name else openai.omit,
        max_completion_tokens=openai.omit if by_name else max_tokens,
    )
    async with stream:
        async for _ in stream:
            pass
    return captured.last


def reference_bytes(provider: OpenAIProvider, system: str, messages: list[Message]) -> bytes:
    """The `messages` array as the previous conversion serialized it."""
    wire = to_chat_messages(system, normalize_tool_ids(messages, provider.name))
    return json.dumps(wire, ensure_ascii=False, separators=(",", ":")).encode()


def call(cid: str, name: str = "read", **inp: Any) -> ToolCall:
    return ToolCall(id=cid, name=name, input=inp or {"file_path": "ä.py"})


def rich_transcript() -> list[Message]:
    """Foreign ids, parallel calls, errors, several texts, empty messages, non-ASCII."""
    return [
        Message.user_text("Task t: fix the bug — «now» 🐛"),
        Message(
            role="assistant",
            content=[TextBlock(text="Reading."), call(LONG_ID), call(DOTTED_ID, "bash", cmd="ls")],
        ),
        Message(
            role="user",
            content=[
                ToolResult(tool_call_id=LONG_ID, content="def f():\n\treturn 1\n"),
                ToolResult(tool_call_id=DOTTED_ID, content="", is_error=True),
                TextBlock(text="also this"),
                TextBlock(text="and that"),
            ],
        ),
        Message(role="assistant", content=[call("call_ok_1")]),
        Message(role="user", content=[ToolResult(tool_call_id="call_ok_1", content="x" * 50)]),
        Message(role="assistant", content=[]),
        Message(role="user", content=[]),
        Message(role="assistant", content=[TextBlock(text="Fixed.")]),
    ]


def make(kind: str) -> OpenAIProvider:
    if kind == "openai":
        return OpenAIProvider(api_key="sk-test", base_url="https://api.openai.com/v1")
    if kind == "local":
        return OpenAIProvider(api_key=None, base_url="http://127.0.0.1:9/v1")
    return CopilotProvider(token="tok", base_url="http://127.0.0.1:9/v1", headers={"X-Extra": "1"})


@pytest.mark.parametrize("kind", ["openai", "local", "copilot"])
async def test_request_equals_the_previous_one_byte_for_byte(kind: str) -> None:
    provider = make(kind)
    captured = mocked(provider)
    messages = rich_transcript()
    for tools in (TOOLS, []):
        for n in range(1, len(messages) + 1):
            resp = await provider.complete(
                model="gpt-x", system="Agent: a", messages=messages[:n], tools=tools, max_tokens=321
            )
            ours = captured.last
            theirs = await previous_body(
                provider, captured, system="Agent: a", messages=messages[:n], tools=tools
            )
            assert ours.content == theirs.content
            assert ours.url == theirs.url
            assert ours.method == theirs.method == "POST"
            assert ours.headers.multi_items() == theirs.headers.multi_items()
            assert resp.message.text == "done" and resp.model == "m-1"
            assert resp.usage.input_tokens == 10 and resp.usage.cache_read_tokens == 2
    body = json.loads(captured.last.content)
    limit = "max_completion_tokens" if kind == "openai" else "max_tokens"
    assert body[limit] == 321 and body["stream_options"] == {"include_usage": True}
    headers = captured.last.headers
    assert ("authorization" in headers) == (kind != "local")
    assert (headers.get("copilot-integration-id") == "vscode-chat") == (kind == "copilot")
    await provider.aclose()


async def test_empty_system_prompt_and_no_tools() -> None:
    provider = make("openai")
    captured = mocked(provider)
    messages = rich_transcript()[:3]
    await provider.complete(model="m", system="", messages=messages, tools=[], max_tokens=5)
    ours = captured.last.content
    theirs = await previous_body(
        provider, captured, system="", messages=messages, tools=[], model="m", max_tokens=5
    )
    assert ours == theirs.content
    assert b'"tools"' not in ours and b'"system"' not in ours


async def test_growing_transcript_reuses_cached_messages() -> None:
    provider = make("openai")
    captured = mocked(provider)
    messages = rich_transcript()[:1]
    more = rich_transcript()[1:]
    await provider.complete(model="m", system="s", messages=messages, tools=TOOLS, max_tokens=9)
    cache = provider._transcripts.caches[-1]
    first_json = cache._entries[0].json
    for m in more:
        messages.append(m)
        await provider.complete(model="m", system="s", messages=messages, tools=TOOLS, max_tokens=9)
        ours = captured.last.content
        theirs = await previous_body(
            provider, captured, system="s", messages=messages, tools=TOOLS, model="m", max_tokens=9
        )
        assert ours == theirs.content
    assert provider._transcripts.caches == [cache]
    assert cache._entries[0].json is first_json  # converted once, not per call
    assert [e.message for e in cache._entries] == messages


def test_a_message_replaced_in_the_middle_is_converted_again() -> None:
    provider = make("openai")
    messages = rich_transcript()
    provider.request_body(model="m", system="s", messages=messages, tools=TOOLS, max_tokens=1)
    cache = provider._transcripts.caches[-1]
    kept = [e.json for e in cache._entries[:3]]
    # What repair does: a message replaced by another one (here: an answered call).
    messages[3] = Message(role="assistant", content=[call("call_other", cmd="pwd")])
    messages[4] = Message(role="user", content=[ToolResult(tool_call_id="call_other", content="/")])
    body = provider.request_body(
        model="m", system="s", messages=messages, tools=TOOLS, max_tokens=1
    )
    assert json.loads(body)["messages"] == json.loads(reference_bytes(provider, "s", messages))
    assert b"call_other" in body and b"call_ok_1" not in body
    assert [e.json for e in cache._entries[:3]] == kept
    assert all(a is b for a, b in zip([e.json for e in cache._entries[:3]], kept, strict=True))
    assert [e.message for e in cache._entries] == messages


def test_removed_messages_and_other_lists() -> None:
    provider = make("openai")
    messages = rich_transcript()

    def body_of(msgs: list[Message]) -> bytes:
        body = provider.request_body(model="m", system="s", messages=msgs, tools=[], max_tokens=1)
        start = body.index(b'"messages":') + len(b'"messages":')
        end = body.index(b',"max_completion_tokens"')
        assert body[start:end] == reference_bytes(provider, "s", msgs)
        return body

    full = body_of(messages)
    del messages[5:]  # the list shrank: the tail is gone from the request
    assert body_of(messages) != full
    # A different list holding the same messages: same bytes, nothing converted again.
    cache = provider._transcripts.caches[-1]
    before = [e.json for e in cache._entries]
    copy = list(messages)
    body_of(copy)
    assert all(a is b for a, b in zip([e.json for e in cache._entries], before, strict=True))
    # A different list of other (equal but new) messages: converted anew, correctly.
    fresh = [m.model_copy(deep=True) for m in messages]
    body_of(fresh)
    assert all(
        a is b
        for a, b in zip(
            [e.message for e in provider._transcripts.caches[-1]._entries], fresh, strict=True
        )
    )
    # A transcript from another conversation entirely.
    other = [Message.user_text("Task u: other"), Message(role="assistant", content=[call("x.y")])]
    body_of(other)
    body_of([])  # nothing but the system prompt


def test_system_prompt_change_is_picked_up() -> None:
    provider = make("openai")
    messages = rich_transcript()
    a = provider.request_body(model="m", system="one", messages=messages, tools=[], max_tokens=1)
    b = provider.request_body(model="m", system="two", messages=messages, tools=[], max_tokens=1)
    assert json.loads(a)["messages"][0] == {"role": "system", "content": "one"}
    assert json.loads(b)["messages"][0] == {"role": "system", "content": "two"}
    assert json.loads(a)["messages"][1:] == json.loads(b)["messages"][1:]


def test_tools_are_serialized_once_and_again_when_they_change() -> None:
    provider = make("openai")
    messages = rich_transcript()[:1]
    tools = list(TOOLS)
    first = provider._tools.tools_json(tools)
    assert provider._tools.tools_json(tools) is first
    assert provider._tools.tools_json(list(TOOLS)) is first  # same specs, another list
    tools.append(ToolSpec(name="grep", description="Search", input_schema={"type": "object"}))
    body = provider.request_body(
        model="m", system="s", messages=messages, tools=tools, max_tokens=1
    )
    assert [t["function"]["name"] for t in json.loads(body)["tools"]] == ["read", "bash", "grep"]
    assert json.loads(body)["tools"] == chat_tools(tools)


def test_a_new_valid_id_equal_to_an_invented_one_renames_the_earlier_id() -> None:
    """normalize_tool_ids keeps valid ids and invents others avoiding every id in the
    transcript; an appended valid id equal to an id invented earlier changes that earlier
    rename, and the cache converts the affected messages again."""
    provider = make("openai")
    invented = _hashed_id(DOTTED_ID, ID_RULES["openai"], 0)
    messages = [
        Message.user_text("Task t: go"),
        Message(role="assistant", content=[call(DOTTED_ID)]),
        Message(role="user", content=[ToolResult(tool_call_id=DOTTED_ID, content="ok")]),
    ]
    body = provider.request_body(model="m", system="s", messages=messages, tools=[], max_tokens=1)
    assert invented.encode() in body
    messages += [
        Message(role="assistant", content=[call(invented)]),
        Message(role="user", content=[ToolResult(tool_call_id=invented, content="ok")]),
    ]
    body = provider.request_body(model="m", system="s", messages=messages, tools=[], max_tokens=1)
    sent = json.loads(body)["messages"]
    assert sent == json.loads(reference_bytes(provider, "s", messages))
    assert sent[2]["tool_calls"][0]["id"] != invented  # renamed with another salt now
    assert sent[4]["tool_calls"][0]["id"] == invented


def test_random_edits_always_match_the_previous_conversion() -> None:
    rng = random.Random(7)
    ids = ["call_a", "call_b", DOTTED_ID, LONG_ID, "x y", "toolu_01A09q90qw90lq917835lq9"]
    ids.append(_hashed_id("x y", ID_RULES["openai"], 0))
    ids.append(_hashed_id(DOTTED_ID, ID_RULES["openai"], 0))

    def pair() -> list[Message]:
        chosen = rng.sample(ids, rng.randint(0, 2))
        text = [TextBlock(text=rng.choice(["", "ok", "ü"]))]
        return [
            Message(role="assistant", content=[*text, *[call(i) for i in chosen]]),
            Message(
                role="user",
                content=[ToolResult(tool_call_id=i, content=str(k)) for k, i in enumerate(chosen)]
                or [TextBlock(text="go on")],
            ),
        ]

    for kind in ("openai", "copilot"):
        provider = make(kind)
        messages = [Message.user_text("Task t: go")]
        for _ in range(150):
            op = rng.random()
            if op < 0.6:
                messages += pair()
            elif op < 0.75 and len(messages) > 2:
                messages[rng.randrange(1, len(messages))] = pair()[rng.randrange(2)]
            elif op < 0.85 and len(messages) > 3:
                del messages[rng.randrange(1, len(messages)) :]
            elif op < 0.95:
                messages = list(messages)
            else:
                messages = [Message.user_text("Task t: again"), *pair()]
            body = provider.request_body(
                model="m", system="s", messages=messages, tools=TOOLS, max_tokens=1
            )
            assert json.loads(body)["messages"] == json.loads(
                reference_bytes(provider, "s", messages)
            )
            start = body.index(b'"messages":') + len(b'"messages":')
            assert body[start:].startswith(reference_bytes(provider, "s", messages) + b',"max_')


def test_several_conversations_keep_their_caches() -> None:
    provider = make("openai")
    a = rich_transcript()
    b = [m.model_copy(deep=True) for m in rich_transcript()]
    provider.request_body(model="m", system="s", messages=a, tools=[], max_tokens=1)
    provider.request_body(model="m", system="s", messages=b, tools=[], max_tokens=1)
    cache_a, cache_b = provider._transcripts.caches
    a_json = cache_a._entries[-1].json
    for _ in range(3):
        provider.request_body(model="m", system="s", messages=a, tools=[], max_tokens=1)
        provider.request_body(model="m", system="s", messages=b, tools=[], max_tokens=1)
    assert cache_a._entries[-1].json is a_json
    assert cache_a._entries[0].message is a[0] and cache_b._entries[0].message is b[0]
    # A third conversation takes the least recently used cache (a's), correctly.
    c = [Message.user_text("Task c: third")]
    body = provider.request_body(model="m", system="s", messages=c, tools=[], max_tokens=1)
    assert json.loads(body)["messages"][1] == {"role": "user", "content": "Task c: third"}
    assert provider._transcripts.caches == [cache_b, cache_a]
    assert cache_a.first() is c[0] and cache_b.first() is b[0]
    body = provider.request_body(model="m", system="s", messages=a, tools=[], max_tokens=1)
    assert json.loads(body)["messages"] == json.loads(reference_bytes(provider, "s", a))


def test_transcript_cache_for_a_provider_without_id_rules() -> None:
    cache = ChatTranscriptCache("unknown")
    messages = rich_transcript()
    got = cache.messages_json("s", messages)
    assert (
        got
        == json.dumps(
            to_chat_messages("s", messages), ensure_ascii=False, separators=(",", ":")
        ).encode()
    )
    messages[2] = Message.user_text("changed")
    got = cache.messages_json("s", messages)
    assert json.loads(got)[3] == {"role": "user", "content": "changed"}


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [(429, {"retry-after": "2"}, True, 2.0), (400, {}, False, None), (503, {}, True, None)],
)
async def test_http_errors_map_to_provider_errors_as_before(
    status: int, headers: dict[str, str], retryable: bool, retry_after: float | None
) -> None:
    provider = make("openai")
    captured = mocked(provider)
    captured.response = lambda _: httpx2.Response(
        status, json={"error": {"message": "nope", "type": "x"}}, headers=headers
    )
    with pytest.raises(ProviderError) as info:
        await provider.complete(
            model="m", system="s", messages=rich_transcript(), tools=TOOLS, max_tokens=1
        )
    err = info.value
    assert err.status == status and err.retryable is retryable
    assert err.retry_after_s == retry_after
    assert str(err) == f"openai: HTTP {status}: nope"


async def test_connection_error_and_truncated_stream() -> None:
    provider = make("local")
    captured = mocked(provider)

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    captured.response = refuse
    with pytest.raises(ProviderError, match="openai: connection error") as info:
        await provider.complete(
            model="m", system="s", messages=rich_transcript(), tools=[], max_tokens=1
        )
    assert info.value.retryable
    partial = (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}\n\n'
    )
    captured.response = lambda _: httpx2.Response(
        200, content=partial, headers={"content-type": "text/event-stream"}
    )
    with pytest.raises(ProviderError, match="ended before the turn was complete") as info:
        await provider.complete(
            model="m", system="s", messages=rich_transcript(), tools=[], max_tokens=1
        )
    assert info.value.retryable


# --- Anthropic ------------------------------------------------------------------------------


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


ANTHROPIC_SSE = b"".join(
    [
        _sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        ),
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "done"},
            },
        ),
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 3},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
)


def mocked_anthropic(provider: AnthropicProvider) -> Captured:
    captured = Captured()
    captured.response = lambda _: httpx2.Response(
        200, content=ANTHROPIC_SSE, headers={"content-type": "text/event-stream"}
    )
    provider.client = provider.client.copy(
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(captured))
    )
    return captured


async def previous_anthropic_request(
    provider: AnthropicProvider,
    captured: Captured,
    *,
    system: str,
    messages: list[Message],
    tools: list[ToolSpec],
    model: str = "claude-x",
    max_tokens: int = 321,
) -> httpx2.Request:
    """The request AnthropicProvider sent before bodies were cached (the previous code)."""
    tool_defs: list[dict[str, Any]] = [t.model_dump() for t in tools]
    if tool_defs:
        tool_defs[-1]["cache_control"] = {"type": "ephemeral"}
    system_blocks = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
    wire = with_cache_breakpoint(to_anthropic(normalize_tool_ids(messages, "anthropic")))
    async with provider.client.messages.stream(
        model=model,
        max_tokens=max_tokens,
        system=system_blocks,  # type: ignore[arg-type]
        messages=wire,  # type: ignore[arg-type]
        tools=tool_defs,  # type: ignore[arg-type]
    ) as stream:
        await stream.get_final_message()
    return captured.last


@pytest.mark.parametrize("tools", [TOOLS, []])
@pytest.mark.parametrize("system", ["Agent: a", ""])
async def test_anthropic_request_equals_the_previous_one_byte_for_byte(
    tools: list[ToolSpec], system: str
) -> None:
    provider = AnthropicProvider(api_key="sk-ant", base_url="http://127.0.0.1:9")
    captured = mocked_anthropic(provider)
    messages: list[Message] = []
    for m in rich_transcript():
        messages.append(m)  # the same list, growing: later calls reuse cached messages
        resp = await provider.complete(
            model="claude-x", system=system, messages=messages, tools=tools, max_tokens=321
        )
        ours = captured.last
        theirs = await previous_anthropic_request(
            provider, captured, system=system, messages=messages, tools=tools
        )
        assert ours.content == theirs.content
        assert ours.url == theirs.url
        assert ours.headers.multi_items() == theirs.headers.multi_items()
        assert resp.message.text == "done" and resp.stop_reason == "end_turn"
        assert resp.usage.input_tokens == 12 and resp.usage.output_tokens == 3
    # The breakpoint moved with the latest turn; the cached messages kept none of it.
    sent = json.loads(captured.last.content)["messages"]
    assert [("cache_control" in b) for m in sent for b in m["content"]].count(True) == 1
    assert "cache_control" in sent[-1]["content"][-1]
    cache = provider._transcripts.caches[-1]
    assert not any("cache_control" in b for e in cache._entries for b in e.dicts[0]["content"])
    await provider.aclose()


def test_anthropic_body_after_edits_and_id_renames() -> None:
    provider = AnthropicProvider(api_key="k", base_url="http://127.0.0.1:9")
    messages = rich_transcript()

    def check() -> None:
        body = provider.request_body(
            model="m", system="s", messages=messages, tools=TOOLS, max_tokens=7
        )
        expected = with_cache_breakpoint(to_anthropic(normalize_tool_ids(messages, "anthropic")))
        assert json.loads(body)["messages"] == expected

    check()
    messages[2] = Message(role="user", content=[ToolResult(tool_call_id=LONG_ID, content="new")])
    check()
    messages.append(Message(role="user", content=[TextBlock(text="more")]))
    check()
    del messages[4:]
    check()
    messages = [Message.user_text("Task u: other")]
    check()
    messages = []
    check()


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (400, False), (529, True), (500, True)]
)
async def test_anthropic_http_errors_map_as_before(status: int, retryable: bool) -> None:
    provider = AnthropicProvider(api_key="k", base_url="http://127.0.0.1:9")
    captured = mocked_anthropic(provider)
    captured.response = lambda _: httpx2.Response(
        status,
        json={"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
        headers={"retry-after": "3"},
    )
    with pytest.raises(ProviderError) as info:
        await provider.complete(
            model="m", system="s", messages=rich_transcript(), tools=TOOLS, max_tokens=1
        )
    assert info.value.status == status and info.value.retryable is retryable
    assert info.value.retry_after_s == 3.0
    assert str(info.value) == f"anthropic: HTTP {status}: busy"


async def test_anthropic_stream_error_event() -> None:
    provider = AnthropicProvider(api_key="k", base_url="http://127.0.0.1:9")
    captured = mocked_anthropic(provider)
    broken = ANTHROPIC_SSE.split(b"event: content_block_stop")[0] + _sse(
        "error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    )
    captured.response = lambda _: httpx2.Response(
        200, content=broken, headers={"content-type": "text/event-stream"}
    )
    with pytest.raises(ProviderError, match=r"stream error \(overloaded_error\)") as info:
        await provider.complete(
            model="m", system="s", messages=rich_transcript(), tools=[], max_tokens=1
        )
    assert info.value.retryable


def test_anthropic_deprecated_model_still_warns() -> None:
    from anthropic._data import DEPRECATED_MODELS

    model = next(iter(DEPRECATED_MODELS))
    provider = AnthropicProvider(api_key="k", base_url="http://127.0.0.1:9")
    captured = mocked_anthropic(provider)
    assert captured.requests == []
    with pytest.warns(DeprecationWarning, match=f"The model '{model}' is deprecated"):
        asyncio.run(
            provider.complete(
                model=model, system="s", messages=rich_transcript(), tools=[], max_tokens=1
            )
        )


async def test_openai_stream_error_chunk_and_events_cut_anywhere() -> None:
    """The SSE is read here: a chunk carrying an `error` is the SDK's APIError (mapped as
    before), and the turn is the same however the bytes are cut."""
    provider = make("openai")
    captured = mocked(provider)
    error = b'data: {"error": {"message": "overloaded now", "type": "server_error"}}\n\n'
    captured.response = lambda _: httpx2.Response(
        200, content=error, headers={"content-type": "text/event-stream"}
    )
    with pytest.raises(ProviderError, match="overloaded now"):
        await provider.complete(
            model="m", system="s", messages=rich_transcript(), tools=[], max_tokens=1
        )

    class Cut(httpx2.AsyncByteStream):
        def __init__(self, size: int) -> None:
            self.size = size

        async def __aiter__(self) -> Any:
            for i in range(0, len(SSE_OK), self.size):
                yield SSE_OK[i : i + self.size]

    for size in (1, 7, 100_000):
        captured.response = lambda _, size=size: httpx2.Response(  # type: ignore[misc]
            200, stream=Cut(size), headers={"content-type": "text/event-stream"}
        )
        resp = await provider.complete(
            model="m", system="s", messages=rich_transcript(), tools=[], max_tokens=1
        )
        assert resp.message.text == "done" and resp.usage.cache_read_tokens == 2
    await provider.aclose()


async def test_openai_renewed_key_reaches_the_next_request_and_custom_auth_uses_post(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = make("openai")
    captured = mocked(provider)
    ask: dict[str, Any] = {"model": "m", "system": "s", "tools": [], "max_tokens": 1}
    await provider.complete(messages=rich_transcript(), **ask)
    first = captured.last.headers["authorization"]
    provider.client.api_key = "sk-renewed-key"  # as a token refresh sets it
    await provider.complete(messages=rich_transcript(), **ask)
    assert first != captured.last.headers["authorization"] == "Bearer sk-renewed-key"

    class Stamp(httpx2.Auth):
        def auth_flow(self, request: httpx2.Request) -> Any:
            request.headers["x-stamped"] = "1"
            yield request

    monkeypatch.setattr(type(provider.client), "custom_auth", property(lambda self: Stamp()))
    await provider.complete(messages=rich_transcript(), **ask)
    assert captured.last.headers["x-stamped"] == "1"  # the SDK's post applied it
    await provider.aclose()
