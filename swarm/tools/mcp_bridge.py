"""The MCP bridge: tools of stdio MCP servers declared in the target repo's ``tools/mcp.yaml``.

The file's format is in :mod:`swarm.tools.mcp_config`. A role card or config agent lists
``mcp:calc`` to get every tool of ``calc``; the model sees them as ``mcp__calc__<tool>``
with the server's own input schema and description (compacted: no titles).

One :class:`McpHub` per agent loop owns the server processes. Each server runs under a
background task that holds the SDK's ``stdio_client``/``ClientSession`` contexts (anyio
contexts must be left by the task that entered them). Every failure becomes an error
result: a server that dies mid-call, a call that outlives ``timeout_s`` (the server is
killed and restarted on the next call), a server that does not start (the command and
its stderr tail are named). ``aclose()`` stops every server and kills whatever is left
of its process group, including descendants that left the group (found by a marker in
their environment), so no server outlives the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import secrets
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mcp import types as mt
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from swarm.tools.base import Tool, ToolContext, ToolOutput
from swarm.tools.bash import MARKER_ENV, _scan, kill_tree
from swarm.tools.dynamic import DynamicTool
from swarm.tools.mcp_config import (
    MCP_FILE,
    TOOL_ENTRY_PREFIX,
    McpServerConfig,
    expand_env,
    load_mcp_config,
    mcp_servers_in,
)

__all__ = [
    "MCP_FILE",
    "TOOL_ENTRY_PREFIX",
    "McpHub",
    "McpServerConfig",
    "McpServerTool",
    "McpStartError",
    "McpTool",
    "compact_schema",
    "exposed_name",
    "load_mcp_config",
    "mcp_servers_in",
]

log = logging.getLogger(__name__)

MAX_TOOL_NAME = 64
MAX_DESCRIPTION = 2000
MAX_RESULT_CHARS = 30_000
#: Seconds to let a server exit after its stdin closes before it is killed.
STOP_WAIT_S = 5.0
KILL_GRACE_S = 1.0
_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = -32001


# ---------------------------------------------------------------- schemas and results


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_ONE = (
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
)


def compact_schema(schema: Any) -> Any:
    """Drop what only costs tokens (titles, ``$schema``), keep every constraint."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "$schema" or (key == "title" and isinstance(value, str)):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: compact_schema(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [compact_schema(v) for v in value]
        elif key in _SCHEMA_ONE:
            out[key] = compact_schema(value)
        else:
            out[key] = value
    return out


def input_schema(tool: mt.Tool) -> dict[str, Any]:
    schema = compact_schema(dict(tool.input_schema or {}))
    schema.setdefault("type", "object")
    if schema.get("type") == "object":
        schema.setdefault("properties", {})
    return schema


def compact_description(text: str | None, fallback: str) -> str:
    text = inspect.cleandoc(text or "").strip()
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 3].rstrip() + "..."
    return text or fallback


def exposed_name(server: str, tool: str, taken: set[str]) -> str:
    """``mcp__server__tool`` made valid (a-z A-Z 0-9 _ -, at most 64) and unique."""
    clean = re.sub(r"[^A-Za-z0-9_-]", "_", tool) or "tool"
    name = f"mcp__{server}__{clean}"
    if len(name) > MAX_TOOL_NAME or name in taken:
        digest = hashlib.sha256(tool.encode()).hexdigest()[:6]
        name = f"{name[: MAX_TOOL_NAME - 7]}_{digest}"
    n = 2
    base = name
    while name in taken:
        suffix = f"_{n}"
        name = base[: MAX_TOOL_NAME - len(suffix)] + suffix
        n += 1
    return name


