"""Is a task getting anywhere? A turn makes progress when it changes something another
turn (or agent) can see: a file, a note, a message, a task. A run of turns that change
nothing (reading the same files again and again, re-running a failing command) is a loop
that costs money and ends nowhere, so after `no_progress_turns` of them the task fails."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from pathlib import Path
from typing import Any

from swarm.providers.types import Message, ToolResult

# Tools whose success is itself a change others can see.
CHANGING_TOOLS = frozenset(
    {"write", "edit", "multiedit", "task_create", "send_message", "note_write", "task_fail"}
)
# Tools that never change anything: a turn of only these is quiet without a look. Any
# other tool (bash, a repository's command tools, MCP tools) may change files without
# saying so: the workspace is looked at after it.
READ_ONLY_TOOLS = frozenset(
    {"read", "grep", "glob", "todowrite", "todoread", "task_list", "read_inbox", "note_read"}
)


def workspace_fingerprint(root: Path) -> str | None:
    """A digest of the working tree's state as git sees it (changed and untracked files,
    and their content); None when the workspace is not a git repository."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"],
            cwd=root,
            capture_output=True,
            timeout=30,
        )
        if status.returncode != 0:
            return None
        diff = subprocess.run(
            ["git", "diff", "--no-ext-diff", "--binary", "HEAD"],
            cwd=root,
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    h = hashlib.sha256(status.stdout)
    h.update(diff.stdout)
    for entry in status.stdout.split(b"\0"):
        if entry.startswith(b"?? "):  # untracked: their content is not in the diff
            path = root / entry[3:].decode(errors="replace")
            try:
                h.update(path.read_bytes()[:1_000_000])
            except OSError:
                pass
    return h.hexdigest()


class ProgressTracker:
    """Counts the turns since the last one that changed something (0 = switched off)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.quiet = 0
        self.root: Path | None = None
        self.fingerprint: str | None = None

    async def start(self, root: Path) -> None:
        self.quiet = 0
        self.root = root
        self.fingerprint = None
        if self.limit > 0:
            self.fingerprint = await asyncio.to_thread(workspace_fingerprint, root)

    async def after_turn(self, calls: list[Any], reply: Message) -> int:
        """Record a turn's tool calls and results; returns the count of quiet turns once
        it reaches the limit (the task should fail), else 0."""
        if self.limit <= 0:
            return 0
        if await self._changed(calls, reply):
            self.quiet = 0
            return 0
        self.quiet += 1
        return self.quiet if self.quiet >= self.limit else 0

    async def _changed(self, calls: list[Any], reply: Message) -> bool:
        errors = {b.tool_call_id for b in reply.content if isinstance(b, ToolResult) and b.is_error}
        if any(c.name in CHANGING_TOOLS and c.id not in errors for c in calls):
            return True
        if self.root is None or all(c.name in READ_ONLY_TOOLS for c in calls):
            return False
        now = await asyncio.to_thread(workspace_fingerprint, self.root)
        if now is None or self.fingerprint is None:  # not git: a command may change anything
            return True
        before, self.fingerprint = self.fingerprint, now
        return before != now
