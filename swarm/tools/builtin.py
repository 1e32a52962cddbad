"""The built-in tools and in-process state/locks (CLI ``swarm tool``, ``swarm run``, tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from swarm.tools.base import Tool, ToolContext
from swarm.tools.bash import Bash
from swarm.tools.fs import Edit, MultiEdit, Read, Write
from swarm.tools.search import Glob, Grep
from swarm.tools.todo import TodoRead, TodoWrite

BUILTIN_TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Read(),
        Write(),
        Edit(),
        MultiEdit(),
        Bash(),
        Grep(),
        Glob(),
        TodoWrite(),
        TodoRead(),
    )
}


class MemoryState:
    """A dict-backed StateStore (one per agent)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str) -> None:
        self.data[key] = value


class MemoryLocks:
    """One asyncio.Lock per path, shared by every agent of this process."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, path: str) -> asyncio.Lock:
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = asyncio.Lock()
        return lock


def local_context(
    workspace: Path, agent: str = "cli", locks: MemoryLocks | None = None
) -> ToolContext:
    """A ToolContext with in-memory state and locks, for in-process use."""
    return ToolContext(
        workspace=Path(workspace),
        agent=agent,
        state=MemoryState(),
        locks=locks or MemoryLocks(),
    )
