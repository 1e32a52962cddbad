"""The MCP bridge against a real stdio server (tests/data/mcp_servers/mcp_calc.py, MCPServer):
listing, schemas, calls, a server killed mid-call, a hung call, failed starts, and no
server process left after the hub closes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from swarm.errors import ConfigError
from swarm.tools.base import Tool
from swarm.tools.builtin import local_context
from swarm.tools.mcp_bridge import (
    MCP_FILE,
    McpHub,
    compact_schema,
    exposed_name,
    load_mcp_config,
)
from swarm.tools.repo_tools import check_repo_tools, load_repo_tools

pytestmark = pytest.mark.integration

SERVER = Path(__file__).resolve().parents[1] / "data" / "mcp_servers" / "mcp_calc.py"


def write_mcp(repo: Path, text: str) -> Path:
    path = repo / MCP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def calc_yaml(pid_file: Path, timeout_s: float = 30) -> str:
    return f"""\
    servers:
      calc:
        command: {json.dumps(sys.executable)}
        args: [{json.dumps(str(SERVER))}]
        env: {{MCP_PID_FILE: "${{CALC_PID_FILE}}"}}
        timeout_s: {timeout_s}
        startup_timeout_s: 20
    """


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CALC_PID_FILE", str(tmp_path / "calc.pid"))
    write_mcp(tmp_path, calc_yaml(tmp_path / "calc.pid"))
    return tmp_path


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


async def wait_for_pid(path: Path, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text())
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


async def test_listing_schemas_and_calls(repo: Path) -> None:
    tools, hub = await load_repo_tools(repo, "developer", ["read", "mcp:calc"])
    assert hub is not None
    try:
        assert set(tools) == {"mcp__calc__add", "mcp__calc__slow"}
        add = tools["mcp__calc__add"].spec()
        assert add.description == "Add two integers and return the sum."
        assert add.input_schema == {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        }
        assert "title" not in json.dumps(tools["mcp__calc__slow"].spec().input_schema)
        ctx = local_context(repo)
        out = await tools["mcp__calc__add"]({"a": 2, "b": 40}, ctx)
        assert (out.text, out.is_error) == ("42", False)
        assert out.meta["mcp_server"] == "calc"
        bad = await tools["mcp__calc__add"]({"a": "two", "b": 40}, ctx)
        assert bad.is_error and "a" in bad.text
        missing = await hub.call("calc", "nope", {})
        assert missing.is_error and "nope" in missing.text
    finally:
        await hub.aclose()


async def test_server_killed_mid_call_gives_an_error_quickly(repo: Path) -> None:
    tools, hub = await load_repo_tools(repo, None, ["mcp:calc"])
    assert hub is not None
    ctx = local_context(repo)
    try:
        call = asyncio.create_task(tools["mcp__calc__slow"]({"seconds": 60}, ctx))
        pid = await wait_for_pid(repo / "calc.pid")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        out = await asyncio.wait_for(call, 10)
        assert time.monotonic() - killed < 3
        assert out.is_error
        assert "MCP server 'calc' exited during the call" in out.text
        assert "restarted on the next call" in out.text
        assert out.meta["server_exited"] is True
        # the next call starts a new server
        again = await tools["mcp__calc__add"]({"a": 1, "b": 2}, ctx)
        assert (again.text, again.is_error) == ("3", False)
        assert hub.pids() and pid not in hub.pids()
    finally:
        await hub.aclose()


async def test_hung_call_times_out_and_the_server_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALC_PID_FILE", str(tmp_path / "calc.pid"))
    write_mcp(tmp_path, calc_yaml(tmp_path / "calc.pid", timeout_s=1))
    hub = McpHub.from_repo(tmp_path)
    try:
        tools = await hub.tools(["calc"])
        started = time.monotonic()
        out = await tools["mcp__calc__slow"]({"seconds": 60}, local_context(tmp_path))
        assert time.monotonic() - started < 6
        assert out.is_error and out.meta["timed_out"] is True
        assert "tool 'slow' timed out after 1 s" in out.text
        pid = int((tmp_path / "calc.pid").read_text())
        assert not alive(pid)  # killed, not left running
        again = await hub.call("calc", "add", {"a": 5, "b": 5})
        assert again.text == "10"
    finally:
        await hub.aclose()


async def test_no_server_outlives_the_hub(repo: Path, tmp_path: Path) -> None:
    second = f"""\
      calc2:
        command: {json.dumps(sys.executable)}
        args: [{json.dumps(str(SERVER))}]
    """
    write_mcp(repo, calc_yaml(tmp_path / "calc.pid").rstrip(" ") + second)
    tools, hub = await load_repo_tools(repo, None, ["mcp:calc", "mcp:calc2"])
    assert hub is not None
    assert {"mcp__calc__add", "mcp__calc2__add"} <= set(tools)
    busy = asyncio.create_task(tools["mcp__calc__slow"]({"seconds": 60}, local_context(repo)))
    pid = await wait_for_pid(repo / "calc.pid")
    pids = hub.pids()
    assert len(pids) == 2 and pid in pids
    started = time.monotonic()
    await hub.aclose()
    assert time.monotonic() - started < 8
    assert hub.pids() == []
    assert not any(alive(p) for p in pids)
    out = await asyncio.wait_for(busy, 5)  # the in-flight call ended with an error
    assert out.is_error
    closed = await hub.call("calc", "add", {"a": 1, "b": 1})
    assert closed.is_error and "closed" in closed.text


async def test_a_server_that_fails_to_start(tmp_path: Path) -> None:
    crash = "import sys; sys.stderr.write('boom: no config file\\n'); sys.exit(3)"
    write_mcp(
        tmp_path,
        f"""\
        servers:
          broken:
            command: {json.dumps(sys.executable)}
            args: ["-c", {json.dumps(crash)}]
          missing:
            command: ./no-such-server
          hang:
            command: {json.dumps(sys.executable)}
            args: ["-c", "import time; time.sleep(60)"]
            startup_timeout_s: 1
        """,
    )
    started = time.monotonic()
    tools, hub = await load_repo_tools(tmp_path, None, ["mcp:broken", "mcp:missing", "mcp:hang"])
    assert hub is not None
    try:
        assert time.monotonic() - started < 6  # started in parallel
        assert set(tools) == {"mcp__broken", "mcp__missing", "mcp__hang"}
        assert "unavailable" in tools["mcp__broken"].spec().description
        ctx = local_context(tmp_path)
        out = await tools["mcp__broken"]({"tool": "add", "arguments": {}}, ctx)
        assert out.is_error
        assert "MCP server 'broken' failed to start" in out.text
        assert f"command: {sys.executable} -c" in out.text
        assert "boom: no config file" in out.text  # the stderr tail
        out = await tools["mcp__missing"]({"tool": "add"}, ctx)
        assert out.is_error and "command not found" in out.text
        assert str(tmp_path / "no-such-server") in out.text
        out = await tools["mcp__hang"]({"tool": "add"}, ctx)
        assert out.is_error and "did not start within 1 s" in out.text
        assert hub.pids() == []  # the hung one was killed
    finally:
        await hub.aclose()


async def test_env_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALC_PID_FILE", raising=False)
    write_mcp(tmp_path, calc_yaml(tmp_path / "calc.pid"))
    hub = McpHub.from_repo(tmp_path)
    try:
        out = await hub.call("calc", "add", {"a": 1, "b": 1})
        assert out.is_error and "CALC_PID_FILE is not set" in out.text
    finally:
        await hub.aclose()


def test_config_errors_are_located(tmp_path: Path) -> None:
    path = write_mcp(
        tmp_path,
        """\
        servers:
          calc:
            command: python3
            timeout: 5
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_mcp_config(path)
    assert (info.value.line, info.value.field) == (4, "servers.calc.timeout")
    write_mcp(tmp_path, "servers:\n  ok: {command: x}\n  a__b: {command: x}\n")
    with pytest.raises(ConfigError) as info:
        load_mcp_config(path)
    assert (info.value.line, info.value.field) == (3, "servers.a__b")
    assert "invalid server name" in info.value.message


