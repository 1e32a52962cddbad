"""`swarm run`: one agent, in-process (no Ray), on the same agent loop, tools and
blackboard as a swarm. A new session is a run made from a generated one-agent, one-task
config through the same config and plan path as `swarm launch`; continuing a session (a
`swarm run` one or any task of a swarm) appends the new prompt to its stored
conversation, re-opens its task for its agent and works it again."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from swarm.agent import AgentLoop
from swarm.blackboard import lua
from swarm.blackboard.board import TERMINAL, Blackboard
from swarm.blackboard.connection import open_redis, state_dir
from swarm.config import AgentInstance, load_config, split_model
from swarm.context import Conversation, build_view
from swarm.coordinator import EXIT_BUDGET, EXIT_INTERRUPTED, EXIT_OK, EXIT_TASK_FAILED
from swarm.errors import BadInput
from swarm.hosting import AgentSpec, _key_of, agent_specs, build_loop
from swarm.launch import new_run_id
from swarm.liveness import coordinator_holder
from swarm.output import SessionPrinter
from swarm.plan import RunPlan, check_credentials, load_plan, make_plan, save_plan, store_plan
from swarm.providers.base import TEXT_SINK
from swarm.providers.types import Message
from swarm.roles import load_roles
from swarm.sessions import (
    KIND_RUN,
    RUN_TASK,
    last_for_repo,
    remember_last,
    resolve,
    session_id,
)
from swarm.workspace.worktrees import WorkspaceSettings

#: the model of a new session when --model is not given (the configs' default model)
DEFAULT_MODEL = "anthropic/claude-sonnet-5-5"
DEFAULT_ROLE = "developer"
AGENT_NAME = "agent"
GOAL = "Help the person at the keyboard with this repository: do what each message asks."

# A stored task claimed again by one agent, for a person continuing its session: a fresh
# fencing token (an old holder can never write again), its turns counted from here.
# ARGV: prefix, task, agent, lease_ms, turn_base -> token, or nil if it is being worked
REOPEN = (
    lua.COMMON
    + r"""
local k = p .. ':task:' .. ARGV[2]
local v = redis.call('HMGET', k, 'status', 'lease_until')
if v[1] == false then return nil end
if (v[1] == 'claimed' or v[1] == 'merging') and tonumber(v[2] or '0') > now_ms() then
  return nil
end
local token = redis.call('HINCRBY', k, 'fence', 1)
redis.call('HINCRBY', k, 'attempts', 1)
redis.call('HSET', k, 'status', 'claimed', 'assignee', ARGV[3], 'error', '',
  'lease_until', now_ms() + tonumber(ARGV[4]), 'claimed_at', now_ms(), 'turn_base', ARGV[5])
