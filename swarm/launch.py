"""`swarm launch` / `swarm ci` / `swarm resume` / `swarm demo`: from a config file (or a
stored run) to a finished run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import open_redis, state_dir
from swarm.config import Overrides, load_config
from swarm.coordinator import Coordinator, exit_code_for
from swarm.dashboard import follow
from swarm.errors import BadInput
from swarm.hosting import agent_specs, agents_per_actor
from swarm.leftovers import kill_run_processes
from swarm.liveness import coordinator_liveness
from swarm.plan import RunPlan, load_plan, make_plan, save_plan, start_workspace, store_plan
from swarm.status import snapshot


@dataclass
class LaunchResult:
    run_id: str
    state: str
    exit_code: int
    repo: Path
    branch: str = ""


def new_run_id(name: str) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def display_mode(json_events: bool, no_dashboard: bool) -> str:
    if json_events:
        return "json"
    # the interactive dashboard reads keys on stdin and draws on stderr (Textual's
    # terminal): all three must be one
    if no_dashboard or not all(f.isatty() for f in (sys.stdin, sys.stdout, sys.stderr)):
        return "plain"
    return "live"


async def _launch(
    plan: RunPlan, mode: str, workdir: Path, include_dirty: bool, apply: bool = False
) -> LaunchResult:
    handle = open_redis(state_dir(workdir), check_settings=True)
    board = Blackboard(handle.url, plan.run_id, plan.loaded.config.reliability.redis_outage_s)
    try:
        if await board.exists():
            raise BadInput(f"--run-id: run {plan.run_id!r} already exists; pick another id")
        start_workspace(plan, include_dirty)
        await store_plan(board, plan)
        result = await _supervise(board, handle.url, plan, mode, workdir)
    finally:
        await board.close()
        handle.close()
    if apply and result.exit_code == 0 and result.branch:
        from swarm.results import apply_run

        print(apply_run(plan.repo, plan.workspace.run_branch))
    return result


async def _supervise(
    board: Blackboard,
    redis_url: str,
    plan: RunPlan,
    mode: str,
    workdir: Path,
    takeover: bool = False,
) -> LaunchResult:
    run_dir = state_dir(workdir) / "runs" / board.run_id
    cfg = plan.loaded.config
    specs = agent_specs(plan, redis_url, run_dir)
    coordinator = Coordinator(
        board,
        specs,
        cfg.budget.max_wall_s,
        workspace=plan.workspace,
        lease_ms=int(cfg.lease_s * 1000),
        reliability=cfg.reliability,
        max_task_wall_s=cfg.budget.max_task_wall_s,
        takeover=takeover,
        agents_per_actor=agents_per_actor(cfg.hosting.agents_per_actor, len(specs)),
    )
    stop = asyncio.Event()

    def detach() -> None:
        coordinator.detached = True
        # a closed terminal must not end the detached run: SIGHUP before the coordinator
        # installs its handler (Ray still starting) is ignored as well
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def interrupt() -> None:  # Ctrl-C in the dashboard: what Ctrl-C does without one
        os.kill(os.getpid(), signal.SIGINT)

    view = asyncio.create_task(follow(board, mode, stop, on_detach=detach, on_interrupt=interrupt))
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
        with contextlib.suppress(OSError):  # a closed pipe or terminal: the run is stored
            await print_summary(board, plan)
    return LaunchResult(
        board.run_id, state, exit_code_for(state), plan.repo, plan.workspace.run_branch
    )


async def _resume(
    run_id: str, mode: str, workdir: Path, budget: dict[str, float], retry_failed: bool = False
) -> LaunchResult:
    handle = open_redis(state_dir(workdir), check_settings=True)
    board = Blackboard(handle.url, run_id)
    try:
        if not await board.exists():
            raise BadInput(f"RUN: no run {run_id!r} in this directory's .swarm/")
        meta = await board.meta()
        if meta.get("state") == "completed":
            raise BadInput(f"RUN: run {run_id!r} already completed; nothing to resume")
        takeover = await _check_takeover(board, meta)
        plan = await load_plan(board)
        if budget:
            cfg = plan.loaded.config
            cfg.budget = cfg.budget.model_copy(update=budget)
            await save_plan(board, plan)
        if not plan.repo.is_dir():
            raise BadInput(f"RUN: the run's repository {plan.repo} no longer exists")
        killed = await asyncio.to_thread(kill_run_processes, run_id)
        if killed:
            print(f"resume: killed {killed} command process(es) the run left behind")
        if retry_failed:
            n = await board.retry_failed()
            print(f"resume: {n} failed task(s) get a new attempt")
        await board.resume_run(lease_ms=int(plan.loaded.config.lease_s * 1000) * 4)
        if takeover:
            await board.emit("run_taken_over", data={"pid": os.getpid()})
        return await _supervise(board, handle.url, plan, mode, workdir, takeover=takeover)
    finally:
        await board.close()
        handle.close()


async def _check_takeover(board: Blackboard, meta: dict[str, str]) -> bool:
    """A run still marked running can be taken over when its coordinator is known dead
    (on this machine) or its lease lapsed; otherwise resume refuses, saying when it can."""
    if meta.get("state") != "running":
        return False
    live = await coordinator_liveness(board)
    if live.state != "alive":
        print(f"resume: taking run {board.run_id} over: {live.describe()}")
        return True
    raise BadInput(
        f"RUN: run {board.run_id!r} is running: {live.describe()}. `swarm resume` can take "
        f"it over once that lease lapses (in {live.ttl_ms / 1000:.0f} s, if its coordinator "
        "is dead), or stop it with `swarm stop`"
    )


def run_exists(run_id: str, workdir: Path) -> bool:
    """Whether this directory's .swarm/ holds the run (e.g. restored by a CI re-run)."""
    folder = state_dir(workdir)
    if not os.environ.get("REDIS_URL") and not folder.is_dir():
        return False

    async def check() -> bool:
        handle = open_redis(folder)
        board = Blackboard(handle.url, run_id)
        try:
            return await board.exists()
        finally:
            await board.close()
            handle.close()

    return asyncio.run(check())


