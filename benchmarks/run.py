"""Benchmarks: `make bench` runs them side by side and writes docs/benchmarks.md.

Every figure is measured in this run on this machine; comparisons are ratios of two
things measured in the same run, so a noisy machine moves both."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from swarm.paths import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "benchmarks.md"


def _stub_process(script: Path) -> tuple[subprocess.Popen[str], str]:
    """The scripted server in its own process, so its CPU is not counted as ours."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.llmstub", str(script)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


def conversation(n: int) -> list[Any]:
    from swarm.providers.types import Message, TextBlock, ToolCall, ToolResult

    msgs: list[Any] = [Message.user_text("Task bench: refactor the module\n" + "x" * 400)]
    i = 0
    while len(msgs) < n - 1:
        msgs.append(
            Message(
                role="assistant",
                content=[
                    TextBlock(text="Reading the next file. " * 5),
                    ToolCall(
                        id=f"toolu_{i:024d}", name="read", input={"file_path": f"src/m{i}.py"}
                    ),
                ],
            )
        )
        msgs.append(
            Message(
                role="user",
                content=[
                    ToolResult(tool_call_id=f"toolu_{i:024d}", content="     1\tdef f():\n" * 40)
                ],
            )
        )
        i += 1
    return msgs


def bench_provider_cpu(calls: int) -> list[tuple[str, str]]:
    """CPU per model call at a 60-message conversation with the demo's tools: the plain
    SDK (`messages.create`, non-streaming) against swarm's AnthropicProvider (streaming)."""
    import anthropic

    from swarm.providers.anthropic_provider import AnthropicProvider, to_anthropic
    from swarm.tools.builtin import BUILTIN_TOOLS

    tools = [t.spec() for t in list(BUILTIN_TOOLS.values())[:6]]
    msgs = conversation(60)
    turns = len([m for m in msgs if m.role == "assistant"])
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "s.yaml"
        script.write_text(
            "match: {agent: '(?P<agent>bench)', task: 'Task (?P<task>[a-z]+):'}\n"
            "conversations:\n  - turns:\n" + "      - {text: x}\n" * (turns + 1)
        )
        proc, url = _stub_process(script)
        try:
            sdk = anthropic.AsyncAnthropic(base_url=url, api_key="bench", max_retries=0)
            ours = AnthropicProvider(api_key="bench", base_url=url)
            wire: Any = to_anthropic(msgs)
            tool_defs: Any = [t.model_dump() for t in tools]

            async def plain() -> None:
                await sdk.messages.create(
                    model="m", max_tokens=100, system="bench", messages=wire, tools=tool_defs
                )

            async def swarm_call() -> None:
                await ours.complete(
                    model="m", system="bench", messages=msgs, tools=tools, max_tokens=100
                )

            async def measure(fn: Any) -> float:
                for _ in range(3):
                    await fn()
                samples = []
                for _ in range(calls):
                    t = time.process_time()
                    await fn()
                    samples.append(time.process_time() - t)
                return statistics.median(samples) * 1000

            async def both() -> tuple[float, float]:
                a = await measure(plain)
                b = await measure(swarm_call)
                await sdk.close()
                await ours.aclose()
                return a, b

            plain_ms, ours_ms = asyncio.run(both())
        finally:
            proc.terminate()
            proc.wait()
    return [
        (
            "anthropic SDK `messages.create`, CPU per call (60 messages, 6 tools)",
            f"{plain_ms:.2f} ms",
        ),
        ("swarm AnthropicProvider.complete (streaming), CPU per call", f"{ours_ms:.2f} ms"),
        ("ratio swarm / plain SDK (target: 0.5)", f"{ours_ms / plain_ms:.2f}"),
    ]


OPENAI_SIZES = (20, 60, 120)


async def _cpu_per_call_ms(
    fn: Callable[[], Awaitable[Any]], calls: int, prepare: Callable[[], None] | None = None
) -> float:
    """Median process CPU of one awaited call (after 3 warm-up calls); `prepare` runs
    untimed before each call."""
    for _ in range(3):
        if prepare:
            prepare()
        await fn()
    samples = []
    for _ in range(calls):
        if prepare:
            prepare()
        t = time.process_time()
        await fn()
        samples.append(time.process_time() - t)
    return statistics.median(samples) * 1000


