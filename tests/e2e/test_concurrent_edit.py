"""Two agents edit one file at the same moment; neither edit is lost.

A real swarm (CLI, local Ray, real Redis) against the scripted stub. alice and bob both
read ``shapes.py`` (a module with two functions) at the same moment, behind a barrier.
alice then edits ``area`` once, which makes bob's read stale. Next, alice's second edit
of ``area`` and bob's edit of ``perimeter`` are released by the stub at the same moment
(measured here: within ~10 ms of each other), so the two edit tools really race for the
per-path Redis lock, which serialises the writes. Whichever takes the lock first (both
orders happen), bob's edit is refused by the staleness check ("modified since you last
read it") and alice's goes through, so the script can be strict. bob re-reads the file
and edits again. All three changes end up in a module that still compiles.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from tests.e2e.swarmrun import run_swarm

pytestmark = pytest.mark.e2e

CONFIG = """\
name: concurrent-edit
goal: two agents improve one module at once
model: anthropic/claude-sonnet-5-5
lease_s: 30
agents:
  - {name: alice, role: developer}
  - {name: bob, role: developer}
phases:
  - name: only
    tasks:
      - {id: edit-area, title: Improve area, agent: alice}
      - {id: edit-perimeter, title: Improve perimeter, agent: bob}
"""

ORIGINAL = '''\
"""Rectangle helpers."""


def area(w, h):
    return w * h


def perimeter(w, h):
    return 2 * w + 2 * h
'''

EXPECTED = '''\
"""Rectangle helpers."""


def area(w, h):
    """Area of a w x h rectangle."""
    return abs(w) * abs(h)


def perimeter(w, h):
    return 2 * (abs(w) + abs(h))
'''

STALE = "shapes.py was modified since you last read it"
#: Seconds after its read that each agent's racing edit is released by the stub.
RELEASE_S = 1.2


def barrier(me: str, other: str) -> dict[str, Any]:
    """Both agents leave this bash call within ~25 ms of each other."""
    command = (
        f"touch .sync/{me}; for i in $(seq 1600); do "
        f"[ -e .sync/{other} ] && exit 0; sleep 0.025; done; echo barrier timed out; exit 1"
    )
    return {"tool_calls": [{"name": "bash", "input": {"command": command}}]}


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "input": args}


READ = call("read", file_path="shapes.py")
AREA_DOC = call(
    "edit",
    file_path="shapes.py",
    old_string="def area(w, h):\n",
    new_string='def area(w, h):\n    """Area of a w x h rectangle."""\n',
)
AREA_ABS = call(
    "edit",
    file_path="shapes.py",
    old_string="    return w * h\n",
    new_string="    return abs(w) * abs(h)\n",
)
PERIMETER = call(
    "edit",
    file_path="shapes.py",
    old_string="    return 2 * w + 2 * h\n",
    new_string="    return 2 * (abs(w) + abs(h))\n",
)
PLAN = call("todowrite", todos=[{"content": "make perimeter sign-safe", "status": "in_progress"}])
BARRIER_OK = {"last_tool_result_contains": "Exit code: 0"}

SCRIPT = {
    "conversations": [
        {
            "agent": "alice",
            "task": "edit-area",
            "turns": [
                barrier("alice", "bob"),
                {"expect": BARRIER_OK, "tool_calls": [READ]},
                # after both reads: this write makes bob's read stale
                {"delay_s": 0.5, "tool_calls": [AREA_DOC]},
                {
                    "expect": {"last_tool_result_contains": "Edited shapes.py: 1 replacement."},
                    "delay_s": RELEASE_S - 0.5,  # released with bob's edit
                    "tool_calls": [AREA_ABS],
                },
                {
                    "expect": {"last_tool_result_contains": "Edited shapes.py: 1 replacement."},
                    "text": "area documented and made sign-safe",
                },
            ],
        },
        {
            "agent": "bob",
            "task": "edit-perimeter",
            "turns": [
                barrier("bob", "alice"),
                {"expect": BARRIER_OK, "tool_calls": [READ]},
                # the same turn shape as alice's, so both reach the next turn together
                {"delay_s": 0.5, "tool_calls": [PLAN]},
                {"delay_s": RELEASE_S - 0.5, "tool_calls": [PERIMETER]},
                {
                    "expect": {"last_tool_result_contains": STALE},
                    "delay_s": 0.5,  # alice's racing write is long done by then
                    "tool_calls": [READ],
                },
                {
                    "expect": {"last_tool_result_contains": "return abs(w) * abs(h)"},
                    "tool_calls": [PERIMETER],
                },
                {
                    "expect": {"last_tool_result_contains": "Edited shapes.py: 1 replacement."},
                    "text": "perimeter made sign-safe after a re-read",
                },
            ],
        },
    ]
}


def tool_results(body: dict[str, Any]) -> list[tuple[str, bool]]:
    """(text, is_error) of the tool results in the request's last user message."""
    content = body["messages"][-1]["content"]
    out = []
    for block in content if isinstance(content, list) else []:
        if block.get("type") == "tool_result":
            inner = block.get("content")
            text = "".join(b.get("text", "") for b in inner) if isinstance(inner, list) else inner
            out.append((str(text), bool(block.get("is_error"))))
    return out


