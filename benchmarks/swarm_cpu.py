"""CPU per model call of a whole swarm, side by side with a plain SDK loop.

    python -m benchmarks.swarm_cpu [--quick] [--agents N] [--turns K ...]

The workload the peers are measured on: N agents, each with one task of K tool turns
(`read` of a small file) and a final answer, against one scripted Chat Completions
server (`swarm.llmstub`, in a process of its own, so its CPU is not counted). Two
contestants run it one after the other, in the same run of this script:

- *plain AsyncOpenAI loop*: N asyncio conversations in one process, each calling
  `chat.completions.create` with the whole history and running `read` itself;
- *swarm*: `swarm launch --no-dashboard` in a fresh directory (local Ray, embedded
  Redis), as a user runs it.

What is counted is what a user pays: the CPU of every process of the contestant (for
swarm the CLI, Ray's processes, the agent actors and the embedded Redis), sampled with
psutil every 50 ms. *Steady state* is the window from the first to the last model
request the server saw; *total* is from the start of the command to its exit. Start-up
is the time from the command's start to the server's first request; memory is the peak
summed RSS of the process tree (and the USS of one agent actor, sampled mid-run)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

TITLE = "Whole swarm vs a plain SDK loop: CPU per model call"
NOTE = (
    "{agents} agents, each one task of K `read` tool turns (a file of ~1 KB) and a final "
    "answer, against the scripted Chat Completions server in a process of its own. CPU is "
    "the sum over every process of the contestant (swarm: the CLI, Ray's processes, the "
    "agent actors, the embedded Redis), sampled with psutil every 50 ms. *steady state*: "
    "from the server's first to its last request; *total*: command start to exit. The "
    "plain loop is N asyncio conversations in one process calling "
    "`AsyncOpenAI().chat.completions.create` with the whole history. Target: swarm's "
    "steady state ≤ 0.5× the plain loop, not growing with K."
)
FILES = 10
SAMPLE_S = 0.05


# -- the workload -------------------------------------------------------------------------
def write_workload(root: Path, agents: int, turns: int, per_actor: str = "auto") -> Path:
    """The repository, the stub's script, the swarm config and its one-tool role card."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    for i in range(FILES):
        (repo / f"f{i}.py").write_text("".join(f"value_{i}_{n} = {n}\n" for n in range(60)))
    conversations = []
    for a in range(agents):
        calls = [
            {"tool_calls": [{"name": "read", "input": {"file_path": f"f{t % FILES}.py"}}]}
            for t in range(turns)
        ]
        conversations.append({"task": f"t{a}", "turns": [*calls, {"text": "done"}]})
    script = root / "stub.json"
    script.write_text(json.dumps({"conversations": conversations}))
    (root / "agents").mkdir()
    (root / "agents" / "reader.md").write_text(
        "---\nname: reader\ndescription: reads files\ntools: [read]\n---\n"
        "You read the files your task names and report what they hold.\n"
    )
    tasks = "\n".join(
        f"      - {{id: t{a}, title: read the files, agent: dev-{a}}}" for a in range(agents)
    )
    agent_lines = "\n".join(f"  - {{name: dev-{a}, role: reader}}" for a in range(agents))
    (root / "swarm.yaml").write_text(
        f"name: bench\ngoal: read files\nmodel: openai/gpt-4.1-mini\n"
        f"budget: {{max_turns: {turns + 10}}}\nreliability: {{no_progress_turns: 0}}\n"
        f"hosting: {{agents_per_actor: {per_actor}}}\n"
        # the fake server has no rate limits: the default 500 requests a minute would
        # stretch a K=100 run (1,010 calls) over minutes of waiting
        "providers: {openai: {requests_per_minute: null, tokens_per_minute: null}}\n"
        f"agents:\n{agent_lines}\nphases:\n  - name: one\n    tasks:\n{tasks}\n"
    )
    return script


