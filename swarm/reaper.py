"""The run's reaper: a small detached process that outlives its coordinator by at most
a second and then kills what the coordinator leaves behind when it dies without a
shutdown (SIGKILL, OOM): the local Ray it started (Ray's own clean-up leaves its dashboard
and runtime-env agents running) and the commands its agents started (found by the run's
marker). It never signals a process group, only pids it found and checked (> 1).

    python -m swarm.reaper --watch PID --watch-start T --run RUN [--ray-session NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time

from swarm.leftovers import kill_run_processes
from swarm.liveness import process_start


def _watched_alive(pid: int, started: float | None) -> bool:
    now = process_start(pid)
    return now is not None and (started is None or abs(now - started) < 1.0)


def ray_session_processes(session: str) -> list[int]:
    """Processes of a local Ray session (their command line names the session)."""
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if p.pid > 1 and p.pid != os.getpid() and session in " ".join(p.info["cmdline"] or []):
                found.append(p.pid)
    return found


def descendants(pid: int) -> dict[int, float]:
    """The watched process's descendants now, by pid with their start time."""
    import psutil

    out: dict[int, float] = {}
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if not _spared(child.name(), child.cmdline()):
                    out[child.pid] = child.create_time()
    return out


def _spared(name: str, cmdline: list[str]) -> bool:
    """The embedded Redis stops itself once its last user is gone (with an fsync'd
    SHUTDOWN, which a SIGKILL would skip)."""
    return name == "redis-server" or any("swarm.blackboard" in part for part in cmdline)


def reap(run_id: str, session: str, seen: dict[int, float]) -> None:
    """Kill what is left: descendants seen while the coordinator lived (checked by start
    time, so a reused pid is spared; Ray's helpers rename themselves, so their command
    line cannot be relied on), the local Ray session's processes, and the commands of
    the run. The agents go first: an agent that outlived the commands' SIGTERM would
    store "killed by SIGTERM" as its command's result, and the model would go on as if
    the command had run, where a resumed task is told its call was interrupted."""
    targets = set(ray_session_processes(session)) if session else set()
    for pid, started in seen.items():
        if pid > 1 and pid != os.getpid() and process_start(pid) == started:
            targets.add(pid)
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    kill_run_processes(run_id)


def start_reaper(run_id: str, ray_session: str = "") -> subprocess.Popen[bytes] | None:
    """Start the reaper for this process (the coordinator); None where it cannot run."""
    started = process_start(os.getpid())
    args = [sys.executable, "-m", "swarm.reaper", "--watch", str(os.getpid()), "--run", run_id]
    if started is not None:
        args += ["--watch-start", repr(started)]
    if ray_session:
        args += ["--ray-session", ray_session]
    try:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or SIGHUP of the terminal must not stop it
        )
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarm.reaper")
    parser.add_argument("--watch", type=int, required=True)
    parser.add_argument("--watch-start", type=float, default=None)
    parser.add_argument("--run", required=True)
    parser.add_argument("--ray-session", default="")
    parser.add_argument("--interval", type=float, default=0.5)
    a = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = False

    def on_term(*_: object) -> None:  # the coordinator shut down cleanly: nothing to do
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    seen: dict[int, float] = {}
    started, scanned = time.monotonic(), 0.0
    while not stop and _watched_alive(a.watch, a.watch_start):
        now = time.monotonic()
        # the process table is scanned often while the run starts its processes, then
        # less (a scan reads every process; a liveness check is one stat)
        if now - scanned >= (a.interval if now - started < 20 else 4 * a.interval):
            seen.update(descendants(a.watch))
            scanned = now
        time.sleep(a.interval)
    if not stop:
        reap(a.run, a.ray_session, seen)
    return 0


if __name__ == "__main__":
    sys.exit(main())
