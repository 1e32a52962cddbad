"""Repo tool extensions in real runs: an agent whose role card lists ``mcp:calc`` uses the
server's tools in a stub swarm (and survives the server being killed mid-call), and
``swarm tool`` runs command tools and MCP tools from the CLI."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer

pytestmark = pytest.mark.e2e

SERVER = Path(__file__).resolve().parents[1] / "data" / "mcp_servers" / "mcp_calc.py"

CONFIG = """\
name: mcp-test
goal: add numbers with an MCP server
model: anthropic/claude-sonnet-4-5
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

# relative args resolve against the repo root (the server's cwd); env refers to ${VAR}
MCP_YAML = f"""\
servers:
  calc:
    command: {json.dumps(sys.executable)}
    args: [mcp_calc.py]
    env: {{MCP_PID_FILE: "${{TEST_MCP_PID_FILE}}"}}
    timeout_s: 60
    startup_timeout_s: 30
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


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    (repo / "tools").mkdir(parents=True)
    shutil.copy(SERVER, repo / "mcp_calc.py")
    (repo / "tools" / "mcp.yaml").write_text(MCP_YAML)
    return repo


def server_pids(repo: Path) -> list[int]:
    """Live processes running the test server with the repo as working directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"mcp_calc.py" in cmdline and (entry / "cwd").resolve() == repo.resolve():
                stat = (entry / "stat").read_bytes()
                if stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X"):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


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
        env = {
            **os.environ,
            "ANTHROPIC_BASE_URL": stub.base_url,
            "ANTHROPIC_API_KEY": "k",
            "REDIS_URL": redis_handle.url,
            "TEST_MCP_PID_FILE": str(pid_file),
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "swarm.cli",
                "launch",
                "swarm.yaml",
                "--repo",
                str(repo),
                "--run-id",
                run_id,
                "--no-dashboard",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
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


def swarm_tool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TEST_MCP_PID_FILE": str(cwd / "calc.pid")}
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", "tool", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_swarm_tool_runs_command_and_mcp_tools(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    argv = f"{shlex.quote(sys.executable)} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"
    (repo / "tools" / "commands.yaml").write_text(
        "commands:\n"
        "  show_args:\n"
        "    description: Print the arguments\n"
        f"    command: {json.dumps(argv + ' {verbose} {path}')}\n"
        "    params:\n"
        "      path: {type: string, default: .}\n"
        "      verbose: {type: boolean, flag: -v}\n"
    )
    env_repo = ("--repo", str(repo))
    cmd = swarm_tool(
        "show_args", json.dumps({"path": "; rm -rf / #", "verbose": True}), *env_repo, cwd=tmp_path
    )
    assert cmd.returncode == 0, cmd.stdout + cmd.stderr
    assert json.dumps(["-v", "; rm -rf / #"]) in cmd.stdout
    assert "Exit code: 0" in cmd.stdout

    add = swarm_tool("mcp__calc__add", '{"a": 2, "b": 40}', *env_repo, cwd=tmp_path)
    assert (add.returncode, add.stdout.strip()) == (0, "42"), add.stderr

    bad = swarm_tool("mcp__calc__add", '{"a": "x", "b": 1}', *env_repo, cwd=tmp_path)
    assert bad.returncode == 1 and "validation error" in bad.stdout

    unknown = swarm_tool("nope", "{}", *env_repo, cwd=tmp_path)
    assert unknown.returncode == 2
    for name in ("read", "show_args", "mcp__calc__*"):
        assert name in unknown.stderr
    unknown_mcp = swarm_tool("mcp__calc__nope", "{}", *env_repo, cwd=tmp_path)
    assert unknown_mcp.returncode == 2
    assert "mcp__calc__add" in unknown_mcp.stderr and "mcp__calc__slow" in unknown_mcp.stderr
    assert server_pids(repo) == []

    (repo / "tools" / "commands.yaml").write_text(
        "commands:\n  bash:\n    description: x\n    command: ls\n"
    )
    clash = swarm_tool("read", '{"file_path": "mcp_calc.py"}', *env_repo, cwd=tmp_path)
    assert clash.returncode == 2
    assert "commands.yaml:2: commands.bash: command name 'bash' clashes" in clash.stderr