def test_two_agents_edit_one_file_at_once(tmp_path: Path, redis_handle: RedisHandle) -> None:
    repo = tmp_path / "repo"
    (repo / ".sync").mkdir(parents=True)
    (repo / "shapes.py").write_text(ORIGINAL)
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        run_id, proc = run_swarm(tmp_path, CONFIG, stub, redis_handle.url, timeout=120)
        requests = list(stub.requests)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert all(r.status == 200 for r in requests), [(r.agent, r.turn, r.error) for r in requests]

    final = (repo / "shapes.py").read_text()
    assert final == EXPECTED
    compile(final, "shapes.py", "exec")  # still valid Python

    by_turn = {(r.agent, r.turn): r for r in requests}
    # the refusal bob's model saw, and that its retry succeeded after the re-read
    assert tool_results(by_turn["bob", 4].body) == [
        (
            f"{STALE} (by another agent or a command); read it again before editing.",
            True,
        )
    ]
    assert tool_results(by_turn["bob", 6].body)[0][0].startswith("Edited shapes.py")
    # the two racing edits were answered at the same moment (within scheduling jitter)
    alice_sent = by_turn["alice", 3].responded_at
    bob_sent = by_turn["bob", 3].responded_at
    assert abs(alice_sent - bob_sent) < 0.5, (alice_sent, bob_sent)
    # every tool schema on the wire is self-contained (nested items inlined)
    tools = by_turn["bob", 0].body["tools"]
    assert "$ref" not in json.dumps(tools) and "$defs" not in json.dumps(tools)

    asyncio.run(_check_board(redis_handle.url, run_id))


async def _check_board(url: str, run_id: str) -> None:
    board = Blackboard(url, run_id)
    try:
        tasks = {t.id: t for t in await board.tasks()}
        assert tasks["edit-area"].status == "completed"
        assert tasks["edit-perimeter"].status == "completed"
        events = await board.events(count=100_000)
        edits = [
            (e.agent, e.data.get("is_error"))
            for e in events
            if e.type == "tool_call" and e.data.get("tool") == "edit"
        ]
        assert sorted(edits) == [
            ("alice", False),
            ("alice", False),
            ("bob", False),
            ("bob", True),
        ]
        # bob's stored session holds the refusal, then the successful retry
        results = [
            block
            for message in await board.session("edit-perimeter")
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]
        stale = [r for r in results if STALE in json.dumps(r)]
        assert len(stale) == 1 and stale[0].get("is_error") is True
    finally:
        await board.close()