async def test_undeclared_servers_are_config_errors(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no server 'other'"):
        await load_repo_tools(repo, None, ["mcp:other"])
    with pytest.raises(ConfigError, match="no server 'other'"):
        check_repo_tools(repo, [["read"], ["mcp:calc", "mcp:other"]])
    check_repo_tools(repo, [["mcp:calc"]])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="file not found"):
        await load_repo_tools(empty, None, ["mcp:calc"])
    tools, hub = await load_repo_tools(empty, None, ["read"])
    assert (tools, hub) == ({}, None)


def test_names_and_schema_compaction() -> None:
    taken: set[str] = set()
    assert exposed_name("calc", "add", taken) == "mcp__calc__add"
    assert exposed_name("calc", "files/read.v2", taken) == "mcp__calc__files_read_v2"
    long = exposed_name("calc", "x" * 100, taken)
    assert len(long) == 64 and long.startswith("mcp__calc__x")
    taken.add("mcp__calc__a_b")
    assert exposed_name("calc", "a.b", taken) != "mcp__calc__a_b"
    schema = {
        "title": "Args",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "title": {"title": "Title", "type": "string"},
            "items": {"type": "array", "items": {"title": "Item", "type": "integer"}},
        },
    }
    assert compact_schema(schema) == {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "items": {"type": "array", "items": {"type": "integer"}},
        },
    }


def test_tools_are_tools() -> None:
    from swarm.tools.mcp_bridge import McpServerTool

    hub = McpHub(Path("."), {})
    assert isinstance(McpServerTool(hub, "x", "failed"), Tool)


def test_config_accepts_mcp_entries(tmp_path: Path) -> None:
    from swarm.config import load_config

    config = textwrap.dedent("""\
        name: t
        goal: test
        model: anthropic/claude-sonnet-5-5
        agents:
          - {name: dev, role: developer, tools: [read, "mcp:calc"]}
        phases:
          - name: one
            tasks:
              - {id: a, title: A, role: developer}
        """)
    path = tmp_path / "swarm.yaml"
    path.write_text(config)
    assert load_config(path).agents[0].tools == ["read", "mcp:calc"]
    path.write_text(config.replace('"mcp:calc"', '"mcp:a__b"'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.line, info.value.field) == (5, "agents[0].tools[1]")
    assert "mcp:<server name>" in info.value.message


def test_expand_env() -> None:
    from swarm.tools.mcp_config import expand_env

    env = {"A": "1"}
    assert expand_env("x${A}y ${B:-two} $A", env) == "x1y two $A"
    with pytest.raises(KeyError):
        expand_env("${B}", env)
