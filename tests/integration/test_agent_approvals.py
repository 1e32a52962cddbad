"""`ask` permissions in the agent loop (in-process, real Redis, the scripted server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from swarm import approvals
from swarm.blackboard.board import Blackboard
from swarm.hosting import agent_specs, run_agent
from swarm.llmstub import StubScript, StubServer
from swarm.plan import make_plan, store_plan

pytestmark = pytest.mark.integration

HEAD = """\
name: asks
goal: test approvals
model: anthropic/claude-sonnet-5-5
budget: {max_turns: 6}
permissions:
  bash: {"*": allow, "touch approved*": ask, "touch denied*": ask}
agents:
  - {name: dev, role: developer}
phases:
  - name: one
    tasks:
      - {id: a, title: A, agent: dev}
"""

Answerer = Callable[[approvals.Approval], Awaitable[None]]


def bash(*cmds: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "bash", "input": {"command": c}} for c in cmds]}


class Harness:
    def __init__(self, board: Blackboard, tmp_path: Path, head: str = HEAD) -> None:
        self.board, self.tmp = board, tmp_path
        (tmp_path / "swarm.yaml").write_text(head)
        self.repo = tmp_path / "repo"
        self.repo.mkdir(exist_ok=True)
        self.plan: Any = None

    async def run(
        self,
        turns: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch,
        answer: Answerer | None = None,
        stop_when_asked: bool = False,
        stop_when: Callable[[], bool] | None = None,
    ) -> StubServer:
        stub = StubServer(
            StubScript.model_validate({"conversations": [{"task": "a", "turns": turns}]})
        )
        stub.start()
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        answering: asyncio.Task[None] | None = None
        try:
            if self.plan is None:
                self.plan = make_plan(
                    self.tmp / "swarm.yaml", self.repo, self.board.run_id, self.tmp / ".swarm"
                )
                await store_plan(self.board, self.plan)
            specs = agent_specs(self.plan, self.board.url, self.tmp / "run")
            agents = asyncio.ensure_future(asyncio.gather(*(run_agent(s) for s in specs)))
            if answer is not None or stop_when_asked:
                answering = asyncio.create_task(
                    self._answer(answer, agents, stop_when_asked, stop_when)
                )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(agents, 60)
        finally:
            if answering is not None:
                answering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answering
            stub.stop()
        return stub

    async def _answer(
        self,
        answer: Answerer | None,
        agents: asyncio.Future[Any],
        stop: bool,
        stop_when: Callable[[], bool] | None,
    ) -> None:
        seen: set[str] = set()
        while True:
            if stop_when is not None and stop_when():
                agents.cancel()  # a stop (or a crash) while the approved call runs
                return
            for ap in await approvals.pending(self.board):
                if ap.id in seen:
                    continue
                seen.add(ap.id)
                if stop:
                    agents.cancel()  # a stop while the call waits
                    return
                assert answer is not None
                await answer(ap)
            await asyncio.sleep(0.05)


def tool_results(stub: StubServer) -> list[str]:
    """Every tool result text the model was sent, in the last request."""
    body = stub.requests.snapshot()[-1].body
    out = []
    for msg in body["messages"]:
        if isinstance(msg["content"], list):
            for block in msg["content"]:
                if block.get("type") == "tool_result":
                    content = block["content"]
                    if isinstance(content, list):
                        content = "".join(c.get("text", "") for c in content)
                    out.append(content)
    return out


async def test_allow_one_deny_another(board, tmp_path, monkeypatch) -> None:
    await approvals.attach(board, "test", 60)

    async def answer(ap: approvals.Approval) -> None:
        if "approved" in ap.summary:
            assert await approvals.answer(board, ap.id, "allow")
        else:
            assert await approvals.answer(board, ap.id, "deny", message="not on my watch")

    h = Harness(board, tmp_path)
    stub = await h.run(
        [bash("touch approved.txt && echo made-it"), bash("touch denied.txt"), {"text": "done"}],
        monkeypatch,
        answer,
    )
    assert (await board.task("a")).status == "completed"  # type: ignore[union-attr]
    assert (h.repo / "approved.txt").exists()
    assert not (h.repo / "denied.txt").exists()
    results = tool_results(stub)
    assert "made-it" in results[0]
    assert "not approved" in results[1] and "not on my watch" in results[1]
    asked = [e for e in await board.events() if e.type == "approval_requested"]
    assert [e.data["rule"] for e in asked] == ["touch approved*", "touch denied*"]
    assert all(e.agent == "dev" and e.task == "a" for e in asked)


async def test_unattended_without_timeout_denies_at_once(board, tmp_path, monkeypatch) -> None:
    h = Harness(board, tmp_path)
    stub = await h.run([bash("touch approved.txt"), {"text": "done"}], monkeypatch)
    assert not (h.repo / "approved.txt").exists()
    assert "No one is attached to approve it" in tool_results(stub)[0]
    assert not [e for e in await board.events() if e.type == "approval_requested"]


async def test_timeout_denies_with_a_message(board, tmp_path, monkeypatch) -> None:
    h = Harness(board, tmp_path, HEAD.replace("agents:", "approvals: {timeout_s: 0.5}\nagents:"))
    stub = await h.run([bash("touch approved.txt"), {"text": "done"}], monkeypatch)
    assert not (h.repo / "approved.txt").exists()
    assert "timed out after 0.5s" in tool_results(stub)[0]
    answered = [e for e in await board.events() if e.type == "approval_answered"]
    assert [e.data["by"] for e in answered] == ["timeout"]


async def test_always_allows_the_rule_for_the_run(board, tmp_path, monkeypatch) -> None:
    await approvals.attach(board, "test", 60)
    asked: list[str] = []

    async def answer(ap: approvals.Approval) -> None:
        asked.append(ap.summary)
        assert await approvals.answer(board, ap.id, "allow", "always")

    h = Harness(board, tmp_path)
    await h.run(
        [bash("touch approved-1"), bash("touch approved-2"), {"text": "done"}], monkeypatch, answer
    )
    assert (h.repo / "approved-1").exists() and (h.repo / "approved-2").exists()
    assert asked == ["touch approved-1"]  # the second call matched the remembered rule


async def test_summary_is_redacted(board, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "s3cr3t-value-123")
    await approvals.attach(board, "test", 60)
    summaries: list[str] = []

    async def answer(ap: approvals.Approval) -> None:
        summaries.append(ap.summary)
        await approvals.answer(board, ap.id, "deny")

    h = Harness(board, tmp_path)
    await h.run([bash("touch approved s3cr3t-value-123"), {"text": "done"}], monkeypatch, answer)
    assert summaries == ["touch approved [redacted]"]
    raw = json.dumps([e.model_dump() for e in await board.events()])
    assert "s3cr3t-value-123" not in raw


async def test_a_stop_while_waiting_asks_again_after_restart(board, tmp_path, monkeypatch) -> None:
    await approvals.attach(board, "test", 60)
    h = Harness(board, tmp_path)
    turns = [bash("echo x >> counter.txt", "touch approved.txt"), {"text": "done"}]
    await h.run(turns, monkeypatch, stop_when_asked=True)
    task = await board.task("a")
    assert task is not None and task.status == "claimed"
    assert not (h.repo / "approved.txt").exists()
    assert await approvals.pending(board) == []  # withdrawn when it stopped waiting
    assert (h.repo / "counter.txt").read_text() == "x\n"

    async def allow(ap: approvals.Approval) -> None:
        assert await approvals.answer(board, ap.id, "allow")

    stub = await h.run(turns, monkeypatch, allow)  # the restarted agent asks again
    assert (await board.task("a")).status == "completed"  # type: ignore[union-attr]
    assert (h.repo / "approved.txt").exists()
    assert (h.repo / "counter.txt").read_text() == "x\n"  # the finished call did not run twice
    results = tool_results(stub)
    assert len(results) == 2 and not any("interrupted" in r for r in results)
    kinds = [e.type for e in await board.events() if e.type.startswith("approval_")]
    assert kinds == [
        "approval_requested",
        "approval_withdrawn",
        "approval_requested",
        "approval_answered",
    ]


async def test_a_stop_while_the_approved_call_runs_is_not_run_again(
    board, tmp_path, monkeypatch
) -> None:
    await approvals.attach(board, "test", 60)
    h = Harness(board, tmp_path)
    turns = [
        bash(
            "echo x >> counter.txt", "touch approved.txt && sleep 30", "echo after >> counter.txt"
        ),
        {"text": "done"},
    ]

    async def allow(ap: approvals.Approval) -> None:
        assert await approvals.answer(board, ap.id, "allow")

    await h.run(turns, monkeypatch, allow, stop_when=(h.repo / "approved.txt").exists)
    assert (h.repo / "counter.txt").read_text() == "x\n"
    stub = await h.run(turns, monkeypatch, allow)
    assert (await board.task("a")).status == "completed"  # type: ignore[union-attr]
    # the first call is not run again, the interrupted one is reported (its effect is
    # unknown, so it is neither run nor asked about again), the last one runs
    assert (h.repo / "counter.txt").read_text() == "x\nafter\n"
    results = tool_results(stub)
    assert results[1].startswith("interrupted")
    asked = [e for e in await board.events() if e.type == "approval_requested"]
    assert len(asked) == 1
