"""Is a run's coordinator alive? Its lease in Redis says so while it lives; on this
machine its process says so at once. `swarm status` shows a run whose coordinator is gone
as orphaned, and `swarm resume` takes such a run over."""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Literal

from swarm.blackboard.board import Blackboard


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def this_machine() -> str:
    """This machine since its last boot: a pid seen under the same id is comparable."""
    return f"{socket.gethostname()}/{_boot_id()}"


def process_start(pid: int) -> float | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def coordinator_holder() -> dict[str, Any]:
    """What this process writes into a coordinator lease."""
    return {
        "token": secrets.token_hex(8),
        "pid": os.getpid(),
        "machine": this_machine(),
        "pid_start": process_start(os.getpid()),
        "since_ms": int(time.time() * 1000),
    }


@dataclass
class Liveness:
    state: Literal["alive", "dead", "lapsed"]  # dead: known dead on this machine
    holder: dict[str, Any]
    ttl_ms: int

    def describe(self) -> str:
        where = (
            f"pid {self.holder.get('pid')} on {str(self.holder.get('machine', '?')).split('/')[0]}"
        )
        if self.state == "lapsed":
            return "its coordinator's lease lapsed"
        if self.state == "dead":
            return f"its coordinator ({where}) is dead"
        return f"its coordinator ({where}) holds the lease for {self.ttl_ms / 1000:.0f} s more"


def holder_is_dead(holder: dict[str, Any]) -> bool:
    """Known dead: it ran on this machine (since its last boot) and its process is gone
    (or the pid now belongs to another process)."""
    if holder.get("machine") != this_machine():
        return False
    pid = int(holder.get("pid") or 0)
    if pid <= 0:
        return False
    started = process_start(pid)
    expected = holder.get("pid_start")
    return started is None or (expected is not None and abs(started - float(expected)) > 1.0)


async def coordinator_liveness(board: Blackboard) -> Liveness:
    held = await board.coordinator()
    if held is None:
        return Liveness("lapsed", {}, 0)
    holder, ttl = held
    return Liveness("dead" if holder_is_dead(holder) else "alive", holder, ttl)
