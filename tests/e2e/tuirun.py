"""Driving the interactive dashboard in tmux: a real swarm (CLI, local Ray, real Redis)
on the scripted LLM server, keys sent with `tmux send-keys`, what a person sees read
with `tmux capture-pane`."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.e2e.swarmrun import AGENTS_DIR


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


class Pane:
    """One tmux session running one shell command in a terminal of a given size."""

    def __init__(self, name: str, command: str, env: dict[str, str], cwd: Path, size=(160, 50)):
        assert shutil.which("tmux"), "tmux is needed (.ci/run installs it)"
        self.name = name
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        full = f"cd {shlex.quote(str(cwd))} && env {exports} {command}; echo EXIT=$?; sleep 120"
        tmux("new-session", "-d", "-s", name, "-x", str(size[0]), "-y", str(size[1]), full)
        self.frames: list[str] = []
        self.pid = int(tmux("display-message", "-p", "-t", name, "#{pane_pid}").strip())

    def capture(self) -> str:
        frame = tmux("capture-pane", "-p", "-t", self.name)
        self.frames.append(frame)
        return frame

    def wait_for(self, check: Callable[[str], bool] | str, timeout: float = 120) -> str:
        test = (lambda f: check in f) if isinstance(check, str) else check
        deadline = time.monotonic() + timeout
        frame = ""
        while time.monotonic() < deadline:
            frame = self.capture()
            if test(frame):
                return frame
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: not seen in {timeout} s: {check!r}\n{frame}")

    def keys(self, *keys: str) -> None:
        tmux("send-keys", "-t", self.name, *keys)

    def processes(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.pid).children(recursive=True)
        return []

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def swarm_command(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "swarm.cli", *args))


def prepare(tmp_path: Path, config: str) -> None:
    (tmp_path / "repo").mkdir(exist_ok=True)
    (tmp_path / "swarm.yaml").write_text(config)
    if not (tmp_path / "agents").exists():
        shutil.copytree(AGENTS_DIR, tmp_path / "agents")


def swarm_env(base_url: str, redis_url: str) -> dict[str, str]:
    env = {
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": "k",
        "REDIS_URL": redis_url,
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    return {k: v for k, v in env.items() if v}


def reap(processes: list[psutil.Process], grace_s: float = 30) -> list[int]:
    """Wait for ``processes`` to end; kill the ones left. Returns the pids that had to be
    killed (a test that expects them gone asserts it is empty)."""
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return [p.pid for p in alive]
