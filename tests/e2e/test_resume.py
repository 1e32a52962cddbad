"""`swarm stop` a running swarm, then `swarm resume` it: nothing acknowledged is lost and
no task starts over."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer

pytestmark = pytest.mark.e2e

CONFIG = """\
name: resume-test
goal: stop and go
model: anthropic/claude-sonnet-5-5
agents:
  - {name: dev, role: developer, count: 2}
phases:
  - name: one
    tasks:
      - {id: a, title: A, role: developer}
      - {id: b, title: B, role: developer}
  - name: two
    tasks:
      - {id: c, title: C, role: developer, needs: [a, b]}
"""


def step(n: int) -> dict[str, object]:
    return {"delay_s": 0.6, "tool_calls": [{"name": "bash", "input": {"command": f"echo {n}"}}]}


def test_stop_then_resume(tmp_path: Path, redis_handle: RedisHandle, project_root: Path) -> None:
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    (tmp_path / "repo").mkdir()
    script = StubScript.model_validate(
        {"conversations": [{"turns": [step(1), step(2), step(3), {"text": "done"}]}]}
    )
    run_id = f"resume-{os.getpid()}-{int(time.time())}"
    with StubServer(script) as stub:
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": stub.base_url,
            "ANTHROPIC_API_KEY": "k",
            "REDIS_URL": redis_handle.url,
        }

        def cli(*args: str) -> list[str]:
            return [sys.executable, "-m", "swarm.cli", *args]

        launch = subprocess.Popen(
            cli("launch", "swarm.yaml", "--repo", "repo", "--run-id", run_id, "--no-dashboard"),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 120
        while not any(r.turn == 1 for r in stub.requests) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop = subprocess.run(
            cli("stop", run_id), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0 and "stopping" in stop.stdout, stop.stderr
        out, _ = launch.communicate(timeout=120)
        assert launch.returncode == 130, out[-3000:]
        assert "stopped by `swarm stop`" in out
        before = len(stub.requests)
        assert not any(r.task == "c" for r in stub.requests)

        resumed = subprocess.run(
            cli("resume", run_id, "--no-dashboard"),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
        assert "tasks: 3/3 completed" in resumed.stdout
        after = stub.requests.snapshot()[before:]

    # a task's conversation never restarts: after the resume each task asks for turns at or
    # after where it stopped, and a second resume has nothing to do
    for task in ("a", "b"):
        first = [r.turn for r in stub.requests.snapshot()[:before] if r.task == task]
        later = [r.turn for r in after if r.task == task]
        assert first and later and min(later) >= max(first), (task, first, later)
    assert [r.turn for r in after if r.task == "c"] == [0, 1, 2, 3]
    again = subprocess.run(
        cli("resume", run_id), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 2 and "already completed" in again.stderr