def _block_text(block: Any) -> str:
    if isinstance(block, mt.TextContent):
        return block.text
    if isinstance(block, mt.ImageContent | mt.AudioContent):
        kind = "image" if isinstance(block, mt.ImageContent) else "audio"
        return f"[{kind}: {block.mime_type}, {len(block.data) * 3 // 4} bytes, not shown]"
    if isinstance(block, mt.ResourceLink):
        return f"[resource link: {block.uri}{' (' + block.name + ')' if block.name else ''}]"
    if isinstance(block, mt.EmbeddedResource):
        res = block.resource
        if isinstance(res, mt.TextResourceContents):
            return f"[resource {res.uri}]\n{res.text}"
        return f"[binary resource {res.uri}, {res.mime_type or 'unknown type'}, not shown]"
    return f"[{getattr(block, 'type', type(block).__name__)} content, not shown]"


def _clip(text: str, limit: int = MAX_RESULT_CHARS) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n\n... {cut} characters truncated ...\n\n{text[-half:]}", True


def result_output(result: mt.CallToolResult) -> ToolOutput:
    parts = [_block_text(b) for b in result.content]
    if not parts and result.structured_content is not None:
        parts = [json.dumps(result.structured_content, ensure_ascii=False, default=str)]
    text = "\n".join(parts).strip() or "(no output)"
    text, truncated = _clip(text)
    return ToolOutput(
        text=text,
        is_error=bool(result.is_error),
        meta={"truncated": truncated, "mcp_is_error": bool(result.is_error)},
    )


class McpStartError(Exception):
    """A server that could not be started, initialised or listed."""


