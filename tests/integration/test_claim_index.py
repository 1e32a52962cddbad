"""CLAIM reads the claim index (ready tasks per role and per agent, claims per agent), not
every task: many concurrent claimers never double claim, the claim order is the tasks
list's, every way back to 'ready' makes a task claimable again, and a run stored before
the index existed is indexed on its first claim."""

from __future__ import annotations

import asyncio
from collections import Counter

import redis

from swarm.blackboard.board import Blackboard


async def add(
    board: Blackboard, tid: str, role: str = "dev", agent: str = "", needs: list[str] | None = None
) -> None:
    task = {"id": tid, "title": tid, "role": role, "agent": agent, "max_attempts": 3}
    assert await board.create_task(task, needs=needs or [])


async def test_hundred_concurrent_claimers_never_double_claim(board: Blackboard) -> None:
    """100 claimers over 10 connections, on tasks of two roles, tasks named for one agent
    and chains of needs: every task is claimed once, by an agent allowed to take it."""
    roles = {n: ("dev" if n % 2 else "doc") for n in range(100)}
    for i in range(400):
        needs = [f"t{i - 40}"] if i >= 40 and i % 3 == 0 else []
        agent = f"agent-{i % 100}" if i % 7 == 0 else ""
        await add(board, f"t{i}", role="dev" if i % 2 else "doc", agent=agent, needs=needs)
    want = {t.id: t for t in await board.tasks()}
    boards = [Blackboard(board.url, board.run_id) for _ in range(10)]
    got: list[tuple[str, str]] = []

    async def claimer(n: int) -> None:
        b, me = boards[n % 10], f"agent-{n}"
        idle = 0
        while idle < 3:  # tasks behind needs become ready as others complete
            c = await b.claim(me, roles[n], 60_000)
            if c is None:
                idle += 1
                await asyncio.sleep(0.02)
                continue
            idle = 0
            assert c.kind == "claimed"
            got.append((c.task_id, me))
            assert await b.complete(c.task_id, me, "ok", c.token)

    await asyncio.gather(*(claimer(n) for n in range(100)))
    for b in boards:
        await b.close()
    per_task = Counter(t for t, _ in got)
    assert set(per_task) == set(want)
    assert set(per_task.values()) == {1}
    for tid, me in got:
        t = want[tid]
        assert (t.agent == me) if t.agent else (roles[int(me.split("-")[1])] == t.role)
    after = await board.tasks()
    assert all(t.status == "completed" and t.attempts == 1 for t in after)
    events = Counter(e.type for e in await board.events(count=10_000))
    assert events["task_claimed"] == len(want) == events["task_completed"]


async def test_claim_order_is_the_task_list_across_role_and_agent_tasks(
    board: Blackboard,
) -> None:
    await add(board, "r1")
    await add(board, "a1", agent="x")
    await add(board, "other", role="doc")
    await add(board, "r2")
    await add(board, "a2", agent="x")
    await add(board, "y1", agent="y")
    order = []
    while (c := await board.claim("x", "dev", 10_000)) is not None:
        order.append(c.task_id)
        assert await board.complete(c.task_id, "x", "ok", c.token)
    assert order == ["r1", "a1", "r2", "a2"]


async def test_every_way_back_to_ready_is_claimable_again(board: Blackboard) -> None:
    await add(board, "a")
    await add(board, "b", needs=["a"])
    c = await board.claim("x", "dev", 10_000)
    assert c is not None and c.task_id == "a"
    assert await board.release("a", "x", "budget", c.token)  # released
    c = await board.claim("y", "dev", 50)
    assert c is not None and c.task_id == "a"
    await asyncio.sleep(0.1)
    assert await board.requeue_expired() == 1  # lease lapsed: requeued
    c = await board.claim("z", "dev", 10_000)
    assert c is not None and (c.task_id, c.attempts) == ("a", 2)
    assert await board.fail("a", "z", "no", c.token)  # b fails with it
    assert await board.claim("z", "dev", 10_000) is None
    assert await board.retry_failed() == 2  # a ready again, b pending behind it
    c = await board.claim("z", "dev", 10_000)
    assert c is not None and c.task_id == "a"
    assert await board.complete("a", "z", "ok", c.token)  # b promoted
    c = await board.claim("z", "dev", 10_000)
    assert c is not None and c.task_id == "b"


async def test_merge_queue_send_back_is_claimable_by_its_agent_first(board: Blackboard) -> None:
    await add(board, "a")
    c = await board.claim("x", "dev", 10_000)
    assert c is not None
    assert await board.submit("a", "x", "done", "abc123", c.token)
    assert await board.claim("y", "dev", 10_000) is None  # merging: nobody's
    assert await board.merge_back("a", "merge_conflict", {}, 3, 60_000, "conflict") == 1
    assert await board.claim("y", "dev", 10_000) is None  # waits for x a moment
    c = await board.claim("x", "dev", 10_000)
    assert c is not None and c.task_id == "a"


