"""`swarm launch` / `swarm ci` / `swarm demo`: from a config file to a finished run."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import open_redis, state_dir
from swarm.config import LoadedConfig, load_config, split_model
from swarm.coordinator import Coordinator, agent_specs, exit_code_for, prepare_run
from swarm.dashboard import follow
from swarm.errors import BadInput
from swarm.providers.registry import settings_for
from swarm.status import snapshot
from swarm.tools.repo_tools import check_repo_tools


@dataclass
class LaunchResult:
    run_id: str
    state: str
    exit_code: int
    repo: Path


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def resolve_repo(loaded: LoadedConfig, repo: Path | None) -> Path:
    path = repo if repo is not None else (loaded.path.parent / loaded.config.repo)
    path = path.resolve()
    if not path.is_dir():
        where = "--repo" if repo is not None else f"{loaded.path}: repo"
        raise BadInput(f"{where}: {path} is not a directory")
    return path


def check_credentials(loaded: LoadedConfig) -> None:
    missing: dict[str, list[str]] = {}
    providers = {k: v.model_dump() for k, v in loaded.config.providers.items()}
    for agent in loaded.agents:
        provider, _ = split_model(agent.model)
        s = settings_for(provider, providers)
        if s.key_required and not s.has_key:
            missing.setdefault(s.api_key_env, []).append(agent.name)
    if missing:
        lines = [f"  {env} (needed by {', '.join(names)})" for env, names in missing.items()]
        raise BadInput(
            f"{loaded.path}: no credentials for the configured models. Set:\n"
            + "\n".join(lines)
            + "\n(and the provider's base URL if it is not the public API). "
            "To see a swarm work offline without keys, run `make demo` (or `swarm demo`)."
        )


def display_mode(json_events: bool, no_dashboard: bool) -> str:
    if json_events:
        return "json"
    if no_dashboard or not sys.stdout.isatty():
        return "plain"
    return "live"


async def _launch(
    loaded: LoadedConfig, repo: Path, run_id: str, mode: str, workdir: Path
) -> LaunchResult:
    handle = open_redis(state_dir(workdir))
    board = Blackboard(handle.url, run_id)
    try:
        if await board.exists():
            raise BadInput(f"--run-id: run {run_id!r} already exists; pick another id")
        await prepare_run(board, loaded, repo)
        return await _supervise(board, handle.url, loaded, repo, mode, workdir)
    finally:
        await board.close()
        handle.close()


async def _supervise(
    board: Blackboard,
    redis_url: str,
    loaded: LoadedConfig,
    repo: Path,
    mode: str,
    workdir: Path,
) -> LaunchResult:
    run_dir = state_dir(workdir) / "runs" / board.run_id
    specs = agent_specs(loaded, redis_url, board.run_id, repo, run_dir)
    coordinator = Coordinator(board, specs, loaded.config.budget.max_wall_s)
    stop = asyncio.Event()
    view = asyncio.create_task(follow(board, mode, stop))
    try:
        state = await coordinator.supervise()
    except (KeyboardInterrupt, asyncio.CancelledError):
        state = "interrupted"  # the coordinator stored it
    finally:
        stop.set()
        try:
            await asyncio.wait_for(view, timeout=10)
        except Exception as exc:  # the view failing must not hide how the run ended
            print(f"warning: the dashboard stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
    if mode != "json":
        await print_summary(board, repo)
    return LaunchResult(board.run_id, state, exit_code_for(state), repo)


async def _resume(run_id: str, mode: str, workdir: Path, budget: dict[str, float]) -> LaunchResult:
    handle = open_redis(state_dir(workdir))
    board = Blackboard(handle.url, run_id)
    try:
        if not await board.exists():
            raise BadInput(f"RUN: no run {run_id!r} in this directory's .swarm/")
        meta = await board.meta()
        if meta.get("state") == "completed":
            raise BadInput(f"RUN: run {run_id!r} already completed; nothing to resume")
        if meta.get("state") == "running":
            raise BadInput(
                f"RUN: run {run_id!r} is running (its coordinator is alive or was killed "
                "without a trace); stop it first with `swarm stop`"
            )
        loaded = LoadedConfig.model_validate_json(meta["loaded"])
        if budget:
            loaded.config.budget = loaded.config.budget.model_copy(update=budget)
            await board.r.hset(board.k.meta, "loaded", loaded.model_dump_json())
        repo = Path(meta["repo"])
        if not repo.is_dir():
            raise BadInput(f"RUN: the run's repository {repo} no longer exists")
        await board.resume_run()
        return await _supervise(board, handle.url, loaded, repo, mode, workdir)
    finally:
        await board.close()
        handle.close()


def resume(
    run_id: str,
    json_events: bool,
    no_dashboard: bool,
    budget: dict[str, float],
    workdir: Path | None = None,
) -> LaunchResult:
    mode = display_mode(json_events, no_dashboard)
    return asyncio.run(_resume(run_id, mode, workdir or Path.cwd(), budget))


async def print_summary(board: Blackboard, repo: Path) -> None:
    snap = await snapshot(board)
    done = sum(t.status == "completed" for t in snap.tasks)
    failed = [t for t in snap.tasks if t.status == "failed"]
    u = snap.usage
    print(f"\nRun {snap.run_id}: {snap.state}{' (' + snap.reason + ')' if snap.reason else ''}")
    print(f"  tasks: {done}/{len(snap.tasks)} completed, {len(failed)} failed")
    for t in failed:
        print(f"    failed {t.id}: {t.error}")
    print(
        f"  usage: {u.input_tokens:,} input + {u.output_tokens:,} output tokens, "
        f"{u.turns} model turns, ${u.usd:.4f}"
    )
    print(f"  repository: {repo}")
    print(f"  details: swarm status {snap.run_id}")


def launch(
    config: Path,
    repo: Path | None,
    run_id: str | None,
    json_events: bool,
    no_dashboard: bool,
    workdir: Path | None = None,
) -> LaunchResult:
    loaded = load_config(config)
    repo_path = resolve_repo(loaded, repo)
    check_repo_tools(repo_path, [a.tools for a in loaded.agents])
    check_credentials(loaded)
    rid = run_id or new_run_id(loaded.config.name)
    mode = display_mode(json_events, no_dashboard)
    return asyncio.run(_launch(loaded, repo_path, rid, mode, workdir or Path.cwd()))


def demo(workdir: Path, json_events: bool = False, no_dashboard: bool = False) -> LaunchResult:
    """The offline demo: a fresh copy of examples/calc, the scripted LLM server, 4 agents."""
    from swarm.llmstub import StubServer, load_script
    from swarm.paths import PROJECT_ROOT

    config = PROJECT_ROOT / "configs" / "demo.yaml"
    script = PROJECT_ROOT / "configs" / "demo.stub.yaml"
    loaded = load_config(config)
    run_id = new_run_id(loaded.config.name)
    run_dir = state_dir(workdir) / "demo" / run_id
    repo = run_dir / "calc"
    shutil.copytree(resolve_repo(loaded, None), repo)
    print(f"demo: working on a fresh copy of examples/calc at {repo}")
    with StubServer(load_script(script), record_path=run_dir / "stub-requests.jsonl") as stub:
        print(
            f"demo: scripted LLM server at {stub.base_url} (requests: {run_dir / 'stub-requests.jsonl'})"
        )
        os.environ["ANTHROPIC_BASE_URL"] = stub.base_url
        os.environ["ANTHROPIC_API_KEY"] = "stub-key-not-secret"
        mode = display_mode(json_events, no_dashboard)
        result = asyncio.run(_launch(loaded, repo, run_id, mode, workdir))
    print(f"demo: the fixed repository is {repo} (run `python3 -m unittest` there)")
    return result
