"""CPU of an attached dashboard while the run it shows is idle.

    python -m benchmarks.dashboard_idle [--seconds 20] [--no-write]

A real run (`swarm launch --no-dashboard`, local Ray, embedded Redis, the scripted LLM
server) whose one agent runs a long command: nothing is written to the blackboard for
the whole window. `swarm watch RUN` attaches to it on a pseudo-terminal (160x50, its
output read and thrown away as a terminal would draw it), and the CPU of that process
(user + system, psutil) is measured over the window, after a warm-up. The same is
measured for `swarm watch` with stdout a pipe (the plain-lines fallback)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

TITLE = "Dashboard idle CPU (an attached `swarm watch` on an idle run)"
NOTE = (
    "A real run (local Ray, embedded Redis, scripted LLM server) whose one agent runs a "
    "{sleep} s command, so the blackboard stays still; `swarm watch RUN` is attached on a "
    "pseudo-terminal of 160x50 (its output read as a terminal would), and the CPU (user + "
    "system, psutil) of that process alone is measured over {seconds} s after a {warmup} s "
    "warm-up. *plain* is the same command with stdout a pipe (the plain-lines fallback). "
    "Target: a few percent of one core at most (the 4-redraws-a-second cap is tested in tests/integration/test_dashboard_app.py)."
)
CONFIG = """\
name: idle-bench
goal: stay idle
model: anthropic/claude-sonnet-5-5
agents:
  - {name: dev, role: developer}
phases:
  - name: "Phase 1: Wait"
    tasks:
      - {id: wait, title: Wait for a long command, agent: dev}
"""


def _script(sleep_s: int) -> dict[str, object]:
    return {
        "conversations": [
            {
                "turns": [
                    {"tool_calls": [{"name": "bash", "input": {"command": f"sleep {sleep_s}"}}]},
                    {"text": "done"},
                ]
            }
        ]
    }


def _sleeping(sleep_s: int) -> bool:
    for p in psutil.process_iter(["cmdline"]):
        if (p.info["cmdline"] or [])[:2] == ["sleep", str(sleep_s)]:
            return True
    return False


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(proc.pid)
        for child in parent.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        parent.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def _cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _watch(
    argv: list[str], cwd: Path, env: dict[str, str], tty: bool
) -> tuple[subprocess.Popen[bytes], list[int], bytearray]:
    """`swarm watch` on a pseudo-terminal (tty) or a pipe; its output is drained by a
    thread, whose byte count is returned in the list (and its first 1 MB kept)."""
    read: list[int] = [0]
    head = bytearray()
    if tty:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**env, "TERM": "xterm-256color"},
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        fd = master
    else:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        fd = proc.stdout.fileno()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            read[0] += len(chunk)
            if len(head) < 2**20:
                head.extend(chunk)

    threading.Thread(target=drain, daemon=True).start()
    return proc, read, head


def measure(seconds: float = 20.0, warmup: float = 5.0) -> list[tuple[str, str]]:
    from swarm.blackboard.connection import open_redis, stop_embedded
    from swarm.llmstub import StubScript, StubServer
    from swarm.paths import DATA_DIR

    sleep_s = int(seconds * 2 + warmup * 2 + 60)
    root = Path(tempfile.mkdtemp(prefix="swarm-dash-bench-"))
    (root / "repo").mkdir()
    (root / "swarm.yaml").write_text(CONFIG)
    shutil.copytree(DATA_DIR / "agents", root / "agents")
    handle = open_redis(root / ".swarm")
    run_id = f"idle-{os.getpid()}-{int(time.time())}"
    rows: list[tuple[str, str]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with StubServer(StubScript.model_validate(_script(sleep_s))) as stub:
            env = {
                **os.environ,
                "ANTHROPIC_BASE_URL": stub.base_url,
                "ANTHROPIC_API_KEY": "k",
                "REDIS_URL": handle.url,
            }
            cli = [sys.executable, "-m", "swarm.cli"]
            launch = subprocess.Popen(
                [
                    *cli,
                    "launch",
                    "swarm.yaml",
                    "--repo",
                    "repo",
                    "--run-id",
                    run_id,
                    "--no-dashboard",
                ],
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(launch)
            deadline = time.monotonic() + 180
            while not _sleeping(sleep_s):
                if time.monotonic() > deadline or launch.poll() is not None:
                    raise RuntimeError("the run never started its command")
                time.sleep(0.2)
            for label, tty in (
                ("interactive dashboard (pty)", True),
                ("plain lines (pipe)", False),
            ):
                proc, read, head = _watch([*cli, "watch", run_id], root, env, tty)
                procs.append(proc)
                time.sleep(warmup)
                if proc.poll() is not None:
                    raise RuntimeError(f"swarm watch ended early ({label}): {bytes(head)[-500:]!r}")
                if tty and b"waiting for" not in head and b"bash" not in head:
                    raise RuntimeError(
                        f"the dashboard does not show the run: {bytes(head)[-500:]!r}"
                    )
                c0, b0, t0 = _cpu_s(proc.pid), read[0], time.monotonic()
                time.sleep(seconds)
                c1, b1, t1 = _cpu_s(proc.pid), read[0], time.monotonic()
                pct = 100 * (c1 - c0) / (t1 - t0)
                rows.append((f"{label}: CPU over {t1 - t0:.0f} s", f"{pct:.2f} % of one core"))
                rows.append((f"{label}: terminal output", f"{(b1 - b0) / (t1 - t0):,.0f} bytes/s"))
                rss = psutil.Process(proc.pid).memory_info().rss
                rows.append((f"{label}: RSS", f"{rss / 2**20:,.0f} MB"))
                print(*(f"{k}: {v}" for k, v in rows[-3:]), sep="\n", flush=True)
                _kill_tree(proc)
            subprocess.run([*cli, "stop", run_id], cwd=root, env=env, capture_output=True)
            with contextlib.suppress(subprocess.TimeoutExpired):
                launch.wait(timeout=60)
    finally:
        for p in procs:
            _kill_tree(p)
        handle.close()
        stop_embedded(root / ".swarm")
        shutil.rmtree(root, ignore_errors=True)
    return rows


def note(seconds: float = 20.0, warmup: float = 5.0) -> str:
    return NOTE.format(
        sleep=int(seconds * 2 + warmup * 2 + 60), seconds=f"{seconds:g}", warmup=f"{warmup:g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--no-write", action="store_true", help="print, do not write docs")
    args = parser.parse_args()
    rows = measure(args.seconds)
    if not args.no_write:
        from benchmarks.run import replace_section

        replace_section(TITLE, note(args.seconds), rows)
    print(json.dumps(dict(rows), indent=1))


if __name__ == "__main__":
    main()
