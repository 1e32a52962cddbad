"""The interactive dashboard's views, driven by Textual's pilot against a run stored in a
real Redis (no swarm running: every figure comes from what the test stored)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from textual.widgets import Static

from swarm.blackboard.board import Blackboard
from swarm.tools.todo import STATE_KEY
from swarm.tui.app import ConfirmStop, ConversationScreen, DashboardApp, TopologyScreen

pytestmark = pytest.mark.integration

AGENTS = ["core-dev", "tui-dev", "doc-writer"]


async def stored_run(board: Blackboard) -> None:
    plan = {"loaded": {"config": {"budget": {"max_usd": 2.0, "max_tokens": 10_000}}}}
    await board.init_run(
        {
            "name": "demo-run",
            "phases": json.dumps(["Phase 1: Core", "Phase 2: UI"]),
            "topology": "custom",
            "edges": json.dumps([["core-dev", "tui-dev"], ["tui-dev", "doc-writer"]]),
            "plan": json.dumps(plan),
        },
        [{"name": n, "role": n.split("-")[0]} for n in AGENTS],
    )
    for tid, phase, needs in (
        ("core-traits", "Phase 1: Core", []),
        ("sessions", "Phase 1: Core", []),
        ("tui", "Phase 2: UI", ["core-traits", "sessions"]),
    ):
        await board.create_task(
            {"id": tid, "title": tid, "phase": phase, "role": "core", "description": "d"}, needs
        )
    await board.r.hset(board.k.task("sessions"), mapping={"status": "completed"})
    await board.update_agent("core-dev", status="working", task="core-traits")
    await board.update_agent("tui-dev", status="waiting", waiting_for="core-traits,sessions")
    await board.update_agent("doc-writer", status="done", task="")
    todos = [
        {"content": "Write the trait", "status": "completed"},
        {"content": "Test it", "status": "in_progress"},
    ]
    await board.state_set("core-dev", STATE_KEY, json.dumps(todos))
    await board.state_set("doc-writer", STATE_KEY, json.dumps(todos))
    session = [
        {"role": "user", "content": [{"type": "text", "text": "Task core-traits: write it"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Reading first."},
                {"type": "tool_call", "id": "c1", "name": "read", "input": {"file_path": "a.rs"}},
                {
                    "type": "tool_call",
                    "id": "c0",
                    "name": "send_message",
                    "input": {"to": "tui-dev", "body": "the trait\nis in"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_call_id": "c1", "content": "line one\nline two"},
                {"type": "tool_result", "tool_call_id": "c0", "content": "sent"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_call",
                    "id": "c2",
                    "name": "bash",
                    "input": {"command": "cargo test"},
                }
            ],
        },
    ]
    await board.record_turn(
        "core-dev", "core-traits", session, usage={"usd": 0.5, "turns": 2, "compactions": 1}
    )
    await board.emit(
        "context_compacted",
        "core-traits",
        "core-dev",
        {"reason": "window", "tokens_before": 9000, "tokens_after": 1200, "turns": 7},
    )
    await board.emit("merged", "sessions", "doc-writer", {"commit": "abcdef1234567", "files": 2})
    await board.emit("task_claimed", "core-traits", "core-dev", {"attempt": 1})
    await board.send("core-dev", "tui-dev", "the trait\nis in")


def text_of(app: DashboardApp, widget: str) -> str:
    from rich.console import Console

    console = Console(width=160, record=True)
    static = app.screen.query_one(f"#{widget}", Static)
    console.print(static.content)
    return console.export_text()


async def settle(app: DashboardApp, pilot: object) -> None:
    for _ in range(40):
        if app.state.snap is not None and app.redraws:
            return
        await asyncio.sleep(0.05)


async def test_main_view_shows_stored_state(board: Blackboard) -> None:
    await stored_run(board)
    app = DashboardApp(board, asyncio.Event())
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        header = text_of(app, "header")
        assert "demo-run" in header and "of $2.00" in header and "25%" in header
        assert "of 10,000" in header
        phases = text_of(app, "phases")
        assert "Phase 1: Core" in phases and "50%" in phases and "1/2" in phases
        assert "Phase 2: UI" in phases and "0%" in phases
        agents = text_of(app, "agents")
        # why it waits, its current tool (from the session's last message), its todo
        assert "waiting for core-traits, sessions" in agents
        core = next(line for line in agents.splitlines() if "core-dev" in line)
        assert "bash" in core and "1/2 Test it" in core
        assert "ctx" in agents.splitlines()[0]  # compactions: a column once there are any
        done = next(line for line in agents.splitlines() if "doc-writer" in line)
        assert "Test it" not in done  # a finished agent's todo is not in progress
        events = text_of(app, "events")
        assert "context_compacted" in events and "9,000 -> 1,200" in events
        assert "merged abcdef1234" in events


async def test_keys_select_open_conversation_and_topology(board: Blackboard) -> None:
    await stored_run(board)
    app = DashboardApp(board, asyncio.Event())
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        await pilot.press("j", "k")
        assert app.selected == 0
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConversationScreen)
        for _ in range(20):
            if app.screen.convo is not None:
                break
            await asyncio.sleep(0.05)
        convo = text_of(app, "convo")
        assert "→ read a.rs" in convo and "→ bash cargo test" in convo
        assert "← line one  (2 lines)" in convo and "line two" not in convo  # folded
        await pilot.press("f")
        assert "line two" in text_of(app, "convo")
        await pilot.press("escape")
        assert not isinstance(app.screen, ConversationScreen)
        await pilot.press("t")
        await pilot.pause()
        assert isinstance(app.screen, TopologyScreen)
        title = text_of(app, "topo-title")
        assert "3 agents, 2 edges, 1 carried messages" in title
        canvas = text_of(app, "topo")
        for name in AGENTS:
            assert f"[{name}]" in canvas
        assert "•" in canvas and "·" in canvas  # a busy edge and a quiet one
        for _ in range(20):  # the text is looked up in the sender's session
            if "the trait is in" in text_of(app, "topo-recent"):
                break
            await asyncio.sleep(0.05)
        assert "core-dev → tui-dev  the trait is in" in text_of(app, "topo-recent")
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_value == "quit"


async def test_stop_asks_first_then_requests_the_stop(board: Blackboard) -> None:
    await stored_run(board)
    app = DashboardApp(board, asyncio.Event(), hosts_run=True)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        await pilot.press("s")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmStop)
        await pilot.press("n")
        await pilot.pause()
        assert (await board.meta())["state"] == "running"
        await pilot.press("s")
        await pilot.pause()
        await pilot.press("y")
        for _ in range(20):
            if (await board.meta()).get("state") != "running":
                break
            await asyncio.sleep(0.05)
        meta = await board.meta()  # what `swarm stop` stores
        assert meta["state"] == "interrupted" and "stopped from the dashboard" in meta["reason"]
        await pilot.press("q")
    assert app.return_value == "detached"


async def test_redraws_at_most_four_times_a_second(board: Blackboard) -> None:
    await stored_run(board)
    app = DashboardApp(board, asyncio.Event())
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        start, t0 = app.redraws, time.monotonic()
        # a busy run: events as fast as they can be written, for 1.5 s
        while time.monotonic() - t0 < 1.5:
            await board.emit("tool_call", "core-traits", "core-dev", {"summary": "read x"})
            await asyncio.sleep(0.005)
        rate = (app.redraws - start) / (time.monotonic() - t0)
        assert 1 <= rate <= 4.5, rate
        await pilot.press("q")


async def test_the_run_ending_closes_the_view(board: Blackboard) -> None:
    await stored_run(board)
    stop = asyncio.Event()
    app = DashboardApp(board, stop, hosts_run=True)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        stop.set()
        for _ in range(60):
            if app.return_value is not None:
                break
            await asyncio.sleep(0.05)
    assert app.return_value == "finished"


async def test_a_answers_pending_approvals_while_attended(board: Blackboard) -> None:
    from swarm import approvals
    from swarm.tui.app import ApprovalsScreen

    await stored_run(board)
    push = await approvals.request(
        board, agent="core-dev", task="core-traits", tool="bash", summary="git push", rule="git*"
    )
    await asyncio.sleep(0.01)  # pending approvals are listed oldest first
    rm = await approvals.request(
        board, agent="tui-dev", task="tui", tool="bash", summary="rm -r build", rule="rm*"
    )
    app = DashboardApp(board, asyncio.Event())
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        assert await approvals.attended(board)  # an open dashboard can answer
        assert "2 approval(s) pending: press a" in text_of(app, "header")
        await pilot.press("a")
        await pilot.pause()
        assert isinstance(app.screen, ApprovalsScreen)
        shown = text_of(app, "approvals")
        assert "core-dev [core-traits] bash: git push  (rule git*)" in shown
        assert "tui-dev [tui] bash: rm -r build" in shown
        await pilot.press("A")  # always allow the first
        await pilot.pause()
        assert "allowed always: bash for core-dev" in text_of(app, "approvals")
        await pilot.press("n")  # deny the other
        await pilot.pause()
        ans = await approvals.answer_of(board, push.id)
        assert ans is not None and (ans.decision, ans.remember) == ("allow", "always")
        ans = await approvals.answer_of(board, rm.id)
        assert ans is not None and ans.decision == "deny"
        assert await approvals.pending(board) == []
        await pilot.press("escape")
        await pilot.press("q")
    await app.release()
    assert not await approvals.attended(board)
