"""todowrite / todoread: the agent's own plan, kept in its state (shown on the dashboard)."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import Field, ValidationError

from swarm.tools.base import Tool, ToolContext, ToolOutput, ToolParams

STATE_KEY = "todos"
_MARKS = {"pending": "[ ]", "in_progress": "[>]", "completed": "[x]", "cancelled": "[-]"}

Status = Literal["pending", "in_progress", "completed", "cancelled"]


class TodoItem(ToolParams):
    content: str = Field(min_length=1)
    status: Status
    priority: Literal["high", "medium", "low"] | None = None


class TodoWriteParams(ToolParams):
    todos: list[TodoItem]


class TodoReadParams(ToolParams):
    pass


NO_STATE = "The todo list is unavailable: no state store is attached to this agent."


def render(todos: list[TodoItem]) -> str:
    if not todos:
        return "No todos. Use todowrite to plan multi-step work."
    counts = {s: sum(t.status == s for t in todos) for s in _MARKS}
    summary = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n)
    lines = [f"{len(todos)} todos ({summary}):"]
    for todo in todos:
        prio = f" ({todo.priority})" if todo.priority else ""
        lines.append(f"{_MARKS[todo.status]} {todo.content}{prio}")
    return "\n".join(lines)


def _meta(todos: list[TodoItem]) -> dict[str, object]:
    return {"todos": [t.model_dump(exclude_none=True) for t in todos]}


async def load_todos(ctx: ToolContext) -> list[TodoItem]:
    if ctx.state is None:
        return []
    raw = await ctx.state.get(STATE_KEY)
    if not raw:
        return []
    try:
        return [TodoItem.model_validate(t) for t in json.loads(raw)]
    except (ValueError, TypeError, ValidationError):
        return []


class TodoWrite(Tool):
    name = "todowrite"
    description = (
        "Replace your todo list (the whole list each time) to plan and track multi-step work. "
        "At most one item may be in_progress."
    )
    Params = TodoWriteParams

    async def run(self, params: TodoWriteParams, ctx: ToolContext) -> ToolOutput:
        if ctx.state is None:
            return ToolOutput.error(NO_STATE)
        active = [t.content for t in params.todos if t.status == "in_progress"]
        if len(active) > 1:
            listed = ", ".join(f"'{c}'" for c in active)
            return ToolOutput.error(
                f"Only one todo can be in_progress at a time; found {len(active)}: {listed}. "
                "Keep one in_progress and mark the others pending or completed."
            )
        data = json.dumps([t.model_dump(exclude_none=True) for t in params.todos])
        await ctx.state.set(STATE_KEY, data)
        return ToolOutput(text=render(params.todos), meta=_meta(params.todos))


class TodoRead(Tool):
    name = "todoread"
    read_only = True
    description = "Show your current todo list."
    Params = TodoReadParams

    async def run(self, params: TodoReadParams, ctx: ToolContext) -> ToolOutput:
        if ctx.state is None:
            return ToolOutput.error(NO_STATE)
        todos = await load_todos(ctx)
        return ToolOutput(text=render(todos), meta=_meta(todos))
