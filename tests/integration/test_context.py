"""Long conversations, wire-level: the agent loop in-process (no Ray) on a real Redis against
the scripted server, in the Anthropic and the OpenAI formats. Every size is checked against
the scripted server's own request log."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from swarm.blackboard.board import Blackboard
from swarm.context import COMPACT_MARKER
from swarm.dashboard import describe
from swarm.hosting import agent_specs, build_loop, run_agent
from swarm.llmstub import StubScript, StubServer
from swarm.plan import make_plan, store_plan
from swarm.report import markdown
from swarm.status import snapshot
from swarm.tools.base import Tool, ToolContext, ToolOutput

MODELS = {"anthropic": "anthropic/claude-sonnet-5-5", "openai": "openai/gpt-5"}
WINDOW = 16_000
FILES = 60
FILE_CHARS = 5_600


def config(provider: str, extra: str = "", tasks: str = "") -> str:
    model = MODELS[provider]
    return f"""\
name: ctx
goal: test long conversations
model: {model}
budget: {{max_turns: 90}}
reliability: {{no_progress_turns: 0}}
lease_s: 5
models:
  {model}: {{context_window: {WINDOW}}}
{extra}agents:
  - {{name: dev, role: developer}}
phases:
  - name: one
    tasks:
{tasks or "      - {id: a, title: A, agent: dev}"}
"""


def env(provider: str, stub: StubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    if provider == "anthropic":
        monkeypatch.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", f"{stub.base_url}/openai/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")


async def start(
    board: Blackboard,
    tmp_path: Path,
    provider: str,
    script: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    cfg: str | None = None,
) -> tuple[StubServer, Any]:
    (tmp_path / "swarm.yaml").write_text(cfg or config(provider))
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    stub = StubServer(StubScript.model_validate(script)).start()
    env(provider, stub, monkeypatch)
    plan = make_plan(tmp_path / "swarm.yaml", repo, board.run_id, tmp_path / ".swarm")
    await store_plan(board, plan)
    return stub, plan


async def run_all(board: Blackboard, tmp_path: Path, plan: Any, timeout: float = 120) -> None:
    specs = agent_specs(plan, board.url, tmp_path / "run")
    await asyncio.wait_for(asyncio.gather(*(run_agent(s) for s in specs)), timeout)


def read(i: int) -> dict[str, Any]:
    return {"tool_calls": [{"name": "read", "input": {"file_path": f"f{i:02}.txt"}}]}


def long_task_files(repo: Path) -> int:
    repo.mkdir(exist_ok=True)
    total = 0
    for i in range(FILES):
        line = f"file {i:02} line of some fairly ordinary source text, number "
        text = "".join(f"{line}{n}\n" for n in range(FILE_CHARS // (len(line) + 3)))
        (repo / f"f{i:02}.txt").write_text(text)
        total += len(text)
    return total


def turn_requests(stub: StubServer) -> list[Any]:
    return [r for r in stub.requests if r.purpose == "turn"]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_long_task_stays_inside_the_window(board, tmp_path, monkeypatch, provider) -> None:
    total = long_task_files(tmp_path / "repo")
    assert total / 4 >= 5 * WINDOW  # the tool output is five context windows long
    turns = [read(i) for i in range(FILES)] + [{"text": "Read every file."}]
    script = {"context_window": WINDOW, "conversations": [{"task": "a", "turns": turns}]}
    stub, plan = await start(board, tmp_path, provider, script, monkeypatch)
    try:
        await run_all(board, tmp_path, plan)
    finally:
        stub.stop()
    task = await board.task("a")
    assert task is not None and (task.status, task.result) == ("completed", "Read every file.")
    requests = list(stub.requests)
    # no request went over the window (the server refuses one that does, with a 400)
    assert all(r.status == 200 for r in requests), [(r.status, r.error) for r in requests]
    assert max(r.tokens + limit(r) for r in requests) <= WINDOW
    assert [r.turn for r in turn_requests(stub)] == list(range(FILES + 1))  # each turn once
    events = await board.events()
    pruned = [e.data for e in events if e.type == "context_pruned"]
    compacted = [e.data for e in events if e.type == "context_compacted"]
    assert pruned and compacted
    assert all(c["tokens_after"] < c["tokens_before"] for c in compacted)
    assert all(c["summary_by"] == "model" for c in compacted)
    assert len([r for r in requests if r.purpose == "summary"]) == len(compacted)
    session = await board.session("a")
    headers = [m for m in session if "[Conversation compacted after" in json.dumps(m)]
    assert len(headers) == len(compacted)
    placeholders = [m for m in session if "[output pruned" in json.dumps(m)]
    assert not placeholders  # the stored transcript keeps every output; the view prunes
    # the last request shows pruned placeholders or a compacted start, never everything
    assert "[Conversation compacted after" in json.dumps(requests[-1].body)
    # the dashboard and the report say so, from the stored counts and events
    snap = await snapshot(board)
    assert (snap.usage.compactions, snap.usage.prunes) == (len(compacted), len(pruned))
    assert snap.agents[0].compactions == len(compacted)
    assert f"{len(compacted)} compaction(s), {len(pruned)} prune(s)" in markdown(snap)
    line = describe(next(e for e in events if e.type == "context_compacted"))
    assert line.startswith("context compacted (threshold): ") and " -> " in line


async def stored_turns(board: Blackboard, n: int) -> bool:
    return any(e.type == "model_turn" and e.data["turn"] >= n for e in await board.events())


def limit(r: Any) -> int:
    body = r.body
    return int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_task_resumed_after_a_kill_continues_from_the_compacted_view(
    board, tmp_path, monkeypatch, provider
) -> None:
    long_task_files(tmp_path / "repo")
    turns = [read(i) for i in range(FILES)] + [{"text": "Read every file."}]
    turns[45] = {**turns[45], "delay_s": 3}  # the agent is killed while it waits here
    script = {"context_window": WINDOW, "conversations": [{"task": "a", "turns": turns}]}
    stub, plan = await start(board, tmp_path, provider, script, monkeypatch)
    try:
        specs = agent_specs(plan, board.url, tmp_path / "run")
        agent = asyncio.create_task(run_agent(specs[0]))
        deadline = time.monotonic() + 90
        while not await stored_turns(board, 45):  # then it runs a read and asks for turn 46
            assert time.monotonic() < deadline and not agent.done()
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the request for turn 46 is out (the server waits 3 s)
        cancelled_at = time.time()
        agent.cancel()  # as good as a kill: nothing after the last stored turn happens
        with pytest.raises(asyncio.CancelledError):
            await agent
        compactions = [e for e in await board.events() if e.type == "context_compacted"]
        assert compactions  # the kill came after a compaction
        task = await board.task("a")
        assert task is not None and task.ctx_start > 0
        view_start = task.ctx_start
        await asyncio.sleep(5.5)  # the lease lapses, as it would after a kill
        assert await board.requeue_expired() == 1
        await run_all(board, tmp_path, plan)
    finally:
        stub.stop()
    task = await board.task("a")
    assert task is not None and task.status == "completed"
    before = [r for r in stub.requests if r.received_at < cancelled_at and r.purpose == "turn"]
    after = [r for r in stub.requests if r.received_at > cancelled_at]
    killed, first = before[-1], after[0]
    assert killed.turn == first.turn == 45 and first.purpose == "turn"
    # the resumed request is the killed one again: the same compacted view, the same turn
    session = await board.session("a")
    opening = session[view_start]["content"][0]["text"]
    assert opening.startswith("Task a: A") and "[Conversation compacted after" in opening
    assert json.dumps(opening)[1:-1] in json.dumps(killed.body)
    assert killed.body["messages"] == first.body["messages"]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_an_overflow_error_is_answered_by_compaction_and_a_retry(
    board, tmp_path, monkeypatch, provider
) -> None:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "x.txt").write_text("x = 1\n" * 200)
    turns: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "read", "input": {"file_path": "x.txt"}}]},
        {"tool_calls": [{"name": "read", "input": {"file_path": "x.txt", "offset": 2}}]},
        {"text": "done", "faults": [{"kind": "overflow"}]},
    ]
    script = {"conversations": [{"task": "a", "turns": turns, "summary": "I read x.txt."}]}
    stub, plan = await start(board, tmp_path, provider, script, monkeypatch)
    try:
        await run_all(board, tmp_path, plan)
    finally:
        stub.stop()
    task = await board.task("a")
    assert task is not None and (task.status, task.result) == ("completed", "done")
    kinds = [(r.purpose, r.turn, r.status, r.fault) for r in stub.requests]
    assert kinds == [
        ("turn", 0, 200, None),
        ("turn", 1, 200, None),
        ("turn", 2, 400, "overflow"),
        ("summary", None, 200, None),
        ("turn", 2, 200, None),
    ]
    retried = json.dumps(stub.requests[4].body)
    assert "I read x.txt." in retried and "[Conversation compacted after 2 turns" in retried
    events = [e.type for e in await board.events()]
    assert "context_overflow" in events
    compacted = [e.data for e in await board.events() if e.type == "context_compacted"]
    assert [c["reason"] for c in compacted] == ["overflow"]


async def test_a_task_prompt_too_big_for_the_window_fails_with_that_reason(
    board, tmp_path, monkeypatch
) -> None:
    tasks = "      - {id: a, title: A, agent: dev, description: '" + "word " * 12_000 + "'}"
    cfg = config("anthropic", tasks=tasks)
    script = {"context_window": WINDOW, "conversations": [{"task": "a", "turns": [{"text": "x"}]}]}
    stub, plan = await start(board, tmp_path, "anthropic", script, monkeypatch, cfg)
    try:
        await run_all(board, tmp_path, plan)
    finally:
        stub.stop()
    task = await board.task("a")
    assert task is not None and task.status == "failed"
    assert "does not fit the context window" in task.error and str(WINDOW) in task.error
    assert all(r.fault == "overflow" for r in stub.requests)
    assert len(stub.requests) <= 3


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_refusal_fails_the_task_with_its_reason(
    board, tmp_path, monkeypatch, provider
) -> None:
    turns = [{"text": "Sure, I", "refusal": "I can't help with that request."}]
    script = {"conversations": [{"task": "a", "turns": turns}]}
    stub, plan = await start(board, tmp_path, provider, script, monkeypatch)
    try:
        await run_all(board, tmp_path, plan)
    finally:
        stub.stop()
    task = await board.task("a")
    assert task is not None and task.status == "failed" and not task.result
    assert task.error.startswith("the model refused")
    session = await board.session("a")
    assert [m["role"] for m in session] == ["user", "assistant", "user"]  # reply + note, together
    assert "not the task's result" in json.dumps(session[-1])


async def test_thinking_blocks_go_back_byte_for_byte(board, tmp_path, monkeypatch) -> None:
    thought = 'Let me think.\nThe file \u2014 probably calc.py \u2014 has the bug. {"json": true}'
    turns = [
        {
            "thinking": thought,
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxB/+s=",
            "redacted_thinking": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr",
            "tool_calls": [{"name": "glob", "input": {"pattern": "*.py"}}],
        },
        {"text": "done"},
    ]
    script = {"conversations": [{"task": "a", "turns": turns}]}
    extra = "  anthropic/claude-sonnet-5-5: {context_window: 200000, thinking_budget: 2048}\n"
    cfg = config("anthropic").replace(
        f"models:\n  anthropic/claude-sonnet-5-5: {{context_window: {WINDOW}}}\n",
        "models:\n" + extra,
    )
    stub, plan = await start(board, tmp_path, "anthropic", script, monkeypatch, cfg)
    try:
        await run_all(board, tmp_path, plan)
    finally:
        stub.stop()
    task = await board.task("a")
    assert task is not None and task.status == "completed"
    first, second = stub.requests[0].body, stub.requests[1].body
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    sent = second["messages"][1]["content"]
    assert sent[0] == {
        "type": "thinking",
        "thinking": thought,
        "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxB/+s=",
    }
    assert sent[1] == {
        "type": "redacted_thinking",
        "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr",
    }
    assert sent[2]["type"] == "tool_use"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_model_settings_reach_the_request(board, tmp_path, monkeypatch, provider) -> None:
    model = MODELS[provider]
    extra = (
        f"  {model}: {{context_window: 100000, max_output_tokens: 1234, temperature: 0.25,"
        " parallel_tool_calls: false"
        + (", reasoning_effort: low" if provider == "openai" else "")
        + "}\n"
    )
    cfg = config(provider).replace(
        f"models:\n  {model}: {{context_window: {WINDOW}}}\n", "models:\n" + extra
    )
    script = {"conversations": [{"task": "a", "turns": [{"text": "done"}]}]}
    stub, plan = await start(board, tmp_path, provider, script, monkeypatch, cfg)
    try:
        await run_all(board, tmp_path, plan)
    finally:
        stub.stop()
    body = stub.requests[0].body
    assert body["temperature"] == 0.25
    if provider == "anthropic":
        assert body["max_tokens"] == 1234
        assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    else:
        assert body["max_tokens"] == 1234  # a compatible server's parameter name
        assert body["parallel_tool_calls"] is False and body["reasoning_effort"] == "low"


async def test_a_cut_off_reply_is_stored_with_its_note(board, tmp_path, monkeypatch) -> None:
    turns = [
        {"text": "The answer is that the fun", "stop_reason": "max_tokens"},
        {"text": "Short summary.", "delay_s": 5},
    ]
    script = {"conversations": [{"task": "a", "turns": turns}]}
    stub, plan = await start(board, tmp_path, "anthropic", script, monkeypatch)
    try:
        specs = agent_specs(plan, board.url, tmp_path / "run")
        agent = asyncio.create_task(run_agent(specs[0]))
        while not any(e.type == "reply_refused" for e in await board.events()):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        agent.cancel()  # killed while the second request is out (the server waits 5 s)
        with pytest.raises(asyncio.CancelledError):
            await agent
    finally:
        stub.stop()
    session = await board.session("a")
    assert [m["role"] for m in session] == ["user", "assistant", "user"]
    assert "cut off at the output limit" in json.dumps(session[-1])
    turn_events = [e for e in await board.events() if e.type in ("model_turn", "reply_refused")]
    assert [e.type for e in turn_events] == ["model_turn", "reply_refused"]
    assert turn_events[0].id < turn_events[1].id  # written by the same script, in order


class SlowLook(Tool):
    """A read-only tool that takes a second (as a large grep would)."""

    name = "slow_look"
    description = "Look at something slowly."
    read_only = True

    class Params(BaseModel):
        what: str

    async def run(self, params: Any, ctx: ToolContext) -> ToolOutput:
        await asyncio.sleep(1.0)
        return ToolOutput(text=f"looked at {params.what}")


class SlowTouch(SlowLook):
    name = "slow_touch"
    read_only = False


@pytest.mark.parametrize(("tool", "together"), [("slow_look", True), ("slow_touch", False)])
async def test_read_only_tools_of_a_turn_run_together(
    board, tmp_path, monkeypatch, tool, together
) -> None:
    calls = [{"name": tool, "input": {"what": w}} for w in ("a", "b", "c")]
    script = {"conversations": [{"task": "a", "turns": [{"tool_calls": calls}, {"text": "ok"}]}]}
    stub, plan = await start(board, tmp_path, "anthropic", script, monkeypatch)
    try:
        spec = agent_specs(plan, board.url, tmp_path / "run")[0]
        loop = build_loop(spec, board, {"slow_look": SlowLook(), "slow_touch": SlowTouch()})
        try:
            await asyncio.wait_for(loop.run(), 60)
        finally:
            await loop.provider.aclose()
    finally:
        stub.stop()
    first, second = stub.requests[0], stub.requests[1]
    gap = second.received_at - first.responded_at
    if together:
        assert 1.0 <= gap < 2.0, gap
    else:
        assert gap >= 3.0, gap
    results = [b for b in second.body["messages"][-1]["content"] if b["type"] == "tool_result"]
    assert [r["content"] for r in results] == ["looked at a", "looked at b", "looked at c"]


async def test_an_inbox_message_reaches_the_model_unasked(board, tmp_path, monkeypatch) -> None:
    turns = [
        {"tool_calls": [{"name": "bash", "input": {"command": "sleep 1"}}]},
        {"text": "done", "expect": {"last_user_text_contains": "please also update the docs"}},
    ]
    script = {"conversations": [{"task": "a", "turns": turns}]}
    stub, plan = await start(board, tmp_path, "anthropic", script, monkeypatch)

    async def send_later() -> None:
        while not stub.requests:
            await asyncio.sleep(0.02)
        await board.send("lead", "dev", "please also update the docs")

    try:
        await asyncio.gather(run_all(board, tmp_path, plan), send_later())
    finally:
        stub.stop()
    task = await board.task("a")
    assert task is not None and task.status == "completed", task.error
    assert await board.inbox_size("dev") == 0  # shown, so read
    shown = [e.data for e in await board.events() if e.type == "inbox_shown"]
    assert shown == [{"messages": 1}]
    assert COMPACT_MARKER not in json.dumps(stub.requests[1].body)
