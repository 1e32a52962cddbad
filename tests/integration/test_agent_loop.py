"""The agent loop in-process (no Ray) on a real Redis against the scripted server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from swarm.blackboard.board import Blackboard
from swarm.hosting import agent_specs, run_agent
from swarm.llmstub import StubScript, StubServer
from swarm.plan import make_plan, store_plan
from swarm.providers.types import Message, TextBlock, ToolCall

HEAD = """\
name: loop
goal: test the loop
model: anthropic/claude-sonnet-5-5
budget: {max_turns: 3}
agents:
  - {name: dev, role: developer}
phases:
  - name: one
    tasks:
      - {id: a, title: A, agent: dev}
      - {id: b, title: B, agent: dev, needs: [a]}
"""


async def run(
    board: Blackboard,
    tmp_path: Path,
    conversations: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    before: Any = None,
    head: str = HEAD,
) -> StubServer:
    (tmp_path / "swarm.yaml").write_text(head)
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    stub = StubServer(StubScript.model_validate({"conversations": conversations}))
    stub.start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    try:
        plan = make_plan(tmp_path / "swarm.yaml", repo, board.run_id, tmp_path / ".swarm")
        await store_plan(board, plan)
        if before is not None:
            await before()
        specs = agent_specs(plan, board.url, tmp_path / "run")
        await asyncio.wait_for(asyncio.gather(*(run_agent(s) for s in specs)), 60)
    finally:
        stub.stop()
    return stub


def bash(cmd: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "bash", "input": {"command": cmd}}]}


async def statuses(board: Blackboard) -> dict[str, tuple[str, str]]:
    return {t.id: (t.status, t.error) for t in await board.tasks()}


async def test_max_turns_fails_the_task_and_its_dependents(board, tmp_path, monkeypatch) -> None:
    await run(
        board,
        tmp_path,
        [{"task": "a", "turns": [bash("echo 1"), bash("echo 2"), bash("echo 3"), bash("echo 4")]}],
        monkeypatch,
    )
    assert await statuses(board) == {
        "a": ("failed", "max_turns (3) reached"),
        "b": ("failed", "dependency a failed"),
    }
    assert len(await board.session("a")) == 7  # user + 3 x (assistant, tool results)


async def test_task_fail_tool(board, tmp_path, monkeypatch) -> None:
    await run(
        board,
        tmp_path,
        [
            {"task": "a", "turns": [{"text": "done"}]},
            {
                "task": "b",
                "turns": [
                    {
                        "tool_calls": [
                            {
                                "name": "task_fail",
                                "input": {"reason": "needs a database we do not have"},
                            }
                        ]
                    }
                ],
            },
        ],
        monkeypatch,
    )
    assert (await statuses(board))["b"] == ("failed", "needs a database we do not have")


async def test_non_retryable_error_fails_at_once(board, tmp_path, monkeypatch) -> None:
    stub = await run(board, tmp_path, [{"task": "a", "turns": [bash("echo 1")]}], monkeypatch)
    status, error = (await statuses(board))["a"]
    assert status == "failed"
    assert error.startswith("provider error: anthropic: HTTP 400: stub: no scripted turn 2")
    assert [r.status for r in stub.requests] == [200, 400]  # no retry of a 400
    events = [e for e in await board.events() if e.type == "provider_error"]
    assert len(events) == 1 and events[0].data["status"] == 400


async def test_retryable_faults_are_retried(board, tmp_path, monkeypatch) -> None:
    faults = [{"status": 429, "retry_after_ms": 20}, {"status": 529}, {"kind": "stream_error"}]
    stub = await run(
        board,
        tmp_path,
        [
            {"task": "a", "turns": [{"text": "done", "faults": faults}]},
            {"task": "b", "turns": [{"text": "done"}]},
        ],
        monkeypatch,
    )
    assert await statuses(board) == {"a": ("completed", ""), "b": ("completed", "")}
    assert [r.status for r in stub.requests if r.task == "a"] == [429, 529, 200, 200]
    retries = [e.data for e in await board.events() if e.type == "provider_retry"]
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    usage = await board.usage("task", "a")
    assert usage["requests"] == 4 and usage["turns"] == 1
    # the stream that broke half way left nothing behind
    assert [m["role"] for m in await board.session("a")] == ["user", "assistant"]


async def test_resume_repairs_an_interrupted_tool_call(board, tmp_path, monkeypatch) -> None:
    async def crashed_mid_tool() -> None:
        user = Message.user_text("Task a: A\n")
        call = Message(
            role="assistant",
            content=[
                TextBlock(text="running it"),
                ToolCall(
                    id="toolu_000000000000000000000001", name="bash", input={"command": "sleep 100"}
                ),
            ],
        )
        await board.record_turn("dev", "a", [user.model_dump(), call.model_dump()])
        claim = await board.claim("dev", "developer", 30_000)
        assert claim is not None and claim[0] == "a"

    stub = await run(
        board,
        tmp_path,
        [
            {
                "task": "a",
                "turns": [
                    bash("never sent"),
                    {"text": "recovered", "expect": {"last_tool_result_contains": "interrupted"}},
                ],
            },
            {"task": "b", "turns": [{"text": "done"}]},
        ],
        monkeypatch,
        before=crashed_mid_tool,
    )
    assert await statuses(board) == {"a": ("completed", ""), "b": ("completed", "")}
    assert [r.turn for r in stub.requests if r.task == "a"] == [1]  # continued, not restarted
    assert "transcript_repaired" in [e.type for e in await board.events()]


async def test_stored_final_answer_completes_without_a_request(
    board, tmp_path, monkeypatch
) -> None:
    async def crashed_after_answer() -> None:
        msgs = [
            Message.user_text("Task a: A\n"),
            Message(role="assistant", content=[TextBlock(text="all done")]),
        ]
        await board.record_turn("dev", "a", [m.model_dump() for m in msgs])
        await board.claim("dev", "developer", 30_000)

    stub = await run(
        board,
        tmp_path,
        [{"task": "b", "turns": [{"text": "done"}]}],
        monkeypatch,
        before=crashed_after_answer,
    )
    task = await board.task("a")
    assert task is not None and (task.status, task.result) == ("completed", "all done")
    assert not [r for r in stub.requests if r.task == "a"]


async def test_doom_loop_guard(board, tmp_path, monkeypatch) -> None:
    same = bash("cat missing.txt")
    await run(
        board,
        tmp_path,
        [
            {
                "task": "a",
                "turns": [
                    same,
                    same,
                    {**same, "expect": {"last_tool_result_contains": "Exit code"}},
                ],
            },
        ],
        monkeypatch,
    )
    session = await board.session("a")
    third = session[-1]["content"][0]
    assert third["is_error"] and "identical input 3 times in a row" in third["content"]
    assert [e.type for e in await board.events()].count("doom_loop") == 1


async def test_an_internal_error_costs_the_task_not_the_agent(board, tmp_path, monkeypatch) -> None:
    from swarm.agent import AgentLoop

    async def broken(self: AgentLoop, *args: Any) -> Any:
        raise KeyError("tool_use_id")

    monkeypatch.setattr(AgentLoop, "_request", broken)
    await run(board, tmp_path, [{"task": "a", "turns": [{"text": "never"}]}], monkeypatch)
    assert await statuses(board) == {
        "a": ("failed", "internal error: KeyError: 'tool_use_id'"),
        "b": ("failed", "dependency a failed"),
    }
    assert "agent_error" in [e.type for e in await board.events()]
    assert (await board.r.hget(board.k.agent("dev"), "status")) == "done"


async def test_cut_off_and_empty_replies_are_not_acted_on(board, tmp_path, monkeypatch) -> None:
    from swarm.agent import AgentLoop
    from swarm.providers.types import ModelResponse, Usage

    cut_call = Message(
        role="assistant",
        content=[
            ToolCall(id="toolu_1", name="write", input={"file_path": "half.txt", "content": "par"})
        ],
    )
    replies = list(
        [
            ModelResponse(message=cut_call, usage=Usage(), stop_reason="max_tokens"),
            ModelResponse(
                message=Message(role="assistant", content=[TextBlock(text="I have")]),
                usage=Usage(),
                stop_reason="max_tokens",
            ),
            ModelResponse(
                message=Message(role="assistant", content=[]), usage=Usage(), stop_reason="end_turn"
            ),
            ModelResponse(
                message=Message(role="assistant", content=[TextBlock(text="all done")]),
                usage=Usage(),
                stop_reason="end_turn",
            ),
        ]
    )

    async def scripted(self: AgentLoop, *args: Any) -> ModelResponse:
        if replies:
            return replies.pop(0)
        done = Message(role="assistant", content=[TextBlock(text="b done")])
        return ModelResponse(message=done, usage=Usage(), stop_reason="end_turn")

    monkeypatch.setattr(AgentLoop, "_request", scripted)
    head = HEAD.replace("max_turns: 3", "max_turns: 6")
    await run(board, tmp_path, [{"turns": [{"text": "unused"}]}], monkeypatch, head=head)
    assert (await board.task("a")).result == "all done"  # type: ignore[union-attr]
    assert not (tmp_path / "repo" / "half.txt").exists()  # the cut-off call never ran
    texts = [json.dumps(m) for m in await board.session("a")]
    assert "hit the output limit (8192 tokens) before this call was complete" in texts[2]
    assert "cut off at the output limit" in texts[4]
    assert "Your reply was empty" in texts[6]


async def test_a_lost_lease_stops_the_turn(board, tmp_path, monkeypatch) -> None:
    """The task passes to another holder while the model answers: the answer is neither
    stored in the session nor acted on."""

    async def steal_then_finish() -> None:
        while await board.r.llen(board.k.session("a")) < 1:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the request is in flight (it takes 1.5 s)
        await board.r.hset(board.k.task("a"), mapping={"assignee": "intruder"})
        await asyncio.sleep(2.0)
        assert await board.complete("a", "intruder", "done elsewhere")

    async def before() -> None:
        asyncio.get_running_loop().create_task(steal_then_finish())

    await run(
        board,
        tmp_path,
        [
            {"task": "a", "turns": [{"delay_s": 1.5, **bash("echo ran > ran.txt")}]},
            {"task": "b", "turns": [{"text": "done"}]},
        ],
        monkeypatch,
        before=before,
    )
    assert await statuses(board) == {"a": ("completed", ""), "b": ("completed", "")}
    assert not (tmp_path / "repo" / "ran.txt").exists()
    assert [m["role"] for m in await board.session("a")] == ["user"]
    assert "lease_lost" in [e.type for e in await board.events() if e.task == "a"]


async def test_task_fail_survives_a_crash(board, tmp_path, monkeypatch) -> None:
    async def crashed_after_giving_up() -> None:
        call = Message(
            role="assistant",
            content=[
                ToolCall(
                    id="toolu_000000000000000000000009",
                    name="task_fail",
                    input={"reason": "no such API"},
                )
            ],
        )
        await board.record_turn(
            "dev", "a", [Message.user_text("Task a: A\n").model_dump(), call.model_dump()]
        )
        await board.claim("dev", "developer", 30_000)

    stub = await run(
        board,
        tmp_path,
        [{"turns": [{"text": "unused"}]}],
        monkeypatch,
        before=crashed_after_giving_up,
    )
    assert await statuses(board) == {
        "a": ("failed", "no such API"),
        "b": ("failed", "dependency a failed"),
    }
    assert len(stub.requests) == 0


async def test_an_idle_agent_wakes_only_for_events_that_can_give_it_work(
    board, tmp_path, monkeypatch
) -> None:
    """Other agents' turns and status changes do not make a waiting agent look for work
    again (each look is a claim and a read of every task); a task completing does."""
    head = HEAD.replace(
        "agents:\n  - {name: dev, role: developer}",
        "agents:\n  - {name: dev, role: developer}\n  - {name: other, role: developer}",
    ).replace("{id: a, title: A, agent: dev}", "{id: a, title: A, agent: other}")
    (tmp_path / "swarm.yaml").write_text(head)
    (tmp_path / "repo").mkdir()
    stub = StubServer(
        StubScript.model_validate({"conversations": [{"task": "b", "turns": [{"text": "ok"}]}]})
    ).start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    try:
        plan = make_plan(
            tmp_path / "swarm.yaml", tmp_path / "repo", board.run_id, tmp_path / ".swarm"
        )
        await store_plan(board, plan)
        spec = next(
            s for s in agent_specs(plan, board.url, tmp_path / "run") if s.agent.name == "dev"
        )
        from swarm.hosting import build_loop

        loop = build_loop(spec, board)
        looks = 0
        claim = loop.board.claim

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal looks
            looks += 1
            return await claim(*args, **kwargs)

        monkeypatch.setattr(loop.board, "claim", counted)
        agent = asyncio.create_task(loop.run())
        while looks == 0:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        before = looks
        for n in range(40):  # another agent at work: turns, tool calls, status changes
            await board.emit("model_turn", task="a", agent="other", data={"turn": n})
            await board.update_agent(
                "other", event="agent_status", data={"status": "working"}, status="working"
            )
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert looks == before  # woken by none of them
        c = await board.claim("other", "developer", 30_000)
        assert c is not None and c.task_id == "a"
        assert await board.complete("a", "other", "done", c.token)
        await asyncio.wait_for(agent, 30)  # the completion woke it: it took b and finished
    finally:
        stub.stop()
    assert await statuses(board) == {"a": ("completed", ""), "b": ("completed", "")}
