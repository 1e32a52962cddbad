"""The sessions index: maintained by every stored turn (lua.STORE_TURN), read by
`swarm session list` without a scan, on a real Redis with thousands of sessions."""

from __future__ import annotations

import secrets
from typing import Any

import redis.asyncio as aioredis

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.blackboard.keys import SESSIONS
from swarm.retention import collect
from swarm.sessions import delete_session, list_sessions, load_session, parse_id

SESSIONS_N = 3000
RUNS_N = 30  # 100 tasks (sessions) each


def _msg(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


async def _fill(url: str, tag: str) -> list[str]:
    """RUNS_N runs of SESSIONS_N / RUNS_N tasks, each with a stored first message."""
    runs = []
    for i in range(RUNS_N):
        board = Blackboard(url, f"idx-{tag}-{i:02d}")
        await board.init_run({"name": "idx"}, [{"name": "a", "role": "developer"}])
        for j in range(SESSIONS_N // RUNS_N):
            await board.create_task({"id": f"t{j}", "title": f"task {j}", "role": "developer"})
            await board.record_turn("a", f"t{j}", [_msg(f"Task t{j}: go")])
        runs.append(board.run_id)
        await board.close()
    return runs


async def _calls(r: Any) -> dict[str, int]:
    stats = await r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


async def test_list_reads_the_index_not_a_scan(redis_handle: RedisHandle) -> None:
    tag = secrets.token_hex(3)
    runs = await _fill(redis_handle.url, tag)
    r = aioredis.Redis.from_url(redis_handle.url, decode_responses=True)
    try:
        ours = [m for m in await r.zrange(SESSIONS, 0, -1) if m.startswith(f"idx-{tag}-")]
        assert len(ours) == SESSIONS_N  # every stored session is in the index

        before = await _calls(r)
        rows = await list_sessions(r, limit=20)
        after = await _calls(r)
        used = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        assert used.get("scan", 0) == 0 and used.get("keys", 0) == 0
        assert used.get("zrevrange", 0) == 1
        # a bounded read per listed session (task fields, length, run meta), not per key
        assert used.get("hmget", 0) <= 2 * 20 + 1 and used.get("llen", 0) == 20
        assert len(rows) == 20
        # newest first: the last sessions stored come first
        assert [row.id for row in rows[:3]] == [f"{runs[-1]}/t{n}" for n in (99, 98, 97)]
        assert all(row.messages == 1 and row.title.startswith("task ") for row in rows)
        updated = [row.updated_ms for row in rows]
        assert updated == sorted(updated, reverse=True)

        before = await _calls(r)
        everything = await list_sessions(r, limit=0)
        used = {k: v - before.get(k, 0) for k, v in (await _calls(r)).items()}
        assert used.get("scan", 0) == 0 and used.get("keys", 0) == 0
        assert len([x for x in everything if x.run.startswith(f"idx-{tag}-")]) == SESSIONS_N

        one_run = await list_sessions(r, run=runs[3], limit=0)
        assert [row.task for row in one_run] == [f"t{j}" for j in range(SESSIONS_N // RUNS_N)]
    finally:
        await r.aclose()


async def test_index_follows_updates_delete_and_gc(redis_handle: RedisHandle) -> None:
    board = Blackboard(redis_handle.url, f"idx2-{secrets.token_hex(3)}")
    r = aioredis.Redis.from_url(redis_handle.url, decode_responses=True)
    try:
        await board.init_run({"name": "idx2", "kind": "swarm"}, [{"name": "a", "role": "x"}])
        for t in ("a", "b"):
            await board.create_task({"id": t, "title": t, "role": "x"})
            await board.record_turn("a", t, [_msg(f"Task {t}: go")])
        first = await r.zscore(SESSIONS, f"{board.run_id}/a")
        await board.record_turn("a", "a", [_msg("more")], expected=1)  # a later turn
        assert await r.zscore(SESSIONS, f"{board.run_id}/a") >= first
        assert (await list_sessions(r, run=board.run_id))[0].messages == 2
        # usage alone (no message) is no session update
        await board.record_turn("a", "b", [], usage={"turns": 1})
        view = await load_session(r, f"{board.run_id}/b")
        assert len(view.messages) == 1

        # a swarm task's session: the conversation goes, the task stays
        msg = await delete_session(r, f"{board.run_id}/a")
        assert "task a of run" in msg
        assert await r.zscore(SESSIONS, f"{board.run_id}/a") is None
        assert await board.task("a") is not None and await board.session("a") == []

        await board.set_state("completed")
        await r.hset(board.k.meta, "finished", 1)  # long ago
        await collect(r, older_than_s=0, keep=0)
        assert await r.zscore(SESSIONS, f"{board.run_id}/b") is None
    finally:
        await r.aclose()
        await board.close()


def test_parse_id() -> None:
    assert parse_id("run-1/t") == ("run-1", "t")
    assert parse_id("run-1") == ("run-1", None)
    for bad in ("", "/t", "a/", "a/b/c"):
        try:
            parse_id(bad)
        except Exception as exc:
            assert "SESSION" in str(exc)
        else:
            raise AssertionError(bad)
