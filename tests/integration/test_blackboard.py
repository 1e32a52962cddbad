"""The blackboard on a real Redis: atomic claims, leases, dependencies, events."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from swarm.blackboard.board import Blackboard


async def add(
    board: Blackboard,
    tid: str,
    needs: list[str] | None = None,
    role: str = "dev",
    agent: str = "",
    max_attempts: int = 3,
) -> None:
    assert await board.create_task(
        {
            "id": tid,
            "title": tid.upper(),
            "role": role,
            "agent": agent,
            "phase": "p",
            "max_attempts": max_attempts,
        },
        needs=needs or [],
    )


async def test_fifty_concurrent_claimers_never_double_claim(board: Blackboard) -> None:
    for i in range(30):
        await add(board, f"t{i}")
    boards = [Blackboard(board.url, board.run_id) for _ in range(50)]
    claimed: list[tuple[str, str]] = []

    async def claimer(n: int, b: Blackboard) -> None:
        while (c := await b.claim(f"agent-{n}", "dev", 60_000)) is not None:
            if c[1] == "resumed":  # re-attaching to its own task: finish it first
                assert await b.complete(c[0], f"agent-{n}", "ok")
                continue
            claimed.append((c[0], f"agent-{n}"))
            assert await b.complete(c[0], f"agent-{n}", "ok")

    await asyncio.gather(*(claimer(n, b) for n, b in enumerate(boards)))
    for b in boards:
        await b.close()
    per_task = Counter(t for t, _ in claimed)
    assert sorted(per_task) == sorted(f"t{i}" for i in range(30))
    assert set(per_task.values()) == {1}
    events = await board.events()
    assert Counter(e.type for e in events)["task_claimed"] == 30
    assert Counter(e.type for e in events)["task_completed"] == 30
    assert all(t.status == "completed" and t.attempts == 1 for t in await board.tasks())


async def test_claim_respects_role_and_agent(board: Blackboard) -> None:
    await add(board, "for-doc", role="doc")
    await add(board, "for-bob", role="dev", agent="bob")
    assert await board.claim("alice", "dev", 1000) is None
    assert (await board.claim("bob", "dev", 1000))[:2] == ("for-bob", "claimed")  # type: ignore[index]
    assert (await board.claim("carol", "doc", 1000))[:2] == ("for-doc", "claimed")  # type: ignore[index]


async def test_dependencies_promote_only_when_all_needs_complete(board: Blackboard) -> None:
    await add(board, "a")
    await add(board, "b")
    await add(board, "c", needs=["a", "b"])
    assert (await board.task("c")).status == "pending"  # type: ignore[union-attr]
    for tid in ("a", "b"):
        c = await board.claim("x", "dev", 10_000)
        assert c is not None and c[0] == tid
        assert await board.complete(tid, "x", "done")
        expected = "ready" if tid == "b" else "pending"
        assert (await board.task("c")).status == expected  # type: ignore[union-attr]


async def test_task_never_completes_twice(board: Blackboard) -> None:
    await add(board, "a")
    await board.claim("x", "dev", 10_000)
    assert not await board.complete("a", "intruder", "mine")
    assert await board.complete("a", "x", "first")
    assert not await board.complete("a", "x", "second")
    assert not await board.fail("a", "x", "late")
    t = await board.task("a")
    assert t is not None and t.status == "completed" and t.result == "first"
    assert [e.type for e in await board.events()].count("task_completed") == 1


async def test_expired_lease_requeues_then_fails_after_attempts(board: Blackboard) -> None:
    await add(board, "a", max_attempts=2)
    await add(board, "child", needs=["a"])
    c = await board.claim("x", "dev", 50)
    assert c is not None and c[:3] == ("a", "claimed", 1)
    assert await board.requeue_expired() == 0  # not yet expired
    await asyncio.sleep(0.12)
    assert not await board.heartbeat("a", "y", 1000)  # not the holder
    assert await board.requeue_expired() == 1
    t = await board.task("a")
    assert t is not None and t.status == "ready" and t.assignee == ""
    assert not await board.heartbeat("a", "x", 1000)  # the lease is gone
    assert not await board.complete("a", "x", "too late")
    c = await board.claim("y", "dev", 50)
    assert c is not None and c[:3] == ("a", "claimed", 2)
    await asyncio.sleep(0.12)
    assert await board.requeue_expired() == 1
    a, child = await board.task("a"), await board.task("child")
    assert a is not None and a.status == "failed" and "lease expired after 2 attempts" in a.error
    assert child is not None and child.status == "failed"
    assert child.error == "dependency a failed"
    types = [e.type for e in await board.events()]
    assert types.count("task_requeued") == 1 and types.count("task_failed") == 2


async def test_heartbeat_keeps_the_lease(board: Blackboard) -> None:
    await add(board, "a")
    await board.claim("x", "dev", 150)
    for _ in range(4):
        await asyncio.sleep(0.06)
        assert await board.heartbeat("a", "x", 150)
    assert await board.requeue_expired() == 0


async def test_restarted_agent_resumes_its_own_claim(board: Blackboard) -> None:
    await add(board, "a")
    await add(board, "b")
    first = await board.claim("x", "dev", 10_000)
    again = await board.claim("x", "dev", 10_000)
    assert first is not None and first[:3] == ("a", "claimed", 1)
    assert again is not None and again[:3] == ("a", "resumed", 1)
    assert again.token != first.token  # re-attaching fences off the process before it


async def test_waiting_blocks_until_an_event(board: Blackboard) -> None:
    last = await board.last_event_id()
    start = time.monotonic()
    assert await board.wait_events(last, block_ms=200) == []
    assert time.monotonic() - start >= 0.15

    async def later() -> None:
        await asyncio.sleep(0.1)
        await add(board, "late")

    waiter = asyncio.create_task(board.wait_events(last, block_ms=5000))
    await later()
    events = await asyncio.wait_for(waiter, 2)
    assert [e.type for e in events] == ["task_created"]


async def test_path_lock_serialises(board: Blackboard) -> None:
    inside = 0
    peak = 0

    async def writer() -> None:
        nonlocal inside, peak
        async with board.path_lock("src/x.py"):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(writer() for _ in range(10)))
    assert peak == 1


async def test_sessions_and_usage_in_one_turn(board: Blackboard) -> None:
    await board.record_turn(
        "x",
        "a",
        [{"role": "user", "content": []}],
        usage={"input_tokens": 10, "output_tokens": 5, "usd": 0.25},
        events=[("model_turn", {"turn": 1})],
    )
    await board.record_turn(
        "x", "a", [{"role": "assistant", "content": []}], usage={"input_tokens": 1, "usd": 0.5}
    )
    assert [m["role"] for m in await board.session("a")] == ["user", "assistant"]
    assert await board.usage() == {"input_tokens": 11.0, "output_tokens": 5.0, "usd": 0.75}
    assert (await board.usage("agent", "x"))["usd"] == 0.75


async def test_result_preview_never_splits_a_character(board: Blackboard) -> None:
    await add(board, "a")
    await board.claim("x", "dev", 10_000)
    result = "x" * 499 + "—→✅ done"
    assert await board.complete("a", "x", result)
    [done] = [e for e in await board.events() if e.type == "task_completed"]
    assert done.data["result"] == result[:500]
    assert (await board.task("a")).result == result  # type: ignore[union-attr]


async def test_whole_dollar_usage_after_fractions(board: Blackboard) -> None:
    await board.record_turn("x", "a", [], usage={"usd": 0.5, "input_tokens": 3})
    await board.record_turn("x", "a", [], usage={"usd": 1.0, "input_tokens": 4})
    assert await board.usage() == {"usd": 1.5, "input_tokens": 7.0}


async def test_resume_gives_claimed_tasks_a_fresh_lease(board: Blackboard) -> None:
    await board.init_run({"name": "t"}, [])
    await add(board, "a", max_attempts=1)
    await board.claim("x", "dev", 50)
    assert await board.request_stop("ctrl-c")
    await asyncio.sleep(0.1)  # the lease expires while the run is stopped
    await board.resume_run()
    assert await board.requeue_expired() == 0  # no attempt lost, nothing failed
    c = await board.claim("x", "dev", 10_000)
    assert c is not None and c[:3] == ("a", "resumed", 1)


async def test_stop_never_overwrites_a_final_state(board: Blackboard) -> None:
    await board.init_run({"name": "t"}, [])
    await board.set_state("completed")
    assert not await board.request_stop("late")
    assert (await board.meta())["state"] == "completed"


async def test_a_stale_token_can_never_write(board: Blackboard) -> None:
    """Two processes acting as one agent (a partitioned old actor and its replacement):
    only the latest claim's token renews, stores a turn, completes, fails or releases."""
    await add(board, "a")
    old = await board.claim("x", "dev", 10_000)
    new = await board.claim("x", "dev", 10_000)  # the replacement re-attaches
    assert old is not None and new is not None and new.kind == "resumed"
    assert not await board.heartbeat("a", "x", 10_000, old.token)
    assert await board.heartbeat("a", "x", 10_000, new.token)
    msg = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    stale = await board.record_turn("x", "a", [msg], usage={"turns": 1}, token=old.token)
    assert stale == 0 and await board.session("a") == []
    assert (await board.usage())["turns"] == 1  # spent is spent: usage is kept anyway
    assert not await board.complete("a", "x", "old result", old.token)
    assert not await board.fail("a", "x", "old failure", old.token)
    assert not await board.release("a", "x", "old release", old.token)
    assert not await board.submit("a", "x", "r", "abc", old.token)
    assert await board.record_turn("x", "a", [msg], token=new.token, expected=0) == 1
    assert await board.complete("a", "x", "new result", new.token)
    t = await board.task("a")
    assert t is not None and t.status == "completed" and t.result == "new result"


