"""The fault suite's harness: a real swarm (the CLI as a subprocess, local Ray or a
cluster of `ray start` nodes on this machine, a real redis-server on TCP) against the
scripted LLM server, faults injected from outside as an operator would (a signal to a
pid, Redis stopped, the provider failing or rejecting the key), and the outcome read
from two independent records: the run's event stream and the scripted server's own
request log.

`SWARM_FAULTS_FULL=1` runs the full sizes (`make faults`); otherwise the quick form runs
inside `make test`. `SWARM_FAULTS_REPORT=FILE` appends each scenario's figures (JSON
lines) for `benchmarks/faults_table.py`, which writes the table in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from swarm.blackboard.board import Blackboard
from swarm.llmstub import StubScript, StubServer
from swarm.paths import DATA_DIR

FULL = os.environ.get("SWARM_FAULTS_FULL") == "1"
AGENTS_DIR = DATA_DIR / "agents"
REDIS_SERVER = Path(sys.executable).parent / "redis-server"
GOOD_KEY = "sk-faults-good-key-0123456789"


def size(quick: int, full: int) -> int:
    return full if FULL else quick


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A real redis-server on 127.0.0.1 with an append-only file, which a test can kill
    (SIGKILL) and start again on the same data, as an operator's Redis restart."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server") or str(REDIS_SERVER)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
            + ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            + ["--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Figures:
    """One scenario's outcome, as the fault table shows it."""

    scenario: str
    tasks: int
    completed: int
    lost: int
    completed_twice: int
    turns_stored_twice: int
    requests: int
    scripted_turns: int
    wasted: int
    recover_s: float | None
    exit_codes: list[int] = field(default_factory=list)
    notes: str = ""

    def report(self) -> None:
        print(f"\nFAULT FIGURES {json.dumps(asdict(self))}")
        path = os.environ.get("SWARM_FAULTS_REPORT")
        if path:
            row = {**asdict(self), "full": FULL, "date": time.strftime("%Y-%m-%d")}
            with open(path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


def config(name: str, n_tasks: int, agents: int, lease_s: float = 6.0, extra: str = "") -> str:
    lines = [
        f"name: {name}",
        "goal: survive faults",
        "model: anthropic/claude-sonnet-5-5",
        f"lease_s: {lease_s}",
        extra,
        "agents:",
        f"  - {{name: dev, role: developer, count: {agents}}}",
        "phases:",
        "  - name: only",
        "    tasks:",
    ]
    lines += [f"      - {{id: t{i:02d}, title: Task {i}, role: developer}}" for i in range(n_tasks)]
    return "\n".join(line for line in lines if line) + "\n"


def script(n_tasks: int, delay_s: float) -> StubScript:
    """Each task: one command that appends its id to a shared log, then its result."""
    conversations = [
        {
            "task": f"t{i:02d}",
            "turns": [
                {
                    "delay_s": delay_s,
                    "tool_calls": [
                        {"name": "bash", "input": {"command": f"echo t{i:02d} >> done.log"}}
                    ],
                },
                {"delay_s": delay_s, "text": f"t{i:02d} done"},
            ],
        }
        for i in range(n_tasks)
    ]
    return StubScript.model_validate({"conversations": conversations})


TURNS_PER_TASK = 2
RECOVERY_EVENTS = ("agent_respawned", "redis_recovered", "run_resumed")


class Swarm:
    """One scenario's swarm: its folder, Redis, stub and CLI processes."""

    def __init__(
        self,
        tmp_path: Path,
        name: str,
        n_tasks: int,
        agents: int,
        delay_s: float = 0.3,
        lease_s: float = 6.0,
        extra: str = "",
    ):
        self.tmp = tmp_path
        self.n_tasks = n_tasks
        self.repo = tmp_path / "repo"
        self.repo.mkdir()
        (tmp_path / "swarm.yaml").write_text(config(name, n_tasks, agents, lease_s, extra))
        shutil.copytree(AGENTS_DIR, tmp_path / "agents")
        self.run_id = f"{name}-{os.getpid()}-{int(time.time() * 1000) % 10**8}"
        self.redis = RedisProcess(tmp_path / "redis")
        self.stub = StubServer(script(n_tasks, delay_s), record_path=tmp_path / "requests.jsonl")
        self.procs: list[subprocess.Popen[str]] = []
        self.key = GOOD_KEY
        self.extra_env: dict[str, str] = {}  # e.g. RAY_ADDRESS of a RayCluster

    def __enter__(self) -> Swarm:
        self.redis.start()
        self.stub.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        for p in self.procs:
            if p.poll() is None:
                kill_tree(p.pid)
        self.stub.stop()
        self.redis.kill()
        reap_strays(self.run_id)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ANTHROPIC_BASE_URL": self.stub.base_url,
            "ANTHROPIC_API_KEY": self.key,
            "REDIS_URL": self.redis.url,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def cli(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm.cli", *args],
            cwd=self.tmp,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # signals go to it alone, as from another terminal
        )
        self.procs.append(proc)
        return proc

    def launch(self) -> subprocess.Popen[str]:
        return self.cli(
            "launch",
            "swarm.yaml",
            "--repo",
            str(self.repo),
            "--run-id",
            self.run_id,
            "--no-dashboard",
        )

    def resume(self, *extra: str) -> subprocess.Popen[str]:
        return self.cli("resume", self.run_id, "--no-dashboard", *extra)

    # -- waiting on the run ------------------------------------------------------------
    def board_call(self, fn: Any) -> Any:
        async def go() -> Any:
            board = Blackboard(self.redis.url, self.run_id, outage_s=5)
            try:
                return await fn(board)
            finally:
                await board.close()

        return asyncio.run(go())

    def wait_for(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                value = self.board_call(predicate)
                if value:
                    return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}")

    def completed_count(self) -> int:
        async def count(board: Blackboard) -> int:
            return sum(t.status == "completed" for t in await board.tasks())

        try:
            return int(self.board_call(count))
        except Exception:
            return 0

    def agent_pids(self) -> list[int]:
        async def pids(board: Blackboard) -> list[int]:
            return [int(a["pid"]) for a in await board.agents() if a.get("pid")]

        return list(self.board_call(pids))

    # -- the outcome -------------------------------------------------------------------
    def figures(
        self,
        scenario: str,
        fault_at: float | None,
        exit_codes: list[int],
        notes: str = "",
        recovered_at: float | None = None,
    ) -> Figures:
        """``recovered_at``: an act of recovery the event stream does not show (Ray
        restarting actors of a lost node), as the test observed it."""

        async def read(board: Blackboard) -> tuple[list[Any], list[Any], dict[str, list[Any]]]:
            tasks = await board.tasks()
            events = await board.events(count=1_000_000)
            sessions = {t.id: await board.session(t.id) for t in tasks}
            return tasks, events, sessions

        tasks, events, sessions = self.board_call(read)
        done = Counter(e.task for e in events if e.type == "task_completed")
        twice = 0
        for msgs in sessions.values():
            assistants = [json.dumps(m, sort_keys=True) for m in msgs if m["role"] == "assistant"]
            twice += max(0, len(assistants) - TURNS_PER_TASK)
        recover = None
        if fault_at is not None:
            # recovered: the first model turn after the fault and after the last act of
            # recovery (a respawn, Redis back, a resume), i.e. work going on again
            marks = [fault_at, recovered_at or fault_at] + [
                e.ts / 1000 for e in events if e.type in RECOVERY_EVENTS and e.ts / 1000 > fault_at
            ]
            start = max(marks)
            after = [e.ts / 1000 for e in events if e.type == "model_turn" and e.ts / 1000 > start]
            recover = round(min(after) - fault_at, 1) if after else None
        served = [r for r in self.stub.requests if r.path.endswith("/messages")]
        scripted = self.n_tasks * TURNS_PER_TASK
        return Figures(
            scenario=scenario,
            tasks=len(tasks),
            completed=sum(t.status == "completed" for t in tasks),
            lost=sum(t.status != "completed" for t in tasks),
            completed_twice=sum(1 for n in done.values() if n > 1),
            turns_stored_twice=twice,
            requests=len(served),
            scripted_turns=scripted,
            wasted=len(served) - scripted,
            recover_s=recover,
            exit_codes=exit_codes,
            notes=notes,
        )

    def interrupted_tasks(self) -> set[str]:
        """Tasks told that a tool call of theirs was interrupted (its process killed
        mid-call): whether its command ran is unknown, and the scripted model moves on.
        Read from what the model was sent (the scripted server's request log): the
        transcript repair that says so is made for each request, while the stored
        session keeps the call without its result (or, once a turn with tool results
        is stored, with them)."""
        from swarm.providers.repair import INTERRUPTED

        told = set()
        for r in self.stub.requests:
            body = json.dumps(r.body)
            found = re.search(r"Task (t\d+):", body)
            if INTERRUPTED in body and found:
                told.add(found.group(1))

        async def read(board: Blackboard) -> set[str]:
            out = set()
            for t in await board.tasks():
                if INTERRUPTED in json.dumps(await board.session(t.id)):
                    out.add(t.id)
            return out

        return told | set(self.board_call(read))

    def log_lines(self) -> list[str]:
        return (
            (self.repo / "done.log").read_text().split()
            if (self.repo / "done.log").exists()
            else []
        )


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        out, _ = proc.communicate(timeout=30)
        raise AssertionError(f"the swarm did not finish in {timeout} s:\n{out[-4000:]}") from None
    return proc.returncode, out


def kill_tree(pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pid)
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        parent.kill()


def run_processes(run_id: str) -> list[psutil.Process]:
    """Processes of the run still alive: the CLI and its descendants (Ray, actors),
    found by the run id on their command line or in their environment."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if p.info["status"] == psutil.STATUS_ZOMBIE or p.pid == os.getpid():
                continue
            if run_id in " ".join(p.info["cmdline"] or []) or run_id in str(
                p.environ().get("SWARM_RUN", "")
            ):
                found.append(p)
    return found


def reap_strays(run_id: str) -> None:
    for p in run_processes(run_id):
        with contextlib.suppress(psutil.Error):
            p.kill()


def descendants(pid: int, name: str) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):
        return [c for c in psutil.Process(pid).children(recursive=True) if c.name() == name]
    return []


RAY = Path(sys.executable).parent / "ray"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout, importable as swarm


class RayCluster:
    """A Ray cluster of this machine's own, as an operator would run one: a head and
    worker nodes started with `ray start` in a temp dir of their own. Stopped by killing
    its processes by pid (found by that temp dir, or as children of its raylets), never
    with `ray stop`, which stops every Ray of the user on the machine."""

    def __init__(self) -> None:
        # short: Ray's unix socket paths live under it (108 bytes at most)
        self.temp = Path(tempfile.mkdtemp(prefix="swarm-ray-", dir="/tmp"))
        self.port = free_port()
        self.seen: dict[int, float] = {}  # pid -> create time of every process of ours

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # Token auth off, on the nodes and for whoever joins: else whether a token exists in
    # ~/.ray (a local ray.init of the user makes one) would decide it, and this
    # process's own queries of the GCS carry none.
    AUTH = {"RAY_AUTH_MODE": "disabled"}

    def client_env(self) -> dict[str, str]:
        """The environment of a process that joins the cluster (the swarm's CLI)."""
        return {"RAY_ADDRESS": self.address, **self.AUTH}

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _start(self, *args: str, num_cpus: int, resources: dict[str, float]) -> None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # the agents' processes import this checkout's swarm, as a driver-started Ray's do
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
        )
        env.update(self.AUTH, RAY_USAGE_STATS_ENABLED="0")
        cmd = [str(RAY), "start", *args, f"--temp-dir={self.temp}", f"--num-cpus={num_cpus}"]
        cmd += [f"--resources={json.dumps(resources)}", "--object-store-memory=80000000"]
        cmd += ["--disable-usage-stats"]
        try:
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        finally:
            self.track()
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}{out.stderr[-3000:]}")

    def start_head(self, num_cpus: int, resources: dict[str, float]) -> str:
        self._start(
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",  # the minimal one still listens: not 8265
            num_cpus=num_cpus,
            resources=resources,
        )
        return self._new_node(set())

    def add_node(self, num_cpus: int, resources: dict[str, float]) -> str:
        """Join a node on this machine; returns its node id."""
        before = {n["NodeID"] for n in self.nodes()}  # the head answers by now
        self._start(f"--address={self.address}", num_cpus=num_cpus, resources=resources)
        return self._new_node(before)

    def _new_node(self, before: set[str]) -> str:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):  # the GCS may not answer yet
                nodes = self.nodes()
                new = [n["NodeID"] for n in nodes if n["Alive"] and n["NodeID"] not in before]
                if new:
                    return str(new[0])
            time.sleep(0.5)
        raise RuntimeError("the node did not join the cluster")

    # -- what the GCS knows (read without joining the cluster as a driver) -------------
    def _state(self) -> Any:
        import ray
        from ray._private.state import GlobalState

        state = GlobalState()
        state._initialize_global_state(
            ray._raylet.GcsClientOptions.create(
                self.address, None, allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False
            )
        )
        return state

    def nodes(self) -> list[dict[str, Any]]:
        state = self._state()
        try:
            return list(state.node_table())
        finally:
            state.disconnect()

    def actors(self, prefix: str = "") -> list[dict[str, Any]]:
        """Actors whose name starts with ``prefix``: name, state, node id, pid."""
        state = self._state()
        try:
            table = state.actor_table(None)
        finally:
            state.disconnect()
        return [
            {
                "name": a["Name"],
                "state": a["State"],
                "node": a["Address"]["NodeID"],
                "pid": a["Pid"],
            }
            for a in table.values()
            if a["Name"].startswith(prefix)
        ]

    # -- processes ---------------------------------------------------------------------
    def raylet(self, node_id: str) -> psutil.Process:
        for p in psutil.process_iter(["cmdline"]):
            cmd = p.info["cmdline"] or []
            if cmd and cmd[0].endswith("raylet") and f"--node_id={node_id}" in cmd:
                return p
        raise LookupError(f"no raylet of node {node_id}")

    def track(self) -> list[psutil.Process]:
        """Every live process of this cluster: its temp dir on the command line or a file
        of it open (Ray's agents rewrite their command line), started by one of its live
        raylets (RAY_RAYLET_PID), or a descendant of these. Remembered, so that processes
        a killed raylet left behind are still found (call it before killing one)."""
        ours: dict[int, psutil.Process] = {}
        me = {os.getpid()} | {p.pid for p in psutil.Process().parents()}
        temp = str(self.temp)
        for p in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if p.pid in me:
                    continue
                if temp in " ".join(p.info["cmdline"] or []) or any(
                    f.path.startswith(temp + os.sep)
                    for f in p.open_files()  # its logs
                ):
                    ours[p.pid] = p
        raylets = set()
        for pid, p in ours.items():
            with contextlib.suppress(psutil.Error):
                if p.name() == "raylet":
                    raylets.add(pid)
        for p in psutil.process_iter():
            if p.pid not in ours and p.pid not in me and _raylet_parent(p.pid) in raylets:
                ours[p.pid] = p
        for p in list(ours.values()):
            with contextlib.suppress(psutil.Error):
                for c in p.children(recursive=True):
                    ours[c.pid] = c
        for pid, p in ours.items():
            with contextlib.suppress(psutil.Error):
                self.seen.setdefault(pid, p.create_time())
        return self.alive()

    def alive(self) -> list[psutil.Process]:
        """The processes seen that still run (the same process: pid and start time)."""
        out = []
        for pid, created in self.seen.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
        return out

    def stop(self) -> None:
        for _ in range(3):  # a raylet may start a worker while its siblings die
            procs = self.track()
            if not procs:
                break
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    p.kill()
            psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)


def _raylet_parent(pid: int) -> int | None:
    """RAY_RAYLET_PID of a process Ray started (read from /proc: psutil finds nothing in
    the environment of a process that rewrote its command line)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = fh.read()
    except OSError:
        return None
    for item in env.split(b"\0"):
        if item.startswith(b"RAY_RAYLET_PID="):
            with contextlib.suppress(ValueError):
                return int(item.split(b"=", 1)[1])
    return None