def bench_openai_cpu(calls: int, sizes: tuple[int, ...] = OPENAI_SIZES) -> list[tuple[str, str]]:
    """CPU per model call through the openai SDK against the stub (6 tools): the plain SDK
    loop (`chat.completions.create` with the whole history, non-streaming and streaming),
    swarm's OpenAIProvider as it was before bodies were cached, and as it is now. Each of
    swarm's measured calls sends two messages the provider has not seen before (an
    assistant turn and its tool results), as the agent loop does."""
    import openai

    from swarm.providers.openai_provider import OpenAIProvider
    from swarm.tools.builtin import BUILTIN_TOOLS

    tools = [t.spec() for t in list(BUILTIN_TOOLS.values())[:6]]
    turns = max(sizes)  # more than the assistant messages of the longest conversation
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "s.yaml"
        script.write_text(
            "match: {agent: '(?P<agent>bench)', task: 'Task (?P<task>[a-z]+):'}\n"
            "conversations:\n  - turns:\n" + "      - {text: x}\n" * turns
        )
        proc, url = _stub_process(script)
        base = f"{url}/openai/v1"
        try:

            async def run() -> None:
                sdk = openai.AsyncOpenAI(base_url=base, api_key="bench", max_retries=0)
                before = OpenAIProvider(api_key="bench", base_url=base)
                after = OpenAIProvider(api_key="bench", base_url=base)
                for n in sizes:
                    rows.extend(
                        await _openai_cpu_rows(n, calls, tools, sdk, _OpenAIBefore(before), after)
                    )
                await sdk.close()
                await before.aclose()
                await after.aclose()

            asyncio.run(run())
        finally:
            proc.terminate()
            proc.wait()
    return rows


