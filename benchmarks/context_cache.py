"""Prompt caching across pruning and compaction, on a long scripted task.

    python -m benchmarks.context_cache [--quick]

One agent reads 60 files of ~5.6 KB, one per turn, then answers (61 turns), against the
scripted server with its prompt-cache model on (swarm.llmstub.cache: Anthropic caches at
the request's cache_control breakpoints, OpenAI every prefix of 1024+ tokens). Each
format runs twice: with a 200k-token window (the conversation never needs managing) and
with a 16k-token window (five windows of tool output: pruned and compacted). The figures
are the usage the run stored (what the provider reported), and the largest request in the
server's own log. Writes (or replaces) its section of docs/benchmarks.md; `make bench`
includes it."""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path
from typing import Any

TITLE = "Prompt cache across pruning and compaction (61-turn scripted task)"
NOTE = (
    "One agent reads {files} files of ~5.6 KB, one per turn, then answers, against the "
    "scripted server with its prompt-cache model on (Anthropic: reads and writes at the "
    "request's cache_control breakpoints; OpenAI: every prefix of 1024+ tokens, no writes "
    "reported). *cache-read share*: cache-read tokens / all input tokens (uncached + cache "
    "read + cache written), from the usage the run stored. *largest request*: the largest "
    "request in the server's log (its JSON / 4) plus its max_tokens. Sizes are the "
    "server's estimates, not a real tokenizer's."
)
MODELS = {"anthropic": "anthropic/claude-sonnet-5-5", "openai": "openai/gpt-5"}


def _files(repo: Path, count: int) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        line = f"file {i:02} line of some fairly ordinary source text, number "
        text = "".join(f"{line}{n}\n" for n in range(5600 // (len(line) + 3)))
        (repo / f"f{i:02}.txt").write_text(text)


def _config(provider: str, window: int) -> str:
    model = MODELS[provider]
    return f"""\
name: bench
goal: read files
model: {model}
budget: {{max_turns: 200}}
reliability: {{no_progress_turns: 0}}
models:
  {model}: {{context_window: {window}}}
agents:
  - {{name: dev, role: developer}}
phases:
  - name: one
    tasks:
      - {{id: a, title: A, agent: dev}}
"""


async def run_task(provider: str, window: int, files: int) -> dict[str, Any]:
    from swarm.blackboard.board import Blackboard
    from swarm.blackboard.connection import open_redis, stop_embedded
    from swarm.hosting import agent_specs, run_agent
    from swarm.llmstub import StubScript, StubServer
    from swarm.plan import make_plan, store_plan

    turns: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "read", "input": {"file_path": f"f{i:02}.txt"}}]}
        for i in range(files)
    ]
    turns.append({"text": "done"})
    script = {
        "prompt_cache": True,
        "context_window": window,
        "conversations": [{"task": "a", "turns": turns}],
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _files(root / "repo", files)
        (root / "swarm.yaml").write_text(_config(provider, window))
        stub = StubServer(StubScript.model_validate(script)).start()
        if provider == "anthropic":
            env = {"ANTHROPIC_BASE_URL": stub.base_url, "ANTHROPIC_API_KEY": "bench"}
        else:
            env = {"OPENAI_BASE_URL": f"{stub.base_url}/openai/v1", "OPENAI_API_KEY": "bench"}
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        handle = open_redis(root / ".swarm")
        try:
            board = Blackboard(handle.url, f"bench-{provider}-{window}")
            plan = make_plan(root / "swarm.yaml", root / "repo", board.run_id, root / ".swarm")
            await store_plan(board, plan)
            await asyncio.gather(*(run_agent(s) for s in agent_specs(plan, board.url, root)))
            usage = await board.usage()
            task = await board.task("a")
            await board.close()
        finally:
            stub.stop()
            handle.close()
            stop_embedded(root / ".swarm")  # before its folder goes
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    uncached = int(usage.get("input_tokens", 0))
    read = int(usage.get("cache_read_tokens", 0))
    written = int(usage.get("cache_creation_tokens", 0))
    largest = max(
        r.tokens + int(r.body.get("max_tokens") or r.body.get("max_completion_tokens") or 0)
        for r in stub.requests
    )
    return {
        "status": task.status if task else "missing",
        "requests": len(stub.requests),
        "input": uncached + read + written,
        "share": read / max(uncached + read + written, 1),
        "written": written,
        "compactions": int(usage.get("compactions", 0)),
        "prunes": int(usage.get("prunes", 0)),
        "largest": largest,
    }


def bench_cache(files: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for provider in ("anthropic", "openai"):
        for window in (200_000, 16_000):
            r = asyncio.run(run_task(provider, window, files))
            label = f"{provider}, {window // 1000}k window"
            rows += [
                (f"{label}: task", f"{r['status']} in {r['requests']} requests"),
                (f"{label}: prunes / compactions", f"{r['prunes']} / {r['compactions']}"),
                (f"{label}: input tokens, all requests", f"{r['input']:,}"),
                (f"{label}: cache-read share", f"{r['share']:.0%}"),
                (f"{label}: largest request", f"{r['largest']:,} tokens"),
            ]
    return rows


def note(files: int = 60) -> str:
    return NOTE.format(files=files)


def write_section(rows: list[tuple[str, str]], files: int) -> None:
    """Replace this benchmark's section in docs/benchmarks.md (or add it)."""
    from benchmarks.run import replace_section

    replace_section(TITLE, note(files), rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a shorter task")
    args = parser.parse_args()
    files = 30 if args.quick else 60
    rows = bench_cache(files)
    write_section(rows, files)
    for k, v in rows:
        print(f"{k}: {v}")


if __name__ == "__main__":
    main()