async def test_a_turn_stored_twice_is_stored_once(board: Blackboard) -> None:
    """A retry after a lost reply (Redis answered, the reply never arrived) finds its
    messages there and stores nothing twice: no duplicated message, no double usage."""
    await add(board, "a")
    c = await board.claim("x", "dev", 10_000)
    assert c is not None
    m1 = {"role": "user", "content": [{"type": "text", "text": "task"}]}
    m2 = {"role": "assistant", "content": [{"type": "text", "text": "done"}]}
    assert await board.record_turn("x", "a", [m1], token=c.token, expected=0) == 1
    args = dict(usage={"turns": 1, "usd": 0.25}, token=c.token, expected=1)
    assert await board.record_turn("x", "a", [m2], **args) == 1  # type: ignore[arg-type]
    assert await board.record_turn("x", "a", [m2], **args) == 2  # type: ignore[arg-type]
    assert await board.session("a") == [m1, m2]
    assert (await board.usage())["usd"] == 0.25
    other = {"role": "user", "content": [{"type": "text", "text": "someone else"}]}
    assert await board.record_turn("x", "a", [other], token=c.token, expected=1) == -1


async def test_retry_failed_revives_failed_tasks_and_their_dependants(board: Blackboard) -> None:
    await add(board, "a")
    await board.create_task({"id": "b", "title": "b", "role": "dev"}, needs=["a"])
    c = await board.claim("x", "dev", 10_000)
    assert c is not None and await board.fail("a", "x", "broke", c.token)
    assert [t.status for t in await board.tasks()] == ["failed", "failed"]
    assert await board.retry_failed() == 2
    a, b = await board.tasks()
    assert (a.status, a.retry, a.attempts, b.status) == ("ready", "broke", 0, "pending")
    c = await board.claim("x", "dev", 10_000)
    assert c is not None and c.task_id == "a"
    assert await board.complete("a", "x", "ok", c.token)
    assert (await board.task("b")).status == "ready"  # type: ignore[union-attr]


async def test_coordinator_lease_is_exclusive_until_it_lapses(board: Blackboard) -> None:
    one = {"token": "t1", "pid": 1}
    two = {"token": "t2", "pid": 2}
    assert await board.hold_coordinator(one, 300)
    assert await board.hold_coordinator(one, 300)  # renewing
    assert not await board.hold_coordinator(two, 300)
    held = await board.coordinator()
    assert held is not None and held[0]["token"] == "t1" and 0 < held[1] <= 300
    await asyncio.sleep(0.4)
    assert await board.coordinator() is None
    assert await board.hold_coordinator(two, 300)
    assert not await board.hold_coordinator(one, 300)  # the old one cannot take it back
    assert await board.hold_coordinator(one, 300, force=True)  # a takeover can


async def test_a_task_listed_without_its_data_is_reported_not_skipped(board: Blackboard) -> None:
    from swarm.blackboard.board import StateCorrupt

    await add(board, "a")
    await add(board, "b")
    await board.r.delete(board.k.task("b"))  # as an evicting Redis would
    with pytest.raises(StateCorrupt, match="b"):
        await board.tasks()
