"""An agent whose role card lists ``mcp:calc`` uses the server's tools in a real stub swarm,
and survives the server being killed mid-call."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from tests.e2e.mcprepo import make_repo, server_pids
from tests.e2e.swarmrun import start_swarm

pytestmark = pytest.mark.e2e

CONFIG = """\
name: mcp-test
goal: add numbers with an MCP server
model: anthropic/claude-sonnet-5-5
lease_s: 30
agents:
  - {name: calc-user, role: calcuser}
phases:
  - name: only
    tasks:
      - {id: sum, title: Add numbers, agent: calc-user}
"""

ROLE_CARD = """\
---
name: calcuser
description: Adds numbers with the calc MCP server
tools: [read, mcp:calc]
---
You add numbers with the calc tools.
"""

SCRIPT = {
    "conversations": [
        {
            "agent": "calc-user",
            "task": "sum",
            "turns": [
                {
                    "expect": {"tools_include": ["read", "mcp__calc__add", "mcp__calc__slow"]},
                    "tool_calls": [{"name": "mcp__calc__add", "input": {"a": 2, "b": 40}}],
                },
                {
                    "expect": {"last_tool_result_contains": "42"},
                    "tool_calls": [{"name": "mcp__calc__slow", "input": {"seconds": 60}}],
                },
                {
                    "expect": {
                        "last_tool_result_contains": "MCP server 'calc' exited during the call"
                    },
                    "tool_calls": [{"name": "mcp__calc__add", "input": {"a": 100, "b": 23}}],
                },
                {"expect": {"last_tool_result_contains": "123"}, "text": "2 + 40 = 42"},
            ],
        }
    ]
}


def test_agent_uses_mcp_tools_and_survives_a_dying_server(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    repo = make_repo(tmp_path)
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "calcuser.md").write_text(ROLE_CARD)
    pid_file = tmp_path / "calc.pid"
    run_id = f"mcp-{os.getpid()}-{int(time.time())}"
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        proc = start_swarm(
            tmp_path, stub, redis_handle.url, run_id, repo, {"TEST_MCP_PID_FILE": str(pid_file)}
        )
        try:
            deadline = time.monotonic() + 120
            while not pid_file.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pid_file.exists(), "the agent never called mcp__calc__slow"
            time.sleep(0.2)  # the call is in flight: the server wrote its pid, then sleeps
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, out[-4000:]
        turns = [r.turn for r in stub.requests if r.agent == "calc-user"]
    assert turns == [0, 1, 2, 3], turns  # every expect held (a failed one is an HTTP 400)
    assert server_pids(repo) == []  # the hub closed the restarted server too
