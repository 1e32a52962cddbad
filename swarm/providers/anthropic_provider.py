"""Anthropic Messages API through the official `anthropic` SDK (streaming, tools).

Request bodies are built from per-message JSON cached across the turns of a conversation
(`messages.stream` walks and serializes the whole history again on every call). Each call
is the request the client's lower-level `post` would build (the SDK's headers, auth, base
URL and timeout, worked out once per client state), sent with the client's HTTP client
(the SDK's aiohttp-backed one, whose HTTP parsing is in C) and answered with the SDK's
error types; the stream's SSE is split here (`SSEParser`, the SDK decoder's rules) and its
events put together by `anthropic_stream`. The SDK's `post` with its request machinery,
httpx's h11-based transport and its event stream cost as much CPU as the rest of a call. A client
with middleware, or whose call could open an OpenTelemetry span, goes through `post`; its
span lacks the attributes the SDK reads off a request body given as a dict (model,
max_tokens; in content mode the messages); the response side is recorded as before.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

import anthropic
import httpx2
from anthropic._base_client import FinalRequestOptions, get_platform, make_request_options
from anthropic._data import DEPRECATED_MODELS
from anthropic._utils import asyncify
from anthropic.lib._stainless_helpers import (
    HELPER_METHOD_STREAM,
    STAINLESS_HELPER_METHOD_HEADER,
    STAINLESS_STREAM_HELPER_HEADER,
)
from anthropic.lib._tracing import messages_create_request_attributes
from opentelemetry import trace

from swarm.providers.anthropic_stream import STOP_REASONS, MessageAccumulator, SSEParser
from swarm.providers.base import (
    TRANSPORT_ERRORS,
    ProviderError,
    classify_status,
    retry_after_from_headers,
)
from swarm.providers.convert import (
    ToolsCache,
    TranscriptCache,
    TranscriptCaches,
    wire_json,
)
from swarm.providers.http import tls_context
from swarm.providers.sdk_request import PreparedRequests
from swarm.providers.types import (
    Block,
    Message,
    ModelResponse,
    RedactedThinkingBlock,
    RequestOptions,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)


def to_anthropic(messages: list[Message]) -> list[dict[str, Any]]:
    return [anthropic_message(m) for m in messages]


def anthropic_message(m: Message, ids: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One neutral message in the Messages API's shape; `ids` renames tool-call ids (as
    `normalize_tool_ids` would)."""
    blocks: list[dict[str, Any]] = []
    for b in m.content:
        if isinstance(b, ThinkingBlock):  # back exactly as it came, signature and all
            blocks.append({"type": "thinking", "thinking": b.thinking, "signature": b.signature})
        elif isinstance(b, RedactedThinkingBlock):
            blocks.append({"type": "redacted_thinking", "data": b.data})
        elif isinstance(b, TextBlock):
            if b.text:
                blocks.append({"type": "text", "text": b.text})
        elif isinstance(b, ToolCall):
            call_id = ids.get(b.id, b.id) if ids else b.id
            blocks.append({"type": "tool_use", "id": call_id, "name": b.name, "input": b.input})
        elif isinstance(b, ToolResult):
            call_id = ids.get(b.tool_call_id, b.tool_call_id) if ids else b.tool_call_id
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": call_id,
                    "content": b.content or "(no output)",
                    "is_error": b.is_error,
                }
            )
    return {"role": m.role, "content": blocks or [{"type": "text", "text": "(empty)"}]}


def _anthropic_wire(m: Message, ids: Mapping[str, str] | None) -> list[dict[str, Any]]:
    return [anthropic_message(m, ids)]


def anthropic_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """Tool definitions; one cache breakpoint after tools+system, shared by every agent."""
    tool_defs: list[dict[str, Any]] = [t.model_dump() for t in tools]
    if tool_defs:
        tool_defs[-1]["cache_control"] = {"type": "ephemeral"}
    return tool_defs


