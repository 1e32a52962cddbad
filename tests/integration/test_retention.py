"""`swarm gc` removes finished runs' stored state, whole, and nothing else."""

from __future__ import annotations

import secrets

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.blackboard.keys import RUNS
from swarm.retention import collect


async def _run(url: str, state: str, finished_ms: int) -> Blackboard:
    b = Blackboard(url, f"gc-{secrets.token_hex(4)}")
    await b.init_run({"name": "gc"}, [{"name": "a", "role": "dev"}])
    await b.create_task({"id": "t", "title": "t", "role": "dev"})
    await b.record_turn("a", "t", [{"role": "user", "content": []}], usage={"turns": 1})
    await b.r.hset(b.k.meta, mapping={"state": state, "finished": finished_ms})
    return b


async def test_gc_removes_old_finished_runs_whole(redis_handle: RedisHandle) -> None:
    url = redis_handle.url
    old = await _run(url, "completed", 1)
    running = await _run(url, "running", 0)
    recent = await _run(url, "failed", await old.now_ms())
    try:
        dry = await collect(old.r, older_than_s=3600, keep=0, dry_run=True)
        assert old.run_id in dry.removed and await old.exists()  # a dry run removes nothing
        report = await collect(old.r, older_than_s=3600, keep=0)
        assert old.run_id in report.removed and report.keys > 0
        assert running.run_id in report.kept and recent.run_id in report.kept
        assert not [k async for k in old.r.scan_iter(match=f"{old.k.prefix}:*")]
        assert await old.r.zscore(RUNS, old.run_id) is None
        assert await running.exists() and await running.session("t")
        assert await recent.exists()
    finally:
        for b in (old, running, recent):
            await b.close()
