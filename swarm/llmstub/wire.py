"""Pieces shared by the wire formats: the request view, the resolved turn, ids, chunking, SSE."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import string
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.responses import Response

from swarm.llmstub.script import Turn

ALPHANUMERIC = string.ascii_letters + string.digits


class StubHTTPError(Exception):
    """Answer the request with this HTTP status and message, in the provider's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> StubHTTPError:
    return StubHTTPError(400, message)


@dataclass
class RequestView:
    """What the stub needs to know about a request, whatever its wire format."""

    model: str
    stream: bool
    system: str | None
    first_user_text: str | None
    assistant_count: int
    last_user_text: str | None
    last_tool_results: list[str] = field(default_factory=list)
    tool_names: list[str] = field(default_factory=list)
    include_usage: bool = False
    max_tokens: int = 0


@dataclass
class ResolvedCall:
    id: str
    name: str
    input: dict[str, Any]

    @property
    def arguments(self) -> str:
        return json.dumps(self.input, ensure_ascii=False)


@dataclass
class ResolvedTurn:
    """A scripted turn made concrete for one request: ids assigned, usage numbers fixed."""

    text: str | None
    calls: list[ResolvedCall]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    thinking: str | None = None
    signature: str = ""
    redacted_thinking: str | None = None
    refusal: str | None = None
    stop_reason: str | None = None  # "max_tokens" | "pause": overrides the usual one

    @property
    def has_tool_calls(self) -> bool:
        return bool(self.calls)

    @property
    def prompt_tokens(self) -> int:
        """OpenAI/Mistral-style prompt tokens: input including the cached part."""
        return self.input_tokens + self.cache_read_tokens + self.cache_creation_tokens


class WireFormat(Protocol):
    """One provider's dialect: validation, extraction, responses and errors."""

    name: str

    def validate(self, body: dict[str, Any], headers: Mapping[str, str]) -> None: ...

    def view(self, body: dict[str, Any]) -> RequestView: ...

    def tool_call_id(self, seed: str) -> str: ...

    def error_response(
        self, status: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Response: ...

    def response(self, turn: ResolvedTurn, view: RequestView) -> Response: ...

    def overflow_response(self, tokens: int, window: int) -> Response: ...

    def stream(
        self, turn: ResolvedTurn, view: RequestView, chunk_delay_s: float, fail: str | None
    ) -> AsyncIterator[bytes]: ...


def seeded_id(seed: str, length: int) -> str:
    """A deterministic alphanumeric id, so a replayed conversation gets the same tool-call ids."""
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest(), "big")
    chars = []
    for _ in range(length):
        number, rest = divmod(number, len(ALPHANUMERIC))
        chars.append(ALPHANUMERIC[rest])
    return "".join(chars)


def random_id(length: int) -> str:
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def summary_turn(text: str) -> Turn:
    """The answer to a compaction's summary request."""
    return Turn(text=text)


def estimate_tokens(chars: int) -> int:
    return max(1, math.ceil(chars / 4))


def resolve_turn(turn: Turn, fmt: WireFormat, seed: str, request_chars: int) -> ResolvedTurn:
    calls = [
        ResolvedCall(fmt.tool_call_id(f"{seed}|{i}"), call.name, dict(call.input))
        for i, call in enumerate(turn.tool_calls)
    ]
    out_chars = (
        len(turn.text or "")
        + len(turn.thinking or "")
        + len(turn.refusal or "")
        + sum(len(c.name) + len(c.arguments) for c in calls)
    )
    usage = turn.usage
    return ResolvedTurn(
        thinking=turn.thinking,
        signature=turn.signature or ("sig_" + seeded_id(f"{seed}|thinking", 40)),
        redacted_thinking=turn.redacted_thinking,
        refusal=turn.refusal,
        stop_reason=turn.stop_reason,
        text=turn.text,
        calls=calls,
        input_tokens=(
            usage.input_tokens
            if usage and usage.input_tokens is not None
            else estimate_tokens(request_chars)
        ),
        output_tokens=(
            usage.output_tokens
            if usage and usage.output_tokens is not None
            else estimate_tokens(out_chars)
        ),
        cache_read_tokens=usage.cache_read_tokens if usage else 0,
        cache_creation_tokens=usage.cache_creation_tokens if usage else 0,
    )


_WORDS = re.compile(r"\S+\s*|\s+")


def chunk_text(text: str, words_per_chunk: int = 3) -> list[str]:
    """Split text into stream deltas of a few words each (concatenation is the original)."""
    words = _WORDS.findall(text)
    return [
        "".join(words[i : i + words_per_chunk]) for i in range(0, len(words), words_per_chunk)
    ] or [""]


def partial_text(text: str) -> str:
    """The first half of a text (by words), as streamed before an injected stream error."""
    words = _WORDS.findall(text)
    if len(words) <= 1:
        return text[: max(1, len(text) // 2)]
    return "".join(words[: len(words) // 2])


def chunk_json(payload: str, size: int = 24) -> list[str]:
    return [payload[i : i + size] for i in range(0, len(payload), size)] or [""]


def content_text(content: Any) -> str:
    """Text of a message content: a string or a list of parts/blocks with type 'text'."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        )
    return ""


def sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def retry_headers(retry_after: float | None, retry_after_ms: int | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["retry-after"] = (
            str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        )
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    return headers


def describe_json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
