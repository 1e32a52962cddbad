"""AnthropicProvider reads the response's SSE itself (SSEParser): events however the bytes
are cut, as the SDK's decoder splits them; pings, unnamed events and comments skipped; an
error event in the middle of the stream raised as before; the SDK's `post` still taken by
a client with middleware; a token set on the client reaches the next request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from anthropic._streaming import SSEDecoder

from swarm.providers.anthropic_provider import AnthropicProvider
from swarm.providers.anthropic_stream import SSEParser
from swarm.providers.base import ProviderError
from swarm.providers.types import Message


def sse(event: str, data: dict[str, Any], end: str = "\n") -> bytes:
    return f"event: {event}{end}data: {json.dumps(data)}{end}{end}".encode()


def turn(end: str = "\n", text: str = "done «é»") -> bytes:
    usage = {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 7}
    return b"".join(
        [
            sse(
                "message_start",
                {"type": "message_start", "message": {"model": "m-1", "usage": usage}},
                end,
            ),
            f": a comment{end}{end}".encode(),
            sse("ping", {"type": "ping"}, end),
            f'data: {{"unnamed": true}}{end}{end}'.encode(),
            sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                end,
            ),
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": text},
                },
                end,
            ),
            sse("content_block_stop", {"type": "content_block_stop", "index": 0}, end),
            sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 3, "cache_creation_input_tokens": 5},
                },
                end,
            ),
            sse("message_stop", {"type": "message_stop"}, end),
        ]
    )


def sdk_events(raw: bytes) -> list[tuple[str, str]]:
    """What the SDK's decoder makes of the same bytes (named events only, as its stream)."""
    out = []
    for e in SSEDecoder().iter_bytes(iter([raw])):
        if e.event is not None:
            out.append((e.event, e.data))
    return out


def parse(pieces: list[bytes]) -> list[tuple[str, str]]:
    parser = SSEParser()
    events = [e for p in pieces for e in parser.feed(p)] + parser.feed(b"", last=True)
    return [(name, data.decode()) for name, data in events]


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_events_are_the_sdk_decoders_however_the_bytes_are_cut(end: str) -> None:
    raw = turn(end) + f"event: multi{end}data: a{end}data: b{end}{end}".encode()
    expected = sdk_events(raw)
    assert [n for n, _ in expected][-1] == "multi" and expected[-1][1] == "a\nb"
    assert parse([raw]) == expected
    for cut in range(1, len(raw)):  # every place one cut can fall, a CRLF's middle too
        assert parse([raw[:cut], raw[cut:]]) == expected, cut
    assert parse([raw[i : i + 1] for i in range(len(raw))]) == expected  # byte by byte


def test_an_unfinished_last_event_is_dropped_as_the_sdk_drops_it() -> None:
    raw = turn() + b"event: message_stop\ndata: {}\n"
    assert parse([raw]) == sdk_events(raw)
    assert parse([raw])[-1][0] == "message_stop" and parse([raw]).count(parse([raw])[-1]) == 1


def provider_with(body: Any, captured: list[httpx2.Request] | None = None) -> AnthropicProvider:
    provider = AnthropicProvider(api_key="sk-ant-secret", base_url="http://127.0.0.1:9")

    def reply(request: httpx2.Request) -> httpx2.Response:
        request.read()
        if captured is not None:
            captured.append(request)
        return httpx2.Response(200, stream=body, headers={"content-type": "text/event-stream"})

    provider.client = provider.client.copy(
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(reply))
    )
    return provider


class Pieces(httpx2.AsyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            yield p


async def ask(provider: AnthropicProvider) -> Any:
    return await provider.complete(
        model="m", system="s", messages=[Message.user_text("hi")], tools=[], max_tokens=5
    )


@pytest.mark.parametrize("size", [1, 7, 100_000])
async def test_a_turn_in_chunks_of_any_size(size: int) -> None:
    raw = turn("\r\n")
    provider = provider_with(Pieces([raw[i : i + size] for i in range(0, len(raw), size)]))
    resp = await ask(provider)
    assert resp.message.text == "done «é»" and resp.stop_reason == "end_turn"
    assert resp.model == "m-1"
    u = resp.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_creation_tokens) == (
        12,
        3,
        7,
        5,
    )
    await provider.aclose()


@pytest.mark.parametrize(
    ("data", "kind", "retryable", "text"),
    [
        (
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "overloaded_error",
            True,
            "Overloaded",
        ),
        (
            {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}},
            "invalid_request_error",
            False,
            "bad",
        ),
    ],
)
async def test_an_error_event_in_the_middle_of_the_stream(
    data: dict[str, Any], kind: str, retryable: bool, text: str
) -> None:
    raw = turn().split(b"event: content_block_stop")[0] + sse("error", data)
    provider = provider_with(Pieces([raw[:30], raw[30:]]))
    with pytest.raises(ProviderError) as info:
        await ask(provider)
    assert str(info.value) == f"anthropic: stream error ({kind}): {text}"
    assert info.value.retryable is retryable
    assert info.value.usage is not None and info.value.usage.input_tokens == 12
    assert "sk-ant-secret" not in str(info.value)
    await provider.aclose()


