"""OpenAI Chat Completions through the official `openai` SDK (streaming, tools).

Works against any OpenAI-compatible server by base URL (Ollama, vLLM, llama.cpp server);
without an API key no Authorization header is sent, which local servers accept.

Request bodies are built from per-message JSON cached across the turns of a conversation:
`chat.completions.create` re-transforms the whole history on every call, which made its
CPU per call grow with the conversation. Each call is the request the client's `post`
would build (swarm.providers.sdk_request: the SDK's headers, auth, URL and timeout, worked
out once per client state), sent through the client's own `_send_request` (its auth
retries and provider hooks) on the SDK's aiohttp-backed HTTP client, and answered with the
SDK's error types; the stream's SSE is split here and its chunks read as the JSON the
server sent (a typed `ChatCompletionChunk` per chunk cost more CPU than the rest of the
call). A client with custom auth goes through `post`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import httpx2
import openai
from openai._base_client import FinalRequestOptions, asyncify, get_platform
from openai.types.chat import ChatCompletion

from swarm.providers.anthropic_stream import SSEParser
from swarm.providers.base import (
    TRANSPORT_ERRORS,
    ProviderError,
    classify_status,
    retry_after_from_headers,
)
from swarm.providers.convert import (
    ChatAccumulator,
    ChatTranscriptCache,
    ToolsCache,
    TranscriptCaches,
    chat_tools,
    chat_usage,
    wire_json,
)
from swarm.providers.http import tls_context
from swarm.providers.sdk_request import PreparedRequests
from swarm.providers.types import Message, ModelResponse, RequestOptions, ToolSpec, Usage

OPENAI_API_HOST = "api.openai.com"
MaxTokensParam = Literal["max_completion_tokens", "max_tokens"]
CHUNK_STREAM = openai.AsyncStream[object]  # each chunk as the decoded JSON


def default_max_tokens_param(base_url: str | None) -> MaxTokensParam:
    """OpenAI's own API wants max_completion_tokens (reasoning models refuse max_tokens);
    compatible servers widely understand only max_tokens."""
    if base_url is None or OPENAI_API_HOST in base_url:
        return "max_completion_tokens"
    return "max_tokens"


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = 600.0,
        default_headers: Mapping[str, str] | None = None,
        max_tokens_param: MaxTokensParam | None = None,
    ):
        # A keyless local server: no Authorization header at all (the SDK insists on some
        # key at construction, and drops the header only when a request omits it).
        self._extra_headers: dict[str, Any] | None = (
            None if api_key else {"Authorization": openai.Omit()}
        )
        self.max_tokens_param: MaxTokensParam = max_tokens_param or default_max_tokens_param(
            base_url
        )
        self.client = openai.AsyncOpenAI(
            api_key=api_key or "no-key",
            base_url=base_url,
            max_retries=0,
            timeout=timeout_s,
            default_headers=default_headers,
            http_client=openai.DefaultAioHttpClient(verify=tls_context()),
        )
        # What `chat.completions.create` passes to `post`: bearer auth, our extra headers.
        self._options: openai.RequestOptions = {"security": {"bearer_auth": True}}
        if self._extra_headers is not None:
            self._options["headers"] = self._extra_headers
        self._requests = PreparedRequests(
            "/chat/completions", self._options, FinalRequestOptions, get_platform, asyncify
        )
        self._transcripts = TranscriptCaches(lambda: ChatTranscriptCache(self.name))
        self._tools = ToolsCache(chat_tools)

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
        body = self.request_body(
            model=model,
            system=system,
            messages=messages,
            tools=tools,
            max_tokens=max_tokens,
            options=options,
        )
        acc = ChatAccumulator()
        try:
            if self.client.custom_auth is not None:
                await self._stream_through_post(body, acc)
            else:
                await self._stream(body, acc)
        except openai.APIError as exc:
            usage = acc.partial_usage(len(body)) if acc.began else None
            raise provider_error(self.name, exc, usage) from None
        except TRANSPORT_ERRORS as exc:  # the connection broke in the middle of the stream
            raise ProviderError(
                f"{self.name}: connection lost during the response: {type(exc).__name__}",
                retryable=True,
                provider=self.name,
                usage=acc.partial_usage(len(body)) if acc.began else None,
            ) from None
        if not acc.complete:
            raise ProviderError(
                f"{self.name}: the response stream ended before the turn was complete",
                retryable=True,
                provider=self.name,
                usage=acc.partial_usage(len(body)),
            )
        return acc.response(model)

    async def _stream_through_post(self, body: bytes, acc: ChatAccumulator) -> None:
        stream = await self.client.post(
            "/chat/completions",
            content=body,
            cast_to=ChatCompletion,
            options=self._options,
            stream=True,
            stream_cls=CHUNK_STREAM,
        )
        acc.began = True
        async with stream:
            async for chunk in stream:
                add_chunk(acc, chunk)

    async def _stream(self, body: bytes, acc: ChatAccumulator) -> None:
        """One attempt as `post` makes it, its SSE read here as the SDK's stream reads it
        (`[DONE]` ends it; a chunk with an `error` is the SDK's APIError)."""
        client = self.client
        request = await self._requests.build(
            client, body, (client.api_key, client.base_url, tuple(client._custom_headers.items()))
        )
        await client._prepare_request(request)
        try:
            response = await client._send_request(request, stream=True)
        except httpx2.TimeoutException as err:
            raise openai.APITimeoutError(request=request) from err
        except openai.OpenAIError:
            raise
        except Exception as err:
            raise openai.APIConnectionError(request=request) from err
        try:
            if not response.is_success:
                await response.aread()
                raise client._make_status_error_from_response(response) from None
            acc.began = True
            parser = SSEParser(unnamed=True)
            done = False
            async for chunk in response.aiter_bytes():
                if done:  # after [DONE]: read to the end, so the connection is reused
                    continue
                for _, data in parser.feed(chunk):
                    if not _add_data(acc, request, data):
                        done = True
                        break
            if not done:
                for _, data in parser.feed(b"", last=True):
                    if not _add_data(acc, request, data):
                        break
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
        """The streaming request's JSON, byte for byte what `chat.completions.create` sent
        for the converted transcript (same keys, order and separators)."""
        limit = b"max_tokens" if self.max_tokens_param == "max_tokens" else b"max_completion_tokens"
        parts = [
            b'{"model":',
            wire_json(model),
            b',"stream":true,"messages":',
            self._transcripts.get(messages).messages_json(system, messages),
            b',"',
            limit,
            b'":',
            wire_json(max_tokens),
            b',"stream_options":{"include_usage":true}',
        ]
        if options is not None:
            if options.temperature is not None:
                parts += [b',"temperature":', wire_json(options.temperature)]
            if options.reasoning_effort is not None:
                parts += [b',"reasoning_effort":', wire_json(options.reasoning_effort)]
            if options.parallel_tool_calls is not None and tools:
                parts += [b',"parallel_tool_calls":', wire_json(options.parallel_tool_calls)]
        if tools:
            parts += [b',"tools":', self._tools.tools_json(tools)]
        parts.append(b"}")
        return b"".join(parts)


def add_chunk(acc: ChatAccumulator, chunk: Any) -> None:
    """One streamed chunk, as the decoded JSON (or an SDK object, read the same way)."""
    if not isinstance(chunk, dict):
        chunk = chunk.model_dump() if hasattr(chunk, "model_dump") else dict(chunk)
    if chunk.get("model") and not acc.model:
        acc.model = chunk["model"]
    u = chunk.get("usage")
    if u:
        details = u.get("prompt_tokens_details") or {}
        acc.usage = chat_usage(
            u.get("prompt_tokens") or 0,
            u.get("completion_tokens") or 0,
            details.get("cached_tokens") or 0,
            details.get("cache_write_tokens") or 0,
        )
    for choice in chunk.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        acc.add_text(delta.get("content"))
        acc.add_refusal(delta.get("refusal"))
        for tc in delta.get("tool_calls") or ():
            fn = tc.get("function") or {}
            # Some compatible servers omit `index` and send each call whole.
            index = tc.get("index")
            index = index if isinstance(index, int) else len(acc.slots)
            acc.add_tool_delta(index, tc.get("id"), fn.get("name"), fn.get("arguments"))
        acc.finish(choice.get("finish_reason"))


def provider_error(
    provider: str, exc: openai.APIError, usage: Usage | None = None
) -> ProviderError:
    """One classified error per SDK failure; the message carries no credentials. ``usage``:
    what the attempt cost if it failed after the response began."""
    if isinstance(exc, openai.APIStatusError):
        headers = exc.response.headers
        return ProviderError(
            f"{provider}: HTTP {exc.status_code}: {error_text(exc.body, exc.message)}",
            status=exc.status_code,
            retryable=classify_status(exc.status_code, headers),
            retry_after_s=retry_after_from_headers(headers),
            provider=provider,
            usage=usage,
        )
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return ProviderError(
            f"{provider}: connection error: {exc.message}",
            retryable=True,
            provider=provider,
            usage=usage,
        )
    # An error event in the middle of a stream (or an unparseable response).
    return ProviderError(
        f"{provider}: stream error: {error_text(exc.body, exc.message)}",
        retryable=True,
        provider=provider,
        usage=usage,
    )


def error_text(body: object, fallback: str) -> str:
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return fallback


def _add_data(acc: ChatAccumulator, request: httpx2.Request, data: bytes) -> bool:
    """One event's data, as the SDK's stream treats it. False: `[DONE]`, the end."""
    if data.startswith(b"[DONE]"):
        return False
    chunk = json.loads(data)
    if isinstance(chunk, dict) and chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        if not message or not isinstance(message, str):
            message = "An error occurred during streaming"
        raise openai.APIError(message=message, request=request, body=error)
    add_chunk(acc, chunk)
    return True
