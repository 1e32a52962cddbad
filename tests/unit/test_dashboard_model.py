"""The dashboard's pure parts: what each figure and line says, from given stored values."""

from __future__ import annotations

from swarm.blackboard.board import Event
from swarm.status import AgentRow, PhaseRow, Snapshot, UsageRow
from swarm.tui import model
from swarm.tui.canvas import draw, positions

TODOS = [
    {"content": "Parse", "status": "completed"},
    {"content": "Print", "status": "in_progress"},
    {"content": "Ship", "status": "pending"},
]


def agent(**kw: object) -> AgentRow:
    base: dict[str, object] = {"name": "a", "role": "r", "status": "working", "task": "t"}
    return AgentRow.model_validate({**base, **kw})


def snap(**kw: object) -> Snapshot:
    base: dict[str, object] = {
        "run_id": "r1",
        "name": "n",
        "state": "running",
        "created_ms": 1_000_000,
        "tasks": [],
        "agents": [],
        "phases": [],
        "usage": UsageRow(input_tokens=3000, output_tokens=1000, usd=1.5),
    }
    return Snapshot.model_validate({**base, **kw})


def test_header_bars_against_the_budget() -> None:
    lines = model.header_lines(snap(max_usd=6.0, max_tokens=8000), now_ms=1_000_000 + 75_000)
    assert "elapsed 1:15" in lines[0]
    assert "cost $1.5000 of $6.00 [#####---------------] 25%" in lines[1]
    assert "tokens 4,000 of 8,000 [##########----------] 50%" in lines[1]
    unset = model.header_lines(snap(), now_ms=1_000_000)[1]
    assert "(no max_usd)" in unset and "(no max_tokens)" in unset and "[" not in unset
    assert model.bar(30, 20, width=4) == "[####] 150%"  # over the limit: full bar, true figure


def test_phase_percent_and_clock() -> None:
    p = PhaseRow(name="p", total=3, completed=2, failed=1)
    assert model.phase_percent(p.total, p.completed) == 66  # as the report: rounded down
    assert model.phase_percent(200, 199) == 99
    assert model.phase_percent(0, 0) == 0
    assert model.clock(3725) == "1:02:05" and model.clock(65) == "1:05"


def test_agent_status_and_todo() -> None:
    waiting = agent(status="waiting", task="", waiting_for=["core-traits", "sessions"])
    assert model.agent_status(waiting) == "waiting for core-traits, sessions"
    assert model.agent_todo(agent(todos=TODOS)) == "1/3 Print"
    # the same stored list, once the agent is done or between tasks, is not in progress
    assert model.agent_todo(agent(status="done", task="", todos=TODOS)) == ""
    assert model.agent_todo(agent(status="idle", task="", todos=TODOS)) == ""


def test_current_tool_from_the_last_stored_message() -> None:
    calls = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "x"},
            {"type": "tool_call", "id": "1", "name": "bash", "input": {}},
            {"type": "tool_call", "id": "2", "name": "read", "input": {}},
        ],
    }
    assert model.current_tool(calls) == "bash, read"
    results = {"role": "user", "content": [{"type": "tool_result", "tool_call_id": "1"}]}
    assert model.current_tool(results) == "model"
    assert model.current_tool(None) == ""


def test_conversation_folds_calls_and_results() -> None:
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "Task t: do it\nmore\nlines"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_call", "id": "1", "name": "grep", "input": {"pattern": "fn main"}},
                {"type": "tool_call", "id": "2", "name": "todowrite", "input": {"todos": []}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_call_id": "1", "content": "\n\na.rs:1\nb.rs:2"},
                {"type": "tool_result", "tool_call_id": "2", "content": "no", "is_error": True},
            ],
        },
    ]
    folds = model.fold_messages(msgs)
    assert [f.kind for f in folds] == ["prompt", "call", "call", "result", "error"]
    assert folds[0].line == "user: Task t: do it  (+2 lines)"
    assert folds[1].line == "→ grep fn main"
    assert folds[2].line == '→ todowrite {"todos": []}'
    assert folds[3].line == "← a.rs:1  (4 lines)" and "b.rs:2" in folds[3].body
    assert folds[4].line.startswith("← error: no")


def ev(i: int, kind: str) -> Event:
    return Event(id=f"{i}-0", type=kind, ts=i, task="", agent="a", data={})


def test_the_tail_keeps_notable_events() -> None:
    events = [ev(0, "context_compacted"), ev(1, "merged")]
    events += [ev(i, "tool_call") for i in range(2, 40)]
    rows = model.tail(events, rows=10)
    assert len(rows) == 10
    assert [e.type for e in rows[:2]] == ["context_compacted", "merged"]  # kept, in order
    assert rows[-1].id == "39-0"  # and the latest
    assert model.tail(events[:5], rows=10) == events[:5]


def test_topology_counts_messages_along_edges() -> None:
    s = snap(agents=[agent(name=n) for n in ("x", "y", "z")])
    meta = {"topology": "ring", "edges": '[["x", "y"], ["y", "z"], ["z", "x"]]'}
    sent = [model.Sent(ts=1, sender="x", to="y"), model.Sent(ts=2, sender="y", to="x")]
    topo = model.topology(meta, s, sent)
    assert {(e.a, e.b): e.messages for e in topo.edges} == {
        ("x", "y"): 2,
        ("y", "z"): 0,
        ("z", "x"): 0,
    }
    text = draw(topo, 60, 16).plain
    for n in ("x", "y", "z"):
        assert f"[{n}]" in text
    assert "•" in text and "·" in text
    pos = positions(["x", "y", "z"], 60, 16)
    assert len(set(pos.values())) == 3 and all(0 <= x < 60 and 0 <= y < 16 for x, y in pos.values())
