"""SIGTERM to a running swarm: it stops within seconds, exits 130, keeps its state, and
leaves no command an agent started running."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from tests.e2e.swarmrun import start_swarm

pytestmark = pytest.mark.e2e

CONFIG = """\
name: interrupt-test
goal: be interrupted
model: anthropic/claude-sonnet-5-5
agents:
  - {name: dev, role: developer}
phases:
  - name: one
    tasks:
      - {id: long, title: A long command, agent: dev}
"""


def sleepers() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd[:2] == [b"sleep", b"347"]:
                found.append(int(pid))
    return found


def test_sigterm_stops_the_run_and_its_commands(tmp_path: Path, redis_handle: RedisHandle) -> None:
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    (tmp_path / "repo").mkdir()
    script = StubScript.model_validate(
        {
            "conversations": [
                {
                    "turns": [
                        {"tool_calls": [{"name": "bash", "input": {"command": "sleep 347"}}]},
                        {"text": "done"},
                    ]
                }
            ]
        }
    )
    run_id = f"int-{os.getpid()}-{int(time.time())}"
    with StubServer(script) as stub:
        proc = start_swarm(tmp_path, stub, redis_handle.url, run_id)
        deadline = time.monotonic() + 120
        while not sleepers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sleepers(), "the agent never started its command"
        proc.send_signal(signal.SIGTERM)
        start = time.monotonic()
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - start
    assert proc.returncode == 130, out[-3000:]
    assert took < 20, took
    time.sleep(0.5)
    assert sleepers() == []  # the command died with the run

    async def check() -> None:
        board = Blackboard(redis_handle.url, run_id)
        try:
            meta = await board.meta()
            assert meta["state"] == "interrupted"
            task = await board.task("long")
            assert task is not None and task.status in ("claimed", "ready")  # resumable
            assert (await board.r.hget(board.k.agent("dev"), "status")) == "stopped"
        finally:
            await board.close()

    asyncio.run(check())
