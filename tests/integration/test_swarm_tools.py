"""The swarm tools on a real Redis blackboard, with the exact texts the model sees."""

from __future__ import annotations

from pathlib import Path

from swarm.blackboard.board import Blackboard
from swarm.tools.base import ToolContext
from swarm.tools.swarm_tools import SWARM_TOOLS, SwarmHandle


def ctx_for(board: Blackboard, agent: str, tmp_path: Path, neighbours: list[str]) -> ToolContext:
    handle = SwarmHandle(
        board=board,
        agent=agent,
        role="dev",
        task_id="t1",
        neighbours=neighbours,
        roles=["dev", "doc"],
        agents=["a", "b", "c"],
    )
    return ToolContext(workspace=tmp_path, agent=agent, swarm=handle)


async def call(name: str, args: dict[str, object], ctx: ToolContext) -> tuple[str, bool]:
    out = await SWARM_TOOLS[name](args, ctx)
    return out.text, out.is_error


async def test_tasks(board: Blackboard, tmp_path: Path) -> None:
    await board.create_task({"id": "t1", "title": "First", "role": "dev", "phase": "P1"})
    ctx = ctx_for(board, "a", tmp_path, ["b"])
    text, err = await call(
        "task_create",
        {"title": "Write the docs!", "description": "d", "role": "doc", "needs": ["t1"]},
        ctx,
    )
    assert (text, err) == ("Created task write-the-docs.", False)
    created = await board.task("write-the-docs")
    assert created is not None
    assert (created.status, created.phase, created.created_by) == ("pending", "P1", "a")
    text, err = await call(
        "task_create", {"title": "Write the docs!", "description": "again", "agent": "c"}, ctx
    )
    assert (text, err) == ("Created task write-the-docs-2.", False)
    assert (
        await call(
            "task_create", {"title": "x", "description": "d", "role": "doc", "needs": ["nope"]}, ctx
        )
    ) == ("Unknown task ids in needs: nope", True)
    assert (await call("task_create", {"title": "x", "description": "d", "role": "qa"}, ctx)) == (
        "Unknown role 'qa'. Roles: dev, doc",
        True,
    )
    assert (await call("task_create", {"title": "x", "description": "d"}, ctx)) == (
        "Give exactly one of role or agent.",
        True,
    )
    text, _ = await call("task_list", {}, ctx)
    assert text.splitlines() == [
        "t1 [ready] First (role:dev)",
        "write-the-docs [pending] Write the docs! (role:doc) needs: t1",
        "write-the-docs-2 [ready] Write the docs! (c)",
    ]
    assert (await call("task_list", {"status": "pending"}, ctx))[0].count("\n") == 0


async def test_task_fail_marks_the_handle(board: Blackboard, tmp_path: Path) -> None:
    ctx = ctx_for(board, "a", tmp_path, [])
    text, err = await call("task_fail", {"reason": "the API does not exist"}, ctx)
    assert (text, err) == ("Task t1 will be marked failed: the API does not exist", False)
    assert ctx.swarm.failed_reason == "the API does not exist"


async def test_messages_follow_topology_edges(board: Blackboard, tmp_path: Path) -> None:
    a = ctx_for(board, "a", tmp_path, ["b"])
    b = ctx_for(board, "b", tmp_path, ["a"])
    assert await call("send_message", {"to": "c", "body": "hi"}, a) == (
        "'c' is not your neighbour in the topology. You can message: b",
        True,
    )
    assert await call("send_message", {"to": "b", "body": "schema is in note api"}, a) == (
        "Sent to b.",
        False,
    )
    assert await call("read_inbox", {}, b) == ("from a: schema is in note api", False)
    assert await call("read_inbox", {}, b) == ("Inbox is empty.", False)


async def test_notes(board: Blackboard, tmp_path: Path) -> None:
    ctx = ctx_for(board, "a", tmp_path, [])
    assert await call("note_read", {}, ctx) == ("No notes yet.", False)
    assert await call("note_write", {"key": "api", "value": "POST /v1"}, ctx) == (
        "Note 'api' saved.",
        False,
    )
    assert await call("note_read", {"key": "api"}, ctx) == ("POST /v1", False)
    assert await call("note_read", {"key": "nope"}, ctx) == ("No note 'nope'. Keys: api", True)
    events = [e.type for e in await board.events()]
    assert "note_written" in events


async def test_outside_a_swarm(tmp_path: Path) -> None:
    out = await SWARM_TOOLS["task_list"]({}, ToolContext(workspace=tmp_path))
    assert out.is_error and out.text == "This tool only works inside a running swarm."
