"""The Tool protocol shared by every built-in, command and MCP tool."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

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


def _compact_params_schema(schema: dict[str, Any]) -> None:
    """Keep tool schemas small (they are sent every turn): no titles, and an optional
    field is its plain type (``anyOf [X, null]`` and ``default: null`` dropped)."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
        any_of = prop.get("anyOf")
        if isinstance(any_of, list):
            rest = [s for s in any_of if s != {"type": "null"}]
            if len(rest) == 1 and len(rest) < len(any_of):
                del prop["anyOf"]
                for key, value in rest[0].items():
                    prop.setdefault(key, value)
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class ToolParams(BaseModel):
    """Base for tool parameter models: compact JSON schema, null accepted for optionals."""

    model_config = ConfigDict(json_schema_extra=_compact_params_schema)


class Tool:
    """A tool: a name, a description, a pydantic model of its input and a run method."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def spec(self) -> ToolSpec:
        schema = self.Params.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
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
