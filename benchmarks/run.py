"""Benchmarks: `make bench` runs them side by side and writes docs/benchmarks.md.

Every figure is measured in this run on this machine; comparisons are ratios of two
things measured in the same run, so a noisy machine moves both."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: docs/, .swarm/

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


SIZES = (20, 60, 120)


async def _interleaved_cpu_ms(
    variants: dict[str, tuple[Callable[[], Awaitable[Any]], Callable[[], None] | None]],
    calls: int,
) -> dict[str, float]:
    """Median process CPU of one awaited call of each variant. The variants take turns
    call by call, in a shuffled order each round (so neither a change in the machine's
    load nor the caches warmed by whichever ran just before favour one); each variant's
    `prepare` runs untimed before each of its calls. Three warm-up rounds first."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    rng = random.Random(0)
    for i in range(calls + 3):
        rng.shuffle(order)
        for name in order:
            fn, prepare = variants[name]
            if prepare:
                prepare()
            await asyncio.sleep(0.002)  # the previous call's leftovers (closing, pooling)
            t = time.process_time()
            await fn()
            if i >= 3:
                samples[name].append(time.process_time() - t)
    return {name: statistics.median(s) * 1000 for name, s in samples.items()}


def bench_provider_cpu(
    kind: str, calls: int, sizes: tuple[int, ...] = SIZES
) -> list[tuple[str, str]]:
    """CPU per model call against the stub (in its own process) with the demo's first 6
    tools, at several conversation lengths: the plain SDK loop (the whole history given
    to the SDK's create call, non-streaming and streaming), swarm's provider as it was
    before request bodies were cached (`_OpenAIBefore`, `_AnthropicBefore`), and as it is
    now. Each of swarm's measured calls is the agent loop's: the conversation so far plus
    two messages the provider has not seen (an assistant turn and its tool results)."""
    from swarm.tools.builtin import BUILTIN_TOOLS

    tools = [t.spec() for t in list(BUILTIN_TOOLS.values())[:6]]
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "s.yaml"
        script.write_text(
            "match: {agent: '(?P<agent>bench)', task: 'Task (?P<task>[a-z]+):'}\n"
            "conversations:\n  - turns:\n" + "      - {text: x}\n" * max(sizes)
        )
        proc, url = _stub_process(script)
        try:

            async def run() -> None:
                for n in sizes:
                    rows.extend(await _provider_cpu_rows(kind, url, n, calls, tools))

            asyncio.run(run())
        finally:
            proc.terminate()
            proc.wait()
    return rows


async def _provider_cpu_rows(
    kind: str, url: str, n: int, calls: int, tools: list[Any]
) -> list[tuple[str, str]]:
    import anthropic
    import openai

    from swarm.providers.anthropic_provider import AnthropicProvider, to_anthropic
    from swarm.providers.convert import chat_tools, to_chat_messages
    from swarm.providers.openai_provider import OpenAIProvider

    template = conversation(n)
    msgs = list(template)
    ask: dict[str, Any] = {"model": "m", "system": "bench", "tools": tools, "max_tokens": 100}
    plain: Callable[[], Awaitable[Any]]
    plain_stream: Callable[[], Awaitable[Any]]
    if kind == "openai":
        base = f"{url}/openai/v1"
        sdk: Any = openai.AsyncOpenAI(base_url=base, api_key="bench", max_retries=0)
        before: Any = _OpenAIBefore(OpenAIProvider(api_key="bench", base_url=base))
        after: Any = OpenAIProvider(api_key="bench", base_url=base)
        wire = to_chat_messages("bench", template)
        tool_defs: Any = chat_tools(tools)
        sdk_call = "openai SDK `chat.completions.create`"

        async def plain() -> None:
            await sdk.chat.completions.create(
                model="m", messages=wire, tools=tool_defs, max_tokens=100
            )

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

    else:
        sdk = anthropic.AsyncAnthropic(base_url=url, api_key="bench", max_retries=0)
        before = _AnthropicBefore(AnthropicProvider(api_key="bench", base_url=url))
        after = AnthropicProvider(api_key="bench", base_url=url)
        wire = to_anthropic(template)
        tool_defs = [t.model_dump() for t in tools]
        sdk_call = "anthropic SDK `messages.create`"

        async def plain() -> None:
            await sdk.messages.create(
                model="m", max_tokens=100, system="bench", messages=wire, tools=tool_defs
            )

        async def plain_stream() -> None:
            async with sdk.messages.stream(
                model="m", max_tokens=100, system="bench", messages=wire, tools=tool_defs
            ) as stream:
                await stream.get_final_message()

    def next_turn(provider: Any) -> Callable[[], None]:
        def prepare() -> None:
            # Rewind to the conversation as the provider saw it on the previous turn,
            # then append that turn's assistant message and tool results as new objects.
            del msgs[-2:]
            if hasattr(provider, "request_body"):
                provider.request_body(messages=msgs, **ask)
            msgs.extend(m.model_copy(deep=True) for m in template[-2:])

        return prepare

    def ours(provider: Any) -> Callable[[], Awaitable[Any]]:
        async def call() -> None:
            await provider.complete(messages=msgs, **ask)

        return call

    ms = await _interleaved_cpu_ms(
        {
            "plain": (plain, None),
            "stream": (plain_stream, None),
            "before": (ours(before), next_turn(before)),
            "after": (ours(after), next_turn(after)),
        },
        calls,
    )
    await sdk.close()
    await before.p.aclose()
    await after.aclose()
    p_ms, ps_ms, b_ms, a_ms = ms["plain"], ms["stream"], ms["before"], ms["after"]
    label = f"{n} messages"
    name = type(after).__name__
    return [
        (f"{label}: {sdk_call}", f"{p_ms:.2f} ms"),
        (f"{label}: the same, streaming", f"{ps_ms:.2f} ms"),
        (f"{label}: swarm {name}.complete (streaming), before", f"{b_ms:.2f} ms"),
        (f"{label}: swarm {name}.complete (streaming), now", f"{a_ms:.2f} ms"),
        (
            f"{label}: ratio now / plain SDK, non-streaming (streaming); target 0.5",
            f"{a_ms / p_ms:.2f} ({a_ms / ps_ms:.2f})",
        ),
        (f"{label}: ratio now / before", f"{a_ms / b_ms:.2f}"),
    ]


