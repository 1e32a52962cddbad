"""The merge queue: finished tasks' branches merged onto the run's branch one at a time,
behind the gate. The order (a Redis list) and the lock (a Redis key with a token) live in
Redis, so several processes, or machines sharing the Redis, can serve one queue.

The run's branch moves only by a compare-and-swap of a finished merge commit that passed
the gate: a crash anywhere before it leaves the branch as it was (the merge is redone),
a crash after it is recognised on the next pass (the task's commit is already in)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from swarm.blackboard.board import Blackboard, TaskView
from swarm.workspace.gate import run_gate
from swarm.workspace.worktrees import RunWorktrees, WorkspaceSettings

log = logging.getLogger("swarm.merge")

LOCK_RENEW = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
LOCK_DROP = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class MergeQueue:
    def __init__(
        self,
        board: Blackboard,
        settings: WorkspaceSettings,
        prefer_ms: int = 30_000,
        lock_ms: int = 30_000,
    ):
        self.board = board
        self.s = settings
        self.wt = RunWorktrees(settings, board.run_id)
        self.prefer_ms = prefer_ms
        self.lock_ms = lock_ms
        self._renew = board.r.register_script(LOCK_RENEW)
        self._drop = board.r.register_script(LOCK_DROP)
        self._predicted: set[tuple[str, str]] = set()  # pairs of commits already checked

    async def serve(self) -> None:
        """Merge whatever is queued, as it arrives, until cancelled."""
        while True:
            last = await self.board.last_event_id()
            try:
                worked = await self.step()
            except Exception as exc:  # a git failure: say so, and try again on the next event
                log.exception("merge queue")
                await self.board.emit("merge_error", data={"error": str(exc)[:500]})
                worked = False
            if not worked:
                await self.board.wait_events(last, block_ms=1000, count=1)

    async def step(self) -> bool:
        """Merge the task at the head of the queue; False when there was nothing to do (or
        another process holds the queue)."""
        if not await self.board.merge_queue():
            return False
        async with self._locked() as held:
            if not held:
                return False
            ids = await self.board.merge_queue()
            if not ids:
                return False
            await self._precheck(ids)
            ids = await self.board.merge_queue()
            if ids:
                await self._merge(ids[0])
        return True

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[bool]:
        key, token = self.board.k.merge_lock, secrets.token_hex(8)
        if not await self.board.r.set(key, token, nx=True, px=self.lock_ms):
            yield False
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lock_ms / 3000)
                await self._renew(keys=[key], args=[token, self.lock_ms])

        keeper = asyncio.create_task(renew())
        try:
            yield True
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await keeper
            with contextlib.suppress(Exception):
                await self._drop(keys=[key], args=[token])

    # -- one merge ---------------------------------------------------------------------------
    async def _merge(self, task_id: str) -> None:
        task = await self.board.task(task_id)
        if task is None or task.status != "merging" or not task.commit:
            await self.board.r.lrem(self.board.k.merge_queue, 0, task_id)  # a stale entry
            return
        head = await asyncio.to_thread(self.wt.head)
        await self.board.emit(
            "merge_started",
            task=task_id,
            agent=task.assignee,
            data={"commit": task.commit, "onto": head},
        )
        if await asyncio.to_thread(self.wt.repo.is_ancestor, task.commit, head):
            # merged already: the process that moved the branch died before recording it
            merge = await asyncio.to_thread(self._merge_of, task.commit, head)
            await self._done(task, merge, gate_s=None)
            return
        tree, conflicts = await asyncio.to_thread(self.wt.merge_tree, head, task.commit)
        if conflicts:
            await self._conflict(task, head, conflicts)
            return
        merge = await asyncio.to_thread(
            self.wt.commit_merge, tree, head, task.commit, self._message(task)
        )
        gate_s = None
        if self.s.gate:
            path = await asyncio.to_thread(self.wt.checkout_queue, merge)
            res = await run_gate(self.s.gate, path, self.s.gate_timeout_s)
            gate_s = round(res.seconds, 3)
            if not res.passed:
                details = {
                    "kind": "gate",
                    "command": self.s.gate,
                    "exit_code": res.exit_code,
                    "timed_out": res.exit_code is None,
                    "timeout_s": self.s.gate_timeout_s,
                    "tail": res.tail,
                    "onto": head,
                    "gate_s": gate_s,
                }
                how = "timed out" if res.exit_code is None else f"exit code {res.exit_code}"
                await self._back(task, "gate_failed", details, f"merge gate failed ({how})")
                return
        if not await asyncio.to_thread(self.wt.move_run_branch, merge, head):
            # moved under us (it cannot while we hold the lock): redo on the next pass
            await self.board.emit("merge_retry", task=task_id, data={"reason": "branch moved"})
            return
        await self._done(task, merge, gate_s)

    async def _done(self, task: TaskView, merge: str, gate_s: float | None) -> None:
        parent = await asyncio.to_thread(self.wt.repo.out, "rev-parse", f"{merge}^1")
        files, added, removed = await asyncio.to_thread(self.wt.diffstat, parent, merge)
        stats: dict[str, Any] = {"files": files, "added": added, "removed": removed}
        stats["gate_s"] = gate_s if gate_s is not None else False
        await self.board.merged(task.id, merge, stats, task.result)
        await asyncio.to_thread(self.wt.remove_task, task.id, True)  # merged: nothing to lose

    def _merge_of(self, commit: str, head: str) -> str:
        """The first-parent commit of the run's branch that merged ``commit``."""
        rows = self.wt.repo.out(
            "rev-list", "--first-parent", "--parents", f"{self.s.base_commit}..{head}"
        )
        for row in rows.splitlines():
            sha, *parents = row.split()
            if commit in parents[1:]:
                return sha
        return head

    def _message(self, task: TaskView) -> str:
        gate = f"Swarm-Gate: {self.s.gate}\n" if self.s.gate else ""
        return (
            f"Merge {task.id}: {task.title}\n\n"
            f"Swarm-Run: {self.board.run_id}\nSwarm-Task: {task.id}\n"
            f"Swarm-Agent: {task.assignee}\n{gate}"
        )

    async def _conflict(self, task: TaskView, head: str, files: list[str]) -> None:
        since = task.base or self.s.base_commit
        by = await asyncio.to_thread(self.wt.tasks_touching, since, files)
        details = {"kind": "conflict", "files": files, "by": by, "onto": head}
        others = sorted({t for ts in by.values() for t in ts})
        reason = f"merge conflict in {', '.join(files)}" + (
            f" with {', '.join(others)}" if others else ""
        )
        await self._back(task, "merge_conflict", details, reason)

    async def _back(self, task: TaskView, kind: str, details: dict[str, Any], reason: str) -> None:
        res = await self.board.merge_back(
            task.id, kind, details, self.s.max_attempts, self.prefer_ms, reason
        )
        if res == 2:  # failed for good: its branch and worktree stay for a person to see
            await self.board.emit("merge_gave_up", task=task.id, data={"reason": reason})

    # -- conflicts known before their turn ---------------------------------------------------
    async def _precheck(self, ids: list[str]) -> None:
        """Queued branches checked with merge-tree: one that already conflicts with the
        run's head goes back to its agent now instead of waiting its turn; pairs of queued
        branches that conflict with each other are announced."""
        tasks = [t for t in [await self.board.task(i) for i in ids] if t and t.commit]
        head = await asyncio.to_thread(self.wt.head)
        for t in tasks[1:]:
            if (t.commit, head) in self._predicted:
                continue
            self._predicted.add((t.commit, head))
            _, files = await asyncio.to_thread(self.wt.merge_tree, head, t.commit)
            if files:
                await self._conflict(t, head, files)
        for i, a in enumerate(tasks):
            for b in tasks[i + 1 :]:
                if (a.commit, b.commit) in self._predicted:
                    continue
                self._predicted.add((a.commit, b.commit))
                _, files = await asyncio.to_thread(self.wt.merge_tree, a.commit, b.commit)
                if files:
                    await self.board.emit(
                        "merge_conflict_predicted",
                        task=b.id,
                        data={"with": a.id, "files": files},
                    )
