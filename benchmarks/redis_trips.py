"""Redis round trips per model turn: one agent, in-process (no Ray), on a real Redis,
reading K files one per turn against the scripted server. Every request redis-py sends
is counted (a pipeline or a script is one), by the agent-loop call site that sent it.

    python -m benchmarks.redis_trips [K]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TITLE = "Redis round trips per model turn"
NOTE = (
    "One agent in-process on a real Redis reads 15 files, one per turn, then answers; every "
    "request redis-py sends is counted (a script or a pipeline is one), by the agent-loop "
    "method that sent it. A tool turn costs three: the budget reservation (which asks for "
    "the rate-limit place in the same script), the model turn's store (which ends that "
    "place and reads the unread inbox) and the tool results' store (with the tool state "
    "the turn wrote). `run`, `set_status`, `work`, `_open_session` and `_finish` are the "
    "claim and the task's start and end. `tests/integration/test_round_trips.py` holds "
    "the three."
)

CONFIG = """\
name: trips
goal: count round trips
model: anthropic/claude-sonnet-5-5
agents:
  - {name: dev, role: developer}
phases:
  - name: one
    tasks:
      - {id: a, title: Read the files, agent: dev}
"""


@dataclass
class Trips:
    turns: int
    total: int
    by_site: Counter[str]

    @property
    def per_turn(self) -> float:
        return self.total / self.turns


@contextlib.contextmanager
def counting() -> Iterator[Counter[str]]:
    """Count every request redis-py's asyncio connections send, by the innermost agent
    loop method (swarm/agent.py) on the stack."""
    import redis.asyncio.connection as rc

    sites: Counter[str] = Counter()
    original = rc.AbstractConnection.send_packed_command

    async def counted(self: Any, command: Any, check_health: bool = True) -> None:
        frames = [
            f.name
            for f in traceback.extract_stack(limit=40)
            if f.filename.endswith(os.path.join("swarm", "agent.py"))
        ]
        sites[frames[-1] if frames else "(other)"] += 1
        await original(self, command, check_health)

    rc.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield sites
    finally:
        rc.AbstractConnection.send_packed_command = original  # type: ignore[method-assign]


async def measure(k: int) -> Trips:
    """Round trips of a task of ``k`` read turns and a final answer: the claim, the
    task's start and end included (so per turn is a little above the steady state)."""
    from swarm.blackboard.board import Blackboard
    from swarm.blackboard.connection import open_redis
    from swarm.hosting import agent_specs, run_agent
    from swarm.llmstub import StubScript, StubServer
    from swarm.plan import make_plan, store_plan

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        handle = open_redis(tmp / ".swarm")
        repo = tmp / "repo"
        repo.mkdir()
        for j in range(k):
            (repo / f"f{j}.txt").write_text(f"line of file {j}\n" * 40)
        (tmp / "swarm.yaml").write_text(CONFIG)
        turns: list[dict[str, Any]] = [
            {"tool_calls": [{"name": "read", "input": {"file_path": f"f{j}.txt"}}]}
            for j in range(k)
        ]
        turns.append({"text": "done"})
        stub = StubServer(
            StubScript.model_validate({"conversations": [{"task": "a", "turns": turns}]})
        )
        stub.start()
        saved = {v: os.environ.get(v) for v in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY")}
        os.environ.update(ANTHROPIC_BASE_URL=stub.base_url, ANTHROPIC_API_KEY="trips")
        board = Blackboard(handle.url, "trips")
        try:
            plan = make_plan(tmp / "swarm.yaml", repo, "trips", tmp / ".swarm")
            await store_plan(board, plan)
            specs = agent_specs(plan, handle.url, tmp / "run")
            with counting() as sites:
                await asyncio.wait_for(asyncio.gather(*(run_agent(s) for s in specs)), 120)
            task = await board.task("a")
            if task is None or task.status != "completed":
                raise RuntimeError(f"the task did not complete: {task}")
        finally:
            stub.stop()
            await board.close()
            handle.close()
            for var, value in saved.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value
        return Trips(turns=k + 1, total=sum(sites.values()), by_site=sites)


def rows(k: int) -> list[tuple[str, str]]:
    trips = asyncio.run(measure(k))
    out = [
        ("model turns (one read call each, then the answer)", str(trips.turns)),
        ("round trips per turn, whole task (claim to completion)", f"{trips.per_turn:.1f}"),
    ]
    for site, n in trips.by_site.most_common():
        out.append((f"round trips from `{site}`", f"{n} ({n / trips.turns:.2f} per turn)"))
    return out


if __name__ == "__main__":
    for name, value in rows(int(sys.argv[1]) if len(sys.argv) > 1 else 15):
        print(f"{name}: {value}")
