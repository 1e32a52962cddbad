"""Neutral <-> chat conversion, tool-call id normalisation, and transcripts that move between
providers or were repaired, accepted by the stub's validation in every dialect."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from swarm.llmstub import StubScript, StubServer
from swarm.providers.anthropic_provider import AnthropicProvider
from swarm.providers.base import Provider, ProviderError
from swarm.providers.convert import (
    ID_RULES,
    ChatAccumulator,
    _hashed_id,
    chat_tools,
    chat_usage,
    normalize_tool_ids,
    parse_arguments,
    to_chat_messages,
    tool_id_map,
)
from swarm.providers.copilot_provider import CopilotProvider
from swarm.providers.mistral_provider import MistralProvider
from swarm.providers.openai_provider import OpenAIProvider, default_max_tokens_param
from swarm.providers.repair import INTERRUPTED, repair
from swarm.providers.types import Message, TextBlock, ToolCall, ToolResult, ToolSpec, Usage

KEY = "stub-key"
PROVIDERS = ["anthropic", "openai", "mistral", "copilot"]
MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")
TOOLU_A = "toolu_01A09q90qw90lq917835lq9"
TOOLU_B = "toolu_01B55ZzkqXrKZ9b7Vv3nJ1pQ"

pytestmark = pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning")


def call(cid: str, name: str = "read", **inp: Any) -> ToolCall:
    return ToolCall(id=cid, name=name, input=inp or {"file_path": "a.py"})


def transcript(*ids: str) -> list[Message]:
    return [
        Message.user_text("Task t: go"),
        Message(role="assistant", content=[TextBlock(text="Looking."), *[call(i) for i in ids]]),
        Message(role="user", content=[ToolResult(tool_call_id=i, content="ok") for i in ids]),
    ]


# --- id normalisation -------------------------------------------------------------------------


def test_anthropic_ids_become_nine_alphanumerics_for_mistral() -> None:
    original = transcript(TOOLU_A, TOOLU_B)
    out = normalize_tool_ids(original, "mistral")
    calls = out[1].tool_calls
    assert all(MISTRAL_ID.fullmatch(c.id) for c in calls)
    assert [r.tool_call_id for r in out[2].tool_results] == [c.id for c in calls]
    assert len({c.id for c in calls}) == 2
    assert normalize_tool_ids(original, "mistral") == out  # deterministic
    assert original[1].tool_calls[0].id == TOOLU_A  # the input is not modified
    assert out[0] is original[0]  # untouched messages are shared


def test_valid_ids_are_left_alone() -> None:
    mistral_ids = transcript("abcDEF123", "XYZ987abc")
    for provider in PROVIDERS:  # nine alphanumerics suit every provider
        assert normalize_tool_ids(mistral_ids, provider) is mistral_ids
    toolu = transcript(TOOLU_A)
    assert normalize_tool_ids(toolu, "openai") is toolu
    assert normalize_tool_ids(toolu, "anthropic") is toolu
    assert normalize_tool_ids(toolu, "unknown-provider") is toolu


def test_foreign_ids_are_rewritten_per_provider() -> None:
    long_id = "chatcmpl-tool-" + "0123456789abcdef" * 2  # 46 chars, as vLLM makes them
    odd_id = "functions.read:0"  # some servers put dots and colons in ids
    msgs = transcript(long_id, odd_id)
    openai_ids = [c.id for c in normalize_tool_ids(msgs, "openai")[1].tool_calls]
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in openai_ids)
    anthropic_ids = [c.id for c in normalize_tool_ids(msgs, "anthropic")[1].tool_calls]
    assert anthropic_ids[0] == long_id  # valid for Anthropic
    assert re.fullmatch(r"toolu_[A-Za-z0-9]{24}", anthropic_ids[1])


def test_a_rewritten_id_never_takes_one_already_in_use() -> None:
    taken = _hashed_id(TOOLU_A, ID_RULES["mistral"], 0)  # what TOOLU_A would become
    msgs = [*transcript(taken), *transcript(TOOLU_A)[1:]]
    mapping = tool_id_map(msgs, "mistral")
    assert mapping[taken] == taken
    assert mapping[TOOLU_A] != taken and MISTRAL_ID.fullmatch(mapping[TOOLU_A])


# --- neutral -> chat --------------------------------------------------------------------------


def test_to_chat_messages_shape() -> None:
    msgs = [
        Message.user_text("Task t: go"),
        Message(role="assistant", content=[call("c1", "grep", pattern="x"), call("c2")]),
        Message(
            role="user",
            content=[
                TextBlock(text="also this"),
                ToolResult(tool_call_id="c1", content="found"),
                ToolResult(tool_call_id="c2", content="", is_error=True),
            ],
        ),
        Message(role="assistant", content=[TextBlock(text="Done.")]),
        Message(role="user", content=[TextBlock(text="one"), TextBlock(text="two")]),
    ]
    out = to_chat_messages("SYS", msgs)
    assert [m["role"] for m in out] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
        "assistant",
        "user",
    ]
    assert out[0] == {"role": "system", "content": "SYS"}
    assistant = out[2]
    assert assistant["content"] is None
    assert assistant["tool_calls"][0] == {
        "id": "c1",
        "type": "function",
        "function": {"name": "grep", "arguments": json.dumps({"pattern": "x"})},
    }
    assert out[3] == {"role": "tool", "tool_call_id": "c1", "content": "found"}
    assert out[4]["content"] == "Error: (no output)"
    assert out[5] == {"role": "user", "content": "also this"}
    assert out[7]["content"] == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    named = to_chat_messages("SYS", msgs, tool_names=True)
    assert [m.get("name") for m in named if m["role"] == "tool"] == ["grep", "read"]


def test_chat_tools() -> None:
    spec = ToolSpec(name="read", description="Read", input_schema={"type": "object"})
    assert chat_tools([spec]) == [
        {
            "type": "function",
            "function": {"name": "read", "description": "Read", "parameters": {"type": "object"}},
        }
    ]


# --- chat stream -> neutral -------------------------------------------------------------------


def test_accumulator_joins_deltas_by_index() -> None:
    acc = ChatAccumulator()
    acc.add_text("Hel")
    acc.add_text("lo")
    acc.add_tool_delta(1, "call_b", "grep", '{"pattern"')
    acc.add_tool_delta(0, "call_a", "read", "")
    acc.add_tool_delta(1, None, None, ': "x"}')
    acc.add_tool_delta(0, None, None, '{"file_path": "a.py"}')
    acc.add_tool_delta(2, None, "bash", '{"command": ')  # truncated by max_tokens
    acc.finish("tool_calls")
    acc.usage = chat_usage(20, 7, 5, 2)
    resp = acc.response("gpt-x")
    assert resp.message.text == "Hello"
    calls = resp.message.tool_calls
    assert [(c.id, c.name, c.input) for c in calls[:2]] == [
        ("call_a", "read", {"file_path": "a.py"}),
        ("call_b", "grep", {"pattern": "x"}),
    ]
    assert calls[2].input == {"_unparsed_arguments": '{"command": '}
    assert calls[2].id.startswith("call_")  # a server that sent no id still gets one
    assert resp.stop_reason == "tool_use"
    assert resp.usage == Usage(
        input_tokens=13, output_tokens=7, cache_read_tokens=5, cache_creation_tokens=2
    )
    assert resp.model == "gpt-x"


@pytest.mark.parametrize(
    ("reason", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("content_filter", "refusal"),
        ("model_length", "context_exceeded"),
        ("x", None),
    ],
)
def test_finish_reasons(reason: str, stop: str | None) -> None:
    acc = ChatAccumulator()
    acc.add_text("hi")
    acc.finish(reason)
    resp = acc.response("m")
    assert acc.complete and resp.stop_reason == stop
    assert resp.raw_stop_reason == reason  # the provider's own word is kept


def test_refusal_field_is_a_refusal() -> None:
    acc = ChatAccumulator()
    acc.add_refusal("I can't help with that.")
    acc.finish("stop")
    resp = acc.response("m")
    assert resp.stop_reason == "refusal"
    assert resp.message.text == "I can't help with that."


def test_parse_arguments() -> None:
    assert parse_arguments(None) == {} and parse_arguments("  ") == {}
    assert parse_arguments({"a": 1}) == {"a": 1}
    assert parse_arguments('{"a": 1}') == {"a": 1}
    assert parse_arguments("[1]") == {"_unparsed_arguments": "[1]"}


def test_max_tokens_parameter_by_server() -> None:
    assert default_max_tokens_param(None) == "max_completion_tokens"
    assert default_max_tokens_param("https://api.openai.com/v1") == "max_completion_tokens"
    assert default_max_tokens_param("http://localhost:11434/v1") == "max_tokens"


# --- against the stub: repaired and cross-provider transcripts --------------------------------

SCRIPT = {
    "conversations": [
        {
            "task": "repair",
            "turns": [
                {"text": "unused: the transcript arrives with its first turn"},
                {
                    "text": "Noted the interruption.",
                    "expect": {"last_tool_result_contains": "interrupted"},
                },
            ],
        },
        {
            "task": "handoff",
            "turns": [
                {
                    "text": "Reading two files.",
                    "tool_calls": [
                        {"name": "read", "input": {"file_path": "a.py"}},
                        {"name": "read", "input": {"file_path": "b.py"}},
                    ],
                },
                {"text": "Both read.", "expect": {"last_tool_result_contains": "B-CONTENT"}},
            ],
        },
    ]
}
READ = ToolSpec(
    name="read",
    description="Read a file",
    input_schema={"type": "object", "properties": {"file_path": {"type": "string"}}},
)


@pytest.fixture(scope="module")
def server() -> Iterator[StubServer]:
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        yield stub


@pytest.fixture
async def make(server: StubServer) -> AsyncIterator[Callable[[str], Provider]]:
    made: list[Provider] = []

    def factory(provider: str) -> Provider:
        base = server.base_url
        p: Provider
        if provider == "anthropic":
            p = AnthropicProvider(api_key=KEY, base_url=base)
        elif provider == "openai":
            p = OpenAIProvider(api_key=KEY, base_url=f"{base}/v1")
        elif provider == "mistral":
            p = MistralProvider(api_key=KEY, base_url=base)
        else:
            p = CopilotProvider(token=KEY, base_url=f"{base}/v1")
        made.append(p)
        return p

    yield factory
    for p in made:
        await p.aclose()


async def turn(p: Provider, agent: str, messages: list[Message]) -> Message:
    resp = await p.complete(
        model="stub-model",
        system=f"Agent: {agent}",
        messages=messages,
        tools=[READ],
        max_tokens=256,
    )
    return resp.message


def broken_transcript() -> list[Message]:
    """A crash left one of two tool calls unanswered, plus a result for no call at all."""
    return [
        Message.user_text("Task repair: go"),
        Message(role="assistant", content=[call(TOOLU_A), call(TOOLU_B, file_path="b.py")]),
        Message(
            role="user",
            content=[
                ToolResult(tool_call_id=TOOLU_A, content="a-content"),
                ToolResult(tool_call_id="toolu_orphan", content="stale"),
            ],
        ),
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_repaired_transcript_is_accepted_in_every_dialect(
    server: StubServer, make: Callable[[str], Provider], provider: str
) -> None:
    p = make(provider)
    with pytest.raises(ProviderError) as info:  # the stub validates pairing like the real API
        await turn(p, f"{provider}-broken", broken_transcript())
    assert info.value.status == 400 and not info.value.retryable
    repaired = repair(broken_transcript())
    assert [r.tool_call_id for r in repaired[2].tool_results] == [TOOLU_A, TOOLU_B]
    assert repaired[2].tool_results[1].content == INTERRUPTED
    reply = await turn(p, f"{provider}-repaired", repaired)
    assert reply.text == "Noted the interruption."


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_trailing_unanswered_call_is_repaired(
    make: Callable[[str], Provider], provider: str
) -> None:
    crashed = broken_transcript()[:2]  # the tool calls never ran
    reply = await turn(make(provider), f"{provider}-trailing", repair(crashed))
    assert reply.text == "Noted the interruption."


@pytest.mark.parametrize("target", ["mistral", "openai", "copilot"])
async def test_transcript_started_on_anthropic_continues_elsewhere(
    server: StubServer, make: Callable[[str], Provider], target: str
) -> None:
    agent = f"anthropic-to-{target}"
    messages = [Message.user_text("Task handoff: read a and b")]
    first = await turn(make("anthropic"), agent, messages)
    ids = [c.id for c in first.tool_calls]
    assert all(i.startswith("toolu_") for i in ids)
    messages += [
        first,
        Message(
            role="user",
            content=[
                ToolResult(tool_call_id=ids[0], content="A-CONTENT"),
                ToolResult(tool_call_id=ids[1], content="B-CONTENT"),
            ],
        ),
    ]
    second = await turn(make(target), agent, messages)
    assert second.text == "Both read."
    sent = [r for r in server.requests if r.agent == agent][-1]
    assert sent.status == 200 and sent.provider == ("mistral" if target == "mistral" else "openai")
    wire_calls = next(m for m in sent.body["messages"] if m.get("tool_calls"))["tool_calls"]
    wire_results = [m["tool_call_id"] for m in sent.body["messages"] if m["role"] == "tool"]
    assert wire_results == [c["id"] for c in wire_calls]
    if target == "mistral":
        assert all(MISTRAL_ID.fullmatch(c["id"]) for c in wire_calls)
    else:
        assert [c["id"] for c in wire_calls] == ids
    assert messages[1].tool_calls[0].id == ids[0]  # the stored transcript keeps its ids


async def test_transcript_started_on_mistral_continues_on_anthropic(
    make: Callable[[str], Provider],
) -> None:
    messages = [Message.user_text("Task handoff: read a and b")]
    first = await turn(make("mistral"), "mistral-to-anthropic", messages)
    assert all(MISTRAL_ID.fullmatch(c.id) for c in first.tool_calls)
    messages += [
        first,
        Message(
            role="user",
            content=[ToolResult(tool_call_id=c.id, content="B-CONTENT") for c in first.tool_calls],
        ),
    ]
    second = await turn(make("anthropic"), "mistral-to-anthropic", messages)
    assert second.text == "Both read."


def _openai_chunk(n: int, name: str) -> dict[str, Any]:
    return {
        "id": "x",
        "model": "llama",
        "object": "chat.completion.chunk",
        "created": 0,
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [{"id": f"c{n}", "function": {"name": name, "arguments": "{}"}}]
                },
                "finish_reason": "tool_calls" if n else None,
            }
        ],
    }


@pytest.mark.parametrize("typed", [False, True], ids=["decoded-json", "sdk-object"])
def test_openai_chunks_without_index_are_separate_calls(typed: bool) -> None:
    from openai.types.chat import ChatCompletionChunk

    from swarm.providers.openai_provider import add_chunk

    acc = ChatAccumulator()
    for n, name in enumerate(["read", "grep"]):
        raw = _openai_chunk(n, name)
        add_chunk(acc, ChatCompletionChunk.construct(**raw) if typed else raw)
    assert [(c.id, c.name) for c in acc.response("m").message.tool_calls] == [
        ("c0", "read"),
        ("c1", "grep"),
    ]


def test_openai_chunk_usage_counts_cached_tokens() -> None:
    from swarm.providers.openai_provider import add_chunk

    acc = ChatAccumulator()
    add_chunk(acc, {"model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]})
    add_chunk(acc, {"choices": [{"index": 1, "delta": {"content": "other choice"}}]})
    add_chunk(acc, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    add_chunk(
        acc,
        {
            "choices": [],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 7,
                "prompt_tokens_details": {"cached_tokens": 60},
            },
        },
    )
    resp = acc.response("m")
    assert resp.message.text == "hi"
    assert (resp.usage.input_tokens, resp.usage.cache_read_tokens) == (40, 60)
    assert resp.usage.output_tokens == 7


def test_mistral_whole_calls_with_the_same_index_stay_apart() -> None:
    from mistralai.client.models import CompletionChunk

    from swarm.providers.mistral_provider import add_chunk

    acc = ChatAccumulator()
    for n, name in enumerate(["read", "grep"]):
        add_chunk(
            acc,
            CompletionChunk.model_validate(
                {
                    "id": "x",
                    "model": "mistral-x",
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [
                                    {
                                        "id": f"abcdefgh{n}",
                                        "index": 0,
                                        "function": {"name": name, "arguments": {"n": n}},
                                    }
                                ]
                            },
                            "finish_reason": "tool_calls" if n else None,
                        }
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2} if n else None,
                }
            ),
        )
    resp = acc.response("m")
    assert [(c.id, c.name, c.input) for c in resp.message.tool_calls] == [
        ("abcdefgh0", "read", {"n": 0}),
        ("abcdefgh1", "grep", {"n": 1}),
    ]
    assert resp.usage == Usage(input_tokens=10, output_tokens=2)
    assert resp.model == "mistral-x"
