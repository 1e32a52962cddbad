"""The swarm config (YAML): pydantic models plus the cross-field checks.

Every error names the file, the line and the field, and the CLI exits 2 on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from swarm.credentials.settings import OAuthSettings
from swarm.errors import BadInput, ConfigError
from swarm.paths import data_dirs
from swarm.providers.modelinfo import (
    DEFAULT_CONTEXT_WINDOW,
    DEFAULT_MAX_OUTPUT_TOKENS,
    ModelInfo,
    builtin_context_window,
)
from swarm.providers.types import RequestOptions
from swarm.roles import RoleCard, load_roles
from swarm.secrets import is_secret_name
from swarm.tools.mcp_config import is_mcp_entry
from swarm.tools.names import BUILTIN_TOOL_NAMES, SWARM_TOOL_NAMES
from swarm.topology import build_topology
from swarm.yamlsource import YamlSource

PROVIDERS = ("anthropic", "openai", "mistral", "copilot")
NAME_RE = r"^[a-z0-9][a-z0-9-]*$"
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODEL_RE = re.compile(r"^(?P<provider>[a-z0-9_-]+)/(?P<model>\S+)$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderConfig(Strict):
    base_url: str | None = None
    api_key_env: str | None = None
    oauth: OAuthSettings | None = None  # `swarm auth login --oauth` (docs/credentials.md)
    # shared by every agent using the same credential; None switches a limit off
    requests_per_minute: int | None = Field(default=500, gt=0)
    tokens_per_minute: int | None = Field(default=2_000_000, gt=0)
    rate_window_s: float = Field(default=60.0, gt=0)  # the window the limits count over


class Budget(Strict):
    max_usd: float | None = Field(default=None, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_wall_s: float | None = Field(default=None, gt=0)
    max_turns: int = Field(default=40, gt=0)
    max_task_wall_s: float | None = Field(default=None, gt=0)  # per task, from its claim


class Reliability(Strict):
    """How long the swarm rides out a fault before it gives up (see docs/reliability.md)."""

    redis_outage_s: float = Field(default=120.0, gt=0)  # Redis unreachable: keep retrying
    provider_outage_s: float = Field(default=600.0, gt=0)  # no request succeeds: stop the run
    no_progress_turns: int = Field(default=20, ge=0)  # quiet turns before a task fails; 0 = off
    agent_restarts: int = Field(default=5, ge=0)  # per agent, before the run stops


class Hosting(Strict):
    """How agents are placed in processes (docs/architecture.md). An agent loop is an
    I/O-bound asyncio task, so several share one Ray actor process well: ``auto`` packs
    the run's agents into one process per core, a number puts that many agents in each
    actor."""

    agents_per_actor: int | Literal["auto"] = Field(default="auto")

    @field_validator("agents_per_actor")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1 (or auto)")
        return v


class Price(Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)  # default: 10% of input
    cache_write: float | None = Field(default=None, ge=0)  # default: 125% of input

    def as_tuple(self) -> tuple[float, float, float, float]:
        read = self.input * 0.1 if self.cache_read is None else self.cache_read
        write = self.input * 1.25 if self.cache_write is None else self.cache_write
        return (self.input, self.output, read, write)


class ModelSettings(Strict):
    """Per model (`models:`) or per agent (`model_settings`); unset keys keep the default."""

    context_window: int | None = Field(default=None, ge=1024)
    max_output_tokens: int | None = Field(default=None, ge=16)
    temperature: float | None = Field(default=None, ge=0, le=2)
    thinking_budget: int | None = Field(default=None, ge=1024)  # Anthropic extended thinking
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None  # OpenAI
    parallel_tool_calls: bool | None = None


class ContextConfig(Strict):
    """How the agent loop keeps a conversation inside the model's context window (see
    docs/context.md). Thresholds are fractions of the window left after the output."""

    prune_at: float = Field(default=0.5, gt=0, lt=1)  # old tool results become placeholders
    compact_at: float = Field(default=0.85, gt=0, lt=1)  # the conversation is summarised
    keep_turns: int = Field(default=3, ge=1)  # recent turns whose tool results a prune keeps
    max_turn_tool_chars: int = Field(default=60_000, ge=1000)  # tool output one turn may add


class ApprovalsConfig(Strict):
    """How long a tool call that a permission rule marks ``ask`` waits for a person (see
    docs/approvals.md). Unset: it waits only while a dashboard or a server is attached."""

    timeout_s: float | None = Field(default=None, gt=0)


class AgentSpec(Strict):
    name: str = Field(pattern=NAME_RE)
    role: str
    count: int = Field(default=1, ge=1, le=100)
    model: str | None = None
    tools: list[str] | None = None
    model_settings: ModelSettings | None = None


class TaskSpec(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str
    description: str = ""
    role: str | None = None
    agent: str | None = None
    needs: list[str] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    paths: list[str] = Field(default_factory=list)  # globs it will change (worktree runs)


class MergeConfig(Strict):
    """The merge queue of a worktree run."""

    gate: str | None = Field(default=None, min_length=1)  # a shell command, e.g. make test
    gate_timeout_s: float = Field(default=900.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)  # merge rounds (conflict, gate) per task


class CommandsConfig(Strict):
    """Settings for every command agents run (bash, command tools, the merge gate)."""

    # agent handles commands may see (swarm.secrets.AGENT_ACCESS_NAMES, e.g. SSH_AUTH_SOCK
    # for `git push` over ssh); credential variables are never passed
    pass_env: list[str] = Field(default_factory=list)

    @field_validator("pass_env")
    @classmethod
    def _env_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not ENV_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if is_secret_name(name):
                raise ValueError(
                    f"{name!r} holds a credential: credentials are never passed to commands"
                )
        return v


class Phase(Strict):
    name: str
    tasks: list[TaskSpec] = Field(min_length=1)


class CustomTopology(Strict):
    kind: Literal["mesh", "star", "ring", "hierarchical", "custom"]
    edges: list[tuple[str, str]] = Field(default_factory=list)
    hub: str | None = None


class SwarmConfig(Strict):
    name: str = Field(pattern=NAME_RE)
    goal: str
    repo: str = "."
    topology: str | CustomTopology = "mesh"
    model: str = "anthropic/claude-sonnet-5-5"
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    budget: Budget = Field(default_factory=Budget)
    # "provider/model" -> price, over genai-prices' data (swarm/providers/pricing.py)
    pricing: dict[str, Price] = Field(default_factory=dict)
    models: dict[str, ModelSettings] = Field(default_factory=dict)  # "provider/model" -> settings
    context: ContextConfig = Field(default_factory=ContextConfig)
    # worktree: a git worktree per task and a merge queue (the default in a git
    # repository); shared: every agent edits the repository in place (the default elsewhere)
    workspace: Literal["worktree", "shared"] | None = None
    merge: MergeConfig = Field(default_factory=MergeConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)
    lease_s: float = Field(default=30.0, gt=0)
    reliability: Reliability = Field(default_factory=Reliability)
    hosting: Hosting = Field(default_factory=Hosting)
    permissions: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    approvals: ApprovalsConfig = Field(default_factory=ApprovalsConfig)
    agents: list[AgentSpec] = Field(min_length=1)
    phases: list[Phase] = Field(min_length=1)

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, v: dict[str, ProviderConfig]) -> dict[str, ProviderConfig]:
        for name in v:
            if name not in PROVIDERS:
                raise ValueError(f"unknown provider {name!r} (known: {', '.join(PROVIDERS)})")
        return v


class AgentInstance(BaseModel):
    """One running agent after `count` expansion."""

    name: str
    role: str
    model: str
    tools: list[str]
    prompt: str
    description: str = ""
    permissions: dict[str, Any] = Field(default_factory=dict)
    info: ModelInfo = Field(default_factory=ModelInfo)


class LoadedConfig(BaseModel):
    """A validated config plus everything resolved from it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: Path
    config: SwarmConfig
    agents: list[AgentInstance]
    tasks: list[tuple[str, TaskSpec]]  # (phase name, task) in config order
    topology_kind: str
    topology_edges: list[tuple[str, str]]

    @property
    def graph(self) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(a.name for a in self.agents)
        g.add_edges_from(self.topology_edges)
        return g