# -- measuring a process tree -------------------------------------------------------------
@dataclass
class TreeSampler:
    """CPU seconds and RSS of a process and all its descendants (plus extra pids, such as
    a detached Redis), sampled on a thread."""

    root: psutil.Process
    extra_pids: list[int] = field(default_factory=list)
    samples: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    peak_rss: int = 0
    actor_uss: list[int] = field(default_factory=list)
    kinds: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> TreeSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _procs(self) -> list[psutil.Process]:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            procs = []
        seen = {p.pid for p in procs}
        for pid in self.extra_pids:
            if pid not in seen and psutil.pid_exists(pid):
                procs.append(psutil.Process(pid))
        return procs

    def _loop(self) -> None:
        while not self._stop.is_set():
            cpu: dict[int, float] = {}
            rss = 0
            for p in self._procs():
                try:
                    with p.oneshot():
                        if p.pid not in self.kinds:
                            self.kinds[p.pid] = _kind(p, self.root.pid)
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
                        rss += p.memory_info().rss
                except psutil.Error:
                    continue
            self.samples.append((time.time(), cpu))
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(SAMPLE_S)

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds the tree used between t0 and t1 (by the samples nearest inside)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return 0.0
        first, last = inside[0][1], inside[-1][1]
        scale = (t1 - t0) / max(inside[-1][0] - inside[0][0], 1e-9)
        used = sum(v - first.get(pid, 0.0) for pid, v in last.items())
        return used * scale

    def cpu_by_kind(self, t0: float, t1: float) -> dict[str, float]:
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        out: dict[str, float] = {}
        if len(inside) < 2:
            return out
        first, last = inside[0][1], inside[-1][1]
        for pid, v in last.items():
            kind = self.kinds.get(pid, "other")
            out[kind] = out.get(kind, 0.0) + v - first.get(pid, 0.0)
        return out

    def cpu_total(self) -> float:
        """Every sampled process's last CPU figure (started after the command did)."""
        last: dict[int, float] = {}
        for _, cpu in self.samples:
            last.update(cpu)
        return sum(last.values())

    def sample_actor_uss(self) -> None:
        for p in self._procs():
            try:
                if "AgentActor" in " ".join(p.cmdline()) or p.name().startswith("ray::Agent"):
                    self.actor_uss.append(p.memory_full_info().uss)
            except psutil.Error:
                continue


def _kind(p: psutil.Process, root: int) -> str:
    """Which part of the run a process is, by its command line."""
    if p.pid == root:
        return "command (CLI / driver)"
    try:
        line = " ".join(p.cmdline())
    except psutil.Error:
        return "other"
    if os.environ.get("SWARM_BENCH_DEBUG"):
        print("PROC", p.pid, line[:200], file=sys.stderr)
    for needle, kind in (
        ("AgentActor", "agent actors (Ray workers)"),
        ("ray::", "agent actors (Ray workers)"),
        ("default_worker", "agent actors (Ray workers)"),
        ("redis-server", "redis"),
        ("gcs_server", "ray gcs"),
        ("raylet/raylet", "raylet"),
        ("dashboard/agent.py", "ray dashboard agent"),
        ("dashboard.py", "ray dashboard"),
        ("runtime_env", "ray runtime-env agent"),
        ("log_monitor", "ray log monitor"),
        ("monitor.py", "ray autoscaler monitor"),
        ("swarm.reaper", "swarm reaper"),
        ("redis_server", "swarm redis watchdog"),
    ):
        if needle in line:
            return kind
    return line[:60]


@dataclass
class Result:
    name: str
    requests: int
    steady_cpu_s: float
    total_cpu_s: float
    startup_s: float
    wall_s: float
    peak_rss: int
    actor_uss: int = 0
    by_kind: dict[str, float] = field(default_factory=dict)

    @property
    def steady_ms(self) -> float:
        return 1000 * self.steady_cpu_s / max(self.requests - 1, 1)

    @property
    def total_ms(self) -> float:
        return 1000 * self.total_cpu_s / max(self.requests, 1)