redis.call('HDEL', k, 'finished_at', 'rework', 'retry')
emit('task_claimed', ARGV[2], ARGV[3], cjson.encode({token = token, continued = true}))
return tostring(token)
"""
)


@dataclass
class RunOptions:
    prompt: str
    model: str | None = None
    repo: Path | None = None
    session: str | None = None
    continue_last: bool = False
    fmt: str = "text"  # text | json
    max_usd: float | None = None
    max_turns: int | None = None
    workdir: Path | None = None


@dataclass
class RunOutcome:
    session: str
    state: str
    exit_code: int


def generated_config(opts: RunOptions, repo: Path) -> dict[str, Any]:
    """The one-agent, one-task config of a new `swarm run` session."""
    prompt = opts.prompt.strip()
    first = prompt.splitlines()[0] if prompt else ""
    title = first if len(first) <= 72 else first[:71] + "…"
    budget: dict[str, Any] = {}
    if opts.max_usd is not None:
        budget["max_usd"] = opts.max_usd
    if opts.max_turns is not None:
        budget["max_turns"] = opts.max_turns
    task: dict[str, Any] = {"id": RUN_TASK, "title": title, "agent": AGENT_NAME, "max_attempts": 1}
    if prompt != title:
        task["description"] = prompt
    return {
        "name": "run",
        "goal": GOAL,
        "repo": str(repo),
        "model": opts.model or DEFAULT_MODEL,
        # one agent at a person's keyboard edits the checkout in place (no worktree, no
        # merge queue: there is nothing to merge with)
        "workspace": "shared",
        "budget": budget,
        "agents": [{"name": AGENT_NAME, "role": DEFAULT_ROLE}],
        "phases": [{"name": "run", "tasks": [task]}],
    }


def _repo(opts: RunOptions) -> Path:
    repo = (opts.repo or Path.cwd()).resolve()
    if not repo.is_dir():
        raise BadInput(f"--repo: {repo} is not a directory")
    return repo


def new_plan(opts: RunOptions, workdir: Path) -> RunPlan:
    """Write the generated config into the run's folder and make the plan from it, as
    launch does (role cards: the repository's agents/ over the shipped ones)."""
    if not opts.prompt.strip():
        raise BadInput("PROMPT: empty; say what the agent should do")
    if opts.model is not None:
        try:
            split_model(opts.model)
        except ValueError as exc:
            raise BadInput(f"--model: {exc}") from None
    repo = _repo(opts)
    run_id = new_run_id("run")
    folder = state_dir(workdir) / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "swarm.yaml"
    path.write_text(yaml.safe_dump(generated_config(opts, repo), sort_keys=False))
    loaded = load_config(path, roles=load_roles(repo / "configs"))
    return make_plan(path, repo, run_id, state_dir(workdir), loaded=loaded)


def run(opts: RunOptions) -> RunOutcome:
    workdir = (opts.workdir or Path.cwd()).resolve()
    if opts.fmt not in ("text", "json"):
        raise BadInput(f"--format: {opts.fmt!r} is not one of text, json")
    if opts.session and opts.continue_last:
        raise BadInput("--continue and --session: give one of them")
    plan = None if (opts.session or opts.continue_last) else new_plan(opts, workdir)
    return asyncio.run(_run(opts, workdir, plan))


async def _run(opts: RunOptions, workdir: Path, plan: RunPlan | None) -> RunOutcome:
    handle = open_redis(state_dir(workdir), check_settings=plan is not None)
    board: Blackboard | None = None
    try:
        if plan is not None:
            board = Blackboard(handle.url, plan.run_id)
            await store_plan(board, plan)
            await board.r.hset(board.k.meta, "kind", KIND_RUN)
            spec = _spec(plan, handle.url, workdir, plan.loaded.agents[0], plan.repo)
            claim = await board.claim(spec.agent.name, spec.agent.role, _lease_ms(plan))
            if claim is None:  # just created, ready, for this agent: cannot happen
                raise BadInput(f"run {plan.run_id}: its task could not be claimed")
            await remember_last(board.r, str(plan.repo), session_id(plan.run_id, RUN_TASK))
            return await _host(board, spec, plan, RUN_TASK, claim.token, opts, 0)
        run_id, task_id = await _which(handle.url, opts)
        board = Blackboard(handle.url, run_id)
        return await _continue(board, handle.url, workdir, task_id, opts)
    finally:
        if board is not None:
            await board.close()
        handle.close()


async def _which(url: str, opts: RunOptions) -> tuple[str, str]:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        value = opts.session
        if value is None:
            repo = _repo(opts)
            value = await last_for_repo(r, str(repo))
            if value is None:
                raise BadInput(
                    f"--continue: no `swarm run` session on {repo} yet; start one with "
                    'swarm run "PROMPT"'
                )
        return await resolve(r, value)
    finally:
        await r.aclose()


def _lease_ms(plan: RunPlan) -> int:
    return int(plan.loaded.config.lease_s * 1000)


def _spec(plan: RunPlan, url: str, workdir: Path, agent: AgentInstance, repo: Path) -> AgentSpec:
    """The agent's spec as a swarm builds it, working in place in ``repo``."""
    run_dir = state_dir(workdir) / "runs" / plan.run_id
    (spec,) = [s for s in agent_specs(plan, url, run_dir) if s.agent.name == agent.name]
    spec.agent = agent
    spec.api_key = _key_of(agent.model, plan.loaded.config.providers)
    spec.workspace = WorkspaceSettings(mode="shared", repo=str(repo))
    spec.swarm["workspace"] = "shared"
    return spec


def _agent_for(plan: RunPlan, task: Any, model: str | None) -> AgentInstance:
    agents = plan.loaded.agents
    by_name = {a.name: a for a in agents}
    agent = by_name.get(task.assignee) or by_name.get(task.agent)
    if agent is None:
        agent = next((a for a in agents if a.role == task.role), None)
    if agent is None:
        raise BadInput(f"SESSION: no agent of run {plan.run_id} can take task {task.id}")
    if model is not None:
        try:
            split_model(model)
        except ValueError as exc:
            raise BadInput(f"--model: {exc}") from None
        agent = agent.model_copy(update={"model": model})
    return agent


async def _continue(
    board: Blackboard, url: str, workdir: Path, task_id: str, opts: RunOptions
) -> RunOutcome:
    sid = session_id(board.run_id, task_id)
    if not opts.prompt.strip():
        raise BadInput("PROMPT: empty; say how the session should go on")
    plan = await load_plan(board)
    task = await board.task(task_id)
    if task is None:
        raise BadInput(f"SESSION: run {board.run_id!r} has no task {task_id!r}")
    agent = _agent_for(plan, task, opts.model)
    raise_budget = {k: v for k in ("max_usd", "max_turns") if (v := getattr(opts, k)) is not None}
    if raise_budget:  # as `swarm resume --max-usd`: the run's budget, stored with it
        cfg = plan.loaded.config
        cfg.budget = cfg.budget.model_copy(update=raise_budget)
        await save_plan(board, plan)
    loaded = plan.loaded.model_copy(update={"agents": [agent]})
    check_credentials(loaded)
    repo = _repo(opts) if opts.repo is not None else plan.repo
    if not repo.is_dir():
        raise BadInput(f"SESSION: its repository {repo} no longer exists; pass --repo DIR")
    stored = [Message.model_validate(m) for m in await board.session(task_id)]
    turns = Conversation(
        build_view(stored, task.ctx_start, task.ctx_pruned, task.ctx_turns),
        turns_before=task.ctx_turns,
    ).turns
    holder = coordinator_holder()
    if not await board.hold_coordinator(holder, _lease_ms(plan)):
        raise BadInput(f"SESSION: run {board.run_id} is running; stop it first or wait")
    try:
        reopen = board.r.register_script(REOPEN)
        token = await reopen(args=[board.k.prefix, task_id, agent.name, _lease_ms(plan), turns])
        if token is None:
            raise BadInput(
                f"SESSION: task {task_id} of run {board.run_id} is being worked (or its process "
                f"died less than lease_s ({plan.loaded.config.lease_s:g} s) ago: try again then)"
            )
        await _set_running(board)
        res = await board.record_turn(
            agent.name,
            task_id,
            [Message.user_text(opts.prompt.strip()).model_dump()],
            token=str(token),
            expected=len(stored),
            events=[("session_continued", {"by": "swarm run"})],
        )
        stored_code = res[0] if isinstance(res, tuple) else res  # (code, peeked) on newer boards
        if stored_code <= 0:
            raise BadInput(f"SESSION: {sid} changed while it was being continued; try again")
        if (await board.meta()).get("kind") == KIND_RUN:
            await remember_last(board.r, str(repo), sid)
        spec = _spec(plan, url, workdir, agent, repo)
        return await _host(
            board, spec, plan, task_id, str(token), opts, len(stored) + 1, holder=holder
        )
    finally:
        await board.drop_coordinator(holder["token"])


async def _set_running(board: Blackboard) -> None:
    pipe = board.r.pipeline(transaction=True)
    pipe.hset(board.k.meta, mapping={"state": "running", "reason": ""})
    pipe.hdel(board.k.meta, "finished")
    await pipe.execute()


async def _host(
    board: Blackboard,
    spec: AgentSpec,
    plan: RunPlan,
    task_id: str,
    token: str,
    opts: RunOptions,
    start: int,
    holder: dict[str, Any] | None = None,
) -> RunOutcome:
    """Host the agent's loop in this process for the one task, with the session printed
    as it is stored; then the run's state and the exit code."""
    from swarm.tools.repo_tools import load_repo_tools

    sid = session_id(board.run_id, task_id)
    if holder is None:
        holder = coordinator_holder()
        await board.hold_coordinator(holder, _lease_ms(plan))
    printer = SessionPrinter(board, task_id, opts.fmt, start)
    TEXT_SINK.set(printer.live_text)  # the model's text, as the stream delivers it
    printer.header(sid, spec.agent.model, Path(spec.workspace.repo), continued=start > 0)
    hub = None
    loop: AgentLoop | None = None
    interrupted = False
    me = asyncio.current_task()
    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if me is not None:
            aloop.add_signal_handler(sig, me.cancel)
    renew = asyncio.create_task(_renew(board, holder, _lease_ms(plan)))
    follow = asyncio.create_task(printer.follow())
    try:
        repo_tools, hub = await load_repo_tools(
            Path(spec.workspace.repo), spec.agent.role, spec.agent.tools
        )
        loop = build_loop(spec, board, repo_tools, hub)
        await loop.work_claimed(task_id, token)
        await loop.set_status("done", waiting_for="")
    except asyncio.CancelledError:
        interrupted = True
        current = asyncio.current_task()
        if current is not None:
            current.uncancel()
    except BaseException as exc:  # e.g. an MCP server that does not start: nothing is kept
        follow.cancel()
        renew.cancel()
        reason = f"could not start the agent: {type(exc).__name__}: {exc}"[:300]
        with contextlib.suppress(Exception):
            await board.release(task_id, spec.agent.name, reason, token)
            await board.set_state("interrupted", reason)
            await board.drop_coordinator(holder["token"])
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(Exception):
                aloop.remove_signal_handler(sig)
        renew.cancel()
        if loop is not None:
            with contextlib.suppress(Exception):
                await loop.provider.aclose()
        if hub is not None:
            await hub.aclose()
    if interrupted:
        await board.release(task_id, spec.agent.name, "interrupted", token)
        await board.request_stop("interrupted; swarm run --session continues")
    state = await _final_state(board, task_id)
    await printer.stop(follow)
    task = await board.task(task_id)
    status = task.status if task is not None else ""
    code = {"completed": EXIT_OK, "failed": EXIT_TASK_FAILED}.get(status)
    if code is None:
        code = EXIT_BUDGET if state in ("budget", "timeout") else EXIT_INTERRUPTED
    meta = await board.meta()
    await printer.footer(sid, state, code, meta.get("reason", ""), task)
    await board.drop_coordinator(holder["token"])
    return RunOutcome(sid, state, code)


async def _renew(board: Blackboard, holder: dict[str, Any], ttl_ms: int) -> None:
    while True:
        await asyncio.sleep(ttl_ms / 3000)
        with contextlib.suppress(Exception):
            await board.hold_coordinator(holder, ttl_ms)


async def _final_state(board: Blackboard, task_id: str) -> str:
    """The run's state after the session's turn: what stopped it (budget, interrupt), or
    from its tasks; a swarm's run with other tasks left stays resumable."""
    meta = await board.meta()
    if meta.get("state", "running") != "running":
        return meta["state"]
    tasks = await board.tasks()
    if all(t.status in TERMINAL for t in tasks):
        state = "failed" if any(t.status == "failed" for t in tasks) else "completed"
        await board.set_state(state)
        return state
    mine = next((t for t in tasks if t.id == task_id), None)
    reason = (
        f"task {task_id} handed back: {mine.error or 'see swarm status'}"
        if mine is not None and mine.status not in TERMINAL
        else "other tasks remain; swarm resume RUN continues them"
    )
    await board.set_state("interrupted", reason)
    return "interrupted"