async def test_an_error_event_that_is_not_json() -> None:
    raw = turn().split(b"event: content_block_start")[0] + b"event: error\ndata: gone away\n\n"
    provider = provider_with(Pieces([raw]))
    with pytest.raises(ProviderError) as info:
        await ask(provider)
    assert str(info.value) == "anthropic: stream error (): gone away" and info.value.retryable
    await provider.aclose()


async def test_a_stream_that_ends_early_is_a_retryable_error() -> None:
    raw = turn().split(b"event: message_delta")[0]
    provider = provider_with(Pieces([raw]))
    with pytest.raises(ProviderError, match="ended before the turn was complete") as info:
        await ask(provider)
    assert info.value.retryable
    await provider.aclose()


async def test_a_client_with_middleware_goes_through_the_sdks_post() -> None:
    seen: list[str] = []

    async def middleware(request: Any, call_next: Any) -> Any:
        seen.append(request.options.url)
        return await call_next(request)

    captured: list[httpx2.Request] = []
    provider = provider_with(Pieces([turn()]), captured)
    provider.client = provider.client.with_options(middleware=[middleware])
    resp = await ask(provider)
    assert seen == ["/v1/messages"] and resp.message.text == "done «é»"
    direct = provider_with(Pieces([turn()]), captured)
    await ask(direct)
    # both ways send the same request (but for the header the SDK's middleware adds)
    via_post = [h for h in captured[0].headers.multi_items() if h[0] != "x-stainless-raw-response"]
    assert via_post == captured[1].headers.multi_items()
    assert captured[0].content == captured[1].content and captured[0].url == captured[1].url
    await provider.aclose()
    await direct.aclose()


async def test_a_token_set_on_the_client_reaches_the_next_request() -> None:
    captured: list[httpx2.Request] = []
    provider = provider_with(Pieces([turn()]), captured)
    await ask(provider)
    provider.client.api_key = "sk-ant-renewed"
    await ask(provider)
    sent = [str(r.headers.get("x-api-key") or r.headers.get("authorization")) for r in captured]
    assert "sk-ant-secret" in sent[0] and "sk-ant-renewed" in sent[1]
    await provider.aclose()


async def test_a_client_that_could_trace_goes_through_the_sdks_post(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import trace

    from swarm.providers.anthropic_provider import _may_trace

    provider = provider_with(Pieces([turn()]))
    assert not _may_trace(provider.client)  # OpenTelemetry's default provider: no spans
    assert not _may_trace(provider.client.copy(open_telemetry=False))
    own = provider.client.copy(open_telemetry={"tracer_provider": trace.NoOpTracerProvider()})
    assert _may_trace(own)
    parent = trace.NonRecordingSpan(
        trace.SpanContext(trace_id=1, span_id=2, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    with trace.use_span(parent):  # a trace context the SDK would pass on
        assert _may_trace(provider.client)

    async def not_here(*_: Any) -> None:
        raise AssertionError("the direct path was taken")

    provider.client = own
    monkeypatch.setattr(provider, "_stream", not_here)
    resp = await ask(provider)
    assert resp.message.text == "done «é»" and resp.usage.cache_creation_tokens == 5
    await provider.aclose()


def test_the_http_client_is_the_sdks_aiohttp_one_with_the_shared_tls_context() -> None:
    from anthropic._vendor.httpx_aiohttp.transport import AiohttpTransport

    from swarm.providers.http import tls_context

    provider = AnthropicProvider(api_key="k", base_url="http://127.0.0.1:9")
    transport = provider.client._client._transport
    assert isinstance(transport, AiohttpTransport)
    assert transport.ssl_context is tls_context()
    assert provider.client.max_retries == 0


async def test_a_cookie_the_server_set_goes_back_as_with_the_sdks_post() -> None:
    captured: list[httpx2.Request] = []
    provider = AnthropicProvider(api_key="k", base_url="http://127.0.0.1:9")

    def reply(request: httpx2.Request) -> httpx2.Response:
        request.read()
        captured.append(request)
        return httpx2.Response(
            200,
            content=turn(),
            headers={"content-type": "text/event-stream", "set-cookie": "lb=node-2; Path=/"},
        )

    provider.client = provider.client.copy(
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(reply))
    )
    await ask(provider)
    await ask(provider)
    assert "cookie" not in captured[0].headers
    assert captured[1].headers["cookie"] == "lb=node-2"
    await provider.aclose()
