"""SIGKILL an agent's actor process mid-task: Ray restarts it, it resumes its stored
session, and the task completes exactly once."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from swarm.paths import DATA_DIR
from tests.e2e.swarmrun import start_swarm

pytestmark = pytest.mark.e2e

CONFIG = """\
name: kill-test
goal: survive a crash
model: anthropic/claude-sonnet-5-5
lease_s: 30
agents:
  - {name: worker, role: developer}
  - {name: helper, role: test}
phases:
  - name: only
    tasks:
      - {id: long, title: A long task, agent: worker}
      - {id: short, title: A short task, role: test}
"""

SCRIPT = {
    "conversations": [
        {
            "agent": "worker",
            "task": "long",
            "turns": [
                {"tool_calls": [{"name": "bash", "input": {"command": "echo one >> log.txt"}}]},
                {"tool_calls": [{"name": "bash", "input": {"command": "echo two >> log.txt"}}]},
                {
                    "delay_s": 5,
                    "tool_calls": [{"name": "bash", "input": {"command": "echo three >> log.txt"}}],
                },
                {"text": "long task done"},
            ],
        },
        {"agent": "helper", "task": "short", "turns": [{"text": "short task done"}]},
    ]
}


def test_sigkill_agent_mid_task(tmp_path: Path, redis_handle: RedisHandle) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    shutil.copytree(DATA_DIR / "agents", tmp_path / "agents")
    run_id = f"kill-{os.getpid()}-{int(time.time())}"
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        proc = start_swarm(tmp_path, stub, redis_handle.url, run_id, repo)
        try:
            killed_pid = asyncio.run(_kill_when_in_turn_2(stub, redis_handle.url, run_id))
            out, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out[-4000:]
        turns = [r.turn for r in stub.requests if r.agent == "worker"]

    # resumed from the stored session: no turn was replayed from the start
    assert turns == [0, 1, 2, 2, 3], turns
    asyncio.run(_check_board(redis_handle.url, run_id, killed_pid))
    # tool effects before the kill happened once; the interrupted turn was redone once
    assert (repo / "log.txt").read_text().split() == ["one", "two", "three"]


async def _kill_when_in_turn_2(stub: StubServer, url: str, run_id: str) -> int:
    """Kill the worker while its turn-2 request is in flight: the stored session then holds
    the results of turn 1 (5 messages) and the stub holds its answer for 5 s."""
    board = Blackboard(url, run_id)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if await board.r.llen(board.k.session("long")) == 5:
                await asyncio.sleep(1.0)  # the request is on its way; the answer takes 5 s
                assert not any(r.agent == "worker" and r.turn == 2 for r in stub.requests)
                pid = int((await board.r.hget(board.k.agent("worker"), "pid")) or 0)
                assert pid and pid != os.getpid()
                os.kill(pid, signal.SIGKILL)
                return pid
            await asyncio.sleep(0.02)
        raise AssertionError("the worker never reached turn 2")
    finally:
        await board.close()


async def _check_board(url: str, run_id: str, killed_pid: int) -> None:
    board = Blackboard(url, run_id)
    try:
        tasks = {t.id: t for t in await board.tasks()}
        assert tasks["long"].status == "completed"
        assert tasks["long"].result == "long task done"
        assert tasks["short"].status == "completed"
        events = await board.events(count=100_000)
        long_events = [e.type for e in events if e.task == "long"]
        assert long_events.count("task_completed") == 1
        assert "task_resumed" in long_events
        new_pid = int(await board.r.hget(board.k.agent("worker"), "pid") or 0)
        assert new_pid and new_pid != killed_pid
        session = await board.session("long")
        assert [m["role"] for m in session] == [
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
        ]
    finally:
        await board.close()