def _requests(record: Path) -> list[float]:
    if not record.exists():
        return []
    times = []
    # complete lines only: read while the server runs, the last one may be half written
    for line in record.read_text().split("\n")[:-1]:
        r = json.loads(line)
        if r.get("path", "").endswith("/chat/completions") and r.get("status") == 200:
            times.append(float(r["received_at"]))
    return sorted(times)


def measure(
    name: str,
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    record: Path,
    verify: Callable[[Path], None] | None = None,
) -> Result:
    """Run ``argv`` to its end with its process tree sampled; ``verify`` (if given) is
    called with the server's request log before the log is cleared for the next run."""
    started = time.time()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    sampler = TreeSampler(psutil.Process(proc.pid)).start()
    uss_taken = False
    while proc.poll() is None:
        time.sleep(0.2)
        if not sampler.extra_pids:
            sampler.extra_pids = _redis_pids(cwd)
        if not uss_taken and len(_requests(record)) > 20:
            sampler.sample_actor_uss()
            uss_taken = True
    sampler.stop()
    ended = time.time()
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited {proc.returncode}: {err[-2000:]}")
    times = _requests(record)
    if verify is not None:
        verify(record)
    record.unlink()
    return Result(
        name=name,
        requests=len(times),
        steady_cpu_s=sampler.cpu_between(times[0], times[-1]),
        total_cpu_s=sampler.cpu_total(),
        startup_s=times[0] - started,
        wall_s=ended - started,
        peak_rss=sampler.peak_rss,
        actor_uss=int(statistics.median(sampler.actor_uss)) if sampler.actor_uss else 0,
        by_kind=sampler.cpu_by_kind(times[0], times[-1]),
    )


def _redis_pids(cwd: Path) -> list[int]:
    """The embedded Redis of a run in ``cwd`` (its watchdog detaches it from the CLI)."""
    found = []
    for info in (cwd / ".swarm").glob("**/server.json"):
        try:
            fields = json.loads(info.read_text())
        except (ValueError, OSError):
            continue
        found += [int(fields[k]) for k in ("server_pid", "watchdog_pid") if fields.get(k)]
    return found


# -- the plain loop -----------------------------------------------------------------------
READ_TOOL = {
    "type": "function",
    "function": {
        "name": "read",
        "description": "Read a file",
        "parameters": {
            "type": "object",
            "properties": {"file_path": {"type": "string"}},
            "required": ["file_path"],
        },
    },
}


async def plain_loop(base_url: str, repo: Path, agents: int) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)

    async def one(a: int) -> None:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": f"Agent: dev-{a}\nYou read files."},
            {"role": "user", "content": f"Task t{a}: read the files"},
        ]
        while True:
            reply = await client.chat.completions.create(
                model="gpt-4.1-mini", messages=messages, tools=[READ_TOOL]
            )
            msg = reply.choices[0].message
            messages.append(msg.model_dump(exclude_none=True))
            if not msg.tool_calls:
                return
            for call in msg.tool_calls:
                path = json.loads(call.function.arguments)["file_path"]
                text = (repo / path).read_text()
                messages.append({"role": "tool", "tool_call_id": call.id, "content": text})

    await asyncio.gather(*(one(a) for a in range(agents)))
    await client.close()


