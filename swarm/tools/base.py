"""The Tool protocol shared by every built-in, command and MCP tool."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ValidationError

from swarm.providers.types import ToolSpec


@dataclass
class ToolOutput:
    """What a tool returns: text for the model plus metadata for the event stream."""

    text: str
    is_error: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def error(cls, text: str, **meta: Any) -> ToolOutput:
        return cls(text=text, is_error=True, meta=meta)


class FileLocks(Protocol):
    """Serialises writes to one path across agents (Redis-backed in a swarm)."""

    def lock(self, path: str) -> Any:  # returns an async context manager
        ...


class StateStore(Protocol):
    """Per-agent key/value state (read hashes, todos). Redis-backed in a swarm."""

    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str) -> None: ...


@dataclass
class ToolContext:
    """Everything a tool may touch. Tools never reach outside `workspace`."""

    workspace: Path
    agent: str = "cli"
    state: StateStore | None = None
    locks: FileLocks | None = None
    swarm: Any = None  # swarm.tools.swarm_tools.SwarmHandle when running in a swarm
    env: dict[str, str] = field(default_factory=dict)
    output_dir: Path | None = None  # where full bash outputs are kept
    # agent handles (SSH_AUTH_SOCK...) commands may see: a config's commands.pass_env
    pass_env: frozenset[str] = frozenset()


_REF_PREFIX = "#/$defs/"
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "contains")


def _compact(node: Any, defs: dict[str, Any], inlining: tuple[str, ...], cyclic: set[str]) -> Any:
    """One schema node, compacted: ``$ref`` into ``defs`` inlined (a cycle keeps its
    ``$ref`` and is reported in ``cyclic``), no titles, ``anyOf [X, null]`` -> X."""
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_REF_PREFIX) and ref[len(_REF_PREFIX) :] in defs:
        name = ref[len(_REF_PREFIX) :]
        if name in inlining:
            cyclic.add(name)
        else:
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node, inlining = {**defs[name], **siblings}, (*inlining, name)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs") or (key == "default" and value is None):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _compact(v, defs, inlining, cyclic) for k, v in value.items()}
        elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [_compact(v, defs, inlining, cyclic) for v in value]
        elif key in _SUBSCHEMA_ONE:
            out[key] = _compact(value, defs, inlining, cyclic)
        else:
            out[key] = value
    any_of = out.get("anyOf")
    if isinstance(any_of, list):  # an optional field is its plain type (null is accepted)
        rest = [s for s in any_of if s != {"type": "null"}]
        if len(rest) == 1 and len(rest) < len(any_of):
            del out["anyOf"]
            for key, value in rest[0].items():
                out.setdefault(key, value)
    return out


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as sent to the model (every turn, so every byte counts):
    self-contained (``$defs`` references inlined), no titles, optional fields as their
    plain type. Recursive models keep ``$defs`` for the cycle only."""
    defs = schema.get("$defs") or {}
    cyclic: set[str] = set()
    out: dict[str, Any] = _compact(schema, defs, (), cyclic)
    kept: dict[str, Any] = {}
    while pending := sorted(cyclic - kept.keys()):
        for name in pending:
            kept[name] = _compact(defs[name], defs, (name,), cyclic)
    if kept:
        out["$defs"] = kept
    return out


class ToolParams(BaseModel):
    """Base for tool parameter models (``Tool.spec`` compacts their schema)."""


class Tool:
    """A tool: a name, a description, a pydantic model of its input and a run method."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    # changes nothing (no file, note, message or task): the calls of one turn to such
    # tools run at the same time
    read_only: ClassVar[bool] = False

    def spec(self) -> ToolSpec:
        schema = compact_schema(self.Params.model_json_schema())
        return ToolSpec(name=self.name, description=self.description, input_schema=schema)

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        try:
            params = self.Params.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
            )
            return ToolOutput.error(f"Invalid arguments for {self.name}: {problems}")
        try:
            return await self.run(params, ctx)
        except Exception as exc:  # a tool error is a result, never a crash
            return ToolOutput.error(f"{self.name} failed: {type(exc).__name__}: {exc}")

    async def run(self, params: Any, ctx: ToolContext) -> ToolOutput:
        raise NotImplementedError
