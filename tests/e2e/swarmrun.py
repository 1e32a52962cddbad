"""Helpers to run a real swarm (CLI subprocess, local Ray, real Redis) against the stub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from swarm.llmstub import StubServer
from swarm.paths import DATA_DIR

AGENTS_DIR = DATA_DIR / "agents"


def new_run_id(prefix: str = "t") -> str:
    return f"{prefix}{os.getpid()}-{int(time.time() * 1000)}"


def start_swarm(
    tmp_path: Path,
    stub: StubServer,
    redis_url: str,
    run_id: str,
    repo: Path | str = "repo",
    extra_env: dict[str, str] | None = None,
    command: str = "launch",
) -> subprocess.Popen[str]:
    """`swarm launch swarm.yaml` in tmp_path, headless, pointed at the stub and the Redis;
    stdout and stderr together in proc.stdout."""
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": stub.base_url,
        "ANTHROPIC_API_KEY": "k",
        "REDIS_URL": redis_url,
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swarm.cli",
            command,
            "swarm.yaml",
            "--repo",
            str(repo),
            "--run-id",
            run_id,
            "--no-dashboard",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_swarm(
    tmp_path: Path,
    config: str,
    stub: StubServer,
    redis_url: str,
    extra_env: dict[str, str] | None = None,
    timeout: float = 240,
) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Write `config`, launch it headless on an empty repo; returns (run_id, process)."""
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (tmp_path / "swarm.yaml").write_text(config)
    if not (tmp_path / "agents").exists():
        shutil.copytree(AGENTS_DIR, tmp_path / "agents")
    run_id = new_run_id()
    proc = start_swarm(tmp_path, stub, redis_url, run_id, repo, extra_env)
    out, _ = proc.communicate(timeout=timeout)
    return run_id, subprocess.CompletedProcess(proc.args, proc.returncode, out, "")
