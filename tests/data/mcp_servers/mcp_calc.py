"""A small MCP server (stdio) for the tests: add(a, b) and slow(seconds).

``slow`` first writes this process's pid to the file named by the ``MCP_PID_FILE``
environment variable (when set), so a test can kill the server mid-call.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("calc")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers and return the sum."""
    return a + b


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep for `seconds` seconds, then say so."""
    pid_file = os.environ.get("MCP_PID_FILE")
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    await asyncio.sleep(seconds)
    return f"slept {seconds}s"


if __name__ == "__main__":
    server.run("stdio")