class _AnthropicBefore:
    """AnthropicProvider.complete as it was before bodies were cached and sent through
    `client.post` (the whole history converted and given to `messages.stream` on every
    call, on the SDK's default httpx client), kept so every run measures before and after
    side by side."""

    def __init__(self, provider: Any) -> None:
        import anthropic

        from swarm.providers.http import tls_context

        provider.client = provider.client.copy(
            http_client=anthropic.DefaultAsyncHttpxClient(verify=tls_context())
        )
        self.p = provider

    async def complete(
        self, *, model: str, system: str, messages: list[Any], tools: list[Any], max_tokens: int
    ) -> Any:
        from swarm.providers.anthropic_provider import (
            from_anthropic,
            to_anthropic,
            with_cache_breakpoint,
        )
        from swarm.providers.convert import normalize_tool_ids

        tool_defs: list[dict[str, Any]] = [t.model_dump() for t in tools]
        if tool_defs:
            tool_defs[-1]["cache_control"] = {"type": "ephemeral"}
        system_blocks = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        wire = with_cache_breakpoint(to_anthropic(normalize_tool_ids(messages, "anthropic")))
        async with self.p.client.messages.stream(
            model=model,
            max_tokens=max_tokens,
            system=system_blocks,
            messages=wire,
            tools=tool_defs,
        ) as stream:
            final = await stream.get_final_message()
        return from_anthropic(final)


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
        from swarm.providers.openai_provider import provider_error

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
                    _add_sdk_chunk(acc, chunk)
        except openai.APIError as exc:
            raise provider_error(p.name, exc) from None
        return acc.response(model)


def _add_sdk_chunk(acc: Any, chunk: Any) -> None:
    """The plain SDK loop reads the SDK's typed chunks (as swarm did before it read the
    decoded JSON)."""
    from swarm.providers.convert import chat_usage

    if chunk.usage is not None:
        acc.usage = chat_usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
    for choice in chunk.choices:
        delta = choice.delta
        acc.add_text(delta.content)
        for tc in delta.tool_calls or []:
            fn = tc.function
            acc.add_tool_delta(
                tc.index, tc.id, fn.name if fn else None, fn.arguments if fn else None
            )
        acc.finish(choice.finish_reason)


def bench_blackboard(n: int) -> list[tuple[str, str]]:
    """Redis round trips on the agent's hot path: one turn's writes pipelined in one
    transaction against the same writes sent one by one; claim+complete throughput."""
    from swarm.blackboard.board import Blackboard
    from swarm.blackboard.connection import open_redis, stop_embedded

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
        stop_embedded(Path(tmp))
    return [
        ("one turn's writes in one MULTI pipeline (embedded Redis)", f"{piped:.0f} µs"),
        ("the same writes as single commands", f"{single:.0f} µs"),
        ("ratio pipelined / single", f"{piped / single:.2f}"),
        (f"claim + complete of one task ({n} tasks queued)", f"{cycle:.0f} µs"),
    ]


PROVIDER_NOTE = (
    "Process CPU per call (median) against the stub server running in another process;"
    " n messages = the system prompt and n-1 messages of a coding conversation. The plain"
    " SDK loop hands the whole history to the SDK's create call each time. *before* is"
    " swarm's provider as it was before request bodies were built from per-message JSON"
    " cached across turns and sent through the client's `post` (that code is kept in"
    " benchmarks/run.py); *now* is the provider as it is. Each of swarm's calls carries two"
    " messages it has not seen, as in the agent loop. The variants take turns call by call."
)
NOTES = {
    "Anthropic provider, CPU per call (6 tools)": PROVIDER_NOTE,
    "OpenAI provider, CPU per call (6 tools)": PROVIDER_NOTE,
}


