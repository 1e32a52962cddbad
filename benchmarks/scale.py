"""Scale: N agents of one role and T one-turn tasks against the scripted server, run by
`swarm launch` (local Ray, agents packed per actor by `agents_per_actor: auto`, the
embedded Redis). Reported: wall time, launch to first request, peak RSS of the whole
process tree (CLI, Ray, actors, Redis), tasks and claims per second, Redis commands
per task (the server's INFO commandstats, so scripts' inner calls count).

    python -m benchmarks.scale AGENTS TASKS
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.swarm_cpu import TreeSampler, _redis_pids, _requests, _stub

TITLE = "Scale: many agents, many short tasks"
NOTE = (
    "N agents of one role share T tasks of one model turn each (an answer, no tool call) "
    "against the scripted Chat Completions server in its own process; `swarm launch` with "
    "`agents_per_actor: auto` on a local Ray and the embedded Redis. RSS is the peak of the "
    "sum over the whole process tree; Redis commands per task come from the server's own "
    "INFO commandstats (a script's inner calls included), read before the run ends."
)


@dataclass
class ScaleResult:
    agents: int
    tasks: int
    completed: int
    wall_s: float
    startup_s: float
    work_s: float
    peak_rss: int
    cpu_s: float
    redis_commands: int
    claims: int


def write_workload(root: Path, agents: int, tasks: int) -> Path:
    conversations = [{"task": f"t{i}", "turns": [{"text": f"t{i} done"}]} for i in range(tasks)]
    script = root / "stub.json"
    script.write_text(json.dumps({"conversations": conversations}))
    (root / "repo").mkdir()
    (root / "agents").mkdir()
    (root / "agents" / "worker.md").write_text(
        "---\nname: worker\ndescription: answers\ntools: []\n---\nAnswer the task.\n"
    )
    lines = [
        "name: scale",
        "goal: many short tasks",
        "model: openai/gpt-4.1-mini",
        "reliability: {no_progress_turns: 0}",
        "hosting: {agents_per_actor: auto}",
        "providers: {openai: {requests_per_minute: 1000000, tokens_per_minute: 1000000000}}",
        "agents:",  # a config entry holds at most 100 agents (`count`)
        *(
            f"  - {{name: w{g}, role: worker, count: {min(100, agents - 100 * g)}}}"
            for g in range((agents + 99) // 100)
        ),
        "phases:",
        "  - name: only",
        "    tasks:",
    ]
    lines += [f"      - {{id: t{i}, title: task {i}, role: worker}}" for i in range(tasks)]
    (root / "swarm.yaml").write_text("\n".join(lines) + "\n")
    return script


def _redis_commands(cwd: Path) -> int:
    """Commands the run's embedded Redis served so far (its INFO commandstats)."""
    import redis

    from swarm.blackboard.connection import open_redis

    handle = open_redis(cwd / ".swarm")
    r = redis.Redis.from_url(handle.url)
    try:
        stats = r.info("commandstats")
    finally:
        r.close()
        handle.close()
    return sum(int(v["calls"]) for v in stats.values())


def run(agents: int, tasks: int, timeout_s: float = 3600) -> ScaleResult:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = write_workload(root, agents, tasks)
        record = root / "requests.jsonl"
        stub, url = _stub(script, record)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")}
        env.update(OPENAI_BASE_URL=f"{url}/openai/v1", OPENAI_API_KEY="scale")
        argv = [sys.executable, "-m", "swarm.cli", "launch", "swarm.yaml", "--repo", "repo"]
        argv += ["--run-id", f"scale-{agents}-{tasks}", "--json"]
        started = time.time()
        try:
            proc = subprocess.Popen(
                argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            sampler = TreeSampler(psutil.Process(proc.pid)).start()
            claims, commands, completed = 0, 0, 0
            assert proc.stdout is not None
            for line in proc.stdout:  # NDJSON events, as they happen
                if not sampler.extra_pids:
                    sampler.extra_pids = _redis_pids(root)
                event = json.loads(line) if line.startswith("{") else {}
                kind = event.get("type")
                claims += kind == "task_claimed"
                completed += kind == "task_completed"
                if kind == "run_finished" or completed == tasks:
                    commands = commands or _redis_commands(root)
                if time.time() - started > timeout_s:
                    proc.kill()
                    break
            proc.wait()
            sampler.stop()
            ended = time.time()
            if proc.returncode != 0:
                err = proc.stderr.read() if proc.stderr else ""
                raise RuntimeError(f"swarm exited {proc.returncode}: {err[-2000:]}")
        finally:
            stub.terminate()
            stub.wait()
            from swarm.blackboard.connection import stop_embedded

            stop_embedded(root / ".swarm")
            shutil.rmtree(root / ".swarm", ignore_errors=True)
        times = _requests(record)
        return ScaleResult(
            agents=agents,
            tasks=tasks,
            completed=completed,
            wall_s=ended - started,
            startup_s=times[0] - started if times else float("nan"),
            work_s=times[-1] - times[0] if len(times) > 1 else float("nan"),
            peak_rss=sampler.peak_rss,
            cpu_s=sampler.cpu_total(),
            redis_commands=commands,
            claims=claims,
        )


def rows(sizes: list[tuple[int, int]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for agents, tasks in sizes:
        r = run(agents, tasks)
        head = f"{agents} agents, {tasks} tasks"
        out += [
            (f"{head}: completed", f"{r.completed} of {r.tasks}"),
            (f"{head}: wall time (launch to exit)", f"{r.wall_s:.1f} s"),
            (f"{head}: launch → first model request", f"{r.startup_s:.1f} s"),
            (
                f"{head}: tasks per second (first to last request)",
                f"{r.completed / r.work_s:.1f}" if r.work_s == r.work_s else "n/a",
            ),
            (f"{head}: peak RSS, whole process tree", f"{r.peak_rss / 2**20:,.0f} MB"),
            (f"{head}: CPU, whole process tree", f"{r.cpu_s:.1f} s"),
            (f"{head}: Redis commands per task", f"{r.redis_commands / max(r.tasks, 1):.0f}"),
            (f"{head}: claims", str(r.claims)),
        ]
    return out


if __name__ == "__main__":
    for name, value in rows([(int(sys.argv[1]), int(sys.argv[2]))]):
        print(f"{name}: {value}")
