"""A swarm whose agents use three different providers, each through its official SDK."""

from __future__ import annotations

import asyncio
import json

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from tests.e2e.swarmrun import run_swarm

pytestmark = pytest.mark.e2e

CONFIG = """\
name: three-providers
goal: one task per provider
model: anthropic/claude-sonnet-5-5
permissions:
  bash: {"*": allow, "rm -rf *": deny, "git push*": ask}
agents:
  - {name: claude, role: developer}
  - {name: gpt, role: test, model: openai/gpt-5}
  - {name: le-chat, role: developer, model: mistral/mistral-large-latest}
phases:
  - name: one
    tasks:
      - {id: a, title: Write a file, agent: claude}
  - name: two
    tasks:
      - {id: b, title: Check the file, agent: gpt, needs: [a]}
      - {id: c, title: Document the file, agent: le-chat, needs: [a]}
"""


SECRET = "sk-test-secret-value-123"
# prints the key without naming it: the transcript must still not hold it
LEAK = "env; printf 'sk-test-secret'; printf -- '-value-123\\n'"


def turns(name: str) -> list[dict[str, object]]:
    return [
        {
            "tool_calls": [
                {"name": "bash", "input": {"command": "rm -rf made-by.txt"}},
                {"name": "bash", "input": {"command": "git push origin main"}},
                {"name": "bash", "input": {"command": f"echo {name} >> made-by.txt"}},
                {"name": "bash", "input": {"command": LEAK}},
            ],
            "usage": {"input_tokens": 500, "output_tokens": 20},
        },
        {
            "text": f"{name} done",
            "expect": {"last_tool_result_contains": "Exit code: 0"},
            "usage": {"input_tokens": 600, "output_tokens": 10},
        },
    ]


def test_three_providers_in_one_swarm(tmp_path, redis_handle: RedisHandle) -> None:
    script = StubScript.model_validate(
        {
            "conversations": [
                {"agent": "claude", "task": "a", "turns": turns("claude")},
                {"agent": "gpt", "task": "b", "turns": turns("gpt")},
                {"agent": "le-chat", "task": "c", "turns": turns("le-chat")},
            ]
        }
    )
    with StubServer(script) as stub:
        env = {
            "OPENAI_BASE_URL": f"{stub.base_url}/openai/v1",
            "OPENAI_API_KEY": "k",
            "MISTRAL_BASE_URL": f"{stub.base_url}/mistral",
            "MISTRAL_API_KEY": "k",
            "ANTHROPIC_API_KEY": SECRET,
        }
        run_id, proc = run_swarm(tmp_path, CONFIG, stub, redis_handle.url, env)
        seen = {(r.agent, r.provider) for r in stub.requests}
        recorded = json.dumps([r.to_dict() for r in stub.requests])
        statuses = {r.status for r in stub.requests}
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert seen == {("claude", "anthropic"), ("gpt", "openai"), ("le-chat", "mistral")}
    assert statuses == {200}
    assert SECRET not in recorded and "[redacted]" in recorded
    lines = (tmp_path / "repo" / "made-by.txt").read_text().split()
    assert lines[0] == "claude" and sorted(lines[1:]) == ["gpt", "le-chat"]

    async def check() -> None:
        board = Blackboard(redis_handle.url, run_id)
        try:
            for agent in ("claude", "gpt", "le-chat"):
                u = await board.usage("agent", agent)
                assert u["input_tokens"] == 1100 and u["output_tokens"] == 30, (agent, u)
            # config permissions hold in every agent: deny, and ask (no human) = deny
            for task in ("a", "b", "c"):
                text = json.dumps(await board.session(task))
                assert "Permission to run bash `rm -rf made-by.txt` is denied" in text
                assert "was not approved (rule 'git push*': ask): No one is attached" in text
            session = await board.session("c")
            assert json.dumps(session).count("tool_call") >= 2
            # the key never reaches a transcript, an event or the model
            for task in ("a", "b", "c"):
                text = json.dumps(await board.session(task))
                assert SECRET not in text and "[redacted]" in text
                assert "ANTHROPIC_API_KEY" not in text  # scrubbed from the commands' env
            events = await board.events(count=100_000)
            denied = [e.data for e in events if e.type == "permission_denied"]
            assert sorted(d["rule"] for d in denied) == [
                "git push*",
                "git push*",
                "git push*",
                "rm -rf *",
                "rm -rf *",
                "rm -rf *",
            ]
            assert SECRET not in json.dumps([e.model_dump() for e in events])
        finally:
            await board.close()

    asyncio.run(check())
