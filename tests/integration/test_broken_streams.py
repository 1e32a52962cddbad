"""Streams that break half way are retryable errors, never a partial answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from swarm.providers.anthropic_provider import AnthropicProvider
from swarm.providers.base import ProviderError
from swarm.providers.openai_provider import OpenAIProvider
from swarm.providers.types import Message

START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 0},
    },
}
BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
DELTA = {
    "type": "content_block_delta",
    "index": 0,
    "delta": {"type": "text_delta", "text": "I will now start fixing the"},
}
CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": "I will"}, "finish_reason": None}
    ],
}


def sse(events: list[dict[str, object]], named: bool) -> bytes:
    out = b""
    for e in events:
        if named:
            out += f"event: {e['type']}\n".encode()
        out += f"data: {json.dumps(e)}\n\n".encode()
    return out


async def serve(body: bytes, end_cleanly: bool) -> AsyncIterator[str]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(
                line.split(b":")[1]
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
        )
        await reader.readexactly(length)
        if end_cleanly:  # a complete HTTP response whose stream simply stops
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
        else:  # chunked, then the connection drops before the last chunk
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
                + f"{len(body):x}\r\n".encode()
                + body
                + b"\r\n"
            )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.mark.parametrize("end_cleanly", [False, True], ids=["dropped", "ended-early"])
async def test_anthropic_broken_stream_is_retryable(end_cleanly: bool) -> None:
    async for url in serve(sse([START, BLOCK, DELTA], named=True), end_cleanly):
        provider = AnthropicProvider(api_key="k", base_url=url)
        with pytest.raises(ProviderError) as info:
            await provider.complete(
                model="claude-sonnet-5-5",
                system="s",
                messages=[Message.user_text("hi")],
                tools=[],
                max_tokens=10,
            )
        await provider.aclose()
        assert info.value.retryable, str(info.value)


@pytest.mark.parametrize("end_cleanly", [False, True], ids=["dropped", "ended-early"])
async def test_openai_broken_stream_is_retryable(end_cleanly: bool) -> None:
    async for url in serve(sse([CHUNK], named=False), end_cleanly):
        provider = OpenAIProvider(api_key="k", base_url=f"{url}/v1")
        with pytest.raises(ProviderError) as info:
            await provider.complete(
                model="gpt-5",
                system="s",
                messages=[Message.user_text("hi")],
                tools=[],
                max_tokens=10,
            )
        await provider.aclose()
        assert info.value.retryable, str(info.value)