async def _openai_cpu_rows(
    n: int, calls: int, tools: list[Any], sdk: Any, before: Any, after: Any
) -> list[tuple[str, str]]:
    from swarm.providers.convert import chat_tools, to_chat_messages

    template = conversation(n)
    wire = to_chat_messages("bench", template)
    tool_defs = chat_tools(tools)
    msgs = list(template)

    def grow() -> None:
        # The last two messages replaced by copies the provider has not seen: each
        # call converts an assistant turn and its tool results anew, like the agent loop.
        del msgs[-2:]
        msgs.extend(m.model_copy(deep=True) for m in template[-2:])

    async def plain() -> None:
        await sdk.chat.completions.create(model="m", messages=wire, tools=tool_defs, max_tokens=100)

    async def plain_stream() -> None:
        stream = await sdk.chat.completions.create(
            model="m",
            messages=wire,
            tools=tool_defs,
            max_tokens=100,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass

    def ours(provider: Any) -> Callable[[], Awaitable[Any]]:
        async def call() -> None:
            await provider.complete(
                model="m", system="bench", messages=msgs, tools=tools, max_tokens=100
            )

        return call

    p_ms = await _cpu_per_call_ms(plain, calls)
    ps_ms = await _cpu_per_call_ms(plain_stream, calls)
    b_ms = await _cpu_per_call_ms(ours(before), calls, grow)
    a_ms = await _cpu_per_call_ms(ours(after), calls, grow)
    label = f"{len(wire)} messages"
    return [
        (f"{label}: openai SDK `chat.completions.create`", f"{p_ms:.2f} ms"),
        (f"{label}: the same, streaming", f"{ps_ms:.2f} ms"),
        (f"{label}: swarm OpenAIProvider.complete (streaming) before", f"{b_ms:.2f} ms"),
        (f"{label}: swarm OpenAIProvider.complete (streaming) now", f"{a_ms:.2f} ms"),
        (
            f"{label}: ratio now / plain SDK, non-streaming (streaming); target 0.5",
            f"{a_ms / p_ms:.2f} ({a_ms / ps_ms:.2f})",
        ),
        (f"{label}: ratio now / before", f"{a_ms / b_ms:.2f}"),
    ]


class _OpenAIBefore:
    """OpenAIProvider.complete as it was before bodies were cached and sent through
    `client.post` (the whole history converted and given to `chat.completions.create`
    on every call), kept so every run measures before and after side by side."""

    def __init__(self, provider: Any) -> None:
        self.p = provider

    async def complete(
        self, *, model: str, system: str, messages: list[Any], tools: list[Any], max_tokens: int
    ) -> Any:
        import openai

        from swarm.providers.convert import (
            ChatAccumulator,
            chat_tools,
            normalize_tool_ids,
            to_chat_messages,
        )
        from swarm.providers.openai_provider import add_chunk, provider_error

        p = self.p
        wire = to_chat_messages(system, normalize_tool_ids(messages, p.name))
        by_name = p.max_tokens_param == "max_tokens"
        acc = ChatAccumulator()
        try:
            stream = await p.client.chat.completions.create(
                model=model,
                messages=wire,
                tools=chat_tools(tools) if tools else openai.omit,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=p._extra_headers,
                max_tokens=max_tokens if by_name else openai.omit,
                max_completion_tokens=openai.omit if by_name else max_tokens,
            )
            async with stream:
                async for chunk in stream:
                    add_chunk(acc, chunk)
        except openai.APIError as exc:
            raise provider_error(p.name, exc) from None
        return acc.response(model)


def bench_blackboard(n: int) -> list[tuple[str, str]]:
    """Redis round trips on the agent's hot path: one turn's writes pipelined in one
    transaction against the same writes sent one by one; claim+complete throughput."""
    from swarm.blackboard.board import Blackboard
    from swarm.blackboard.connection import open_redis

    with tempfile.TemporaryDirectory() as tmp:
        handle = open_redis(Path(tmp))

        async def run() -> tuple[float, float, float]:
            board = Blackboard(handle.url, "bench")
            msg = {"role": "assistant", "content": [{"type": "text", "text": "x" * 500}]}
            usage = {"input_tokens": 1000, "output_tokens": 50, "usd": 0.01, "turns": 1}
            t = time.perf_counter()
            for _ in range(n):
                await board.record_turn(
                    "a",
                    "t",
                    [msg],
                    usage=usage,
                    agent_fields={"turns_task": 1},
                    events=[("model_turn", {"turn": 1})],
                )
            piped = (time.perf_counter() - t) / n * 1e6
            t = time.perf_counter()
            for _ in range(n):
                await board.r.rpush(board.k.session("t2"), "x" * 500)
                for key in (
                    board.k.usage,
                    board.k.usage_of("agent", "a"),
                    board.k.usage_of("task", "t2"),
                ):
                    for f, v in usage.items():
                        await board.r.hincrbyfloat(key, f, v)
                await board.r.hset(board.k.agent("a"), mapping={"turns_task": 1})
                await board.emit("model_turn", "t2", "a", {"turn": 1})
            single = (time.perf_counter() - t) / n * 1e6
            for i in range(n):
                await board.create_task(
                    {"id": f"c{i}", "title": "t", "role": "dev", "max_attempts": 3}
                )
            t = time.perf_counter()
            while (c := await board.claim("a", "dev", 60_000)) is not None:
                await board.complete(c[0], "a", "ok")
            cycle = (time.perf_counter() - t) / n * 1e6
            await board.close()
            return piped, single, cycle

        piped, single, cycle = asyncio.run(run())
        handle.close()
    return [
        ("one turn's writes in one MULTI pipeline (embedded Redis)", f"{piped:.0f} µs"),
        ("the same writes as single commands", f"{single:.0f} µs"),
        ("ratio pipelined / single", f"{piped / single:.2f}"),
        (f"claim + complete of one task ({n} tasks queued)", f"{cycle:.0f} µs"),
    ]


def write_doc(sections: dict[str, list[tuple[str, str]]]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); every figure below was measured",
        "in that run. Comparisons are ratios of two things measured side by side in the same",
        "run; absolute times vary with the machine and its load.",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        f"- run at: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        "",
    ]
    for title, rows in sections.items():
        lines += [f"## {title}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        lines.append("")
    text = "\n".join(lines)
    DOC.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    n = 50 if args.quick else 300
    sections = {
        "Provider call CPU": bench_provider_cpu(n // 5 if args.quick else 100),
        "OpenAI provider call CPU (6 tools)": bench_openai_cpu(n // 5 if args.quick else 100),
        "Blackboard": bench_blackboard(n),
    }
    print(write_doc(sections))


if __name__ == "__main__":
    main()
