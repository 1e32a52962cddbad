"""Tools whose name and input schema are only known at run time (command tools, MCP tools).

They take a raw JSON schema instead of a pydantic model: ``spec()`` returns it as is and
``__call__`` hands the raw argument dict to ``invoke``, turning any exception into an
error result like every other tool.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from swarm.providers.types import ToolSpec
from swarm.tools.base import Tool, ToolContext, ToolOutput


class AnyParams(BaseModel):
    """Placeholder ``Params`` for dynamic tools: their schema is ``input_schema``."""

    model_config = ConfigDict(extra="allow")


class DynamicTool(Tool):
    """A tool built from data: per-instance name, description and JSON input schema."""

    Params = AnyParams

    def __init__(self, name: str, description: str, input_schema: dict[str, Any]) -> None:
        # ``name``/``description`` are class-level on static tools; per instance here.
        self.__dict__["name"] = name
        self.__dict__["description"] = description
        self.input_schema = input_schema

    def spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name, description=self.description, input_schema=self.input_schema
        )

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        if not isinstance(args, dict):
            return ToolOutput.error(f"Invalid arguments for {self.name}: expected a JSON object")
        try:
            return await self.invoke(args, ctx)
        except Exception as exc:  # a tool error is a result, never a crash
            return ToolOutput.error(f"{self.name} failed: {type(exc).__name__}: {exc}")

    async def invoke(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
