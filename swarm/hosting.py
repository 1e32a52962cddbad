"""Hosting agents: the spec an actor is built from, the agent loop it runs, the Ray actor
that hosts it, and starting (or joining) Ray."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import BaseModel, Field

from swarm.agent import AgentLoop, BoardLocks, BoardState, SwarmInfo
from swarm.blackboard.board import Blackboard
from swarm.blackboard.limits import RateLimiter, credential_id
from swarm.config import PROVIDERS, AgentInstance, ProviderConfig, split_model
from swarm.credentials import stored_secrets
from swarm.errors import BadInput
from swarm.leftovers import RUN_ENV
from swarm.plan import RunPlan
from swarm.providers.registry import DEFAULT_BASE_URL_ENV, make_provider, settings_for
from swarm.secrets import (
    credentials_hidden,
    register_secret_names,
    register_secret_values,
    secret_values,
)
from swarm.tools.base import Tool, ToolContext
from swarm.topology import neighbours
from swarm.workspace.tasks import TaskWorkspaces
from swarm.workspace.worktrees import WorkspaceSettings


class AgentSpec(BaseModel):
    """Everything an actor needs to build its loop; JSON-serialisable."""

    redis_url: str = Field(repr=False)  # the embedded server's carries its password
    run_id: str
    agent: AgentInstance
    swarm: dict[str, Any]
    providers: dict[str, dict[str, Any]]
    workspace: WorkspaceSettings
    output_dir: str
    redis_outage_s: float = 120.0
    # the agent's provider key, passed in memory: agent processes never hold it in their
    # environment (where any process of the user could read it from /proc)
    api_key: str = Field(default="", repr=False)
    # every credential value of the run, for redaction only: a command may print another
    # agent's key (the user's shell has them all), and it must not reach the model
    redact: list[str] = Field(default_factory=list, repr=False)
    pass_env: list[str] = []  # the config's commands.pass_env


def agent_specs(plan: RunPlan, redis_url: str, run_dir: Path) -> list[AgentSpec]:
    loaded = plan.loaded
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
            workspace=plan.workspace.mode,
            no_progress_turns=cfg.reliability.no_progress_turns,
            credential_env=settings_for(
                split_model(a.model)[0], {k: v.model_dump() for k, v in cfg.providers.items()}
            ).api_key_env,
            pricing={model: price.as_tuple() for model, price in cfg.pricing.items()},
            prune_at=cfg.context.prune_at,
            compact_at=cfg.context.compact_at,
            keep_turns=cfg.context.keep_turns,
            max_turn_tool_chars=cfg.context.max_turn_tool_chars,
            approval_timeout_s=cfg.approvals.timeout_s,
        )
        out.append(
            AgentSpec(
                redis_url=redis_url,
                run_id=plan.run_id,
                agent=a,
                swarm=info.__dict__,
                providers={k: v.model_dump() for k, v in cfg.providers.items()},
                workspace=plan.workspace,
                output_dir=str(run_dir / "outputs" / a.name),
                redis_outage_s=cfg.reliability.redis_outage_s,
                pass_env=list(cfg.commands.pass_env),
                api_key=_key_of(a.model, cfg.providers),
                redact=[*secret_values(), *stored_secrets()],
            )
        )
    return out


def _key_of(model: str, providers: dict[str, ProviderConfig]) -> str:
    settings = settings_for(
        split_model(model)[0], {k: v.model_dump() for k, v in providers.items()}
    )
    env = settings.env_key()
    if env:
        return env
    cred = settings.key_source().credential  # a stored API key travels in memory too;
    if cred is not None and cred.kind == "api_key" and cred.key:  # a token login's agent
        return cred.key  # reads the store itself (it must renew the token)
    return ""


def build_loop(
    spec: AgentSpec, board: Blackboard, repo_tools: dict[str, Tool] | None = None, hub: Any = None
) -> AgentLoop:
    """The agent's loop; ``repo_tools``: its command and MCP tools (``load_repo_tools``)."""
    from swarm.tools.builtin import BUILTIN_TOOLS
    from swarm.tools.sandbox import PermissionRules

    provider_name, _ = split_model(spec.agent.model)
    settings = settings_for(provider_name, spec.providers)
    register_secret_names(
        {settings_for(p, spec.providers).api_key_env for p in PROVIDERS}
    )  # before the loop reads the values it must redact
    register_secret_values([spec.api_key, *spec.redact])
    provider = make_provider(settings, spec.api_key or None)
    limits = ProviderConfig.model_validate(spec.providers.get(provider_name, {}))
    limiter = RateLimiter(
        board.r,
        credential_id(
            provider_name,
            spec.api_key or os.environ.get(settings.api_key_env, ""),
            settings.base_url,
        ),
        limits.requests_per_minute,
        limits.tokens_per_minute,
        limits.rate_window_s,
    )
    tools: dict[str, Tool] = {n: BUILTIN_TOOLS[n] for n in spec.agent.tools if n in BUILTIN_TOOLS}
    tools.update(repo_tools or {})
    out_dir = Path(spec.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = ToolContext(
        workspace=Path(spec.workspace.repo),  # a worktree run moves it to each task's worktree
        agent=spec.agent.name,
        state=BoardState(board, spec.agent.name),
        locks=BoardLocks(board),
        output_dir=out_dir,
        env={RUN_ENV: spec.run_id},  # how a resumed run finds commands left behind
        pass_env=frozenset(spec.pass_env),
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
        workspaces=(
            TaskWorkspaces(board, spec.workspace) if spec.workspace.mode == "worktree" else None
        ),
        hub=hub,
    )


async def run_agent(spec: AgentSpec, shared: Blackboard | None = None) -> str:
    """Host one agent's loop until the run has nothing left for it; ``shared``: the
    board of the actor hosting it (closed by its owner), else one of its own."""
    from swarm.tools.repo_tools import load_repo_tools

    board = shared or Blackboard(spec.redis_url, spec.run_id, outage_s=spec.redis_outage_s)
    hub = None
    try:
        repo_tools, hub = await load_repo_tools(
            Path(spec.workspace.repo), spec.agent.role, spec.agent.tools
        )
        loop = build_loop(spec, board, repo_tools, hub)
        try:
            await loop.run()
        finally:
            await loop.provider.aclose()
    finally:
        if hub is not None:
            await hub.aclose()  # no MCP server outlives the loop
        if shared is None:
            await board.close()
    return "done"


# an actor's connections at most, whatever its agents: the server runs one command at a
# time, so more only buy client buffers (calls wait for a free one). Blocking reads do
# not take them: the wake stream has one reader, approvals a pool of their own
ACTOR_CONNECTIONS = 8


class AgentActor:
    """The Ray actor that hosts the loops of one or more agents, each its own ``run``
    call (an async actor runs them concurrently); Ray restarts it if its process dies,
    and retries each agent's call."""

    def __init__(self, specs_json: list[str]):
        specs = [AgentSpec.model_validate_json(s) for s in specs_json]
        self.specs = {s.agent.name: s for s in specs}
        # one board (one bounded pool, one wake-stream reader) for all the actor's agents:
        # a board each cost every agent its own connections and server clients
        self._board: Blackboard | None = None
        self._running = 0

    async def run(self, name: str) -> str:
        spec = self.specs[name]
        if self._board is None:
            self._board = Blackboard(
                spec.redis_url,
                spec.run_id,
                outage_s=spec.redis_outage_s,
                max_connections=ACTOR_CONNECTIONS,
            )
        board = self._board
        self._running += 1
        try:
            return await run_agent(spec, board)
        finally:
            self._running -= 1
            if self._running == 0 and self._board is board:
                self._board = None
                await board.close()

    def pid(self) -> int:
        return os.getpid()


# A killed raylet leaves its agents running, orphaned, until the GCS declares the node
# dead: by default 5 missed checks 3 s apart (15 s). Checks 1 s apart, 3 misses, keep a
# dead node's agents from working on for long; a slow but live raylet still has Ray's
# 10 s timeout per check (docs/reliability.md).
LOCAL_RAY_HEALTH_CHECKS = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}