def split_model(model: str) -> tuple[str, str]:
    m = MODEL_RE.match(model)
    if not m:
        raise ValueError(f"model must be 'provider/model', got {model!r}")
    if m["provider"] not in PROVIDERS:
        raise ValueError(f"unknown provider {m['provider']!r} (known: {', '.join(PROVIDERS)})")
    return m["provider"], m["model"]


class Overrides(BaseModel):
    """What the command line (`swarm ci --model/--goal/--max-usd/--max-wall-s`) changes in
    a config, checked like the config itself; `model` is every agent's model."""

    model: str | None = None
    goal: str | None = Field(default=None, min_length=1)
    max_usd: float | None = Field(default=None, gt=0)
    max_wall_s: float | None = Field(default=None, gt=0)


def load_config(
    path: Path | str,
    roles: dict[str, RoleCard] | None = None,
    overrides: Overrides | None = None,
) -> LoadedConfig:
    path = Path(path)
    src = YamlSource(path)
    if not isinstance(src.data, dict):
        raise ConfigError(path, src.line(()), None, "config must be a YAML mapping")
    try:
        cfg = SwarmConfig.model_validate(src.data)
    except ValidationError as exc:
        raise src.from_validation(exc) from None
    if roles is None:
        roles = load_roles(path.parent)
    over = overrides or Overrides()
    if over.model is not None:
        try:
            split_model(over.model)
        except ValueError as exc:
            raise BadInput(f"--model: {exc}") from None
        cfg.model = over.model
    if over.goal is not None:
        cfg.goal = over.goal
    budget = {k: v for k in ("max_usd", "max_wall_s") if (v := getattr(over, k)) is not None}
    if budget:
        cfg.budget = cfg.budget.model_copy(update=budget)
    return _resolve(src, cfg, roles, over.model)