def _root(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _root(exc)
    if isinstance(exc, McpStartError):
        return str(exc)
    if isinstance(exc, MCPError):
        if exc.code == _CONNECTION_CLOSED:
            return "the process exited or closed its output before answering"
        return exc.message
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---------------------------------------------------------------- one server


@dataclass
class _Server:
    """One server process and its session, owned by a background task."""

    name: str
    cfg: McpServerConfig
    repo: Path
    session: ClientSession | None = None
    tools: list[mt.Tool] = field(default_factory=list)
    pid: int | None = None
    marker: str = ""
    markers: list[str] = field(default_factory=list)  # of every start, for the final sweep
    closed: bool = False  # the connection ended (the process exited or closed its pipes)
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stderr: IO[bytes] | None = None
    starts: int = 0
    stopping: asyncio.Task[None] | None = None

    @property
    def command_text(self) -> str:
        return shlex.join([self.cfg.command, *self.cfg.args])

    @property
    def running(self) -> bool:
        return (
            self.session is not None
            and self.task is not None
            and not self.task.done()
            and not self.closed
        )

    def params(self) -> StdioServerParameters:
        try:
            command = expand_env(self.cfg.command)
            args = [expand_env(a) for a in self.cfg.args]
            env = {k: expand_env(v) for k, v in self.cfg.env.items()}
        except KeyError as exc:
            raise McpStartError(
                f"environment variable {exc.args[0]} is not set (referenced in tools/mcp.yaml)"
            ) from None
        if "/" in command and not os.path.isabs(command):
            command = str(self.repo / command)
        env[MARKER_ENV] = self.marker
        return StdioServerParameters(command=command, args=args, env=env, cwd=self.repo)

    def stderr_tail(self, max_lines: int = 15, max_chars: int = 2000) -> str:
        if self.stderr is None:
            return ""
        try:
            fd = self.stderr.fileno()
            size = os.fstat(fd).st_size
            data = os.pread(fd, max_chars * 2, max(0, size - max_chars * 2))
        except (OSError, ValueError):
            return ""
        lines = data.decode("utf-8", "replace").strip().splitlines()[-max_lines:]
        return "\n".join(lines)[-max_chars:]

    def explain(self, what: str) -> str:
        tail = self.stderr_tail()
        text = f"{what} (command: {self.command_text})"
        return text + (
            f"\nServer stderr (last lines):\n{tail}"
            if tail
            else "\n(the server wrote nothing to stderr)"
        )

    async def ensure(self) -> ClientSession:
        """The live session, starting (or restarting) the server first if needed."""
        async with self.lock:
            if self.running and self.session is not None and self._pid_alive():
                return self.session
            await self.shutdown()
            await self._start()
            assert self.session is not None
            return self.session

    async def _start(self) -> None:
        self.starts += 1
        self.closed = False
        self.marker = secrets.token_hex(8)
        self.markers.append(self.marker)
        self.stop = asyncio.Event()
        if self.stderr is not None:
            self.stderr.close()
        self.stderr = tempfile.TemporaryFile(mode="a+b")  # O_APPEND: reads never move writes
        try:
            params = self.params()
        except McpStartError as exc:
            raise McpStartError(
                f"MCP server '{self.name}' failed to start: {exc} (command: {self.command_text})"
            ) from None
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.task = asyncio.create_task(self._serve(params, ready), name=f"mcp-{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.cfg.startup_timeout_s)
        except TimeoutError:
            await self.shutdown(kill_first=True)
            raise McpStartError(
                self.explain(
                    f"MCP server '{self.name}' did not start within {self.cfg.startup_timeout_s:g} s"
                )
            ) from None
        except Exception as exc:
            await self.shutdown(kill_first=True)
            raise McpStartError(
                self.explain(f"MCP server '{self.name}' failed to start: {_describe(exc)}")
            ) from None

    async def _serve(self, params: StdioServerParameters, ready: asyncio.Future[None]) -> None:
        errlog: Any = self.stderr
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                self.pid = await asyncio.to_thread(self._find_pid)
                async with ClientSession(
                    read, write, client_info=mt.Implementation(name="swarm", version="0.1.0")
                ) as session:
                    await session.initialize()
                    tools: list[mt.Tool] = []
                    cursor: str | None = None
                    while True:
                        page = await session.list_tools(
                            params=mt.PaginatedRequestParams(cursor=cursor) if cursor else None
                        )
                        tools += page.tools
                        cursor = page.next_cursor
                        if not cursor:
                            break
                    self.session, self.tools = session, tools
                    if not ready.done():
                        ready.set_result(None)
                    await self.stop.wait()
        except asyncio.CancelledError:
            if not ready.done():
                ready.set_exception(McpStartError("cancelled"))
            raise
        except Exception as exc:  # anyio task groups wrap errors in ExceptionGroups
            if not ready.done():
                ready.set_exception(McpStartError(_describe(exc)))
            else:
                log.debug("MCP server %r connection ended: %s", self.name, _describe(exc))
        finally:
            self.session = None
            self.closed = True

    def _find_pid(self) -> int | None:
        pids = _scan(set(), {self.marker})
        for pid in pids:
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    return pid
        return pids[0] if pids else None

    def _pid_alive(self) -> bool:
        """Cheap check that the server process still runs (not a zombie)."""
        if self.pid is None or not os.path.isdir("/proc"):
            return True  # unknown: let the call find out
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as fh:
                stat = fh.read()
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")

    def alive(self) -> bool:
        return bool(self.marker) and bool(_scan(set(), {self.marker}))

    async def kill(self, marker: str | None = None) -> None:
        """Kill the server's process group and marked descendants (never hangs)."""
        marker = marker or self.marker
        if not marker:
            return
        pids = await asyncio.to_thread(_scan, set(), {marker})
        if not pids:
            return
        leader = self.pid if self.pid in pids else pids[0]
        await kill_tree(leader, marker, KILL_GRACE_S)

    async def shutdown(self, kill_first: bool = False) -> None:
        """Stop the server: close its stdin, wait, kill what is left. Bounded in time;
        concurrent callers all wait for the same stop, even when cancelled."""
        if self.stopping is None or self.stopping.done():
            if self.task is None:
                return
            self.stopping = asyncio.ensure_future(self._shutdown(self.task, kill_first))
        await asyncio.shield(self.stopping)

    async def _shutdown(self, task: asyncio.Task[None], kill_first: bool) -> None:
        marker, stop = self.marker, self.stop  # of the start being stopped
        try:
            if kill_first:
                await self.kill(marker)
            stop.set()
            await asyncio.wait({task}, timeout=STOP_WAIT_S)
            if not task.done():
                await self.kill(marker)
                await asyncio.wait({task}, timeout=2.0)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            await self.kill(marker)  # descendants that left the group
        finally:
            if self.task is task:
                self.task = None
                self.session = None
                self.closed = True
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning


# ---------------------------------------------------------------- the hub


class McpTool(DynamicTool):
    """One tool of an MCP server, as the model sees it."""

    def __init__(self, hub: McpHub, server: str, tool: mt.Tool, name: str) -> None:
        self.hub, self.server, self.remote_name = hub, server, tool.name
        fallback = f"Tool {tool.name!r} of the MCP server {server!r}."
        super().__init__(name, compact_description(tool.description, fallback), input_schema(tool))

    async def invoke(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        return await self.hub.call(self.server, self.remote_name, args)


class McpServerTool(DynamicTool):
    """Stands for a server whose tools could not be listed: calls any tool by name."""

    def __init__(self, hub: McpHub, server: str, reason: str) -> None:
        self.hub, self.server = hub, server
        first = reason.splitlines()[0] if reason else "it failed to start"
        super().__init__(
            f"mcp__{server}",
            f"Calls a tool of the MCP server {server!r}, which was unavailable when this agent "
            f"started ({first[:300]}). Each call retries starting it.",
            {
                "type": "object",
                "properties": {
                    "tool": {"type": "string", "description": "the server's tool name"},
                    "arguments": {"type": "object", "description": "its arguments"},
                },
                "required": ["tool"],
            },
        )

    async def invoke(self, args: dict[str, Any], ctx: ToolContext) -> ToolOutput:
        tool = args.get("tool")
        arguments = args.get("arguments") or {}
        if not isinstance(tool, str) or not tool or not isinstance(arguments, dict):
            return ToolOutput.error(
                "Invalid arguments: give `tool` (a name) and `arguments` (an object)"
            )
        return await self.hub.call(self.server, tool, arguments)


class McpHub:
    """The MCP servers of one agent loop (or one CLI call). Close it with ``aclose()``."""

    def __init__(
        self, repo: Path, servers: dict[str, McpServerConfig], source: Path | None = None
    ) -> None:
        self.repo = Path(repo).resolve()
        self.source = source or self.repo / MCP_FILE
        self.configs = dict(servers)
        self._servers: dict[str, _Server] = {}
        self._closed = False

    @classmethod
    def from_repo(cls, repo: Path) -> McpHub:
        """The hub for ``<repo>/tools/mcp.yaml`` (no servers when the file is missing)."""
        path = Path(repo) / MCP_FILE
        servers = load_mcp_config(path) if path.is_file() else {}
        return cls(repo, servers, path)

    def _server(self, name: str) -> _Server:
        if self._closed:
            raise McpStartError("the MCP hub is closed")
        if name not in self.configs:
            known = ", ".join(sorted(self.configs)) or "none"
            raise McpStartError(f"unknown MCP server {name!r} (servers in {self.source}: {known})")
        srv = self._servers.get(name)
        if srv is None:
            srv = self._servers[name] = _Server(name, self.configs[name], self.repo)
        return srv

    async def start(self, name: str) -> list[mt.Tool]:
        """Start a server if it is not running; its tools. Raises McpStartError."""
        srv = self._server(name)
        await srv.ensure()
        return list(srv.tools)

    async def tools(self, names: list[str]) -> dict[str, Tool]:
        """The tools of these servers, started in parallel with their startup timeouts.

        A server that fails to start is logged and offered as one ``mcp__<server>`` tool
        that retries the start on each call and reports the error.
        """
        names = list(dict.fromkeys(names))
        results = await asyncio.gather(*(self.start(n) for n in names), return_exceptions=True)
        out: dict[str, Tool] = {}
        taken: set[str] = set()
        for name, res in zip(names, results, strict=True):
            if isinstance(res, BaseException):
                if not isinstance(res, McpStartError | OSError | ValueError):
                    raise res
                log.warning("MCP server %r unavailable: %s", name, res)
                placeholder = McpServerTool(self, name, str(res))
                out[placeholder.name] = placeholder
                continue
            for remote in res:
                tname = exposed_name(name, remote.name, taken)
                taken.add(tname)
                out[tname] = McpTool(self, name, remote, tname)
        return out

    async def call(self, server: str, tool: str, args: dict[str, Any]) -> ToolOutput:
        """Call one tool; every failure is an error result, never an exception or a hang."""
        try:
            srv = self._server(server)
            session = await srv.ensure()
        except McpStartError as exc:
            return ToolOutput.error(str(exc), mcp_server=server)
        generation = srv.starts  # a failure stops this server, never a newer restart
        timeout = srv.cfg.timeout_s
        try:
            async with asyncio.timeout(timeout + 5):
                result = await session.call_tool(tool, args, read_timeout_seconds=timeout)
        except (TimeoutError, MCPError) as exc:
            code = exc.code if isinstance(exc, MCPError) else _REQUEST_TIMEOUT
            if code == _REQUEST_TIMEOUT:
                if srv.starts == generation:
                    await srv.shutdown(kill_first=True)
                return ToolOutput.error(
                    f"MCP server '{server}': tool '{tool}' timed out after {timeout:g} s; the "
                    "server was stopped and will be restarted on the next call.",
                    mcp_server=server,
                    timed_out=True,
                )
            if code == _CONNECTION_CLOSED or srv.closed:
                return await self._lost(srv, tool, generation)
            return ToolOutput.error(
                f"MCP server '{server}' refused the call to '{tool}': {exc}",
                mcp_server=server,
                mcp_code=code,
            )
        except Exception as exc:
            if srv.closed or not await asyncio.to_thread(srv.alive):
                return await self._lost(srv, tool, generation)
            return ToolOutput.error(
                f"MCP call {server}/{tool} failed: {_describe(exc)}", mcp_server=server
            )
        out = result_output(result)
        out.meta["mcp_server"] = server
        return out

    async def _lost(self, srv: _Server, tool: str, generation: int) -> ToolOutput:
        alive = await asyncio.to_thread(srv.alive)
        if srv.starts == generation:
            await srv.shutdown(kill_first=True)
        what = "closed its connection" if alive else "exited"
        text = srv.explain(f"MCP server '{srv.name}' {what} during the call to '{tool}'")
        text += "\nIt will be restarted on the next call."
        return ToolOutput.error(text, mcp_server=srv.name, server_exited=True)

    async def reroot(self, repo: Path) -> None:
        """Work in another directory (a task's worktree): running servers are stopped and
        start again there on their next call."""
        repo = Path(repo).resolve()
        if repo == self.repo:
            return
        self.repo = repo
        servers = list(self._servers.values())
        await asyncio.gather(*(s.shutdown() for s in servers), return_exceptions=True)
        for s in servers:
            s.repo = repo

    def pids(self) -> list[int]:
        """Live processes of every server, any start (for tests and diagnostics)."""
        markers = {m for s in self._servers.values() for m in s.markers}
        return _scan(set(), markers) if markers else []

    async def aclose(self) -> None:
        """Stop every server and kill what is left of them. Safe to call twice."""
        self._closed = True
        servers = list(self._servers.values())

        async def stop_all() -> None:
            await asyncio.gather(*(s.shutdown() for s in servers), return_exceptions=True)
            # sweep: anything of any start still alive (e.g. a double fork) is killed
            for s in servers:
                for marker in s.markers:
                    with contextlib.suppress(Exception):
                        await s.kill(marker)

        try:
            await asyncio.shield(asyncio.ensure_future(stop_all()))
        finally:
            for s in servers:
                if s.stderr is not None:
                    s.stderr.close()
                    s.stderr = None

    async def __aenter__(self) -> McpHub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
