"""Agents packed into one actor share its board: one bounded pool and one blocking read
of the wake stream, so the Redis clients of the process do not grow with its agents."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from swarm.blackboard.board import Blackboard
from swarm.hosting import ACTOR_CONNECTIONS, AgentActor, agent_specs
from swarm.llmstub import StubScript, StubServer
from swarm.plan import make_plan, store_plan

AGENTS = 60

CONFIG = f"""\
name: packed
goal: many idle agents
model: anthropic/claude-sonnet-5-5
agents:
  - {{name: gate, role: analyst}}
  - {{name: w, role: developer, count: {AGENTS}}}
phases:
  - name: one
    tasks:
      - {{id: a, title: the gate, agent: gate}}
      - {{id: b, title: after it, role: developer, needs: [a]}}
"""


async def _own_clients(board: Blackboard) -> int:
    """This process's connections to the server (the boards name them swarm-PID)."""
    clients = await board.r.client_list()
    return sum(c.get("name") == f"swarm-{os.getpid()}" for c in clients)


async def test_packed_agents_share_one_pool_and_one_wake_reader(
    board: Blackboard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    (tmp_path / "repo").mkdir()
    stub = StubServer(
        StubScript.model_validate({"conversations": [{"task": "b", "turns": [{"text": "done"}]}]})
    )
    stub.start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    try:
        plan = make_plan(tmp_path / "swarm.yaml", tmp_path / "repo", board.run_id, tmp_path / "s")
        await store_plan(board, plan)
        specs = [
            s for s in agent_specs(plan, board.url, tmp_path / "run") if s.agent.name != "gate"
        ]
        actor = AgentActor([s.model_dump_json() for s in specs])  # hosted here, without Ray
        before = await _own_clients(board)
        runs = asyncio.gather(*(actor.run(s.agent.name) for s in specs))
        # every agent finds nothing to claim (b waits for a) and waits on the wake stream
        for _ in range(100):
            agents = await board.agents()
            if sum(a.get("status") == "waiting" for a in agents) == AGENTS:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"the agents did not all wait: {[a.get('status') for a in agents]}")
        await asyncio.sleep(0.5)
        held = await _own_clients(board) - before
        assert 1 <= held <= ACTOR_CONNECTIONS < AGENTS, held  # not one (or two) per agent
        # the gate's task completes: one batch on the wake stream wakes them all
        claim = await board.claim("gate", "analyst", 10_000)
        assert claim is not None and await board.complete("a", "gate", "open", claim.token)
        assert await asyncio.wait_for(runs, 60) == ["done"] * AGENTS
        assert (await board.task("b")).status == "completed"  # type: ignore[union-attr]
        assert await _own_clients(board) == before  # the last agent closed the shared board
    finally:
        stub.stop()


async def test_agents_that_ask_whether_the_run_is_done_at_once_share_one_read(
    board: Blackboard,
) -> None:
    for tid in ("a", "b"):
        assert await board.create_task({"id": tid, "title": tid, "role": "dev"}, needs=[])
    assert not await board.all_terminal()
    for _ in range(2):
        claim = await board.claim("x", "dev", 10_000)
        assert claim is not None and await board.complete(claim.task_id, "x", "ok", claim.token)
    before = await board.r.info("commandstats")
    answers = await asyncio.gather(*(board.all_terminal() for _ in range(200)))
    after = await board.r.info("commandstats")
    assert answers == [True] * 200
    reads = after["cmdstat_hget"]["calls"] - before.get("cmdstat_hget", {"calls": 0})["calls"]
    assert reads == 2  # each task's status once, for all 200 callers


async def test_waiters_ahead_of_behind_and_at_the_shared_reader(board: Blackboard) -> None:
    await board.emit("run_resumed")  # a wake event
    first = (await board.r.xrevrange(board.k.wake, count=1))[0][0]
    waiter = asyncio.create_task(board.wait_wake(first, block_ms=5000))  # the reader starts
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await board.emit("run_resumed")
    woke = await asyncio.wait_for(waiter, 5)
    assert len(woke) == 1 and woke[0].id > first
    # behind where the reader started: it reads what it missed itself
    assert [e.id for e in await board.wait_wake("0-0", block_ms=1000)] == [first, woke[0].id]
    # behind the reader's position but within what it kept
    assert [e.id for e in await board.wait_wake(first, block_ms=1000)] == [woke[0].id]
    # at the latest entry: waits for the next one
    latest = asyncio.create_task(board.wait_wake(woke[0].id, block_ms=5000))
    await asyncio.sleep(0.2)
    assert not latest.done()
    await board.emit("run_resumed")
    assert len(await asyncio.wait_for(latest, 5)) == 1
    assert await board.wait_wake((await asyncio.wait_for(latest, 1))[0].id, block_ms=200) == []