# A local Ray starts three Python helpers the swarm never uses: the dashboard's API server
# (which ray.init waits for: 0.6-1.4 s of a cold start here), the autoscaler's monitor and
# the log monitor (actor output is not sent to the driver: log_to_driver=False). Each
# costs ~60 MB and idle CPU for the whole run. Ray has no option for them in ray.init, so
# a local start skips them by name; a Ray without these methods starts as it would.
LOCAL_RAY_SKIPPED = ("start_api_server", "start_monitor", "start_log_monitor")


def _skip_unused_ray_helpers() -> None:
    try:
        from ray._private.node import Node
    except ImportError:
        return
    for name in LOCAL_RAY_SKIPPED:
        if callable(getattr(Node, name, None)):
            setattr(Node, name, _skipped)


def _skipped(self: Any, *args: Any, **kwargs: Any) -> None:
    self._webui_url = None  # read by ray.init's context when the API server is skipped


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
        _skip_unused_ray_helpers()
        kwargs.update(
            num_cpus=max(os.cpu_count() or 2, 2),
            object_store_memory=80 * 1024**2,
            _system_config=LOCAL_RAY_HEALTH_CHECKS,
        )
    try:
        with credentials_hidden():  # Ray's processes, and so every actor, start without them
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


AGENT_RESOURCE_ENV = "SWARM_AGENT_RESOURCE"


