"""todowrite / todoread."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarm.tools.base import ToolContext, ToolOutput
from swarm.tools.builtin import BUILTIN_TOOLS, local_context


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return local_context(tmp_path)


async def call(ctx: ToolContext, name: str, **args: Any) -> ToolOutput:
    return await BUILTIN_TOOLS[name](args, ctx)


TODOS = [
    {"content": "Read the spec", "status": "completed", "priority": "high"},
    {"content": "Write the read tool", "status": "in_progress", "priority": "high"},
    {"content": "Write tests", "status": "pending"},
    {"content": "Port to Rust", "status": "cancelled", "priority": "low"},
]


async def test_todoread_empty(ctx: ToolContext) -> None:
    out = await call(ctx, "todoread")
    assert not out.is_error
    assert out.text == "No todos. Use todowrite to plan multi-step work."
    assert out.meta == {"todos": []}


async def test_todowrite_then_read(ctx: ToolContext) -> None:
    out = await call(ctx, "todowrite", todos=TODOS)
    expected = (
        "4 todos (1 pending, 1 in progress, 1 completed, 1 cancelled):\n"
        "[x] Read the spec (high)\n"
        "[>] Write the read tool (high)\n"
        "[ ] Write tests\n"
        "[-] Port to Rust (low)"
    )
    assert out.text == expected
    assert out.meta == {"todos": TODOS}
    assert ctx.state is not None
    assert json.loads(await ctx.state.get("todos") or "") == TODOS
    read = await call(ctx, "todoread")
    assert read.text == expected


async def test_at_most_one_in_progress(ctx: ToolContext) -> None:
    todos = [
        {"content": "a", "status": "in_progress"},
        {"content": "b", "status": "in_progress"},
    ]
    out = await call(ctx, "todowrite", todos=todos)
    assert out.is_error
    assert out.text == (
        "Only one todo can be in_progress at a time; found 2: 'a', 'b'. "
        "Keep one in_progress and mark the others pending or completed."
    )
    assert (await call(ctx, "todoread")).text.startswith("No todos.")


@pytest.mark.parametrize(
    "bad",
    [
        [{"content": "a", "status": "doing"}],
        [{"content": "", "status": "pending"}],
        [{"content": "a", "status": "pending", "priority": "urgent"}],
        [{"status": "pending"}],
    ],
)
async def test_invalid_items(ctx: ToolContext, bad: list[dict[str, str]]) -> None:
    out = await call(ctx, "todowrite", todos=bad)
    assert out.is_error and out.text.startswith("Invalid arguments for todowrite: todos.0")


async def test_replacing_the_list(ctx: ToolContext) -> None:
    await call(ctx, "todowrite", todos=TODOS)
    await call(ctx, "todowrite", todos=[{"content": "only", "status": "pending"}])
    assert (await call(ctx, "todoread")).text == "1 todos (1 pending):\n[ ] only"


async def test_without_state_store(tmp_path: Path) -> None:
    ctx = ToolContext(workspace=tmp_path)
    out = await call(ctx, "todoread")
    assert out.is_error
    assert out.text == "The todo list is unavailable: no state store is attached to this agent."


async def test_per_agent(tmp_path: Path) -> None:
    one, two = local_context(tmp_path, "one"), local_context(tmp_path, "two")
    await call(one, "todowrite", todos=[{"content": "mine", "status": "pending"}])
    assert (await call(two, "todoread")).text.startswith("No todos.")