def _resolve(
    src: YamlSource, cfg: SwarmConfig, roles: dict[str, RoleCard], model_override: str | None = None
) -> LoadedConfig:
    try:
        split_model(cfg.model)
    except ValueError as exc:
        raise src.error(("model",), str(exc)) from None

    for name in cfg.models:
        try:
            split_model(name)
        except ValueError as exc:
            raise src.error(("models", name), str(exc)) from None
    if cfg.context.prune_at >= cfg.context.compact_at:
        raise src.error(("context", "prune_at"), "prune_at must be below compact_at")
    known_tools = set(BUILTIN_TOOL_NAMES) | set(SWARM_TOOL_NAMES)
    agents: list[AgentInstance] = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(cfg.agents):
        if spec.role not in roles:
            raise src.error(
                ("agents", i, "role"),
                f"unknown role {spec.role!r} (known: {', '.join(sorted(roles)) or 'none'})",
            )
        card = roles[spec.role]
        model = model_override or spec.model or card.model or cfg.model
        try:
            split_model(model)
        except ValueError as exc:
            raise src.error(("agents", i, "model"), str(exc)) from None
        tools = spec.tools if spec.tools is not None else card.tools
        for j, tool in enumerate(tools):
            if tool not in known_tools and not is_mcp_entry(tool):  # mcp:<server>
                loc = ("agents", i, "tools", j) if spec.tools is not None else ("agents", i, "role")
                origin = "" if spec.tools is not None else f" (in role card {card.source})"
                hint = " (an MCP server is mcp:<server name>)" if tool.startswith("mcp") else ""
                raise src.error(loc, f"unknown tool {tool!r}{origin}{hint}")
        info = _model_info(src, cfg, i, model, spec.model_settings)
        names = (
            [spec.name]
            if spec.count == 1
            else [f"{spec.name}-{n}" for n in range(1, spec.count + 1)]
        )
        for name in names:
            if name in seen:
                raise src.error(("agents", i, "name"), f"duplicate agent name {name!r}")
            seen[name] = i
            agents.append(
                AgentInstance(
                    name=name,
                    role=spec.role,
                    model=model,
                    tools=list(tools),
                    prompt=card.prompt,
                    description=card.description,
                    permissions={**card.permissions, **cfg.permissions},
                    info=info,
                )
            )
    agent_names = {a.name for a in agents}
    agent_roles = {a.role for a in agents}

    tasks: list[tuple[str, TaskSpec]] = []
    where: dict[str, tuple[int, int]] = {}
    for p, phase in enumerate(cfg.phases):
        for t, task in enumerate(phase.tasks):
            loc = ("phases", p, "tasks", t)
            if task.id in where:
                raise src.error(loc + ("id",), f"duplicate task id {task.id!r}")
            where[task.id] = (p, t)
            if (task.role is None) == (task.agent is None):
                raise src.error(loc, "a task needs exactly one of 'role' or 'agent'")
            if task.role is not None and task.role not in agent_roles:
                raise src.error(
                    loc + ("role",),
                    f"no agent has role {task.role!r} (roles: {', '.join(sorted(agent_roles))})",
                )
            if task.agent is not None and task.agent not in agent_names:
                raise src.error(loc + ("agent",), f"unknown agent {task.agent!r}")
            tasks.append((phase.name, task))
    deps: nx.DiGraph = nx.DiGraph()
    for _, task in tasks:
        deps.add_node(task.id)
        p, t = where[task.id]
        for k, need in enumerate(task.needs):
            if need not in where:
                raise src.error(("phases", p, "tasks", t, "needs", k), f"unknown task id {need!r}")
            deps.add_edge(need, task.id)
    try:
        cycle = nx.find_cycle(deps)
    except nx.NetworkXNoCycle:
        cycle = []
    if cycle:
        ids = [a for a, _ in cycle] + [cycle[0][0]]
        p, t = where[cycle[0][1]]
        raise src.error(("phases", p, "tasks", t, "needs"), "dependency cycle: " + " -> ".join(ids))

    kind, edges, hub = _topology(src, cfg)
    for k, (a, b) in enumerate(edges):
        for end in (a, b):
            if end not in agent_names:
                raise src.error(("topology", "edges", k), f"unknown agent {end!r} in edge")
    if hub is not None and hub not in agent_names:
        raise src.error(("topology", "hub"), f"unknown agent {hub!r}")
    graph = build_topology(kind, [(a.name, a.role) for a in agents], edges, hub)
    return LoadedConfig(
        path=src.path,
        config=cfg,
        agents=agents,
        tasks=tasks,
        topology_kind=kind,
        topology_edges=[(str(a), str(b)) for a, b in graph.edges()],
    )


