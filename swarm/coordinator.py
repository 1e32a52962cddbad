"""The coordinator: hosts one Ray actor per agent (and, in a worktree run, the merge
queue), supervises leases, deaths, budget and wall time, and decides how the run ends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from typing import Any

from swarm.blackboard.board import TERMINAL, Blackboard, TaskHead
from swarm.config import Reliability
from swarm.errors import BadInput
from swarm.hosting import (
    AGENT_RESOURCE_ENV,
    AgentActor,
    AgentSpec,
    actor_env,
    actor_groups,
    agent_resource,
    check_agent_resource,
    start_ray,
)
from swarm.liveness import coordinator_holder
from swarm.reaper import start_reaper
from swarm.tools.bash import KILL_GRACE_S
from swarm.workspace.queue import MergeQueue
from swarm.workspace.worktrees import RunWorktrees, WorkspaceSettings

log = logging.getLogger("swarm.coordinator")

WATCH_HZ = 4  # supervision rounds per second, at most
# what a supervision round reads of the run's meta hash (never the whole of it: the plan)
WATCHED_META = ("state", "provider_failing_since", "provider_error")
DEATH_WRITES = 8  # agents' deaths written at once, at most

EXIT_OK, EXIT_TASK_FAILED, EXIT_BAD_INPUT, EXIT_BUDGET, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Coordinator:
    """Hosts the run's agents and supervises the run until it ends.

    What it rides out (docs/reliability.md): an agent actor dying (Ray restarts it; past
    that, the coordinator respawns it), the whole local Ray dying (it starts a new one
    and respawns every agent), Redis unreachable (every call retries until
    ``redis_outage_s``; afterwards every lease gets its time back). A dead agent never
    fails a task: its claim waits for it (or its lease lapses and another agent takes it).
    """

    def __init__(
        self,
        board: Blackboard,
        specs: list[AgentSpec],
        max_wall_s: float | None,
        max_restarts: int = 3,
        workspace: WorkspaceSettings | None = None,
        lease_ms: int = 30_000,
        reliability: Reliability | None = None,
        max_task_wall_s: float | None = None,
        takeover: bool = False,
        agents_per_actor: int = 1,
    ):
        self.board = board
        self.specs = specs
        self.workspace = workspace
        self.lease_ms = lease_ms
        self.max_wall_s = max_wall_s
        self.max_task_wall_s = max_task_wall_s
        self.max_restarts = max_restarts
        self.reliability = reliability or Reliability()
        self.takeover = takeover  # resume of a run whose coordinator died
        self.agents_per_actor = agents_per_actor
        self.actors: dict[str, Any] = {}
        self.refs: dict[str, Any] = {}  # each actor's run() call, to cancel it on stop
        self.runs: dict[str, asyncio.Future[None]] = {}
        self.respawns: dict[str, int] = {}
        self.holder = coordinator_holder()
        self.lease_lost = False
        self.reaper: subprocess.Popen[bytes] | None = None
        self.detached = False  # the dashboard let go of this terminal (SIGHUP is ignored)
        self.stopping = False  # _stop ends the agents: their calls' errors are its doing
        # an actor's death is written by each of its agents' watchers: a packed actor of
        # hundreds would otherwise write hundreds at once
        self._death_writes = asyncio.Semaphore(DEATH_WRITES)

    # -- agents ------------------------------------------------------------------------
    def _spawn(self, specs: list[AgentSpec]) -> None:
        """Host ``specs`` in actors of up to ``agents_per_actor`` agents each; every agent
        is its own ``run`` call, supervised on its own."""
        for group in actor_groups(specs, self.agents_per_actor):
            self._spawn_group(group)

    def _spawn_group(self, group: list[AgentSpec]) -> None:
        import ray

        first = group[0]
        names = [s.agent.name for s in group]
        label = names[0] if len(names) == 1 else f"{names[0]}+{len(names) - 1}"
        options: dict[str, Any] = dict(
            name=f"swarm-{first.run_id}-{label}-{self.respawns.get(names[0], 0)}",
            num_cpus=0,
            max_restarts=self.max_restarts,
            max_task_retries=self.max_restarts,
            max_concurrency=max(len(group) + 8, 32),
        )
        if os.environ.get("RAY_ADDRESS"):
            options["runtime_env"] = {"env_vars": actor_env(first)}
        options.update(self._placement(first, len(group)))
        actor = (
            ray.remote(AgentActor)
            .options(**options)
            .remote(  # type: ignore[attr-defined]
                [s.model_dump_json() for s in group]
            )
        )
        for name in names:
            self.actors[name] = actor
            self.runs[name] = asyncio.ensure_future(self._await_actor(name, actor))

    @staticmethod
    def _placement(spec: AgentSpec, agents: int = 1) -> dict[str, Any]:
        """Only a node that reaches the agent's workspace may host it, now and when Ray
        restarts it after its node is lost (a restart keeps these options). The driver's
        node always does; on a joined cluster a shared run's agents are spread over the
        nodes that offer ``SWARM_AGENT_RESOURCE`` instead. Worktrees are this machine's
        files: a worktree run's agents stay here (docs/workspaces.md)."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        resource = agent_resource(spec.workspace.mode)
        if resource:
            return {"resources": {resource: agents}, "scheduling_strategy": "SPREAD"}
        if spec.workspace.mode == "shared" and not os.environ.get("RAY_ADDRESS"):
            return {}  # a local Ray has no other node
        node = ray.get_runtime_context().get_node_id()
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}

    def spawn(self) -> None:
        start_ray()
        self._watch_ray()
        mode = self.specs[0].workspace.mode if self.specs else "shared"
        resource = agent_resource(mode)
        if resource:
            check_agent_resource(resource, len(self.specs))
        elif mode == "worktree" and os.environ.get(AGENT_RESOURCE_ENV):
            log.warning(
                "%s is not used: a worktree run's agents stay on the driver's node "
                "(docs/workspaces.md)",
                AGENT_RESOURCE_ENV,
            )
        self._spawn(self.specs)

    def _watch_ray(self) -> None:
        """A local Ray dies with this process: a reaper sees to what Ray's own clean-up
        leaves behind (and the agents' commands) should this process be killed."""
        if self.reaper is not None:
            self.reaper.terminate()
        if os.environ.get("RAY_ADDRESS"):
            return
        node = getattr(ray_worker(), "_global_node", None)
        self.reaper = start_reaper(self.board.run_id, getattr(node, "session_name", "") or "")

    async def _await_actor(self, name: str, actor: Any) -> None:
        ref = actor.run.remote(name)
        self.refs[name] = ref
        try:
            await ref
        except Exception as exc:  # Ray's restarts exhausted, its node lost, or the loop raised
            if self.stopping:
                return  # cancelled or killed by _stop, which marks it stopped
            async with self._death_writes:
                await self.board.update_agent(
                    name, event="agent_dead", data={"error": str(exc)[:500]}, status="dead"
                )
                await self.board.r.hdel(self.board.k.budget, name)  # its reservation, if any

    async def _revive(self) -> str | None:
        """Respawn agents that died while the run goes on (all of them, on a new local
        Ray, when Ray itself is gone). Returns a reason to stop the run, if any."""
        dead = [n for n, f in self.runs.items() if f.done()]
        if not dead:
            return None
        if not await _ray_alive():
            await self.board.emit("ray_lost", data={"agents": len(self.actors)})
            await _restart_ray()
            self._watch_ray()
            dead = list(self.runs)
        by_name = {s.agent.name: s for s in self.specs}
        for name in dead:
            n = self.respawns.get(name, 0) + 1
            if n > self.reliability.agent_restarts:
                return (
                    f"agent {name} died {n - 1} times after Ray's own restarts; "
                    "swarm resume RUN continues"
                )
            self.respawns[name] = n
            self.runs.pop(name).cancel()
        self._spawn([by_name[name] for name in dead])
        for name in dead:
            await self.board.update_agent(
                name,
                event="agent_respawned",
                data={"respawn": self.respawns[name]},
                status="starting",
            )
        return None

    # -- the run -----------------------------------------------------------------------
    async def supervise(self) -> str:
        """Run until every task is completed or failed. Returns the run's final state."""
        ttl = self.lease_ms
        if not await self.board.hold_coordinator(self.holder, ttl, force=self.takeover):
            raise BadInput(f"run {self.board.run_id}: another coordinator holds it")
        renewer = asyncio.create_task(self._renew_lease(asyncio.current_task()))
        try:
            self.spawn()
        except Exception as exc:
            await self.board.set_state("failed", f"could not start the agents: {exc}")
            await self._stop()
            renewer.cancel()
            raise
        # SIGTERM (a cancelled CI job, `kill`) and SIGHUP (a closed terminal) stop the run
        # like Ctrl-C. Installed after Ray starts, since ray.init puts its own in place.
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        if me is not None:
            loop.add_signal_handler(signal.SIGTERM, me.cancel)
            loop.add_signal_handler(signal.SIGHUP, self._hangup, me)
        merger = self._start_queue()
        state, recorded = "interrupted", False  # unless the loop below ends normally
        try:
            state, recorded = await self._watch()
        except asyncio.CancelledError:
            if not self.lease_lost:
                raise
            state, recorded = "interrupted", True  # another coordinator took the run over
        finally:
            if not recorded:
                reason = {
                    "timeout": f"max_wall_s ({self.max_wall_s}s) exhausted",
                    "interrupted": "interrupted; swarm resume RUN continues",
                }.get(state, "")
                await self.board.set_state(state, reason)
            for sig in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
            await self._stop()
            await self._stop_queue(merger, state)
            if self.reaper is not None:
                self.reaper.terminate()  # a clean stop: nothing for it to reap
            renewer.cancel()
            if not self.lease_lost:
                await self.board.drop_coordinator(self.holder["token"])
        return state

    def _hangup(self, supervisor: asyncio.Task[Any]) -> None:
        """A closed terminal stops the run, unless the dashboard was detached from it
        (`q`): the run then no longer belongs to that terminal."""
        if self.detached:
            log.info("SIGHUP ignored: the dashboard was detached from run %s", self.board.run_id)
            return
        supervisor.cancel()

    async def _watch(self) -> tuple[str, bool]:
        """The supervision loop. Returns the final state and whether it is stored."""
        started = time.monotonic()
        tick = time.monotonic()
        while True:
            last = await self.board.last_event_id()
            if time.monotonic() - tick > self.lease_ms / 2000 + 2:
                # a Redis call hung (an outage): give every lease its time back before
                # anything is requeued, so the agents re-attach instead
                n = await self.board.extend_leases(self.lease_ms)
                gap = round(time.monotonic() - tick, 1)
                await self.board.emit("redis_recovered", data={"gap_s": gap, "leases": n})
            await self.board.requeue_expired()
            meta = await self.board.meta_fields(*WATCHED_META)
            if meta.get("state", "running") != "running":  # budget spent, `swarm stop`
                return meta["state"], True
            tasks = await self.board.task_heads()
            if all(t.status in TERMINAL for t in tasks):
                return (
                    "failed" if any(t.status == "failed" for t in tasks) else "completed"
                ), False
            if self.max_wall_s is not None and time.monotonic() - started > self.max_wall_s:
                return "timeout", False
            now = await self.board.now_ms()
            await self._enforce_task_walls(tasks, now)
            stop = self._provider_outage(meta, now) or await self._revive()
            if stop is not None:
                await self.board.request_stop(stop)
                continue
            if await self._fail_unassignable(tasks):
                continue
            tick = time.monotonic()
            await self.board.wait_events(last, block_ms=1000, count=1)
            # at most WATCH_HZ rounds a second: a busy swarm writes dozens of events a
            # second, and each round reads every task (its head: task_heads)
            await asyncio.sleep(max(0.0, 1 / WATCH_HZ - (time.monotonic() - tick)))
            tick = time.monotonic()

    async def _renew_lease(self, supervisor: asyncio.Task[Any] | None) -> None:
        """Renew the coordinator lease every third of it. Losing it (another process took
        the run over after it lapsed) stops this coordinator without touching the run."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            with contextlib.suppress(Exception):
                if await self.board.hold_coordinator(self.holder, self.lease_ms):
                    continue
                self.lease_lost = True
                log.warning("run %s was taken over by another coordinator", self.board.run_id)
                if supervisor is not None:
                    supervisor.cancel()
                return

    async def _enforce_task_walls(self, tasks: list[TaskHead], now: int) -> None:
        limit = self.max_task_wall_s
        if limit is None:
            return
        for t in tasks:
            if t.status == "claimed" and t.claimed_at and now - t.claimed_at > limit * 1000:
                reason = f"max_task_wall_s ({limit:g} s) reached"
                if await self.board.fail(t.id, "", reason):
                    await self.board.emit(
                        "task_timeout", task=t.id, agent=t.assignee, data={"reason": reason}
                    )

    def _provider_outage(self, meta: dict[str, str], now: int) -> str | None:
        since = int(meta.get("provider_failing_since") or 0)
        limit = self.reliability.provider_outage_s
        if since and now - since > limit * 1000:
            last = meta.get("provider_error", "")
            return (
                f"provider outage: no model request succeeded for {limit:g} s"
                + (f" (last error: {last})" if last else "")
                + "; swarm resume RUN continues"
            )
        return None

    async def _fail_unassignable(self, tasks: list[TaskHead]) -> bool:
        """Fail tasks no agent of this run can ever take (a role or agent it lacks)."""
        names = {s.agent.name for s in self.specs}
        roles = {s.agent.role for s in self.specs}
        failed = False
        for t in tasks:
            if t.status in TERMINAL or t.status == "merging":
                continue
            if (t.agent and t.agent not in names) or (not t.agent and t.role not in roles):
                who = t.agent or f"no agent has role {t.role!r}"
                failed |= await self.board.fail(t.id, "", f"no agent can take it ({who})")
        return failed

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

    async def _stop(self) -> None:
        """End every agent: cancel its loop first (so a running tool kills its process
        group and nothing outlives the run), then kill the actors."""
        import ray

        runs = self.runs
        # agents leave on their own once the run is over (within a wake-up): give them a
        # moment, then cancel the ones still busy (a long command, a slow model call)
        if runs:
            await asyncio.wait(list(runs.values()), timeout=3)
        self.stopping = True
        busy = [name for name, fut in runs.items() if not fut.done()]
        for name in busy:
            with contextlib.suppress(Exception):
                ray.cancel(self.refs[name])
        if busy:
            _, pending = await asyncio.wait([runs[n] for n in busy], timeout=KILL_GRACE_S + 3)
            for fut in pending:
                fut.cancel()
        for actor in {id(a): a for a in self.actors.values()}.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        if busy:  # one round trip for them all (a thousand agents, one pipeline)
            await self.board.mark_agents(
                busy, event="agent_status", data={"status": "stopped"}, status="stopped"
            )


def ray_worker() -> Any:
    import ray._private.worker as worker

    return worker


async def _ray_alive(timeout_s: float = 10.0) -> bool:
    """Whether this driver's Ray still works: its own node is alive in the GCS."""
    import ray

    def check() -> bool:
        me = ray.get_runtime_context().get_node_id()
        return any(n.get("NodeID") == me and n.get("Alive") for n in ray.nodes())

    try:
        return await asyncio.wait_for(asyncio.to_thread(check), timeout=timeout_s)
    except Exception:
        return False


async def _restart_ray(timeout_s: float = 30.0) -> None:
    """Ray is gone (raylet or GCS killed, OOM): drop this driver's connection and start
    (or join) Ray again."""
    import ray

    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.to_thread(ray.shutdown), timeout=timeout_s)
    await asyncio.to_thread(start_ray)


def exit_code_for(state: str) -> int:
    return {
        "completed": EXIT_OK,
        "failed": EXIT_TASK_FAILED,
        "budget": EXIT_BUDGET,
        "timeout": EXIT_BUDGET,
        "interrupted": EXIT_INTERRUPTED,
    }.get(state, EXIT_TASK_FAILED)
