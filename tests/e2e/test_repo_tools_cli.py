"""``swarm tool NAME ARGS --repo DIR`` runs the repo's command tools and MCP tools."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.mcprepo import make_repo, server_pids

pytestmark = pytest.mark.e2e


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