def _model_info(
    src: YamlSource, cfg: SwarmConfig, index: int, model: str, own: ModelSettings | None
) -> ModelInfo:
    """The agent's model settings: built-in table < `models.<model>` < its own."""
    merged: dict[str, Any] = {}
    for layer in (cfg.models.get(model), own):
        if layer is not None:
            merged.update(layer.model_dump(exclude_none=True))
    window = merged.get("context_window")
    source = "config"
    if window is None:
        window = builtin_context_window(model)
        source = "built-in" if window else "default"
        window = window or DEFAULT_CONTEXT_WINDOW
    out = merged.get("max_output_tokens", min(DEFAULT_MAX_OUTPUT_TOKENS, window // 4))
    where: tuple[str | int, ...] = (
        ("agents", index, "model_settings") if own is not None else ("models", model)
    )
    if out * 2 > window:
        raise src.error(
            where,
            f"max_output_tokens ({out}) must be at most half the context window ({window}) "
            f"of {model}, or there is no room left for the conversation",
        )
    thinking = merged.get("thinking_budget")
    if thinking is not None and thinking >= out:
        raise src.error(
            where,
            f"thinking_budget ({thinking}) must be below max_output_tokens ({out}): the "
            "thinking is part of the reply",
        )
    return ModelInfo(
        context_window=window,
        context_window_source=source,
        max_output_tokens=out,
        options=RequestOptions(
            temperature=merged.get("temperature"),
            thinking_budget=thinking,
            reasoning_effort=merged.get("reasoning_effort"),
            parallel_tool_calls=merged.get("parallel_tool_calls"),
        ),
    )


def _topology(src: YamlSource, cfg: SwarmConfig) -> tuple[str, list[tuple[str, str]], str | None]:
    topo = cfg.topology
    if isinstance(topo, CustomTopology):
        return topo.kind, list(topo.edges), topo.hub
    if topo in ("mesh", "star", "ring", "hierarchical"):
        return topo, [], None
    for folder in data_dirs("topologies", src.path.parent):
        preset = folder / f"{topo}.yaml"
        if preset.is_file():
            psrc = YamlSource(preset)
            try:
                t = CustomTopology.model_validate(psrc.data)
            except ValidationError as exc:
                raise psrc.from_validation(exc) from None
            return t.kind, list(t.edges), t.hub
    raise src.error(
        ("topology",),
        f"unknown topology {topo!r}: use mesh, star, ring, hierarchical, a preset in topologies/, "
        "or {kind: custom, edges: [[a, b], ...]}",
    )
