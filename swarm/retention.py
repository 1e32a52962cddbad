"""`swarm gc`: finished runs' stored state (events, sessions, usage, notes) does not grow
the Redis forever. A run is removed whole (every key under its prefix, and its entry in
the run list); a running or orphaned run is never touched. Worktrees and branches are
`swarm clean`'s business, not this module's."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from swarm.blackboard.keys import RUNS, SESSIONS, Keys


@dataclass
class GcReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    keys: int = 0

    def lines(self) -> list[str]:
        out = [f"removed {r}" for r in self.removed]
        out.append(f"{len(self.removed)} run(s) removed ({self.keys} keys), {len(self.kept)} kept")
        return out


async def collect(r: Any, older_than_s: float, keep: int, dry_run: bool = False) -> GcReport:
    """Remove finished runs that ended more than ``older_than_s`` ago, always keeping the
    ``keep`` most recent runs."""
    report = GcReport()
    runs = await r.zrevrange(RUNS, 0, -1)  # newest first
    now_ms = time.time() * 1000
    for i, run_id in enumerate(runs):
        meta = await r.hgetall(Keys(run_id).meta)
        finished = float(meta.get("finished") or 0)
        done = meta.get("state") not in (None, "running") and finished > 0
        if i < keep or not done or now_ms - finished < older_than_s * 1000:
            report.kept.append(run_id)
            continue
        report.removed.append(run_id)
        if dry_run:
            continue
        prefix = Keys(run_id).prefix
        tasks = await r.lrange(Keys(run_id).tasks, 0, -1)
        batch: list[str] = []
        async for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                report.keys += await r.delete(*batch)
                batch = []
        if batch:
            report.keys += await r.delete(*batch)
        await r.zrem(RUNS, run_id)
        if tasks:  # its sessions leave the sessions index with it
            await r.zrem(SESSIONS, *[f"{run_id}/{t}" for t in tasks])
    return report
