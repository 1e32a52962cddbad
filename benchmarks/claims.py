"""Claims per second: C concurrent claimers on one real Redis (the embedded server), each
claiming a task and completing it until none is left.

    python -m benchmarks.claims [--tasks N] [--claimers C] [--processes P] [--quick]

N tasks of one role are created first; the claimers share them through `Blackboard.claim`
and `Blackboard.complete` (lua.CLAIM, lua.COMPLETE), spread over several client
connections (a `Blackboard` per ten claimers). With ``--processes 2`` the claimers run in
two processes that start together, so one Python process's client side is not what is
measured. Reported: claims per second (first claim to last completion), double claims,
checked twice (against what each claimer recorded it got, and against the tasks' own
`attempts` and the stream's `task_claimed` events), and the Redis commands one
claim + complete cost (the server's INFO commandstats: a script's inner calls count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TITLE = "Blackboard: claims per second"
ROLE = "dev"
PER_CONNECTION = 10  # claimers sharing one Blackboard (one client and its pool)
URL_ENV = "SWARM_BENCH_REDIS_URL"


def note(tasks: int, claimers: int, rounds: int = 3) -> str:
    return (
        f"{tasks:,} tasks of one role on the embedded Redis; {claimers} claimer coroutines "
        f"(one client connection pool per {PER_CONNECTION}) each claim a task "
        "(`Blackboard.claim`, lua.CLAIM) and complete it (lua.COMPLETE) until none is left, "
        "in one process, then split over two processes started together. Claims per second "
        "from the first claim to the last completion. Double claims are counted against "
        "what every claimer recorded it got, and against each task's `attempts` field and "
        f"the stream's `task_claimed` events. Each variant runs {rounds} time(s) on fresh "
        "runs; the median round is shown. Redis commands per claim + complete are the "
        "server's INFO commandstats delta (a script's inner calls included); CPU per "
        "claim is the server's (INFO cpu) and the claiming processes' own, which the load "
        "of other work on the machine moves less than claims per second. "
        "Target: ≥ 5,000 claims/s with 100 claimers, 0 double claims."
    )


@dataclass
class Outcome:
    claims: list[tuple[str, str, int]] = field(default_factory=list)  # task, agent, attempt
    started: float = 0.0
    ended: float = 0.0
    cpu_s: float = 0.0  # the claiming process's CPU (all its claimers)


async def claim_all(url: str, run_id: str, claimers: int, prefix: str) -> Outcome:
    """``claimers`` coroutines claim and complete tasks until none is left."""
    from swarm.blackboard.board import Blackboard

    boards = [Blackboard(url, run_id) for _ in range(max(1, -(-claimers // PER_CONNECTION)))]
    out = Outcome()
    for b in boards:  # open the connections before the clock starts
        await asyncio.gather(*(b.r.ping() for _ in range(PER_CONNECTION)))

    async def claimer(n: int) -> None:
        board = boards[n // PER_CONNECTION]
        me = f"{prefix}{n}"
        while (c := await board.claim(me, ROLE, 600_000)) is not None:
            out.claims.append((c.task_id, me, c.attempts))
            if not await board.complete(c.task_id, me, "ok", c.token):
                raise RuntimeError(f"{me} could not complete {c.task_id} it had claimed")

    out.started, cpu = time.time(), time.process_time()
    await asyncio.gather(*(claimer(n) for n in range(claimers)))
    out.ended, out.cpu_s = time.time(), time.process_time() - cpu
    for b in boards:
        await b.close()
    return out


async def create_tasks(url: str, run_id: str, tasks: int) -> None:
    """lua.CREATE per task, as `Blackboard.create_task` calls it, pipelined 500 at a time."""
    from swarm.blackboard import lua
    from swarm.blackboard.board import Blackboard

    board = Blackboard(url, run_id)
    sha = await board.r.script_load(lua.CREATE)
    for start in range(0, tasks, 500):
        pipe = board.r.pipeline(transaction=False)
        for i in range(start, min(start + 500, tasks)):
            task = {"id": f"c{i}", "title": "t", "role": ROLE}
            pipe.evalsha(sha, 0, board.k.prefix, json.dumps(task), "[]")
        assert all(await pipe.execute())
    await board.close()


def _commands(url: str) -> tuple[int, dict[str, int], float]:
    import redis

    r = redis.Redis.from_url(url)
    try:
        stats = r.info("commandstats")
        cpu = r.info("cpu")
    finally:
        r.close()
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    return sum(calls.values()), calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


@dataclass
class Result:
    tasks: int
    claimers: int
    processes: int
    claims: int
    seconds: float
    double_recorded: int  # tasks two claimers both recorded
    double_attempts: int  # tasks whose attempts field is not 1
    claimed_events: int
    unclaimed: int  # tasks left not completed
    commands: int
    by_command: dict[str, int]
    redis_cpu_s: float
    client_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.claims / self.seconds if self.seconds > 0 else 0.0


def _worker_cmd(run_id: str, claimers: int, prefix: str) -> list[str]:
    # the URL (it carries the embedded server's password) goes in the environment, never
    # on a command line
    return [sys.executable, "-m", "benchmarks.claims", "worker", run_id, str(claimers), prefix]


async def _worker(url: str, run_id: str, claimers: int, prefix: str) -> None:
    """One of several claiming processes: waits for the go signal, prints its claims."""
    import redis.asyncio as aioredis

    r: Any = aioredis.Redis.from_url(url, decode_responses=True)
    await r.rpush(f"bench:{run_id}:ready", prefix)
    await r.blpop([f"bench:{run_id}:go:{prefix}"], timeout=60)
    await r.aclose()
    out = await claim_all(url, run_id, claimers, prefix)
    print(
        json.dumps(
            {**{k: getattr(out, k) for k in ("started", "ended", "cpu_s")}, "claims": out.claims}
        )
    )


def _in_processes(url: str, run_id: str, claimers: int, processes: int) -> Outcome:
    import redis

    per = [claimers // processes + (i < claimers % processes) for i in range(processes)]
    procs = [
        subprocess.Popen(
            _worker_cmd(run_id, n, f"p{i}-a"),
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, URL_ENV: url},
        )
        for i, n in enumerate(per)
    ]
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        for _ in procs:  # every process is up and connected
            if r.blpop([f"bench:{run_id}:ready"], timeout=60) is None:
                raise RuntimeError("a claiming process did not start")
        for i in range(processes):
            r.rpush(f"bench:{run_id}:go:p{i}-a", "go")
        outs = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        r.close()
    if any(p.returncode for p in procs):
        raise RuntimeError("a claiming process failed")
    out = Outcome(
        started=min(o["started"] for o in outs),
        ended=max(o["ended"] for o in outs),
        cpu_s=sum(o["cpu_s"] for o in outs),
    )
    for o in outs:
        out.claims += [tuple(c) for c in o["claims"]]  # type: ignore[misc]
    return out


def measure(url: str, tasks: int, claimers: int, processes: int = 1) -> Result:
    from swarm.blackboard.board import Blackboard

    run_id = f"claims-{processes}-{time.time_ns()}"
    asyncio.run(create_tasks(url, run_id, tasks))
    before, by_before, cpu_before = _commands(url)
    if processes == 1:
        out = asyncio.run(claim_all(url, run_id, claimers, "a"))
    else:
        out = _in_processes(url, run_id, claimers, processes)
    after, by_after, cpu_after = _commands(url)

    async def check() -> tuple[int, int, int]:
        board = Blackboard(url, run_id)
        views = await board.tasks()
        claimed = 0
        last = "0"
        while rows := await board.events(after=last, count=10_000):
            claimed += sum(e.type == "task_claimed" for e in rows)
            last = rows[-1].id
        await board.close()
        twice = sum(t.attempts != 1 for t in views)
        left = sum(t.status != "completed" for t in views) + tasks - len(views)
        return twice, claimed, left

    double_attempts, claimed_events, left = asyncio.run(check())
    per_task = Counter(t for t, _, _ in out.claims)
    by_command = {
        k: v - by_before.get(k, 0) for k, v in by_after.items() if v - by_before.get(k, 0)
    }
    return Result(
        tasks=tasks,
        claimers=claimers,
        processes=processes,
        claims=len(out.claims),
        seconds=out.ended - out.started,
        double_recorded=sum(1 for n in per_task.values() if n > 1),
        double_attempts=double_attempts,
        claimed_events=claimed_events,
        unclaimed=left,
        # the two INFO calls of this measurement are not the claims'
        commands=after - before - 2,
        by_command=by_command,
        redis_cpu_s=cpu_after - cpu_before,
        client_cpu_s=out.cpu_s,
    )


def run(tasks: int, claimers: int, processes: list[int], rounds: int = 3) -> list[list[Result]]:
    """Each variant ``rounds`` times (a fresh run each time), on one embedded server."""
    from swarm.blackboard.connection import open_redis, stop_embedded

    results: list[list[Result]] = []
    with tempfile.TemporaryDirectory() as tmp:
        handle = open_redis(Path(tmp))
        try:
            for p in processes:
                results.append([measure(handle.url, tasks, claimers, p) for _ in range(rounds)])
        finally:
            handle.close()
            stop_embedded(Path(tmp))
    return results


def rows(
    tasks: int, claimers: int, processes: tuple[int, ...] = (1, 2), rounds: int = 3
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    load = os.getloadavg()[0]
    for runs in run(tasks, claimers, list(processes), rounds):
        r = sorted(runs, key=lambda x: x.per_second)[len(runs) // 2]  # the median round
        who = f"{r.claimers} claimers in {r.processes} process{'es' if r.processes > 1 else ''}"
        rates = ", ".join(f"{x.per_second:,.0f}" for x in runs)
        recorded = sum(x.double_recorded for x in runs)
        attempts = sum(x.double_attempts for x in runs)
        events = sum(x.claimed_events - x.tasks for x in runs)
        out += [
            (
                f"{who}: claims per second (median of {len(runs)}: {rates})",
                f"{r.per_second:,.0f} ({r.claims:,} in {r.seconds:.2f} s)",
            ),
            (
                f"{who}: double claims over all rounds (recorded by claimers / attempts ≠ 1 / "
                "task_claimed events − tasks)",
                f"{recorded + attempts + abs(events)} ({recorded} / {attempts} / {events})",
            ),
            (f"{who}: tasks left not completed", str(sum(x.unclaimed for x in runs))),
            (
                f"{who}: Redis commands per claim + complete",
                f"{r.commands / max(r.claims, 1):.1f} ("
                + ", ".join(
                    f"{k} {v / max(r.claims, 1):.1f}"
                    for k, v in sorted(r.by_command.items(), key=lambda kv: -kv[1])[:6]
                )
                + ")",
            ),
            (
                f"{who}: CPU per claim + complete, Redis server / claiming processes",
                f"{1e6 * r.redis_cpu_s / max(r.claims, 1):.0f} µs / "
                f"{1e6 * r.client_cpu_s / max(r.claims, 1):.0f} µs",
            ),
        ]
    out.append(
        (
            "machine load (1-minute load average before / after; other work shares the cores)",
            f"{load:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="5,000 tasks")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--claimers", type=int, default=100)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="replace its section in docs")
    args = parser.parse_args()
    tasks = 5_000 if args.quick else args.tasks
    table = rows(tasks, args.claimers, tuple(args.processes), args.rounds)
    for k, v in table:
        print(f"{k}: {v}")
    if args.write:
        from benchmarks.run import replace_section

        replace_section(TITLE, note(tasks, args.claimers, args.rounds), table)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        asyncio.run(_worker(os.environ[URL_ENV], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    else:
        main()
