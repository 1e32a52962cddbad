"""The Messages stream put together from its decoded events."""

from __future__ import annotations

from typing import Any

from swarm.providers.anthropic_stream import MessageAccumulator
from swarm.providers.types import ThinkingBlock, ToolCall


def start(usage: dict[str, Any] | None = None) -> dict[str, Any]:
    usage = usage or {"input_tokens": 100, "output_tokens": 1, "cache_read_input_tokens": 40}
    return {"type": "message_start", "message": {"model": "claude-x", "usage": usage}}


def block(index: int, content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": content}


def delta(index: int, d: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": d}


def test_text_thinking_and_a_tool_call_in_pieces() -> None:
    acc = MessageAccumulator()
    for e in [
        start(),
        {"type": "ping"},
        block(0, {"type": "thinking", "thinking": "", "signature": ""}),
        delta(0, {"type": "thinking_delta", "thinking": "let me "}),
        delta(0, {"type": "thinking_delta", "thinking": "see"}),
        delta(0, {"type": "signature_delta", "signature": "sig=="}),
        block(1, {"type": "text", "text": ""}),
        delta(1, {"type": "text_delta", "text": "Reading "}),
        delta(1, {"type": "text_delta", "text": "it."}),
        block(2, {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}),
        delta(2, {"type": "input_json_delta", "partial_json": '{"file_pa'}),
        delta(2, {"type": "input_json_delta", "partial_json": 'th": "a.py"}'}),
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 30},
        },
        {"type": "message_stop"},
    ]:
        acc.add(e)
    assert acc.complete
    r = acc.response()
    assert r.stop_reason == "tool_use" and r.model == "claude-x"
    assert r.message.text == "Reading it."
    assert r.message.tool_calls == [
        ToolCall(id="toolu_1", name="read", input={"file_path": "a.py"})
    ]
    assert r.message.content[0] == ThinkingBlock(thinking="let me see", signature="sig==")
    # message_delta's output count replaces message_start's; the input counts stay
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.cache_read_tokens) == (100, 30, 40)


def test_a_tool_call_cut_off_at_the_output_limit_keeps_what_parses() -> None:
    acc = MessageAccumulator()
    acc.add(start())
    acc.add(block(0, {"type": "tool_use", "id": "t", "name": "write", "input": {}}))
    acc.add(
        delta(
            0, {"type": "input_json_delta", "partial_json": '{"file_path": "a.py", "content": "ab'}
        )
    )
    acc.add(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 9},
        }
    )
    r = acc.response()
    assert r.stop_reason == "max_tokens"
    assert r.message.tool_calls[0].input["file_path"] == "a.py"


def test_a_stream_that_breaks_is_incomplete_and_says_what_it_cost() -> None:
    acc = MessageAccumulator()
    assert acc.partial_usage() is None  # nothing known to be processed before message_start
    acc.add(start({"input_tokens": 500, "output_tokens": 1, "cache_creation_input_tokens": 7}))
    acc.add(block(0, {"type": "text", "text": ""}))
    acc.add(delta(0, {"type": "text_delta", "text": "x" * 400}))
    assert not acc.complete
    used = acc.partial_usage()
    assert used is not None
    assert (used.input_tokens, used.cache_creation_tokens) == (500, 7)
    assert used.output_tokens >= 100  # estimated from what arrived, above the reported 1


def test_unknown_events_blocks_and_stray_deltas_are_ignored() -> None:
    acc = MessageAccumulator()
    acc.add(start())
    acc.add("not an event")
    acc.add(block(0, {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}))
    acc.add(delta(5, {"type": "text_delta", "text": "nowhere"}))
    acc.add(block(1, {"type": "text", "text": "hi"}))
    acc.add(delta(1, {"type": "citations_delta", "citation": {}}))
    acc.add({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}})
    r = acc.response()
    assert r.message.text == "hi" and not r.message.tool_calls
    assert r.usage.output_tokens == 1