def resume(
    run_id: str,
    json_events: bool,
    no_dashboard: bool,
    budget: dict[str, float],
    workdir: Path | None = None,
    retry_failed: bool = False,
) -> LaunchResult:
    mode = display_mode(json_events, no_dashboard)
    return asyncio.run(_resume(run_id, mode, workdir or Path.cwd(), budget, retry_failed))


async def print_summary(board: Blackboard, plan: RunPlan) -> None:
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
    print(f"  repository: {plan.repo}")
    ws = plan.workspace
    if ws.mode == "worktree":
        merged = sum(1 for t in snap.tasks if t.merge_commit)
        print(f"  branch: {ws.run_branch} ({merged} merged task(s); your checkout is unchanged)")
        print(f"  review: swarm diff {snap.run_id}    bring it in: swarm apply {snap.run_id}")
    print(f"  details: swarm status {snap.run_id}")


def launch(
    config: Path,
    repo: Path | None,
    run_id: str | None,
    json_events: bool,
    no_dashboard: bool,
    workdir: Path | None = None,
    include_dirty: bool = False,
    apply: bool = False,
    overrides: Overrides | None = None,
) -> LaunchResult:
    workdir = workdir or Path.cwd()
    loaded = load_config(config, overrides=overrides)
    rid = run_id or new_run_id(loaded.config.name)
    plan = make_plan(config, repo, rid, state_dir(workdir), include_dirty, loaded)
    mode = display_mode(json_events, no_dashboard)
    return asyncio.run(_launch(plan, mode, workdir, include_dirty, apply))


def demo(workdir: Path, json_events: bool = False, no_dashboard: bool = False) -> LaunchResult:
    """The offline demo: a git copy of examples/calc, the scripted LLM server, 4 agents
    working in worktrees; their merged work is applied to the copy at the end."""
    from swarm.llmstub import StubServer, load_script
    from swarm.paths import shipped

    config = shipped("configs", "demo.yaml")
    script = shipped("configs", "demo.stub.yaml")
    loaded = load_config(config)
    run_id = new_run_id(loaded.config.name)
    run_dir = state_dir(workdir) / "demo" / run_id
    repo = run_dir / "calc"
    # the copy shipped in the package (hidden files too); never a byte-code cache of it
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(shipped("examples", "calc"), repo, ignore=ignore)
    _git_init(repo)
    print(f"demo: working on a fresh git copy of examples/calc at {repo}")
    with StubServer(load_script(script), record_path=run_dir / "stub-requests.jsonl") as stub:
        print(
            f"demo: scripted LLM server at {stub.base_url} (requests: {run_dir / 'stub-requests.jsonl'})"
        )
        os.environ["ANTHROPIC_BASE_URL"] = stub.base_url
        os.environ["ANTHROPIC_API_KEY"] = "stub-key-not-secret"
        plan = make_plan(config, repo, run_id, state_dir(workdir), loaded=loaded)
        mode = display_mode(json_events, no_dashboard)
        result = asyncio.run(_launch(plan, mode, workdir, include_dirty=False))
    if result.exit_code == 0 and result.branch:
        from swarm.results import apply_run

        print(
            f"demo: the agents' work is on branch {result.branch}; see it with `swarm diff {run_id}`"
        )
        print("demo: " + apply_run(repo, result.branch))
    print(f"demo: the fixed repository is {repo} (run `python3 -m unittest` there)")
    return result


def _git_init(repo: Path) -> None:
    from swarm.workspace.git import Git

    git = Git(repo)
    git.run("init", "--quiet", "--initial-branch=main")
    git.run("add", "-A")
    git.run("commit", "--quiet", "-m", "examples/calc as shipped")
