"""ToolRunner: lookup, permissions, doom loop, events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarm.tools.base import ToolContext
from swarm.tools.builtin import BUILTIN_TOOLS, local_context
from swarm.tools.runner import ToolRunner
from swarm.tools.sandbox import PermissionRules


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    (tmp_path / "a.txt").write_text("hello\n")
    return tmp_path


@pytest.fixture
def ctx(ws: Path) -> ToolContext:
    return local_context(ws)


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self.items.append((kind, data))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.items]


async def test_runs_a_tool_and_reports_an_event(ctx: ToolContext) -> None:
    events = Events()
    runner = ToolRunner(BUILTIN_TOOLS, ctx, on_event=events)
    out = await runner.run("read", {"file_path": "a.txt"})
    assert out.text == f"{1:>6}\thello"
    assert events.items == [
        (
            "tool_result",
            {
                "tool": "read",
                "is_error": False,
                "meta": {"path": "a.txt", "lines": 1, "total_lines": 1, "truncated": False},
            },
        )
    ]


async def test_unknown_tool(ctx: ToolContext) -> None:
    runner = ToolRunner({"read": BUILTIN_TOOLS["read"], "bash": BUILTIN_TOOLS["bash"]}, ctx)
    out = await runner.run("Read", {})
    assert out.is_error
    assert out.text == "Unknown tool 'Read'. Available tools: read, bash."


async def test_specs(ctx: ToolContext) -> None:
    runner = ToolRunner(BUILTIN_TOOLS, ctx)
    assert [s.name for s in runner.specs()] == list(BUILTIN_TOOLS)


async def test_doom_loop(ctx: ToolContext) -> None:
    events = Events()
    runner = ToolRunner(BUILTIN_TOOLS, ctx, on_event=events)
    args = {"file_path": "a.txt"}
    assert not (await runner.run("read", args)).is_error
    assert not (await runner.run("read", dict(args))).is_error
    third = await runner.run("read", {"file_path": "a.txt"})
    assert third.is_error
    assert third.text == (
        "You have called read with identical input 3 times in a row; the result will not "
        "change. Try a different approach."
    )
    assert events.kinds() == ["tool_result", "tool_result", "doom_loop", "tool_result"]
    assert events.items[2][1] == {"tool": "read", "count": 3, "input": '{"file_path": "a.txt"}'}
    assert (await runner.run("read", args)).is_error  # still looping
    # a different call breaks the streak
    assert not (await runner.run("read", {"file_path": "a.txt", "limit": 1})).is_error
    assert not (await runner.run("read", args)).is_error


async def test_doom_loop_key_order_insensitive(ctx: ToolContext) -> None:
    runner = ToolRunner(BUILTIN_TOOLS, ctx)
    await runner.run("read", {"file_path": "a.txt", "limit": 5})
    await runner.run("read", {"limit": 5, "file_path": "a.txt"})
    assert (await runner.run("read", {"file_path": "a.txt", "limit": 5})).is_error


async def test_alternating_calls_are_not_a_loop(ctx: ToolContext) -> None:
    runner = ToolRunner(BUILTIN_TOOLS, ctx)
    for _ in range(3):
        assert not (await runner.run("read", {"file_path": "a.txt"})).is_error
        assert not (await runner.run("todoread", {})).is_error


async def test_bash_permission_deny(ctx: ToolContext) -> None:
    events = Events()
    rules = PermissionRules({"bash": {"*": "allow", "rm -rf *": "deny", "git push*": "deny"}})
    runner = ToolRunner(BUILTIN_TOOLS, ctx, rules, events)
    out = await runner.run("bash", {"command": "rm -rf /tmp/x"})
    assert out.is_error
    assert out.text == (
        "Permission to run bash `rm -rf /tmp/x` is denied (rule 'rm -rf *': deny). "
        "Try another approach."
    )
    assert out.meta == {"permission": "deny", "rule": "rm -rf *"}
    assert events.kinds() == ["permission_denied", "tool_result"]
    assert not (await runner.run("bash", {"command": "echo ok"})).is_error


async def test_ask_without_approver_is_denied(ctx: ToolContext) -> None:
    rules = PermissionRules({"bash": {"git push*": "ask"}})
    runner = ToolRunner(BUILTIN_TOOLS, ctx, rules)
    out = await runner.run("bash", {"command": "git push origin"})
    assert out.text == (
        "Permission to run bash `git push origin` requires human approval (rule 'git push*': "
        "ask); no approver is attached to this swarm, so it was denied. Try another approach."
    )


async def test_ask_with_approver(ctx: ToolContext) -> None:
    asked: list[tuple[str, str, str | None]] = []

    async def approver(tool: str, subject: str, rule: str | None) -> bool:
        asked.append((tool, subject, rule))
        return subject == "echo yes"

    rules = PermissionRules({"bash": {"echo *": "ask"}})
    runner = ToolRunner(BUILTIN_TOOLS, ctx, rules, approver=approver)
    assert (await runner.run("bash", {"command": "echo yes"})).text.startswith("yes")
    out = await runner.run("bash", {"command": "echo no"})
    assert out.text == (
        "Permission to run bash `echo no` was refused by the human approver "
        "(rule 'echo *': ask). Try another approach."
    )
    assert asked == [("bash", "echo yes", "echo *"), ("bash", "echo no", "echo *")]


async def test_approver_reason_reaches_the_model(ctx: ToolContext) -> None:
    async def approver(tool: str, subject: str, rule: str | None) -> tuple[bool, str]:
        return subject == "echo yes", "" if subject == "echo yes" else "timed out."

    runner = ToolRunner(
        BUILTIN_TOOLS, ctx, PermissionRules({"bash": {"echo *": "ask"}}), approver=approver
    )
    assert (await runner.run("bash", {"command": "echo yes"})).text.startswith("yes")
    out = await runner.run("bash", {"command": "echo no"})
    assert out.is_error and out.text == (
        "Permission to run bash `echo no` was not approved (rule 'echo *': ask): timed out. "
        "Try another approach."
    )


async def test_file_permission_matches_relative_path(ws: Path, ctx: ToolContext) -> None:
    rules = PermissionRules({"write": {"*": "allow", "secrets/*": "deny"}})
    runner = ToolRunner(BUILTIN_TOOLS, ctx, rules)
    out = await runner.run("write", {"file_path": str(ws / "secrets" / "k.pem"), "content": "x"})
    assert out.text == (
        "Permission to run write `secrets/k.pem` is denied (rule 'secrets/*': deny). "
        "Try another approach."
    )
    assert not (await runner.run("write", {"file_path": "ok.txt", "content": "x"})).is_error


async def test_other_tools_match_json_of_args(ctx: ToolContext) -> None:
    rules = PermissionRules({"grep": {'*"pattern": "password"*': "deny"}})
    runner = ToolRunner(BUILTIN_TOOLS, ctx, rules)
    assert (await runner.run("grep", {"pattern": "password"})).is_error
    assert not (await runner.run("grep", {"pattern": "hello"})).is_error


async def test_sandbox_error_reaches_model_through_runner(ctx: ToolContext) -> None:
    runner = ToolRunner(BUILTIN_TOOLS, ctx, PermissionRules({"read": {"*": "allow"}}))
    out = await runner.run("read", {"file_path": "../../etc/passwd"})
    assert out.is_error and out.text.startswith("Access denied: ../../etc/passwd is outside")


async def test_broken_event_sink_does_not_break_calls(ctx: ToolContext) -> None:
    async def sink(kind: str, data: dict[str, Any]) -> None:
        raise RuntimeError("dashboard down")

    runner = ToolRunner(BUILTIN_TOOLS, ctx, on_event=sink)
    assert not (await runner.run("read", {"file_path": "a.txt"})).is_error


async def test_invalid_arguments_are_results(ctx: ToolContext) -> None:
    runner = ToolRunner(BUILTIN_TOOLS, ctx)
    out = await runner.run("read", {"path": "a.txt"})
    assert out.is_error
    assert out.text == "Invalid arguments for read: file_path: Field required"
