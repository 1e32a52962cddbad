"""What an agent does with its task's worktree: enter it on claim, take up a merge the
queue sent back, commit and submit on finish. The caller checks the task's lease before
each of these (every git operation on a task's worktree is guarded by the lease)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Literal

from swarm.blackboard.board import Blackboard, TaskView
from swarm.workspace.worktrees import RunWorktrees, WorkspaceSettings


class TaskWorkspaces:
    def __init__(self, board: Blackboard, settings: WorkspaceSettings):
        self.board = board
        self.s = settings
        self.wt = RunWorktrees(settings, board.run_id)

    async def enter(self, task: TaskView) -> Path:
        """The task's worktree (created from the run's head on first claim; the same one,
        as it was left, for an agent that takes the task over)."""
        path, base = await asyncio.to_thread(self.wt.ensure_task, task.id)
        if task.base != base:
            await self.board.r.hset(self.board.k.task(task.id), "base", base)
            task.base = base
        return path

    async def take_up_rework(self, task: TaskView) -> str:
        """Bring the worktree up to the run's head (conflicts left in the files) and say
        what happened, for the model."""
        details: dict[str, Any] = json.loads(task.rework or "{}")
        conflicts = await asyncio.to_thread(self.wt.sync_task, task.id)
        return rework_text(task.id, self.s.run_branch, details, conflicts)

    async def finish(
        self, task: TaskView, agent: str, result: str, token: str = ""
    ) -> tuple[Literal["unchanged", "queued", "lost"], str]:
        """Commit the task's work; a task that changed nothing completes at once, one that
        changed something enters the merge queue. Returns what happened and the commit."""
        head = await asyncio.to_thread(self.wt.commit_task, task.id, agent, task.title, result)
        base = task.base or (await asyncio.to_thread(self.wt.ensure_task, task.id))[1]
        if head == base:  # nothing to merge, nothing to lose: the worktree goes now
            await asyncio.to_thread(self.wt.remove_task, task.id, True)
            return "unchanged", head
        ok = await self.board.submit(task.id, agent, result, head, token)
        return ("queued" if ok else "lost"), head


def rework_text(task_id: str, branch: str, details: dict[str, Any], conflicts: list[str]) -> str:
    """The message that tells the model exactly why its finished task came back."""
    if details.get("kind") == "gate":
        how = (
            f"timed out after {details.get('timeout_s', '')}s"
            if details.get("timed_out")
            else f"exited with code {details.get('exit_code')}"
        )
        text = (
            f"Your work on task {task_id} was not merged: the merge gate `{details.get('command')}` "
            f"{how} when run on your change merged onto {branch}. The last lines of its "
            f"output:\n\n{details.get('tail', '')}\n\n"
        )
    else:
        by: dict[str, list[str]] = details.get("by") or {}
        lines = []
        for f in details.get("files", []):
            who = ", ".join(by.get(f, []))
            lines.append(f"- {f}" + (f" (also changed by task {who})" if who else ""))
        text = (
            f"Your work on task {task_id} was not merged: it conflicts with work merged into "
            f"{branch} since you started.\nConflicting files:\n" + "\n".join(lines) + "\n\n"
        )
    if conflicts:
        text += (
            f"Your worktree has been brought up to {branch} with the merge left in progress: "
            f"{', '.join(conflicts)} contain conflict markers (<<<<<<<, =======, >>>>>>>). "
            "Read each one, resolve it keeping both changes' intent, remove the markers, and "
            "check the result. "
        )
    else:
        text += f"Your worktree has been brought up to date with {branch}. "
    text += (
        "Fix the problem with your tools, then finish again with a short summary (no tool "
        "calls); your changes are committed and merged for you."
    )
    return text
