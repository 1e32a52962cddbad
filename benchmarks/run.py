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
            wire = to_anthropic(msgs)
            tool_defs = [t.model_dump() for t in tools]

            async def plain() -> None:
                await sdk.messages.create(
                    model="m", max_tokens=100, system="bench", messages=wire, tools=tool_defs
                )  # type: ignore[arg-type]

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
        "Blackboard": bench_blackboard(n),
    }
    print(write_doc(sections))


if __name__ == "__main__":
    main()