def agent_resource(mode: str) -> str | None:
    """The Ray resource that marks the nodes of a joined cluster where a shared run's agents
    run (nodes that reach its repository: this machine, or a shared file system; the
    driver's node only if it offers it too), from ``SWARM_AGENT_RESOURCE``; each agent
    takes one unit. None: the agents stay on the driver's node (a local Ray, a worktree
    run, or no resource named)."""
    name = os.environ.get(AGENT_RESOURCE_ENV, "").strip()
    if not name or mode != "shared" or os.environ.get("RAY_ADDRESS", "") in ("", "local"):
        return None
    return name


def check_agent_resource(name: str, agents: int) -> None:
    """Refuse a resource the joined cluster cannot place every agent on (the actors would
    wait for it forever)."""
    import ray

    have = ray.cluster_resources().get(name, 0.0)
    if have < agents:
        raise BadInput(
            f"{AGENT_RESOURCE_ENV}={name}: the cluster's nodes offer {have:g} of it, the run "
            f"has {agents} agents (one each); start the nodes that reach the workspace with "
            f"ray start --resources='{{\"{name}\": N}}'"
        )


def agents_per_actor(setting: int | str, agents: int, cores: int | None = None) -> int:
    """Agents hosted by one actor process: the config's number, or for ``auto`` on a
    local Ray the run's agents spread over one process per core (a process runs Python
    on one core at a time; never more processes than agents). Fewer processes cost less:
    each Ray worker has its own threads, heartbeats and imports (docs/benchmarks.md). On
    a joined cluster (``RAY_ADDRESS``) ``auto`` is one agent per actor, for Ray to spread
    over the nodes."""
    if isinstance(setting, int):
        return setting
    if os.environ.get("RAY_ADDRESS"):
        return 1
    processes = max(cores or os.cpu_count() or 2, 1)
    return max(1, -(-agents // processes))


def actor_groups(specs: list[AgentSpec], per_actor: int) -> list[list[AgentSpec]]:
    """The agents, in order, packed ``per_actor`` to a process."""
    return [specs[i : i + per_actor] for i in range(0, len(specs), per_actor)]


def actor_env(spec: AgentSpec) -> dict[str, str]:
    """The variables an agent's provider needs, for actors on other machines of a joined
    cluster (their processes do not inherit this one's environment). Never the key: it
    travels in the spec, in memory."""
    provider, _ = split_model(spec.agent.model)
    name = DEFAULT_BASE_URL_ENV[provider]
    return {name: os.environ[name]} if name in os.environ else {}
