"""Scale: N agents of one role and T one-turn tasks against the scripted server, run by
`swarm launch` (local Ray, agents packed per actor by `agents_per_actor: auto`, the
embedded Redis). Reported: wall time, launch to first request, peak RSS of the whole
process tree (CLI, Ray, actors, Redis) and of the agent actors per agent, tasks and
claims per second, Redis commands per task (the server's INFO commandstats, so scripts'
inner calls count), the Redis clients connected at the peak (in all, and per actor).

    python -m benchmarks.scale AGENTS TASKS [AGENTS TASKS ...] [--write]
    python -m benchmarks.scale --quick|--full [--write]

``--quick`` is 100 agents x 500 tasks (what ``python -m benchmarks.run --quick`` runs),
``--full`` adds 1,000 x 5,000 (``make bench``); ``--write`` replaces the section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.swarm_cpu import SAMPLE_S, TreeSampler, _requests, _stub

TITLE = "Scale: many agents, many short tasks"
NOTE = (
    "N agents of one role share T tasks of one model turn each (an answer, no tool call) "
    "against the scripted Chat Completions server in its own process; `swarm launch` with "
    "`agents_per_actor: auto` on a local Ray and the embedded Redis. RSS is the peak of the "
    "sum over the whole process tree; Redis commands per task come from the server's own "
    "INFO commandstats (a script's inner calls included), read before the run ends. RSS "
    "per agent is the agent actors' peak RSS over the agents; Redis clients are the peak "
    "of the server's CLIENT LIST (sampled every 0.5 s), per actor by each client's name "
    "(`swarm-PID`). Target: 100 agents within 3 GB, 1,000 agents complete."
)
MEMORY_TARGET = 3 * 2**30  # 100 agents, the whole tree
ACTORS = "agent actors (Ray workers)"
IDLE = "ray idle workers"


def sizes(quick: bool) -> list[tuple[int, int]]:
    return [(100, 500)] if quick else [(100, 500), (1000, 5000)]


class ScaleSampler(TreeSampler):
    """TreeSampler that also keeps the peak RSS of each kind of process (and of the
    largest actor)."""

    def __init__(self, root: psutil.Process) -> None:
        super().__init__(root)
        self.peak_by_kind: dict[str, int] = {}
        self.peak_actor = 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            cpu: dict[int, float] = {}
            by_kind: dict[str, int] = {}
            procs = {p.pid: p for p in self._procs()}  # an extra pid may be in the tree too
            for p in procs.values():
                try:
                    with p.oneshot():
                        # an idle worker may become an actor: looked at again
                        if self.kinds.get(p.pid, IDLE) == IDLE:
                            self.kinds[p.pid] = _kind_of(p, self.root.pid)
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
                        rss = p.memory_info().rss
                except psutil.Error:
                    continue
                kind = self.kinds[p.pid]
                by_kind[kind] = by_kind.get(kind, 0) + rss
                if kind == ACTORS:
                    self.peak_actor = max(self.peak_actor, rss)
            self.samples.append((time.time(), cpu))
            self.peak_rss = max(self.peak_rss, sum(by_kind.values()))
            for kind, rss in by_kind.items():
                self.peak_by_kind[kind] = max(self.peak_by_kind.get(kind, 0), rss)
            self._stop.wait(SAMPLE_S * 4)  # a thousand agents' tree: every 0.2 s


def _kind_of(p: psutil.Process, root: int) -> str:
    """swarm_cpu's kinds, but only an actor that hosts agents counts as one (Ray's idle
    workers, started ahead, are "ray idle workers")."""
    from benchmarks.swarm_cpu import _kind

    kind = _kind(p, root)
    if kind == ACTORS:
        try:
            line = " ".join(p.cmdline())
        except psutil.Error:
            return kind
        return kind if "AgentActor" in line else IDLE
    return kind


class ClientSampler:
    """The run's Redis clients (CLIENT LIST) and the server's RSS, every 0.5 s."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.peak = 0
        self.peak_by_name: dict[str, int] = {}
        self.redis_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> ClientSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        import redis

        from swarm.blackboard import redis_server as rs

        client = None
        while not self._stop.wait(0.5):
            try:
                if client is None:
                    info = rs.read_info(self.root / ".swarm")
                    if info is None:
                        continue
                    url = rs.url_of(info["socket"], rs.ensure_password(self.root / ".swarm"))
                    client = redis.Redis.from_url(url, socket_timeout=5)
                clients = client.client_list()
                self.redis_rss = max(self.redis_rss, int(client.info("memory")["used_memory_rss"]))
            except (redis.RedisError, OSError, KeyError):
                client = None
                continue
            self.peak = max(self.peak, len(clients) - 1)  # not this one
            names: dict[str, int] = {}
            for c in clients:
                name = c.get("name") or "(unnamed)"
                names[name] = names.get(name, 0) + 1
            for name, n in names.items():
                self.peak_by_name[name] = max(self.peak_by_name.get(name, 0), n)
        if client is not None:
            client.close()


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
    actor_rss: int = 0  # peak RSS of all agent actors
    peak_actor_rss: int = 0  # of the largest one
    actors: int = 0
    redis_rss: int = 0
    redis_clients: int = 0
    clients_per_actor: int = 0  # the most any actor process held


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
            sampler = ScaleSampler(psutil.Process(proc.pid)).start()
            clients = ClientSampler(root).start()
            claims, commands, completed = 0, 0, 0
            assert proc.stdout is not None
            looked = 0.0
            for line in proc.stdout:  # NDJSON events, as they happen
                if not sampler.extra_pids and time.time() - looked > 1:
                    # the Redis leaves the tree should the CLI end first (its watchdog's)
                    sampler.extra_pids, looked = _redis_pid(root), time.time()
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
            clients.stop()
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
        actor_pids = {pid for pid, kind in sampler.kinds.items() if kind == ACTORS}
        per_actor = [n for name, n in clients.peak_by_name.items() if _pid(name) in actor_pids]
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
            actor_rss=sampler.peak_by_kind.get(ACTORS, 0),
            peak_actor_rss=sampler.peak_actor,
            actors=len(actor_pids),
            redis_rss=clients.redis_rss,
            redis_clients=clients.peak,
            clients_per_actor=max(per_actor, default=0),
        )


