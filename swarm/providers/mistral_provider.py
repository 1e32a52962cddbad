"""Mistral chat completions through the official `mistralai` SDK (streaming, tools).

The SDK's own retries are disabled (strategy "none"): swarm.providers.retry is the one
retry layer. Tool-call ids are rewritten to Mistral's 9 alphanumerics by convert.py.
"""

from __future__ import annotations

import json
from typing import Any, cast

import httpx2
from mistralai.client import Mistral
from mistralai.client.errors import MistralError, NoResponseError
from mistralai.client.models import CompletionChunk
from mistralai.client.types import UNSET
from mistralai.client.utils import BackoffStrategy, RetryConfig
from mistralai.client.utils.logger import NoOpLogger

from swarm.providers.base import ProviderError, classify_status, retry_after_from_headers
from swarm.providers.convert import (
    ChatAccumulator,
    chat_tools,
    chat_usage,
    normalize_tool_ids,
    to_chat_messages,
)
from swarm.providers.http import tls_context
from swarm.providers.types import Message, ModelResponse, RequestOptions, ToolSpec, Usage

NO_RETRIES = RetryConfig("none", BackoffStrategy(1, 1, 1.0, 1), retry_connection_errors=False)


class MistralProvider:
    name = "mistral"

    def __init__(self, api_key: str | None, base_url: str | None = None, timeout_s: float = 600.0):
        self._http = httpx2.AsyncClient(
            follow_redirects=True, timeout=timeout_s, verify=tls_context()
        )
        self.client = Mistral(
            api_key=api_key or None,
            server_url=base_url,
            async_client=self._http,
            retry_config=NO_RETRIES,
            timeout_ms=int(timeout_s * 1000),
            debug_logger=NoOpLogger(),  # MISTRAL_DEBUG would log the Authorization header
        )

    async def aclose(self) -> None:
        await self._http.aclose()

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
        opts = options or RequestOptions()
        wire = to_chat_messages(system, normalize_tool_ids(messages, self.name), tool_names=True)
        acc = ChatAccumulator()
        wire_tools = chat_tools(tools) if tools else None
        opened = False  # the response began: the provider is doing the work

        def partial() -> Usage | None:  # what a stream broken half way cost (an estimate)
            size = len(json.dumps(wire)) + len(system) + len(json.dumps(wire_tools or []))
            return acc.partial_usage(size) if opened else None

        try:
            stream = await self.client.chat.stream_async(
                model=model,
                messages=cast(Any, wire),
                tools=cast(Any, wire_tools) if wire_tools else UNSET,
                max_tokens=max_tokens,
                temperature=opts.temperature if opts.temperature is not None else UNSET,
                parallel_tool_calls=opts.parallel_tool_calls if tools else None,
                retries=NO_RETRIES,
            )
            opened = True
            async with stream:
                async for event in stream:
                    add_chunk(acc, event.data)
        except MistralError as exc:
            raise provider_error(self.name, exc, partial()) from None
        except (httpx2.TransportError, NoResponseError) as exc:
            raise ProviderError(
                f"{self.name}: connection error: {_describe(exc)}",
                retryable=True,
                provider=self.name,
                usage=partial(),
            ) from None
        if not acc.complete:
            raise ProviderError(
                f"{self.name}: the response stream ended before the turn was complete",
                retryable=True,
                provider=self.name,
                usage=partial(),
            )
        return acc.response(model)


def add_chunk(acc: ChatAccumulator, chunk: CompletionChunk) -> None:
    if chunk.model and not acc.model:
        acc.model = chunk.model
    if chunk.usage is not None:
        u = chunk.usage
        acc.usage = chat_usage(u.prompt_tokens or 0, u.completion_tokens or 0, _cached(u))
    for choice in chunk.choices:
        if choice.index != 0:
            continue
        delta = choice.delta
        content = delta.content
        if isinstance(content, str):
            acc.add_text(content)
        elif isinstance(content, list):
            for part in content:
                if getattr(part, "type", None) == "text":
                    acc.add_text(getattr(part, "text", ""))
        for tc in delta.tool_calls or []:
            # Mistral sends each call whole; a new id starts a new call, whatever `index` says.
            call_id = tc.id if tc.id and tc.id != "null" else None
            last = max(acc.slots, default=-1)
            new = last < 0 or (call_id is not None and acc.slots[last].id not in ("", call_id))
            acc.add_tool_delta(
                last + 1 if new else last, call_id, tc.function.name, tc.function.arguments
            )
        finish = choice.finish_reason
        acc.finish(str(finish) if finish else None)


def _describe(exc: Exception) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail[:300]}" if detail else type(exc).__name__


def _cached(usage: Any) -> int:
    details = (getattr(usage, "additional_properties", None) or {}).get("prompt_tokens_details")
    if details is None:
        details = getattr(usage, "prompt_tokens_details", None)
    if isinstance(details, dict):
        return int(details.get("cached_tokens") or 0)
    return int(getattr(details, "cached_tokens", 0) or 0)


def provider_error(provider: str, exc: MistralError, usage: Usage | None = None) -> ProviderError:
    text = _error_text(exc.body) or exc.__class__.__name__
    status = exc.status_code
    if status < 400:  # the response started fine; an error event arrived mid-stream
        return ProviderError(
            f"{provider}: stream error: {text}", retryable=True, provider=provider, usage=usage
        )
    return ProviderError(
        f"{provider}: HTTP {status}: {text}",
        status=status,
        retryable=classify_status(status, exc.headers),
        retry_after_s=retry_after_from_headers(exc.headers),
        provider=provider,
        usage=usage,
    )


def _error_text(body: str | None) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    return _find_message(data) or body.strip()[:500]


def _find_message(data: Any) -> str | None:
    if isinstance(data, dict):
        for key in ("message", "detail"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
        for key in ("error", "data"):
            found = _find_message(data.get(key))
            if found:
                return found
        detail = data.get("detail")
        if isinstance(detail, list):
            return json.dumps(detail)[:500]
    return None