async def test_a_run_stored_before_the_index_is_indexed_on_its_first_claim(
    board: Blackboard,
) -> None:
    for tid in ("a", "b", "c", "d"):
        await add(board, tid)
    held = await board.claim("x", "dev", 10_000)
    assert held is not None and held.task_id == "a"
    # the layout an older version stored: no index keys, no seq field
    r = board.r
    for key in await r.keys(f"{board.k.prefix}:*"):
        if key.split(":")[3] in ("indexed", "ready", "claimed", "held"):
            await r.delete(key)
    for tid in ("a", "b", "c", "d"):
        await r.hdel(board.k.task(tid), "seq")
    again = await board.claim("x", "dev", 10_000)  # re-attaches to its claim
    assert again is not None and again[:2] == ("a", "resumed")
    assert await board.complete("a", "x", "ok", again.token)
    order = []
    while (c := await board.claim("y", "dev", 10_000)) is not None:
        order.append(c.task_id)
        assert await board.complete(c.task_id, "y", "ok", c.token)
    assert order == ["b", "c", "d"]


async def test_a_claim_reads_a_few_tasks_however_many_there_are(board: Blackboard) -> None:
    """2,000 finished tasks ahead in the list and 2,000 ready ones behind them: a claim
    reads a handful of task hashes (the old script read every task, twice)."""
    for i in range(4000):
        await add(board, f"t{i}", agent="done-agent" if i < 2000 else "")
    while (c := await board.claim("done-agent", "none", 60_000)) is not None:
        await board.complete(c.task_id, "done-agent", "ok", c.token)
    sync = redis.Redis.from_url(board.url)

    def hmgets() -> int:
        stats = sync.info("commandstats")
        return int(stats.get("cmdstat_hmget", {}).get("calls", 0))

    before = hmgets()
    c = await board.claim("x", "dev", 60_000)
    used = hmgets() - before
    sync.close()
    assert c is not None and c.task_id == "t2000"
    assert used < 20, used


async def test_nothing_to_claim_says_what_the_agent_waits_on(board: Blackboard) -> None:
    from swarm.blackboard.board import Claim, Idle

    await board.init_run({"name": "n"}, [])
    await add(board, "a", role="doc")
    await add(board, "b", needs=["a"])
    await add(board, "c", needs=["a", "b"])
    await add(board, "mine", agent="x", needs=["b"])
    idle = await board.claim("x", "dev", 10_000, idle=True)
    assert isinstance(idle, Idle)
    assert idle[:3] == (4, ["b", "a"], "running")
    # read with it: the wake stream's last entry, to wait from
    assert idle.last_event == (await board.r.xrevrange(board.k.wake, count=1))[0][0]
    c = await board.claim("w", "doc", 10_000)
    assert c is not None and await board.complete("a", "w", "ok", c.token)
    c = await board.claim("x", "dev", 10_000, idle=True)
    assert isinstance(c, Claim) and c[:2] == ("b", "claimed")
    # the agent loop's claim marks the agent working and brings the task along
    assert c.task is not None and (c.task.id, c.task.status, c.task.assignee) == (
        "b",
        "claimed",
        "x",
    )
    agent = await board.r.hgetall(board.k.agent("x"))
    assert (agent["status"], agent["task"]) == ("working", "b")
    assert c.session_len == 0  # nothing stored yet
    msg = {"role": "user", "content": [{"type": "text", "text": "Task b: B"}]}
    assert await board.record_turn("x", "b", [msg], token=c.token, expected=0) == 1
    c = await board.claim("x", "dev", 10_000, idle=True)  # a restarted agent re-attaches
    assert isinstance(c, Claim) and (c.kind, c.session_len) == ("resumed", 1)
    assert await board.fail("b", "x", "no", c.token)  # c and mine fail with it
    assert (await board.claim("x", "dev", 10_000, idle=True))[:3] == (0, [], "running")
    assert await board.retry_failed() == 3  # b ready again, c and mine pending behind it
    c = await board.claim("y", "dev", 10_000, idle=True)
    assert isinstance(c, tuple) and c[:2] == ("b", "claimed")
    assert (await board.claim("z", "dev", 10_000, idle=True))[:3] == (3, ["b"], "running")


async def test_a_stopped_run_claims_nothing_when_asked_for_the_idle_view(
    board: Blackboard,
) -> None:
    from swarm.blackboard.board import Idle

    await board.init_run({"name": "n"}, [])
    await add(board, "a")
    assert await board.request_stop("stop")
    idle = await board.claim("x", "dev", 10_000, idle=True)
    assert isinstance(idle, Idle) and idle[:3] == (1, [], "interrupted")
    assert (await board.task("a")).status == "ready"  # type: ignore[union-attr]


async def test_the_wake_stream_holds_only_events_that_can_give_work(board: Blackboard) -> None:
    await add(board, "a")
    await add(board, "b", needs=["a"])
    last = (await board.r.xrevrange(board.k.wake, count=1))[0][0]
    waiter = asyncio.create_task(board.wait_wake(last, block_ms=5000))
    c = await board.claim("x", "dev", 10_000)
    assert c is not None
    for n in range(20):  # a busy agent: turns, tool calls, status changes
        await board.emit("model_turn", task="a", agent="x", data={"turn": n})
        await board.update_agent(
            "x", event="agent_status", data={"status": "working"}, status="working"
        )
    await asyncio.sleep(0.2)
    assert not waiter.done()  # none of them woke the waiter
    assert await board.complete("a", "x", "ok", c.token)
    woke = await asyncio.wait_for(waiter, 5)
    assert [e.type for e in woke] == ["task_completed", "task_ready"]
    assert [e.task for e in woke] == ["a", "b"]
    await board.emit("run_resumed")  # one emitted from Python wakes too
    assert [e.type for e in await board.wait_wake(woke[-1].id, block_ms=1000)] == ["run_resumed"]
