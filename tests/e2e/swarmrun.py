"""Helpers to run a real swarm (CLI subprocess, local Ray, real Redis) against the stub."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from swarm.llmstub import StubServer

AGENTS_DIR = Path(__file__).resolve().parents[2] / "agents"


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
    run_id = f"t{os.getpid()}-{int(time.time() * 1000)}"
    env = {
        **os.environ,
        "ANTHROPIC_BASE_URL": stub.base_url,
        "ANTHROPIC_API_KEY": "k",
        "REDIS_URL": redis_url,
        **(extra_env or {}),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm.cli",
            "launch",
            "swarm.yaml",
            "--repo",
            str(repo),
            "--run-id",
            run_id,
            "--no-dashboard",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return run_id, proc