def cpu_model() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown processor"


def commit() -> str:
    """The checkout's commit, and whether tracked files differed from it."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{sha} (with uncommitted changes)" if dirty else sha


def provenance() -> dict[str, str]:
    """When, on what and at which commit a run measured: the doc's header, and the
    heading of a section or chart written by a benchmark run on its own."""
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({cpu_model()}), "
        f"Python {platform.python_version()}",
        "run at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "commit": commit(),
    }


def write_doc(
    sections: dict[str, list[tuple[str, str]] | str], where: dict[str, str] | None = None
) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks.run`); every figure below was measured",
        "in that run. Comparisons are ratios of two things measured side by side in the same",
        "run; absolute times vary with the machine and its load.",
        "",
        *(f"- {k}: {v}" for k, v in (where or provenance()).items()),
        "",
    ]
    for title, rows in sections.items():
        lines += [f"## {title}", ""]
        if isinstance(rows, str):  # a section written as markdown (tables of its own)
            lines += [rows.rstrip("\n"), ""]
            continue
        if title in NOTES:
            lines += [NOTES[title], ""]
        lines += ["| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in rows]
        lines.append("")
    text = "\n".join(lines)
    DOC.write_text(text)
    return text


def replace_section(title: str, note: str, rows: list[tuple[str, str]]) -> str:
    """Replace (or append) one section of docs/benchmarks.md, in the format write_doc
    writes, leaving the rest of the document as it is (a benchmark run on its own)."""
    table = ["| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return replace_markdown(title, "\n".join([note, "", *table]))


def replace_markdown(title: str, body: str) -> str:
    """Replace (or append) the section ``title`` of docs/benchmarks.md with ``body``."""
    section = [f"## {title}", "", *body.rstrip("\n").split("\n")]
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    lines = text.rstrip("\n").split("\n")
    head = f"## {title}"
    if head in lines:
        start = lines.index(head)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        lines[start:end] = [*section, ""]
    else:
        lines += ["", *section]
    DOC.write_text("\n".join(lines).rstrip("\n") + "\n")
    return "\n".join(section)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    where = provenance()  # before any file of the checkout is written
    n = 50 if args.quick else 300
    calls = 10 if args.quick else 100
    from benchmarks import (
        claims,
        context_cache,
        dashboard_idle,
        peers_cpu,
        redis_fsync,
        redis_trips,
        scale,
        scheduling,
        startup,
        swarm_cpu,
    )

    NOTES[redis_fsync.TITLE] = redis_fsync.note()
    NOTES[redis_trips.TITLE] = redis_trips.NOTE
    rounds = 1 if args.quick else 3
    NOTES[startup.TITLE] = startup.NOTE.format(rounds=rounds, agents=10)
    files = 30 if args.quick else 60
    NOTES[context_cache.TITLE] = context_cache.note(files)
    # K=10, 30, 100 side by side with the peers is its own section (peers_cpu); here
    # the packings are compared
    agents, turns = (4, [10]) if args.quick else (10, [30])
    NOTES[swarm_cpu.TITLE] = swarm_cpu.NOTE.format(agents=agents)
    # claims per second and scheduling: median of 3 runs (1 in the quick form)
    claim_tasks, bench_rounds = (5_000, 1) if args.quick else (20_000, 3)
    NOTES[claims.TITLE] = claims.note(claim_tasks, 100, bench_rounds)
    NOTES[scheduling.TITLE] = scheduling.note(60, 10, 0.2, 13, rounds=bench_rounds)
    idle_s = 5.0 if args.quick else 20.0
    NOTES[dashboard_idle.TITLE] = dashboard_idle.note(idle_s)
    peer_agents, peer_turns, peer_repeat = peers_cpu.sizes(args.quick)
    NOTES[scale.TITLE] = scale.NOTE
    sections: dict[str, list[tuple[str, str]] | str] = {
        startup.TITLE: startup.rows(rounds, 10),
        "Anthropic provider, CPU per call (6 tools)": bench_provider_cpu("anthropic", calls),
        "OpenAI provider, CPU per call (6 tools)": bench_provider_cpu("openai", calls),
        "Blackboard": bench_blackboard(n),
        redis_trips.TITLE: redis_trips.rows(15),
        redis_fsync.TITLE: redis_fsync.bench_fsync(4 if args.quick else 20),
        context_cache.TITLE: context_cache.bench_cache(files),
        swarm_cpu.TITLE: swarm_cpu.rows_for(agents, turns, ["1", "auto"]),
        claims.TITLE: claims.rows(claim_tasks, 100, rounds=bench_rounds),
        scheduling.TITLE: scheduling.rows(rounds=bench_rounds),
        scale.TITLE: scale.rows(scale.sizes(args.quick)),
        dashboard_idle.TITLE: dashboard_idle.measure(idle_s),
        peers_cpu.TITLE: peers_cpu.run(
            peer_agents, peer_turns, peer_repeat, where=where, quick=args.quick
        ),
    }
    print(write_doc(sections, where))


if __name__ == "__main__":
    main()
