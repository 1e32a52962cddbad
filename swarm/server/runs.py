"""Starting and resuming runs for the API: validated in the server exactly as the CLI
validates them (the same loaders, the same located errors), then run as detached
`swarm launch` / `swarm resume` processes, so the server holds no state of its own."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import state_dir
from swarm.errors import BadInput
from swarm.secrets import redact, secret_values
from swarm.server.auth import TOKEN_ENV
from swarm.server.models import StartRun

START_WAIT_S = 60.0  # how long POST /runs and /resume wait for the run to show in Redis


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def bad_input(exc: Exception, *replace: tuple[str, str]) -> ApiError:
    message = str(exc)
    for old, new in replace:
        message = message.replace(old, new)
    return ApiError(422, "bad_input", redact(message, secret_values()))


class Processes:
    """The detached processes this server started, only so they are reaped (no zombie)
    when they end; what they do is read from Redis, like any other run."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.logs = state_dir(workdir) / "server" / "logs"
        self.children: list[subprocess.Popen[bytes]] = []

    def spawn(self, args: list[str], log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / log_name
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "swarm.cli", *args],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # detached: the server's signals never reach it
            )
        self.children.append(proc)
        return proc, log

    def reap(self) -> None:
        self.children = [p for p in self.children if p.poll() is None]


def _log_error(log: Path) -> str:
    """The error a CLI process printed before it exited."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    text = errors[-1][len("error:") :].strip() if errors else "\n".join(lines[-5:])
    return redact(text, secret_values())


def prepare_start(req: StartRun, workdir: Path) -> tuple[Path, Path | None, str]:
    """Check a start request like `swarm launch` checks its arguments: (config path,
    repo, run id). Raises ApiError 422 with the loader's located message."""
    from swarm.config import load_config
    from swarm.launch import new_run_id
    from swarm.paths import resolve_config
    from swarm.plan import make_plan

    inline = isinstance(req.config, dict)
    shown: tuple[str, str] | None = None
    if isinstance(req.config, dict):
        folder = state_dir(workdir) / "server" / "configs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"inline-{secrets.token_hex(6)}.yaml"
        path.write_text(yaml.safe_dump(req.config, sort_keys=False))
        shown = (str(path), "config")
    else:
        if not req.config.strip() or "\0" in req.config:
            raise ApiError(422, "bad_input", "config: a path of a YAML config is required")
        path = resolve_config(Path(req.config))
        if not path.is_absolute() and workdir.resolve() != Path.cwd().resolve():
            path = workdir / path  # else relative, so messages name it as given
    try:
        loaded = load_config(path)
        run_id = req.run_id or new_run_id(loaded.config.name)
        repo: Path | None
        if req.repo is not None:
            if not req.repo.strip() or "\0" in req.repo:
                raise BadInput("repo: must be a directory path")
            repo = Path(req.repo)
            if not repo.is_absolute() and workdir.resolve() != Path.cwd().resolve():
                repo = workdir / repo
        elif inline:  # an inline config's `repo` is relative to the server's directory
            repo = workdir / loaded.config.repo
        else:
            repo = None
        make_plan(path, repo, run_id, state_dir(workdir), loaded=loaded)
    except (BadInput, OSError, ValueError) as exc:
        if inline:
            path.unlink(missing_ok=True)
        raise bad_input(exc, *([shown] if shown else [])) from None
    return path, repo, run_id


async def start(req: StartRun, workdir: Path, redis_url: str, procs: Processes) -> str:
    path, repo, run_id = await asyncio.to_thread(prepare_start, req, workdir)
    board = Blackboard(redis_url, run_id)
    try:
        if await board.exists():
            raise ApiError(409, "conflict", f"run_id: run {run_id!r} already exists")
        args = ["launch", str(path), "--run-id", run_id, "--no-dashboard"]
        if repo is not None:
            args += ["--repo", str(repo)]
        proc, log = procs.spawn(args, f"{run_id}.log")
        await _wait_started(board, proc, log, lambda: board.exists())
    finally:
        await board.close()
    return run_id


async def resume(board: Blackboard, procs: Processes) -> None:
    """`swarm resume RUN`, checked first as the CLI checks it."""
    from swarm.liveness import coordinator_liveness

    meta = await board.meta()
    state = meta.get("state", "")
    if state == "completed":
        raise ApiError(
            409, "conflict", f"run {board.run_id!r} already completed; nothing to resume"
        )
    live = await coordinator_liveness(board)
    if live.state == "alive":
        what = "is running" if state == "running" else "is still stopping"
        raise ApiError(
            409, "conflict", f"run {board.run_id!r} {what}: {live.describe()}; try again later"
        )
    since = await board.last_event_id()
    proc, log = procs.spawn(["resume", board.run_id, "--no-dashboard"], f"{board.run_id}.log")

    async def resumed() -> bool:
        return any(e.type == "run_resumed" for e in await board.events(after=since))

    await _wait_started(board, proc, log, resumed)


async def _wait_started(
    board: Blackboard, proc: subprocess.Popen[bytes], log: Path, ready: Any
) -> None:
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        if await ready():
            return
        code = proc.poll()
        if code is not None:
            if await ready():
                return
            message = _log_error(log) or f"the swarm process exited with code {code}"
            raise ApiError(
                422 if code == 2 else 500, "bad_input" if code == 2 else "failed", message
            )
        await asyncio.sleep(0.1)
    raise ApiError(504, "timeout", f"the run did not start within {START_WAIT_S:g} s (log: {log})")
