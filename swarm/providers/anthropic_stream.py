"""A Messages API stream read from its decoded events (the SDK's `cast_to=object`): what
the SDK's message stream accumulates, without building a typed event per SSE event and
re-parsing a tool call's whole input on every delta (the SDK does both, and they cost more
CPU than the rest of a call)."""

from __future__ import annotations

import json
from typing import Any

from jiter import from_json

from swarm.providers.base import estimate_tokens, stream_text
from swarm.providers.types import (
    Block,
    Message,
    ModelResponse,
    RedactedThinkingBlock,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    Usage,
)

#: The Messages API's stop reasons, in the neutral vocabulary.
STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "refusal": "refusal",
    "pause_turn": "pause",
    "model_context_window_exceeded": "context_exceeded",
}

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class MessageAccumulator:
    """The message as its events arrive: message_start, content blocks and their deltas,
    message_delta (stop reason, cumulative usage). Unknown events and blocks are kept out
    of the result, as the neutral message has no place for them."""

    def __init__(self) -> None:
        self.started = False
        self.model = ""
        self.stop_reason: str | None = None
        self.usage: dict[str, int] = {}
        self.blocks: list[dict[str, Any]] = []
        self._json: dict[int, list[str]] = {}

    def add(self, event: object) -> None:
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.started = True
            self.model = msg.get("model") or ""
            self._usage(msg.get("usage"))
        elif kind == "content_block_start":
            self.blocks.append(dict(event.get("content_block") or {}))
        elif kind == "content_block_delta":
            self._delta(int(event.get("index", len(self.blocks) - 1)), event.get("delta") or {})
        elif kind == "message_delta":
            self.stop_reason = (event.get("delta") or {}).get("stop_reason")
            self._usage(event.get("usage"))

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        if not 0 <= index < len(self.blocks):
            return
        block, kind = self.blocks[index], delta.get("type")
        if kind == "text_delta" and block.get("type") == "text":
            piece = delta.get("text", "")
            block["text"] = block.get("text", "") + piece
            stream_text(piece)
        elif kind == "input_json_delta":
            self._json.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "thinking_delta" and block.get("type") == "thinking":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta" and block.get("type") == "thinking":
            block["signature"] = delta.get("signature", "")

    def _usage(self, usage: dict[str, Any] | None) -> None:
        # message_delta's counts are cumulative: they replace, and an omitted one keeps
        # message_start's value
        for field in _USAGE_FIELDS:
            value = (usage or {}).get(field)
            if value is not None:
                self.usage[field] = int(value)

    def _input(self, index: int, block: dict[str, Any]) -> dict[str, Any]:
        parts = self._json.get(index)
        if not parts:
            return dict(block.get("input") or {})
        text = "".join(parts)
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:  # cut off (the output limit): what parses of it, as the SDK does
            value = from_json(text.encode(), partial_mode=True)
        return value if isinstance(value, dict) else {}

    @property
    def complete(self) -> bool:
        return self.started and self.stop_reason is not None

    def response(self) -> ModelResponse:
        blocks: list[Block] = []
        for i, b in enumerate(self.blocks):
            kind = b.get("type")
            if kind == "text":
                blocks.append(TextBlock(text=b.get("text", "")))
            elif kind == "tool_use":
                blocks.append(ToolCall(id=b["id"], name=b["name"], input=self._input(i, b)))
            elif kind == "thinking":
                blocks.append(
                    ThinkingBlock(
                        thinking=b.get("thinking", ""), signature=b.get("signature") or ""
                    )
                )
            elif kind == "redacted_thinking":
                blocks.append(RedactedThinkingBlock(data=b.get("data", "")))
        u = self.usage
        return ModelResponse(
            message=Message(role="assistant", content=blocks),
            usage=Usage(
                input_tokens=u.get("input_tokens", 0),
                output_tokens=u.get("output_tokens", 0),
                cache_read_tokens=u.get("cache_read_input_tokens", 0),
                cache_creation_tokens=u.get("cache_creation_input_tokens", 0),
            ),
            stop_reason=STOP_REASONS.get(self.stop_reason) if self.stop_reason else None,
            raw_stop_reason=self.stop_reason,
            model=self.model,
        )

    def partial_usage(self) -> Usage | None:
        """What an attempt that broke after the stream opened cost: message_start's usage
        (the input, cache reads and writes, exactly) and the output so far, the larger of
        the count reported and an estimate from the content received. None before
        message_start (nothing known to be processed)."""
        if not self.started:
            return None
        chars = 0
        for i, b in enumerate(self.blocks):
            kind = b.get("type")
            if kind == "text":
                chars += len(b.get("text", ""))
            elif kind == "tool_use":
                chars += sum(len(p) for p in self._json.get(i, [])) + len(b.get("name", ""))
            elif kind == "thinking":
                chars += len(b.get("thinking", ""))
        u = self.usage
        return Usage(
            input_tokens=u.get("input_tokens", 0),
            output_tokens=max(u.get("output_tokens", 0), estimate_tokens(chars)),
            cache_read_tokens=u.get("cache_read_input_tokens", 0),
            cache_creation_tokens=u.get("cache_creation_input_tokens", 0),
        )


class SSEParser:
    """Server-sent events out of the response's bytes, as the SDK's decoder splits them:
    an event ends at a blank line (LF, CRLF or CR line ends, also split across chunks);
    `event:` and `data:` fields (several data lines joined by LF), comments and other
    fields ignored. Only named events come out, as the SDK's stream yields only those; a
    last event with no blank line after it is dropped, as the SDK drops it."""

    def __init__(self, *, unnamed: bool = False) -> None:
        self._buf = b""
        self._unnamed = unnamed  # also events without an `event:` field (OpenAI's), as ""

    def feed(self, chunk: bytes, *, last: bool = False) -> list[tuple[str, bytes]]:
        """The events complete with this chunk: (name, data); `last`: the stream ended."""
        buf = self._buf + chunk
        if b"\r" in buf:
            held = not last and buf.endswith(b"\r")  # maybe the first half of a CRLF
            if held:
                buf = buf[:-1]
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if held:
                buf += b"\r"
        *complete, rest = buf.split(b"\n\n")
        self._buf = rest
        events: list[tuple[str, bytes]] = []
        for raw in complete:
            event = _parse_event(raw, self._unnamed)
            if event is not None:
                events.append(event)
        return events


def _parse_event(raw: bytes, unnamed: bool = False) -> tuple[str, bytes] | None:
    name = ""
    data: list[bytes] = []
    for line in raw.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            name = value.decode()
        elif field == b"data":
            data.append(value)
    if not name and not (unnamed and data):
        return None
    return name, b"\n".join(data)