# -- one comparison -----------------------------------------------------------------------
def _stub(script: Path, record: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm.llmstub", str(script), "--record", str(record)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip().rsplit(" ", 1)[-1]


def compare(agents: int, turns: int, packings: list[str]) -> tuple[Result, dict[str, Result]]:
    """The plain loop, then swarm once per ``agents_per_actor`` setting, on one server."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        script = write_workload(root, agents, turns)
        record = root / "requests.jsonl"
        stub, url = _stub(script, record)
        env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "RAY_ADDRESS")}
        ours: dict[str, Result] = {}
        try:
            plain = measure(
                "plain AsyncOpenAI loop",
                [
                    sys.executable,
                    "-m",
                    "benchmarks.swarm_cpu",
                    "plain",
                    f"{url}/openai/v1",
                    str(root / "repo"),
                    str(agents),
                ],
                root,  # not the checkout: an embedded Redis left in its .swarm/ would count
                {**env, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
                record,
            )
            run_env = {**env, "OPENAI_BASE_URL": f"{url}/openai/v1", "OPENAI_API_KEY": "bench"}
            for i, packing in enumerate(packings):
                config = (root / "swarm.yaml").read_text().splitlines()
                config = [
                    f"hosting: {{agents_per_actor: {packing}}}" if ln.startswith("hosting:") else ln
                    for ln in config
                ]
                (root / "swarm.yaml").write_text("\n".join(config) + "\n")
                ours[packing] = measure(
                    f"swarm ({packing} per actor)",
                    [
                        sys.executable,
                        "-m",
                        "swarm.cli",
                        "launch",
                        "swarm.yaml",
                        "--repo",
                        "repo",
                        "--run-id",
                        f"bench-{agents}-{turns}-{i}",
                        "--no-dashboard",
                    ],
                    root,
                    run_env,
                    record,
                )
        finally:
            stub.terminate()
            stub.wait()
            from swarm.blackboard.connection import stop_embedded

            stop_embedded(root / ".swarm")
            shutil.rmtree(root / ".swarm", ignore_errors=True)
    return plain, ours


def rows_for(agents: int, turns_list: list[int], packings: list[str]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for turns in turns_list:
        plain, ours = compare(agents, turns, packings)
        k = f"K={turns}"
        rows += [
            (f"{k}: plain loop, model calls", f"{plain.requests}"),
            (f"{k}: plain loop, CPU per call", f"{plain.steady_ms:.1f} ms"),
            (f"{k}: plain loop, peak RSS", f"{plain.peak_rss / 2**20:,.0f} MB"),
        ]
        for packing, r in ours.items():
            who = f"{k}: swarm, agents_per_actor={packing}"
            rows += [
                (
                    f"{who}, steady state, CPU per call",
                    f"{r.steady_ms:.1f} ms ({r.steady_ms / plain.steady_ms:.2f}× the plain loop)",
                ),
                (
                    f"{who}, total (start-up and shutdown included), CPU per call",
                    f"{r.total_ms:.1f} ms ({r.total_ms / plain.total_ms:.1f}× the plain loop's "
                    f"{plain.total_ms:.1f} ms)",
                ),
                (f"{who}, launch → first model request", f"{r.startup_s:.1f} s"),
                (f"{who}, peak RSS of all processes", f"{r.peak_rss / 2**20:,.0f} MB"),
                (
                    f"{who}, steady-state CPU per call by process",
                    ", ".join(
                        f"{kind} {1000 * v / max(r.requests - 1, 1):.1f} ms"
                        for kind, v in sorted(r.by_kind.items(), key=lambda kv: -kv[1])
                        if v > 0.0005 * r.requests
                    ),
                ),
            ]
        for row in rows[-(3 + 5 * len(ours)) :]:
            print(f"{row[0]}: {row[1]}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="4 agents, K=10")
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--turns", type=int, nargs="*", default=[10, 30, 100])
    parser.add_argument("--per-actor", nargs="*", default=["1", "auto"])
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    args = parser.parse_args()
    agents, turns = (4, [10]) if args.quick else (args.agents, args.turns)
    rows = rows_for(agents, turns, args.per_actor)
    if not args.no_write:
        from benchmarks.run import replace_section

        replace_section(TITLE, NOTE.format(agents=agents), rows)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "plain":
        asyncio.run(plain_loop(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])))
    else:
        main()
