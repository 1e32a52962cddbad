"""Commands of a run left behind by a dead agent or coordinator: found by the run's
marker in their environment (every command an agent starts carries it), killed before a
resumed run re-attaches, so two copies of a command never work one worktree."""

from __future__ import annotations

import contextlib
import os
import signal
import time

RUN_ENV = "SWARM_RUN"  # set in the environment of every command an agent runs


def run_processes(run_id: str) -> list[int]:
    """Live processes (not zombies) whose environment carries the run's marker."""
    needle = f"{RUN_ENV}={run_id}\x00".encode()
    me = os.getpid()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
            if stat[stat.rfind(b")") + 2 :].split()[0] in (b"Z", b"X"):
                continue
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in fh.read():
                    found.append(int(name))
        except (OSError, IndexError):
            continue
    return found


def kill_run_processes(run_id: str, grace_s: float = 2.0) -> int:
    """SIGTERM the run's leftover commands, SIGKILL what survives ``grace_s``. Only the
    pids found (each checked > 1): never a process group we did not create."""
    pids = [p for p in run_processes(run_id) if p > 1]
    found = len(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = [p for p in run_processes(run_id) if p in pids]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return found
