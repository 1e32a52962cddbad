"""The coordinator: prepares a run on the blackboard, hosts one Ray actor per agent,
supervises leases, deaths, budget and wall time, and decides how the run ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel

from swarm.agent import AgentLoop, BoardLocks, BoardState, SwarmInfo
from swarm.blackboard.board import TERMINAL, Blackboard
from swarm.blackboard.limits import RateLimiter, credential_id
from swarm.config import PROVIDERS, AgentInstance, LoadedConfig, ProviderConfig, split_model
from swarm.errors import BadInput
from swarm.providers.registry import DEFAULT_BASE_URL_ENV, make_provider, settings_for
from swarm.secrets import register_secret_names
from swarm.tools.base import Tool, ToolContext
from swarm.tools.bash import KILL_GRACE_S
from swarm.topology import neighbours

log = logging.getLogger("swarm.coordinator")

EXIT_OK, EXIT_TASK_FAILED, EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class AgentSpec(BaseModel):
    """Everything an actor needs to build its loop; JSON-serialisable."""

    redis_url: str
    run_id: str
    agent: AgentInstance
    swarm: dict[str, Any]
    providers: dict[str, dict[str, Any]]
    workspace: str
    output_dir: str


def agent_specs(
    loaded: LoadedConfig, redis_url: str, run_id: str, repo: Path, run_dir: Path
) -> list[AgentSpec]:
    cfg = loaded.config
    g = loaded.graph
    roles = sorted({a.role for a in loaded.agents})
    names = [a.name for a in loaded.agents]
    out = []
    for a in loaded.agents:
        info = SwarmInfo(
            name=cfg.name,
            goal=cfg.goal,
            neighbours=neighbours(g, a.name),
            roles=roles,
            agents=names,
            max_turns=cfg.budget.max_turns,
            max_usd=cfg.budget.max_usd,
            max_tokens=cfg.budget.max_tokens,
            lease_ms=int(cfg.lease_s * 1000),
            pricing={model: price.as_tuple() for model, price in cfg.pricing.items()},
        )
        out.append(
            AgentSpec(
                redis_url=redis_url,
                run_id=run_id,
                agent=a,
                swarm=info.__dict__,
                providers={k: v.model_dump() for k, v in cfg.providers.items()},
                workspace=str(repo),
                output_dir=str(run_dir / "outputs" / a.name),
            )
        )
    return out


def build_loop(
    spec: AgentSpec, board: Blackboard, repo_tools: dict[str, Tool] | None = None
) -> AgentLoop:
    """The agent's loop; ``repo_tools``: its command and MCP tools (``load_repo_tools``)."""
    from swarm.tools.builtin import BUILTIN_TOOLS
    from swarm.tools.sandbox import PermissionRules

    provider_name, _ = split_model(spec.agent.model)
    settings = settings_for(provider_name, spec.providers)
    register_secret_names(
        {settings_for(p, spec.providers).api_key_env for p in PROVIDERS}
    )  # before the loop reads the values it must redact
    provider = make_provider(settings)
    limits = ProviderConfig.model_validate(spec.providers.get(provider_name, {}))
    limiter = RateLimiter(
        board.r,
        credential_id(provider_name, os.environ.get(settings.api_key_env, ""), settings.base_url),
        limits.requests_per_minute,
        limits.tokens_per_minute,
        limits.rate_window_s,
    )
    tools: dict[str, Tool] = {n: BUILTIN_TOOLS[n] for n in spec.agent.tools if n in BUILTIN_TOOLS}
    tools.update(repo_tools or {})
    out_dir = Path(spec.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = ToolContext(
        workspace=Path(spec.workspace),
        agent=spec.agent.name,
        state=BoardState(board, spec.agent.name),
        locks=BoardLocks(board),
        output_dir=out_dir,
    )
    rules = PermissionRules.model_validate(spec.agent.permissions or {})
    return AgentLoop(
        board,
        spec.agent,
        SwarmInfo(**spec.swarm),
        provider,
        tools,
        ctx,
        permissions=rules,
        limiter=limiter,
    )


async def run_agent(spec: AgentSpec) -> str:
    """Host one agent's loop until the run has nothing left for it."""
    from swarm.tools.repo_tools import load_repo_tools

    board = Blackboard(spec.redis_url, spec.run_id)
    hub = None
    try:
        repo_tools, hub = await load_repo_tools(
            Path(spec.workspace), spec.agent.role, spec.agent.tools
        )
        loop = build_loop(spec, board, repo_tools)
        try:
            await loop.run()
        finally:
            await loop.provider.aclose()
    finally:
        if hub is not None:
            await hub.aclose()  # no MCP server outlives the loop
        await board.close()
    return "done"


class AgentActor:
    """The Ray actor that hosts one agent loop (restarted by Ray if its process dies)."""

    def __init__(self, spec_json: str):
        self.spec = AgentSpec.model_validate_json(spec_json)

    async def run(self) -> str:
        return await run_agent(self.spec)

    def pid(self) -> int:
        return os.getpid()


async def prepare_run(board: Blackboard, loaded: LoadedConfig, repo: Path) -> None:
    cfg = loaded.config
    await board.init_run(
        meta={
            "name": cfg.name,
            "goal": cfg.goal,
            "repo": str(repo),
            "config_path": str(loaded.path),
            "config": cfg.model_dump_json(),
            "topology": loaded.topology_kind,
            "edges": json.dumps(loaded.topology_edges),
            "phases": json.dumps([p.name for p in cfg.phases]),
            "loaded": loaded.model_dump_json(),
        },
        agents=[{"name": a.name, "role": a.role, "model": a.model} for a in loaded.agents],
    )
    for phase, task in loaded.tasks:
        await board.create_task(
            {
                "id": task.id,
                "title": task.title,
                "description": task.description,
                "phase": phase,
                "role": task.role or "",
                "agent": task.agent or "",
                "max_attempts": task.max_attempts,
                "max_turns": task.max_turns or 0,
                "created_by": "config",
            },
            needs=task.needs,
        )


def start_ray() -> None:
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    if address not in (None, "auto", "local"):
        _check_ray_address(str(address))
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        configure_logging=True,
    )
    if address is None:
        kwargs.update(num_cpus=max(os.cpu_count() or 2, 2), object_store_memory=80 * 1024**2)
    try:
        ray.init(address=address, **kwargs)
    except Exception as exc:
        where = f"join Ray at RAY_ADDRESS={address}" if address else "start a local Ray"
        raise BadInput(f"could not {where}: {exc}") from None


