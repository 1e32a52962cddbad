"""The live dashboard on a real terminal (tmux), as a user sees it."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def test_live_dashboard_in_a_terminal(tmp_path: Path) -> None:
    assert shutil.which("tmux"), "tmux is needed (.ci/run installs it)"
    session = f"swarm-test-{tmp_path.name}"
    command = (
        f"cd {shlex.quote(str(tmp_path))} && {shlex.quote(sys.executable)} -m swarm.cli "
        "demo; echo EXIT=$?; sleep 60"
    )
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "60", command)
    frames: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            frame = tmux("capture-pane", "-p", "-t", session)
            frames.append(frame)
            if "EXIT=" in frame:
                break
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    final = frames[-1]
    assert "EXIT=0" in final, final
    # the live view was drawn: panels with agents, phases and events
    seen = "\n".join(frames)
    for name in (
        "analyst",
        "fixer",
        "tester",
        "writer",
        "Phase 1: Investigate",
        "Phase 2: Fix and document",
    ):
        assert name in seen
    # agents were seen at work and waiting on their dependencies, with live token counts
    assert "waiting for" in seen and "investigate" in seen
    assert "working" in seen
    assert "running" in seen and "completed" in final
    assert "tasks: 4/4 completed, 0 failed" in final
