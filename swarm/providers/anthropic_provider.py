"""Anthropic Messages API through the official `anthropic` SDK (streaming, tools)."""

from __future__ import annotations

from typing import Any

import anthropic

from swarm.providers.base import ProviderError, classify_status, retry_after_from_headers
from swarm.providers.convert import normalize_tool_ids
from swarm.providers.types import (
    Message,
    ModelResponse,
    TextBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)


def to_anthropic(messages: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        blocks: list[dict[str, Any]] = []
        for b in m.content:
            if isinstance(b, TextBlock):
                if b.text:
                    blocks.append({"type": "text", "text": b.text})
            elif isinstance(b, ToolCall):
                blocks.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
            elif isinstance(b, ToolResult):
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": b.tool_call_id,
                        "content": b.content or "(no output)",
                        "is_error": b.is_error,
                    }
                )
        out.append({"role": m.role, "content": blocks or [{"type": "text", "text": "(empty)"}]})
    return out


def with_cache_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the latest turn as a cache breakpoint, so the next request of this
    conversation reads everything before it from the cache (the other two breakpoints
    are the tools, shared by agents of one role, and the system prompt)."""
    if messages and messages[-1]["content"]:
        last = messages[-1]["content"][-1]
        messages[-1]["content"][-1] = {**last, "cache_control": {"type": "ephemeral"}}
    return messages


def from_anthropic(msg: Any) -> ModelResponse:
    blocks: list[TextBlock | ToolCall | ToolResult] = []
    for b in msg.content:
        if b.type == "text":
            blocks.append(TextBlock(text=b.text))
        elif b.type == "tool_use":
            blocks.append(ToolCall(id=b.id, name=b.name, input=dict(b.input or {})))
    u = msg.usage
    usage = Usage(
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_read_tokens=getattr(u, "cache_read_input_tokens", None) or 0,
        cache_creation_tokens=getattr(u, "cache_creation_input_tokens", None) or 0,
    )
    return ModelResponse(
        message=Message(role="assistant", content=blocks),
        usage=usage,
        stop_reason=msg.stop_reason,
        model=msg.model,
    )


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, api_key: str, base_url: str | None = None, timeout_s: float = 600.0):
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def aclose(self) -> None:
        await self.client.close()

    async def complete(
        self,
        *,
        model: str,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
    ) -> ModelResponse:
        tool_defs: list[dict[str, Any]] = [t.model_dump() for t in tools]
        if tool_defs:  # one cache breakpoint after tools+system, shared by every agent
            tool_defs[-1]["cache_control"] = {"type": "ephemeral"}
        system_blocks = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        wire = with_cache_breakpoint(to_anthropic(normalize_tool_ids(messages, "anthropic")))
        try:
            async with self.client.messages.stream(
                model=model,
                max_tokens=max_tokens,
                system=system_blocks,  # type: ignore[arg-type]
                messages=wire,  # type: ignore[arg-type]
                tools=tool_defs,  # type: ignore[arg-type]
            ) as stream:
                final = await stream.get_final_message()
        except anthropic.APIStatusError as exc:
            if exc.status_code == 200:  # an `event: error` in the middle of the stream
                kind = _error_type(exc)
                raise ProviderError(
                    f"anthropic: stream error ({kind}): {_error_text(exc)}",
                    retryable=kind in ("overloaded_error", "api_error", "rate_limit_error", ""),
                    provider=self.name,
                ) from None
            raise ProviderError(
                f"anthropic: HTTP {exc.status_code}: {_error_text(exc)}",
                status=exc.status_code,
                retryable=classify_status(exc.status_code, exc.response.headers),
                retry_after_s=retry_after_from_headers(exc.response.headers),
                provider=self.name,
            ) from None
        except (anthropic.APIConnectionError, anthropic.APITimeoutError) as exc:
            raise ProviderError(
                f"anthropic: connection error: {exc}", retryable=True, provider=self.name
            ) from None
        except anthropic.APIError as exc:  # error event in the middle of a stream
            raise ProviderError(
                f"anthropic: stream error: {exc}", retryable=True, provider=self.name
            ) from None
        return from_anthropic(final)


def _error_type(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("type", ""))
    return ""


def _error_text(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and "message" in err:
            return str(err["message"])
    return str(exc.message)
