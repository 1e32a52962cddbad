"""The coordinator's stop and an actor's death with hundreds of agents in one actor,
against a real Redis and a small connection pool: every agent is marked, no write
fails for want of a connection (1,000 agents once ended a run with redis-py's
"Too many connections")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from swarm.blackboard.board import Blackboard, StateCorrupt
from swarm.coordinator import Coordinator

AGENTS = 300
POOL = 20  # far fewer connections than agents


class FakeActor:
    """What the coordinator sees of a Ray actor: ``run.remote`` gives an awaitable
    that ends when the call is cancelled or the actor killed, as Ray's refs do."""

    def __init__(self) -> None:
        self.refs: list[asyncio.Future[str]] = []
        self.run = self

    def remote(self, name: str) -> asyncio.Future[str]:
        ref: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.refs.append(ref)
        return ref

    def die(self, why: str) -> None:
        for ref in self.refs:
            if not ref.done():
                ref.set_exception(RuntimeError(why))


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def cancel(ref: asyncio.Future[str], **_: Any) -> None:
        if not ref.done():
            ref.set_exception(RuntimeError("task cancelled"))

    monkeypatch.setattr(ray, "cancel", cancel)
    monkeypatch.setattr(ray, "kill", lambda actor, **_: actor.die("actor killed"))


async def _hosted(board: Blackboard) -> tuple[Coordinator, FakeActor, list[str]]:
    names = [f"a{i}" for i in range(AGENTS)]
    await board.init_run({"name": "scale"}, [{"name": n, "role": "dev"} for n in names])
    board.r.connection_pool.max_connections = POOL
    coord = Coordinator(board, [], max_wall_s=None)
    actor = FakeActor()
    for name in names:  # one packed actor hosts them all
        coord.actors[name] = actor
        coord.runs[name] = asyncio.ensure_future(coord._await_actor(name, actor))
    await asyncio.sleep(0)
    for name in names:
        coord.refs[name] = actor.refs[names.index(name)]
    return coord, actor, names


async def _statuses(board: Blackboard) -> set[str]:
    return {a.get("status", "") for a in await board.agents()}


@pytest.mark.usefixtures("fake_ray")
async def test_stop_marks_hundreds_of_busy_agents_stopped_with_a_small_pool(
    board: Blackboard,
) -> None:
    coord, _, names = await _hosted(board)
    await coord._stop()  # none of them leaves on its own: all are busy
    assert all(f.done() and f.exception() is None for f in coord.runs.values())
    assert await _statuses(board) == {"stopped"}
    events = await board.events(count=10_000)
    stopped = [e.agent for e in events if e.type == "agent_status"]
    assert sorted(stopped) == sorted(names)
    assert not [e for e in events if e.type == "agent_dead"]  # a stop is not a death


@pytest.mark.usefixtures("fake_ray")
async def test_a_packed_actor_dying_marks_every_agent_dead_with_a_small_pool(
    board: Blackboard,
) -> None:
    coord, actor, names = await _hosted(board)
    actor.die("node lost")
    await asyncio.wait_for(asyncio.gather(*coord.runs.values()), 30)  # none raises
    assert await _statuses(board) == {"dead"}
    dead = [e.agent for e in await board.events(count=10_000) if e.type == "agent_dead"]
    assert sorted(dead) == sorted(names)


async def test_the_supervision_rounds_task_heads_are_the_tasks_fields(board: Blackboard) -> None:
    for i in range(5):
        task = {"id": f"t{i}", "title": "x", "role": "dev", "agent": "a1" if i == 4 else ""}
        assert await board.create_task(task, needs=[])
    claim = await board.claim("a0", "dev", 10_000)
    assert claim is not None and await board.complete(claim.task_id, "a0", "ok", claim.token)
    assert await board.claim("a0", "dev", 10_000) is not None
    heads = await board.task_heads()
    tasks = await board.tasks()
    assert [tuple(h) for h in heads] == [
        (t.id, t.status, t.role, t.agent, t.assignee, t.claimed_at) for t in tasks
    ]
    assert {h.status for h in heads} == {"completed", "claimed", "ready"}
    assert any(h.claimed_at > 0 for h in heads if h.status == "claimed")
    await board.r.delete(board.k.task("t2"))
    with pytest.raises(StateCorrupt, match="t2"):
        await board.task_heads()