def with_cache_breakpoint(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark the latest turn as a cache breakpoint, so the next request of this
    conversation reads everything before it from the cache (the other two breakpoints
    are the tools, shared by agents of one role, and the system prompt)."""
    if messages and messages[-1]["content"]:
        last = messages[-1]["content"][-1]
        if last.get("type") not in ("thinking", "redacted_thinking"):  # those take no marks
            messages[-1]["content"][-1] = {**last, "cache_control": {"type": "ephemeral"}}
    return messages


def from_anthropic(msg: Any) -> ModelResponse:
    blocks: list[Block] = []
    for b in msg.content:
        if b.type == "text":
            blocks.append(TextBlock(text=b.text))
        elif b.type == "tool_use":
            blocks.append(ToolCall(id=b.id, name=b.name, input=dict(b.input or {})))
        elif b.type == "thinking":
            blocks.append(ThinkingBlock(thinking=b.thinking, signature=b.signature or ""))
        elif b.type == "redacted_thinking":
            blocks.append(RedactedThinkingBlock(data=b.data))
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
        stop_reason=STOP_REASONS.get(msg.stop_reason) if msg.stop_reason else None,
        raw_stop_reason=msg.stop_reason,
        model=msg.model,
    )


# What `messages.stream` passes to `post`: its helper headers and its tracing span.
_STREAM_OPTIONS = make_request_options(
    extra_headers={
        STAINLESS_HELPER_METHOD_HEADER: HELPER_METHOD_STREAM,
        STAINLESS_STREAM_HELPER_HEADER: "messages",
    },
    span_name="anthropic.messages.create",
    span_route="/v1/messages",
    span_attributes=messages_create_request_attributes,
)
_EVENT_STREAM = anthropic.AsyncStream[object]  # each event as the decoded JSON


def http_client(verify: Any) -> httpx2.AsyncClient:
    """The SDK's aiohttp-backed HTTP client (its `aiohttp` extra): the same httpx interface,
    proxies from the environment included, with HTTP parsed in C; it halved the transport's
    CPU per call. The SDK's default httpx client if aiohttp is not installed."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return anthropic.DefaultAsyncHttpxClient(verify=verify)
    return anthropic.DefaultAioHttpClient(verify=verify)


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
        auth_token: str | None = None,  # an OAuth bearer token instead of a key
        default_headers: Mapping[str, str] | None = None,
    ):
        self.client = anthropic.AsyncAnthropic(
            api_key=api_key,
            auth_token=auth_token,
            base_url=base_url,
            max_retries=0,
            timeout=timeout_s,
            default_headers=default_headers,
            http_client=http_client(verify=tls_context()),
        )
        self._transcripts = TranscriptCaches(lambda: TranscriptCache(self.name, _anthropic_wire))
        self._tools = ToolsCache(anthropic_tools)
        self._system: tuple[str, bytes] | None = None
        self._requests = PreparedRequests(
            "/v1/messages", _STREAM_OPTIONS, FinalRequestOptions, get_platform, asyncify
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
        options: RequestOptions | None = None,
    ) -> ModelResponse:
        if model in DEPRECATED_MODELS:  # as `messages.stream` warns
            warnings.warn(
                f"The model '{model}' is deprecated and will reach end-of-life on "
                f"{DEPRECATED_MODELS[model]}.\nPlease migrate to a newer model. Visit "
                "https://docs.anthropic.com/en/docs/resources/model-deprecations for more "
                "information.",
                DeprecationWarning,
                stacklevel=2,
            )
        body = self.request_body(
            model=model,
            system=system,
            messages=messages,
            tools=tools,
            max_tokens=max_tokens,
            options=options,
        )
        acc = MessageAccumulator()  # once open, what it saw: message_start has the input usage
        try:
            if self.client._middleware or _may_trace(self.client):
                await self._stream_through_post(body, acc)
            else:
                await self._stream(body, acc)
        except anthropic.APIStatusError as exc:
            if exc.status_code == 200:  # an `event: error` in the middle of the stream
                kind = _error_type(exc)
                raise ProviderError(
                    f"anthropic: stream error ({kind}): {_error_text(exc)}",
                    retryable=kind in ("overloaded_error", "api_error", "rate_limit_error", ""),
                    provider=self.name,
                    usage=acc.partial_usage(),
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
                f"anthropic: connection error: {exc}",
                retryable=True,
                provider=self.name,
                usage=acc.partial_usage(),
            ) from None
        except anthropic.APIError as exc:  # error event in the middle of a stream
            raise ProviderError(
                f"anthropic: stream error: {exc}",
                retryable=True,
                provider=self.name,
                usage=acc.partial_usage(),
            ) from None
        except TRANSPORT_ERRORS as exc:  # the connection broke in the middle of the stream
            raise ProviderError(
                f"anthropic: connection lost during the response: {type(exc).__name__}",
                retryable=True,
                provider=self.name,
                usage=acc.partial_usage(),
            ) from None
        if not acc.complete:  # ended before message_start, or before message_delta
            raise ProviderError(
                "anthropic: the response stream ended before the turn was complete",
                retryable=True,
                provider=self.name,
                usage=acc.partial_usage(),
            )
        return acc.response()

    async def _stream_through_post(self, body: bytes, acc: MessageAccumulator) -> None:
        """The SDK's `post` and its event stream: what a client with tracing or middleware
        configured takes, so that its spans and middleware see the call."""
        stream = await self.client.post(
            "/v1/messages",
            content=body,
            cast_to=anthropic.types.Message,
            options=_STREAM_OPTIONS,
            stream=True,
            stream_cls=_EVENT_STREAM,
        )
        async with stream:
            async for event in stream:
                acc.add(event)

    async def _stream(self, body: bytes, acc: MessageAccumulator) -> None:
        """One attempt, as the SDK's `post` makes it (its headers, auth, URL, timeout and
        error types), sent on the client's HTTP client; the response's SSE read here."""
        client = self.client
        request = await self._requests.build(
            client,
            body,
            (
                client.api_key,
                client.auth_token,
                client.base_url,
                tuple(client._custom_headers.items()),
            ),
        )
        await client._prepare_request(request)  # a hook of the SDK's (signing, in subclasses)
        auth = client.custom_auth
        try:
            if auth is None:
                response = await client._client.send(request, stream=True)
            else:
                response = await client._client.send(request, stream=True, auth=auth)
        except httpx2.TimeoutException as err:
            raise anthropic.APITimeoutError(request=request) from err
        except anthropic.AnthropicError:
            raise
        except Exception as err:
            raise anthropic.APIConnectionError(request=request) from err
        try:
            if not response.is_success:
                await response.aread()
                raise client._make_status_error_from_response(response) from None
            parser = SSEParser()
            async for chunk in response.aiter_bytes():
                for name, data in parser.feed(chunk):
                    _add_event(client, response, acc, name, data)
            for name, data in parser.feed(b"", last=True):
                _add_event(client, response, acc, name, data)
        finally:
            await response.aclose()

    def request_body(
        self,
        *,
        model: str,
        system: str,
        messages: list[Message],
        tools: list[ToolSpec],
        max_tokens: int,
        options: RequestOptions | None = None,
    ) -> bytes:
        """The streaming request's JSON, byte for byte what `messages.stream` sent for the
        converted transcript (same keys, order and separators): a cache breakpoint on the
        system prompt, after the tools, and on the latest turn."""
        if self._system is None or self._system[0] != system:
            blocks = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
            self._system = (system, wire_json(blocks))
        entries = self._transcripts.get(messages).update(messages)
        parts = [e.json for e in entries[:-1]]
        if entries:
            last = entries[-1].dicts[0]  # a copy: the cached dict stays as it is
            parts.append(
                wire_json(with_cache_breakpoint([{**last, "content": [*last["content"]]}])[0])
            )
        return b"".join(
            [
                b'{"max_tokens":',
                wire_json(max_tokens),
                b',"messages":[',
                b",".join(parts),
                b'],"model":',
                wire_json(model),
                b',"system":',
                self._system[1],
                _options_json(options, bool(tools)),
                b',"tools":',
                self._tools.tools_json(tools),
                b',"stream":true}',
            ]
        )


