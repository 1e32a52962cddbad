"""Scheduling: a seeded random DAG of tasks on a swarm against a scripted server whose
every model turn takes a fixed latency, measured against the schedule's lower bound.

    python -m benchmarks.scheduling [--tasks 60] [--roles 5] [--per-role 2] [--latency 0.2]

Each task has a role and 1-4 model turns (tool turns calling `read`, then a final answer),
and needs some of the tasks before it. A task's duration is its turns × the latency. The
lower bound is the list schedule with no overhead at all: a task starts the moment its
needs are completed and an agent of its role is free (free agents take ready tasks in the
tasks list's order, as CLAIM does); the critical path (the longest chain of needs,
ignoring how many agents there are) and each role's work divided by its agents are
reported beside it. The swarm runs it with `swarm launch --no-dashboard` (local Ray, the
embedded Redis); its makespan is read from the run's event stream: the first
`task_claimed` to the last `task_completed` (Redis' clock). Also reported, from the same
events: how long ready tasks waited for a claim while an agent of their role was idle
(wake-up latency), and each task's time beyond its turns × latency (turn overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.swarm_cpu import _stub

TITLE = "Scheduling: a DAG of tasks against its lower bound"


def note(
    tasks: int, agents: int, latency: float, seed: int, per_role: int = 2, rounds: int = 3
) -> str:
    return (
        f"A seeded random DAG (seed {seed}) of {tasks} tasks over {agents} agents (roles of "
        f"{per_role} agents each), each task 1-4 model turns (tool turns calling `read`, then a "
        f"final answer) against the scripted Chat Completions server answering every turn "
        f"after {latency * 1000:.0f} ms. The lower bound is the list schedule without any "
        "overhead: a task starts when its needs are completed and an agent of its role is "
        "free (free agents take ready tasks in list order, as CLAIM does), each task lasting "
        "its turns × the latency. The swarm's makespan is from the run's first `task_claimed` "
        "to its last `task_completed` event (`swarm launch --no-dashboard`, local Ray, the "
        f"embedded Redis), run {rounds} time(s): the median run is shown. Wake-up latency: how long a task that became ready waited for its "
        "claim while an agent of its role was idle; turn overhead: a task's time from claim "
        "to completion beyond its turns × the latency. Target: makespan ≤ 1.05× the bound."
    )


@dataclass
class Task:
    id: str
    role: str
    turns: int
    needs: list[str] = field(default_factory=list)


def make_dag(tasks: int, roles: int, seed: int) -> list[Task]:
    """Tasks in list order (every need comes earlier), roles and turns drawn at random."""
    rng = random.Random(seed)
    out: list[Task] = []
    for i in range(tasks):
        needs: list[str] = []
        if i >= roles:  # the first few are roots; later ones need 1-3 recent tasks
            window = out[max(0, i - 12) : i]
            needs = sorted({t.id for t in rng.sample(window, k=rng.randint(1, 3))})
        out.append(Task(f"t{i:02d}", f"r{rng.randrange(roles)}", rng.randint(1, 4), needs))
    return out


def list_schedule(dag: list[Task], per_role: int, latency: float) -> float:
    """Makespan of the overhead-free list schedule: the lower bound the swarm is held to."""
    order = {t.id: i for i, t in enumerate(dag)}
    by_id = {t.id: t for t in dag}
    done: dict[str, float] = {}
    free = {t.role: per_role for t in dag}
    running: list[tuple[float, str]] = []  # (finish time, task)
    waiting = list(dag)
    now = 0.0
    while waiting or running:
        ready = [t for t in waiting if all(n in done for n in t.needs)]
        for t in sorted(ready, key=lambda t: order[t.id]):
            if free[t.role] > 0:
                free[t.role] -= 1
                waiting.remove(t)
                heapq.heappush(running, (now + t.turns * latency, t.id))
        finish, tid = heapq.heappop(running)
        now = finish
        done[tid] = finish
        free[by_id[tid].role] += 1
        while running and running[0][0] <= now + 1e-9:  # finished at the same moment
            finish, tid = heapq.heappop(running)
            done[tid] = finish
            free[by_id[tid].role] += 1
    return now


def critical_path(dag: list[Task], latency: float) -> float:
    end: dict[str, float] = {}
    for t in dag:
        end[t.id] = max((end[n] for n in t.needs), default=0.0) + t.turns * latency
    return max(end.values())


def role_work(dag: list[Task], per_role: int, latency: float) -> float:
    work: dict[str, float] = {}
    for t in dag:
        work[t.role] = work.get(t.role, 0.0) + t.turns * latency
    return max(work.values()) / per_role


def write_workload(
    root: Path, dag: list[Task], roles: int, per_role: int, latency: float, per_actor: str
) -> Path:
    repo = root / "repo"
    repo.mkdir(parents=True)
    conversations = []
    for t in dag:  # a file of its own each turn: the same call again would be a doom loop
        for n in range(t.turns - 1):
            (repo / f"{t.id}-{n}.txt").write_text("".join(f"line {i}\n" for i in range(40)))
        turns: list[dict[str, Any]] = [
            {
                "delay_s": latency,
                "tool_calls": [{"name": "read", "input": {"file_path": f"{t.id}-{n}.txt"}}],
            }
            for n in range(t.turns - 1)
        ]
        turns.append({"delay_s": latency, "text": f"{t.id} done"})
        conversations.append({"task": t.id, "turns": turns})
    script = root / "stub.json"
    script.write_text(json.dumps({"conversations": conversations}))
    (root / "agents").mkdir()
    for r in range(roles):
        (root / "agents" / f"r{r}.md").write_text(
            f"---\nname: r{r}\ndescription: role {r}\ntools: [read]\n---\nDo the task.\n"
        )
    agents = "\n".join(f"  - {{name: a{r}, role: r{r}, count: {per_role}}}" for r in range(roles))
    tasks = "\n".join(
        f"      - {{id: {t.id}, title: task {t.id}, role: {t.role}"
        + (f", needs: [{', '.join(t.needs)}]" if t.needs else "")
        + "}"
        for t in dag
    )
    (root / "swarm.yaml").write_text(
        "name: sched\ngoal: a DAG of tasks\nmodel: openai/gpt-4.1-mini\n"
        "budget: {max_turns: 10}\nreliability: {no_progress_turns: 0}\n"
        "providers: {openai: {requests_per_minute: 1000000, tokens_per_minute: 1000000000}}\n"
        f"hosting: {{agents_per_actor: {per_actor}}}\n"
        f"agents:\n{agents}\nphases:\n  - name: dag\n    tasks:\n{tasks}\n"
    )
    return script


@dataclass
class Measured:
    makespan: float
    completed: int
    wake_waits: list[float]  # s a ready task waited for a claim while its role had an idle agent
    overheads: list[float]  # s beyond turns × latency, per task
    first_claim_spread: float  # s between the first and the last agent's first claim or idle
    wall_s: float
    window: tuple[float, float] = (0.0, 0.0)  # first claim, last completion (epoch s)
    cpu_s: float = 0.0  # the swarm's whole process tree, in that window
    cpu_by_kind: dict[str, float] = field(default_factory=dict)


async def _events(root: Path, run_id: str) -> list[Any]:
    from swarm.blackboard.board import Blackboard
    from swarm.blackboard.connection import open_redis

    handle = open_redis(root / ".swarm")
    board = Blackboard(handle.url, run_id)
    out: list[Any] = []
    last = "0"
    while rows := await board.events(after=last, count=5000):
        out += rows
        last = rows[-1].id
    await board.close()
    handle.close()
    return out


def analyse(events: list[Any], dag: list[Task], latency: float) -> Measured:
    """Makespan, wake-up latencies (a claim's time after both its task was ready and its
    agent was free: its first idle status or its previous completion) and turn overheads."""
    by_id = {t.id: t for t in dag}
    claimed: dict[str, int] = {}
    completed: dict[str, int] = {}
    ready_at: dict[str, int] = {}
    free_at: dict[str, int] = {}  # agent -> since when it has had no task
    first_seen: dict[str, int] = {}
    waits: list[float] = []
    for e in events:
        if e.type == "task_created" and e.data.get("status") == "ready" or e.type == "task_ready":
            ready_at[e.task] = e.ts
        elif e.type == "agent_status" and e.data.get("status") in ("idle", "waiting"):
            first_seen.setdefault(e.agent, e.ts)
            free_at.setdefault(e.agent, e.ts)
        elif e.type == "task_claimed":
            claimed.setdefault(e.task, e.ts)
            first_seen.setdefault(e.agent, e.ts)
            start = max(ready_at.get(e.task, e.ts), free_at.get(e.agent, e.ts))
            waits.append(max(0, e.ts - start) / 1000)
        elif e.type == "task_completed":
            completed[e.task] = e.ts
            free_at[e.agent] = e.ts
    overheads = [
        (completed[t] - claimed[t]) / 1000 - by_id[t].turns * latency
        for t in completed
        if t in claimed
    ]
    spread = (max(first_seen.values()) - min(first_seen.values())) / 1000 if first_seen else 0.0
    makespan = (max(completed.values()) - min(claimed.values())) / 1000 if completed else 0.0
    window = (min(claimed.values()) / 1000, max(completed.values()) / 1000) if completed else (0, 0)
    return Measured(makespan, len(completed), waits, overheads, spread, 0.0, window)


def _warm_up(url: str, task: str) -> None:
    """One streamed request before the swarm starts: the scripted server's own first
    request (its imports and first code paths) is not the swarm's to pay. The server is
    stateless (a turn is the count of assistant messages sent), so this changes nothing."""
    import httpx

    body = {
        "model": "gpt-4.1-mini",
        "stream": True,
        "messages": [
            {"role": "system", "content": "Agent: warm-up"},
            {"role": "user", "content": f"Task {task}: warm up"},
        ],
    }
    with httpx.Client(timeout=30) as client:
        client.post(
            f"{url}/openai/v1/chat/completions", json=body, headers={"authorization": "Bearer w"}
        ).read()


def run_swarm(
    dag: list[Task], roles: int, per_role: int, latency: float, per_actor: str = "auto"
) -> Measured:
    import psutil

    from benchmarks.swarm_cpu import TreeSampler, _redis_pids

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = write_workload(root, dag, roles, per_role, latency, per_actor)
        stub, url = _stub(script, root / "requests.jsonl")
        _warm_up(url, dag[0].id)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")}
        env.update(OPENAI_BASE_URL=f"{url}/openai/v1", OPENAI_API_KEY="sched")
        run_id = f"sched-{int(time.time())}"
        argv = [sys.executable, "-m", "swarm.cli", "launch", "swarm.yaml", "--repo", "repo"]
        argv += ["--run-id", run_id, "--no-dashboard"]
        started = time.time()
        try:
            proc = subprocess.Popen(
                argv, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            sampler = TreeSampler(psutil.Process(proc.pid)).start()
            while proc.poll() is None:
                time.sleep(0.2)
                if not sampler.extra_pids:
                    sampler.extra_pids = _redis_pids(root)
                if time.time() - started > 900:
                    proc.kill()
            sampler.stop()
            wall = time.time() - started
            err = proc.stderr.read().decode() if proc.stderr else ""
            if proc.returncode != 0:
                raise RuntimeError(f"swarm exited {proc.returncode}: {err[-2000:]}")
            events = asyncio.run(_events(root, run_id))
            keep = os.environ.get("SWARM_BENCH_KEEP")  # a folder: keep the raw data there
            if keep:
                Path(keep).mkdir(parents=True, exist_ok=True)
                shutil.copy(root / "requests.jsonl", Path(keep) / "requests.jsonl")
                (Path(keep) / "events.jsonl").write_text(
                    "".join(e.model_dump_json() + "\n" for e in events)
                )
        finally:
            stub.terminate()
            stub.wait()
            from swarm.blackboard.connection import stop_embedded

            stop_embedded(root / ".swarm")
            shutil.rmtree(root / ".swarm", ignore_errors=True)
    m = analyse(events, dag, latency)
    m.wall_s = wall
    m.cpu_s = sampler.cpu_between(*m.window)
    m.cpu_by_kind = sampler.cpu_by_kind(*m.window)
    return m


def rows(
    tasks: int = 60,
    roles: int = 5,
    per_role: int = 2,
    latency: float = 0.2,
    seed: int = 13,
    per_actor: str = "auto",
    rounds: int = 3,
) -> list[tuple[str, str]]:
    dag = make_dag(tasks, roles, seed)
    bound = list_schedule(dag, per_role, latency)
    cp = critical_path(dag, latency)
    work = role_work(dag, per_role, latency)
    load = os.getloadavg()[0]
    runs = sorted(
        (run_swarm(dag, roles, per_role, latency, per_actor) for _ in range(rounds)),
        key=lambda r: r.makespan,
    )
    m = runs[len(runs) // 2]  # the median run: the figures below are its
    ratios = ", ".join(f"{r.makespan / bound:.3f}" for r in runs)
    turns = sum(t.turns for t in dag)
    waits = sorted(m.wake_waits)
    return [
        (
            "DAG",
            f"{tasks} tasks, {turns} model turns, {roles * per_role} agents "
            f"({roles} roles × {per_role}), {latency * 1000:.0f} ms per turn, seed {seed}",
        ),
        ("lower bound: overhead-free list schedule", f"{bound:.2f} s"),
        (
            "critical path (needs only) / busiest role's work per agent",
            f"{cp:.2f} s / {work:.2f} s",
        ),
        (
            f"swarm makespan, first task_claimed → last task_completed (median of {len(runs)})",
            f"{m.makespan:.2f} s",
        ),
        (
            f"ratio makespan / lower bound, target ≤ 1.05 (each run: {ratios})",
            f"{m.makespan / bound:.3f}",
        ),
        ("tasks completed", f"{m.completed} of {tasks}"),
        (
            "wake-up latency: ready task → its claim with an agent of its role idle "
            "(median / p90 / max)",
            f"{1000 * statistics.median(waits):.0f} / {1000 * waits[int(0.9 * (len(waits) - 1))]:.0f}"
            f" / {1000 * waits[-1]:.0f} ms",
        ),
        (
            "turn overhead: claim → completion beyond turns × latency, per task (median / max)",
            f"{1000 * statistics.median(m.overheads):.0f} / {1000 * max(m.overheads):.0f} ms",
        ),
        ("agents' first claim or idle status, first to last", f"{m.first_claim_spread:.2f} s"),
        (
            "swarm CPU in the makespan (all its processes) / per model turn",
            f"{m.cpu_s:.1f} s ({m.cpu_s / max(m.makespan, 1e-9):.2f} cores) / "
            f"{1000 * m.cpu_s / turns:.0f} ms",
        ),
        (
            "swarm CPU in the makespan by process",
            ", ".join(
                f"{kind} {v:.2f} s"
                for kind, v in sorted(m.cpu_by_kind.items(), key=lambda kv: -kv[1])
                if v >= 0.05
            ),
        ),
        (
            "machine load (1-minute load average before / after; other work shares the cores)",
            f"{load:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        ),
        ("wall time of `swarm launch` (start-up and shutdown included)", f"{m.wall_s:.1f} s"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--roles", type=int, default=5)
    parser.add_argument("--per-role", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--per-actor", default="auto", help="hosting.agents_per_actor")
    parser.add_argument("--rounds", type=int, default=3, help="runs; the median is shown")
    parser.add_argument("--write", action="store_true", help="replace its section in docs")
    args = parser.parse_args()
    table = rows(
        args.tasks, args.roles, args.per_role, args.latency, args.seed, args.per_actor, args.rounds
    )
    for k, v in table:
        print(f"{k}: {v}")
    if args.write:
        from benchmarks.run import replace_section

        n = args.roles * args.per_role
        replace_section(
            TITLE, note(args.tasks, n, args.latency, args.seed, args.per_role, args.rounds), table
        )


if __name__ == "__main__":
    main()
