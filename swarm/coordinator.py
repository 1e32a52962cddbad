"""The coordinator: hosts one Ray actor per agent (and, in a worktree run, the merge
queue), supervises leases, deaths, budget and wall time, and decides how the run ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from swarm.blackboard.board import TERMINAL, Blackboard
from swarm.hosting import AgentActor, AgentSpec, actor_env, start_ray
from swarm.tools.bash import KILL_GRACE_S
from swarm.workspace.queue import MergeQueue
from swarm.workspace.worktrees import RunWorktrees, WorkspaceSettings

log = logging.getLogger("swarm.coordinator")

EXIT_OK, EXIT_TASK_FAILED, EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Coordinator:
    def __init__(
        self,
        board: Blackboard,
        specs: list[AgentSpec],
        max_wall_s: float | None,
        max_restarts: int = 3,
        workspace: WorkspaceSettings | None = None,
        lease_ms: int = 30_000,
    ):
        self.board = board
        self.specs = specs
        self.workspace = workspace
        self.lease_ms = lease_ms
        self.max_wall_s = max_wall_s
        self.max_restarts = max_restarts
        self.actors: dict[str, Any] = {}
        self.refs: dict[str, Any] = {}  # each actor's run() call, to cancel it on stop

    def spawn(self) -> None:
        import ray

        start_ray()
        remote_cls = ray.remote(AgentActor)
        joined = bool(os.environ.get("RAY_ADDRESS"))
        for spec in self.specs:
            options: dict[str, Any] = dict(
                name=f"swarm-{spec.run_id}-{spec.agent.name}",
                num_cpus=0,
                max_restarts=self.max_restarts,
                max_task_retries=self.max_restarts,
            )
            if joined:
                options["runtime_env"] = {"env_vars": actor_env(spec)}
            if spec.workspace.mode == "worktree":
                # worktrees live on this machine: its agents must too (until runs share a
                # git remote, see docs/workspaces.md)
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                    node_id=ray.get_runtime_context().get_node_id(), soft=False
                )
            self.actors[spec.agent.name] = remote_cls.options(**options).remote(  # type: ignore[attr-defined]
                spec.model_dump_json()
            )

    async def supervise(self) -> str:
        """Run until every task is completed or failed. Returns the run's final state."""
        try:
            self.spawn()
        except Exception as exc:
            await self.board.set_state("failed", f"could not start the agents: {exc}")
            await self._stop({})
            raise
        # SIGTERM (a cancelled CI job, `kill`) stops the run like Ctrl-C. Installed after
        # Ray starts, since ray.init puts its own (aborting) handler in place.
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        if me is not None:
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
        started = time.monotonic()
        merger = self._start_queue()
        runs = {
            name: asyncio.ensure_future(self._await_actor(name, a))
            for name, a in self.actors.items()
        }
        state = "interrupted"  # unless the loop below ends normally
        recorded = False  # whether the final state is already stored
        try:
            while True:
                last = await self.board.last_event_id()
                await self.board.requeue_expired()
                meta_state = (await self.board.meta()).get("state", "running")
                if meta_state != "running":  # budget spent (an agent), or `swarm stop`
                    state, recorded = meta_state, True
                    break
                tasks = await self.board.tasks()
                if all(t.status in TERMINAL for t in tasks):
                    state = "failed" if any(t.status == "failed" for t in tasks) else "completed"
                    break
                if self.max_wall_s is not None and time.monotonic() - started > self.max_wall_s:
                    state = "timeout"
                    break
                if await self._fail_orphans(tasks, {n for n, r in runs.items() if not r.done()}):
                    continue
                await self.board.wait_events(last, block_ms=1000)
        finally:
            if not recorded:
                reason = {
                    "timeout": f"max_wall_s ({self.max_wall_s}s) exhausted",
                    "interrupted": "interrupted; swarm resume RUN continues",
                }.get(state, "")
                await self.board.set_state(state, reason)
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGTERM)
            await self._stop(runs)
            await self._stop_queue(merger, state)
        return state

    def _start_queue(self) -> asyncio.Task[None] | None:
        if self.workspace is None or self.workspace.mode != "worktree":
            return None
        queue = MergeQueue(self.board, self.workspace, prefer_ms=self.lease_ms)
        return asyncio.create_task(queue.serve())

    async def _stop_queue(self, merger: asyncio.Task[None] | None, state: str) -> None:
        """Stop the merge queue (a merge cut short leaves the run's branch as it was and
        is redone on resume); a finished run also drops the queue's worktree."""
        if merger is None or self.workspace is None:
            return
        merger.cancel()
        await asyncio.wait({merger}, timeout=10)  # bounded: a stop never hangs on the queue
        if state in TERMINAL:
            wt = RunWorktrees(self.workspace, self.board.run_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(wt.remove_queue)

    async def _fail_orphans(self, tasks: list[Any], live: set[str]) -> bool:
        """Fail the unfinished tasks that no live agent may take (their agent, or every
        agent of their role, has died): otherwise the run would wait for them forever."""
        failed = False
        for t in tasks:
            if t.status in TERMINAL or t.status == "merging":  # the queue needs no agent
                continue
            takers = (
                [t.agent]
                if t.agent
                else [s.agent.name for s in self.specs if s.agent.role == t.role]
            )
            if not live.intersection(takers):
                who = ", ".join(takers) or f"no agent has role {t.role!r}"
                failed |= await self.board.fail(t.id, "", f"no live agent can take it ({who})")
        return failed

    async def _await_actor(self, name: str, actor: Any) -> None:
        ref = actor.run.remote()
        self.refs[name] = ref
        try:
            await ref
        except Exception as exc:  # restarts exhausted, or the loop raised
            await self.board.update_agent(
                name, event="agent_dead", data={"error": str(exc)[:500]}, status="dead"
            )
            await self.board.r.hdel(self.board.k.budget, name)  # its reservation, if any

    async def _stop(self, runs: Mapping[str, asyncio.Future[None]]) -> None:
        """End every agent: cancel its loop first (so a running tool kills its process
        group and nothing outlives the run), then kill the actors."""
        import ray

        # agents leave on their own once the run is over (within a wake-up): give them a
        # moment, then cancel the ones still busy (a long command, a slow model call)
        if runs:
            await asyncio.wait(list(runs.values()), timeout=3)
        busy = [name for name, fut in runs.items() if not fut.done()]
        for name in busy:
            with contextlib.suppress(Exception):
                ray.cancel(self.refs[name])
        if busy:
            _, pending = await asyncio.wait([runs[n] for n in busy], timeout=KILL_GRACE_S + 3)
            for fut in pending:
                fut.cancel()
        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        for name in busy:
            await self.board.update_agent(
                name, event="agent_status", data={"status": "stopped"}, status="stopped"
            )


def exit_code_for(state: str) -> int:
    return {
        "completed": EXIT_OK,
        "failed": EXIT_TASK_FAILED,
        "budget": EXIT_BUDGET,
        "timeout": EXIT_BUDGET,
        "interrupted": EXIT_INTERRUPTED,
    }.get(state, EXIT_TASK_FAILED)