def _options_json(options: RequestOptions | None, has_tools: bool) -> bytes:
    """temperature, thinking and tool_choice, in the SDK's key order. With thinking on the
    API refuses a changed temperature, so thinking wins."""
    if options is None:
        return b""
    out = b""
    if options.temperature is not None and not options.thinking_budget:
        out += b',"temperature":' + wire_json(options.temperature)
    if options.thinking_budget:
        out += b',"thinking":' + wire_json(
            {"type": "enabled", "budget_tokens": options.thinking_budget}
        )
    if options.parallel_tool_calls is False and has_tools:
        out += b',"tool_choice":{"type":"auto","disable_parallel_tool_use":true}'
    return out


def _may_trace(client: anthropic.AsyncAnthropic) -> bool:
    """Whether the SDK's `request` could open a span for the call: it has a tracer, and a
    tracer provider of its own, a global one set (not OpenTelemetry's default, which makes
    none), or a trace context to pass on."""
    if client._tracer is None:
        return False
    if client._open_telemetry.get("tracer_provider") is not None:
        return True
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    return bool(trace.get_current_span().get_span_context().is_valid)


def _add_event(
    client: anthropic.AsyncAnthropic,
    response: httpx2.Response,
    acc: MessageAccumulator,
    name: str,
    data: bytes,
) -> None:
    """One named event, as the SDK's stream treats it: pings and empty data skipped, an
    `error` event raised as the SDK raises it (a status error with the 200 response)."""
    if name == "ping":
        return
    if name == "error":
        text = data.decode(errors="replace")
        body: object = text
        try:
            body = json.loads(data)
            message = f"{body}"
        except ValueError:
            message = text or f"Error code: {response.status_code}"
        raise client._make_status_error(message, body=body, response=response)
    if data:
        acc.add(json.loads(data))


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