def _check_ray_address(address: str) -> None:
    """Fail fast with a clear message instead of ray.init waiting on an address where
    nothing listens."""
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise BadInput(f"RAY_ADDRESS: expected host:port (or ray://host:port), got {address!r}")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise BadInput(f"RAY_ADDRESS: nothing answers at {host}:{port} ({exc})") from None


def actor_env(spec: AgentSpec) -> dict[str, str]:
    """The variables an agent's provider needs, for actors on other machines of a joined
    cluster (their processes do not inherit this one's environment)."""
    provider, _ = split_model(spec.agent.model)
    settings = settings_for(provider, spec.providers)
    names = [settings.api_key_env, DEFAULT_BASE_URL_ENV[provider]]
    return {n: os.environ[n] for n in names if n in os.environ}


class Coordinator:
    def __init__(
        self,
        board: Blackboard,
        specs: list[AgentSpec],
        max_wall_s: float | None,
        max_restarts: int = 3,
    ):
        self.board = board
        self.specs = specs
        self.max_wall_s = max_wall_s
        self.max_restarts = max_restarts
        self.actors: dict[str, Any] = {}
        self.refs: dict[str, Any] = {}  # each actor's run() call, to cancel it on stop

    def spawn(self) -> None:
        import ray

        start_ray()
        remote_cls = ray.remote(AgentActor)
        joined = bool(os.environ.get("RAY_ADDRESS"))
        for spec in self.specs:
            options: dict[str, Any] = dict(
                name=f"swarm-{spec.run_id}-{spec.agent.name}",
                num_cpus=0,
                max_restarts=self.max_restarts,
                max_task_retries=self.max_restarts,
            )
            if joined:
                options["runtime_env"] = {"env_vars": actor_env(spec)}
            self.actors[spec.agent.name] = remote_cls.options(**options).remote(  # type: ignore[attr-defined]
                spec.model_dump_json()
            )

    async def supervise(self) -> str:
        """Run until every task is completed or failed. Returns the run's final state."""
        try:
            self.spawn()
        except Exception as exc:
            await self.board.set_state("failed", f"could not start the agents: {exc}")
            await self._stop({})
            raise
        # SIGTERM (a cancelled CI job, `kill`) stops the run like Ctrl-C. Installed after
        # Ray starts, since ray.init puts its own (aborting) handler in place.
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        if me is not None:
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
        started = time.monotonic()
        runs = {
            name: asyncio.ensure_future(self._await_actor(name, a))
            for name, a in self.actors.items()
        }
        state = "interrupted"  # unless the loop below ends normally
        recorded = False  # whether the final state is already stored
        try:
            while True:
                last = await self.board.last_event_id()
                await self.board.requeue_expired()
                meta_state = (await self.board.meta()).get("state", "running")
                if meta_state != "running":  # budget spent (an agent), or `swarm stop`
                    state, recorded = meta_state, True
                    break
                tasks = await self.board.tasks()
                if all(t.status in TERMINAL for t in tasks):
                    state = "failed" if any(t.status == "failed" for t in tasks) else "completed"
                    break
                if self.max_wall_s is not None and time.monotonic() - started > self.max_wall_s:
                    state = "timeout"
                    break
                if await self._fail_orphans(tasks, {n for n, r in runs.items() if not r.done()}):
                    continue
                await self.board.wait_events(last, block_ms=1000)
        finally:
            if not recorded:
                reason = {
                    "timeout": f"max_wall_s ({self.max_wall_s}s) exhausted",
                    "interrupted": "interrupted; swarm resume RUN continues",
                }.get(state, "")
                await self.board.set_state(state, reason)
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGTERM)
            await self._stop(runs)
        return state

    async def _fail_orphans(self, tasks: list[Any], live: set[str]) -> bool:
        """Fail the unfinished tasks that no live agent may take (their agent, or every
        agent of their role, has died): otherwise the run would wait for them forever."""
        failed = False
        for t in tasks:
            if t.status in TERMINAL:
                continue
            takers = (
                [t.agent]
                if t.agent
                else [s.agent.name for s in self.specs if s.agent.role == t.role]
            )
            if not live.intersection(takers):
                who = ", ".join(takers) or f"no agent has role {t.role!r}"
                failed |= await self.board.fail(t.id, "", f"no live agent can take it ({who})")
        return failed

    async def _await_actor(self, name: str, actor: Any) -> None:
        ref = actor.run.remote()
        self.refs[name] = ref
        try:
            await ref
        except Exception as exc:  # restarts exhausted, or the loop raised
            await self.board.update_agent(
                name, event="agent_dead", data={"error": str(exc)[:500]}, status="dead"
            )
            await self.board.r.hdel(self.board.k.budget, name)  # its reservation, if any

    async def _stop(self, runs: Mapping[str, asyncio.Future[None]]) -> None:
        """End every agent: cancel its loop first (so a running tool kills its process
        group and nothing outlives the run), then kill the actors."""
        import ray

        # agents leave on their own once the run is over (within a wake-up): give them a
        # moment, then cancel the ones still busy (a long command, a slow model call)
        if runs:
            await asyncio.wait(list(runs.values()), timeout=3)
        busy = [name for name, fut in runs.items() if not fut.done()]
        for name in busy:
            with contextlib.suppress(Exception):
                ray.cancel(self.refs[name])
        if busy:
            _, pending = await asyncio.wait([runs[n] for n in busy], timeout=KILL_GRACE_S + 3)
            for fut in pending:
                fut.cancel()
        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        for name in busy:
            await self.board.update_agent(
                name, event="agent_status", data={"status": "stopped"}, status="stopped"
            )


def exit_code_for(state: str) -> int:
    return {
        "completed": EXIT_OK,
        "failed": EXIT_TASK_FAILED,
        "budget": EXIT_BUDGET,
        "timeout": EXIT_BUDGET,
        "interrupted": EXIT_INTERRUPTED,
    }.get(state, EXIT_TASK_FAILED)
