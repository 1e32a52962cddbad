"""The target repo's tool extensions, assembled in one place for the agent loop and the CLI.

``<repo>/tools/commands.yaml``: command tools, offered to the roles they list (default all).
``<repo>/tools/mcp.yaml``: MCP servers, offered to agents whose tools list has ``mcp:<server>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.errors import BadInput, ConfigError
from swarm.tools.base import Tool, ToolContext, ToolOutput
from swarm.tools.commands import COMMANDS_FILE, command_tools, load_commands
from swarm.tools.mcp_config import MCP_FILE, TOOL_ENTRY_PREFIX, load_mcp_config, mcp_servers_in

if TYPE_CHECKING:
    from swarm.tools.mcp_bridge import McpHub


def _check_servers(repo: Path, servers: list[str]) -> None:
    """ConfigError unless every server is declared in ``<repo>/tools/mcp.yaml``."""
    if not servers:
        return
    path = Path(repo) / MCP_FILE
    entries = ", ".join(TOOL_ENTRY_PREFIX + s for s in servers)
    if not path.is_file():
        raise ConfigError(path, None, None, f"file not found, but a tools list names {entries}")
    declared = load_mcp_config(path)
    for s in servers:
        if s not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ConfigError(
                path,
                None,
                "servers",
                f"no server {s!r} (named by {TOOL_ENTRY_PREFIX}{s}; servers: {known})",
            )


async def load_repo_tools(
    repo: Path, role: str | None, tool_names: list[str]
) -> tuple[dict[str, Tool], McpHub | None]:
    """The command tools offered to ``role`` (None: all) and the tools of the MCP servers
    named by ``mcp:<server>`` entries of ``tool_names``, plus the hub that owns those
    servers (None when there are none): the caller must ``await hub.aclose()``.

    The servers are started here, in parallel, to list their tools. Raises ConfigError
    for a bad commands.yaml or mcp.yaml, or a server that is not declared.
    """
    repo = Path(repo)
    tools: dict[str, Tool] = dict(command_tools(repo, role))
    servers = list(dict.fromkeys(mcp_servers_in(tool_names)))
    if not servers:
        return tools, None
    _check_servers(repo, servers)
    from swarm.tools.mcp_bridge import McpHub  # the MCP SDK costs ~1 s to import: only now

    hub = McpHub.from_repo(repo)
    try:
        tools.update(await hub.tools(servers))
    except BaseException:
        await hub.aclose()
        raise
    return tools, hub


def check_repo_tools(repo: Path, tool_lists: Iterable[list[str]]) -> None:
    """Validate the repo's commands.yaml and mcp.yaml and every ``mcp:<server>`` entry,
    without starting anything (for ``swarm launch`` before the run starts)."""
    repo = Path(repo)
    if (repo / COMMANDS_FILE).is_file():
        load_commands(repo / COMMANDS_FILE)
    servers = list(dict.fromkeys(s for names in tool_lists for s in mcp_servers_in(names)))
    if (repo / MCP_FILE).is_file():
        load_mcp_config(repo / MCP_FILE)
    _check_servers(repo, servers)


def mcp_entries_for(repo: Path, tool_name: str) -> list[str]:
    """``[mcp:<server>]`` when ``tool_name`` is ``mcp__<server>...`` of a declared server."""
    if not tool_name.startswith("mcp__"):
        return []
    server = tool_name[len("mcp__") :].split("__", 1)[0]
    path = Path(repo) / MCP_FILE
    if not server or not path.is_file() or server not in load_mcp_config(path):
        return []
    return [TOOL_ENTRY_PREFIX + server]


def mcp_server_names(repo: Path) -> list[str]:
    """The servers declared in ``<repo>/tools/mcp.yaml`` (none when it is missing)."""
    path = Path(repo) / MCP_FILE
    return sorted(load_mcp_config(path)) if path.is_file() else []


class UnknownTool(BadInput):
    """``swarm tool`` was given a name no tool has; the message lists the available ones."""


async def run_tool(
    repo: Path, name: str, args: dict[str, Any], ctx: ToolContext, base: dict[str, Tool]
) -> ToolOutput:
    """Run one tool by name (``swarm tool``): ``base`` tools, the repo's command tools, or
    ``mcp__<server>__<tool>`` (that server is started, then stopped). Raises UnknownTool."""
    from swarm.tools.runner import ToolRunner

    extra, hub = await load_repo_tools(repo, None, mcp_entries_for(repo, name))
    try:
        tools = {**base, **extra}
        server, _, remote = name.removeprefix("mcp__").partition("__")
        if name not in tools and f"mcp__{server}" in tools and remote:
            # the server did not start: its stand-in tool retries and reports why
            name, args = f"mcp__{server}", {"tool": remote, "arguments": args}
        if name not in tools:
            listed = {t.split("__")[1] for t in tools if t.startswith("mcp__")}
            names = list(tools) + [
                f"mcp__{s}__*" for s in mcp_server_names(repo) if s not in listed
            ]
            raise UnknownTool(f"NAME: unknown tool {name!r} (tools: {', '.join(names)})")
        return await ToolRunner(tools, ctx).run(name, args)
    finally:
        if hub is not None:
            await hub.aclose()
