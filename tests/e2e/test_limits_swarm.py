"""Swarm-wide limits measured on the stub's request log: a shared rate limit that holds
across 10 agents, and a budget that 10 racing agents overshoot by at most one in-flight
request each."""

from __future__ import annotations

import asyncio

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from swarm.providers.modelinfo import DEFAULT_MAX_OUTPUT_TOKENS
from swarm.providers.pricing import cost_usd
from swarm.providers.types import Usage
from tests.e2e.swarmrun import run_swarm

pytestmark = pytest.mark.e2e


def config(extra: str, tasks: int = 10) -> str:
    lines = [f"      - {{id: t{i}, title: Task {i}, role: developer}}" for i in range(tasks)]
    return (
        "name: limits\ngoal: measure limits\nmodel: anthropic/claude-sonnet-5-5\n"
        f"{extra}\nagents:\n  - {{name: dev, role: developer, count: 10}}\n"
        "phases:\n  - name: only\n    tasks:\n" + "\n".join(lines) + "\n"
    )


def test_shared_rate_limit_holds_for_ten_agents(tmp_path, redis_handle: RedisHandle) -> None:
    limit, window = 4, 1.5
    script = StubScript.model_validate(
        {
            "conversations": [
                {
                    "turns": [
                        {"tool_calls": [{"name": "bash", "input": {"command": "echo hi"}}]},
                        {"text": "done"},
                    ]
                }
            ]
        }
    )
    cfg = config(
        f"providers:\n  anthropic: {{requests_per_minute: {limit}, rate_window_s: {window}}}"
    )
    with StubServer(script) as stub:
        run_id, proc = run_swarm(tmp_path, cfg, stub, redis_handle.url)
        stamps = sorted(r.received_at for r in stub.requests)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(stamps) == 20
    worst = max(sum(1 for u in stamps[i:] if u - t < window) for i, t in enumerate(stamps))
    assert worst <= limit, (
        f"{worst} requests within {window}s (limit {limit}): {[round(s - stamps[0], 3) for s in stamps]}"
    )
    assert stamps[-1] - stamps[0] >= (20 / limit - 1) * window * 0.9


def test_budget_holds_for_ten_racing_agents(tmp_path, redis_handle: RedisHandle) -> None:
    usage = {"input_tokens": 100_000, "output_tokens": 1_000}
    per_request = cost_usd("anthropic/claude-sonnet-5-5", Usage(**usage))
    max_usd = 3.0
    turn = {"tool_calls": [{"name": "bash", "input": {"command": "echo step"}}], "usage": usage}
    script = StubScript.model_validate(
        {"conversations": [{"turns": [turn] * 39 + [{"text": "done", "usage": usage}]}]}
    )
    cfg = config(f"budget: {{max_usd: {max_usd}, max_turns: 40}}")
    with StubServer(script) as stub:
        run_id, proc = run_swarm(tmp_path, cfg, stub, redis_handle.url)
        answered = sum(1 for r in stub.requests if r.status == 200)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "max_usd 3.0 reached" in proc.stdout

    async def check() -> None:
        board = Blackboard(redis_handle.url, run_id)
        try:
            spent = (await board.usage())["usd"]
            assert spent == pytest.approx(answered * per_request)
            overshoot = spent - max_usd
            # every agent may have had one request in flight when the cap was reached
            assert overshoot <= 10 * per_request + 1e-9, (spent, answered)
            # and the cap was really used: the run stops when the next request's
            # reservation does not fit, and a reservation is that request's estimate: its
            # input as the meter sizes it (the stub's fixed 100k tokens scaled by a
            # history that grows by a few percent a turn, so within 10% here) plus the
            # whole output limit
            reserved = cost_usd(
                "anthropic/claude-sonnet-5-5",
                Usage(input_tokens=110_000, output_tokens=DEFAULT_MAX_OUTPUT_TOKENS),
            )
            assert spent >= max_usd - reserved, (spent, reserved)
            meta = await board.meta()
            assert meta["state"] == "budget"
            tasks = await board.tasks()
            assert all(t.status in ("ready", "claimed") for t in tasks)  # not failed: resumable
            kept = [len(await board.session(t.id)) for t in tasks]
            assert sum(kept) > 2 * len(tasks)  # transcripts kept
        finally:
            await board.close()

    asyncio.run(check())