def _redis_pid(root: Path) -> list[int]:
    """The run's embedded redis-server (its watchdog's server.json)."""
    try:
        info = json.loads((root / ".swarm" / "redis" / "server.json").read_text())
    except (OSError, ValueError):
        return []
    return [int(info["server_pid"])] if info.get("server_pid") else []


def _pid(name: str) -> int:
    """The pid in a client name ``swarm-PID`` (0 for any other name)."""
    prefix, _, pid = name.rpartition("-")
    return int(pid) if prefix == "swarm" and pid.isdigit() else 0


def rows(sizes: list[tuple[int, int]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for agents, tasks in sizes:
        r = run(agents, tasks)
        head = f"{agents} agents, {tasks} tasks"
        mb = 2**20
        rate = r.work_s == r.work_s and r.work_s > 0
        out += [
            (f"{head}: completed", f"{r.completed} of {r.tasks}"),
            (f"{head}: wall time (launch to exit)", f"{r.wall_s:.1f} s"),
            (f"{head}: launch → first model request", f"{r.startup_s:.1f} s"),
            (
                f"{head}: tasks per second (first to last request)",
                f"{r.completed / r.work_s:.1f}" if rate else "n/a",
            ),
            (
                f"{head}: claims per second (first to last request)",
                f"{r.claims / r.work_s:.1f}" if rate else "n/a",
            ),
            (f"{head}: peak RSS, whole process tree", f"{r.peak_rss / mb:,.0f} MB"),
            (
                f"{head}: peak RSS of the agent actors ({r.actors} processes), per agent",
                f"{r.actor_rss / mb:,.0f} MB, {r.actor_rss / agents / mb:.2f} MB",
            ),
            (f"{head}: peak RSS of the largest agent actor", f"{r.peak_actor_rss / mb:,.0f} MB"),
            (f"{head}: peak RSS of the embedded Redis", f"{r.redis_rss / mb:,.0f} MB"),
            (f"{head}: CPU, whole process tree", f"{r.cpu_s:.1f} s"),
            (f"{head}: Redis commands per task", f"{r.redis_commands / max(r.tasks, 1):.0f}"),
            (
                f"{head}: Redis clients at the peak (in all; per actor process, at most)",
                f"{r.redis_clients}; {r.clients_per_actor}",
            ),
            (f"{head}: claims", str(r.claims)),
        ]
        if agents <= 100:
            within = "yes" if r.peak_rss <= MEMORY_TARGET else "no"
            out.append((f"{head}: whole tree within 3 GB", within))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, help="AGENTS TASKS pairs")
    parser.add_argument("--quick", action="store_true", help="100 agents x 500 tasks")
    parser.add_argument("--full", action="store_true", help="also 1,000 agents x 5,000 tasks")
    parser.add_argument("--write", action="store_true", help="replace the docs section")
    args = parser.parse_args()
    if len(args.sizes) % 2:
        parser.error("sizes come in pairs: AGENTS TASKS")
    pairs = list(zip(args.sizes[::2], args.sizes[1::2], strict=True))
    if not pairs:
        pairs = sizes(quick=not args.full)
    table = rows(pairs)
    for name, value in table:
        print(f"{name}: {value}")
    if args.write:
        from benchmarks.run import replace_section

        replace_section(TITLE, NOTE, table)


if __name__ == "__main__":
    main()
