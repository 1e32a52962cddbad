"""The blackboard API: tasks, leases, events, sessions, notes, inboxes, agent state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal, NamedTuple, overload

import redis.asyncio as aioredis
from pydantic import BaseModel
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from swarm.blackboard import lua
from swarm.blackboard.keys import RUNS, SCHEMA, SESSIONS, Keys
from swarm.blackboard.limits import Reservation
from swarm.blackboard.lua import WAKE_EVENTS
from swarm.blackboard.wake import WakeListener
from swarm.errors import SwarmError

TERMINAL = ("completed", "failed")
REDIS_OUTAGE_S = 120.0  # how long every call rides out an unreachable Redis
MAX_CONNECTIONS = 100  # a board's connections at most (redis-py's default pool size)


class StateCorrupt(SwarmError):
    """The run's stored state contradicts itself: reported loudly, never papered over."""


class Claim(NamedTuple):
    task_id: str
    kind: str  # 'claimed' (a new attempt) or 'resumed' (re-attached to its own claim)
    attempts: int
    token: str  # the lease's fencing token: every write about the task carries it
    task: TaskView | None = None  # the task as claimed (the agent loop's claim only)
    session_len: int = -1  # messages in its session then (-1: not read)


class Idle(NamedTuple):
    """Nothing to claim (``Blackboard.claim(..., idle=True)``), and what the agent waits on."""

    open: int  # tasks not completed or failed (0: the run's work is done, or nearly)
    waiting_for: list[str]  # unfinished needs of its first pending tasks, in claim order
    state: str  # the run's state
    last_event: str = "0-0"  # the wake stream's last id when this was read: wait from it


class OutageRetry(Retry):
    """Retry a Redis call on connection errors until a deadline (not a count): every
    agent and the coordinator ride out a Redis restart or a short partition the same way.
    Retried calls are safe: task changes are fenced scripts, a stored turn is idempotent."""

    def __init__(self, outage_s: float):
        super().__init__(
            ExponentialBackoff(cap=2.0, base=0.05),
            -1,
            (RedisConnectionError, RedisTimeoutError, OSError),  # type: ignore[arg-type]
        )
        self.outage_s = outage_s

    async def call_with_retry(  # type: ignore[override]
        self, do: Any, fail: Any, is_retryable: Any = None, with_failure_count: bool = False
    ) -> Any:
        deadline = time.monotonic() + self.outage_s
        failures = 0
        task = asyncio.current_task()
        while True:
            # Python 3.11's asyncio.wait_for (redis-py sends through it) loses a
            # cancellation that arrives as the write completes: the call then goes on as
            # if never cancelled, and a stop never lands. A cancellation requested during
            # the call is raised here (also instead of retrying its connection's error).
            asked = task.cancelling() if task is not None else 0
            try:
                result = await do()
            except self._supported_errors as error:
                if is_retryable and not is_retryable(error):
                    raise
                if task is not None and task.cancelling() > asked:
                    raise asyncio.CancelledError() from error
                failures += 1
                await (fail(error, failures) if with_failure_count else fail(error))
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(self._backoff.compute(failures))
                continue
            if task is not None and task.cancelling() > asked:
                raise asyncio.CancelledError()
            return result


class TaskView(BaseModel):
    id: str
    title: str = ""
    description: str = ""
    phase: str = ""
    role: str = ""
    agent: str = ""
    needs: list[str] = []
    status: str = ""
    assignee: str = ""
    attempts: int = 0
    max_attempts: int = 3
    max_turns: int = 0
    result: str = ""
    error: str = ""
    created_by: str = ""
    lease_until: int = 0
    # worktree runs: where the task's branch started, its committed work, the merge
    paths: list[str] = []  # declared paths (globs) it will change
    base: str = ""
    commit: str = ""
    merge_commit: str = ""
    merge_attempts: int = 0
    rework: str = ""  # JSON: why the merge queue sent it back (until its agent takes it up)
    files: list[str] = []
    added: int = 0
    removed: int = 0
    retry: str = ""  # the error of a failed task given a new attempt (--retry-failed)
    turn_base: int = 0  # turns before that retry: max_turns counts from here
    claimed_at: int = 0
    # the conversation's context view (swarm.context): the session index it starts at
    # (a compaction), the index before which tool results are pruned, turns before start
    ctx_start: int = 0
    ctx_pruned: int = 0
    ctx_turns: int = 0
    ctx_ratio: float = 0.0  # tokens per character of its requests, as last measured

    @classmethod
    def from_hash(cls, h: dict[str, str]) -> TaskView:
        data: dict[str, Any] = dict(h)
        for f in ("needs", "paths", "files"):
            data[f] = json.loads(h.get(f) or "[]")
        for f in (
            "attempts",
            "max_attempts",
            "max_turns",
            "lease_until",
            "merge_attempts",
            "added",
            "removed",
            "turn_base",
            "claimed_at",
            "ctx_start",
            "ctx_pruned",
            "ctx_turns",
        ):
            data[f] = int(float(h.get(f) or 0))
        return cls.model_validate(data)


class TaskHead(NamedTuple):
    """What the coordinator's supervision round reads of a task (Blackboard.task_heads):
    a thousandth of a TaskView's cost, read several times a second for every task."""

    id: str
    status: str
    role: str
    agent: str
    assignee: str
    claimed_at: int


HEAD_FIELDS = ("status", "role", "agent", "assignee", "claimed_at")


class Event(BaseModel):
    id: str
    type: str
    ts: int
    task: str = ""
    agent: str = ""
    data: dict[str, Any] = {}

    @classmethod
    def from_fields(cls, event_id: str, fields: dict[str, str]) -> Event:
        return cls(
            id=event_id,
            type=fields.get("type", ""),
            ts=int(fields.get("ts", 0)),
            task=fields.get("task", ""),
            agent=fields.get("agent", ""),
            data=json.loads(fields.get("data") or "{}"),
        )


def now_ms() -> int:
    return int(time.time() * 1000)


class Blackboard:
    """One run's view of Redis. Cheap to create; share one per process."""

    def __init__(
        self,
        url: str,
        run_id: str,
        outage_s: float = REDIS_OUTAGE_S,
        max_connections: int = MAX_CONNECTIONS,
    ):
        self.url = url
        self.run_id = run_id
        self.k = Keys(run_id)
        # decode_responses=True: every reply is str; redis-py's stubs cannot express that
        # encoding_errors="replace": one bad byte must never break every reader of a key
        # socket_timeout: longer than any blocking read (5 s), so a silent partition is
        # noticed and retried instead of hanging forever
        # a bounded pool whose callers wait for a free connection: redis-py's default
        # pool raises MaxConnectionsError past 100 concurrent calls (a thousand agents
        # marked at once did), and each connection is a client the server buffers for
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=None,  # held connections come back: every call ends within its outage
            decode_responses=True,
            encoding_errors="replace",
            retry=OutageRetry(outage_s),
            socket_connect_timeout=5,
            socket_timeout=20,
            client_name=f"swarm-{os.getpid()}",  # CLIENT LIST tells whose a connection is
            **({} if url.startswith("unix:") else {"socket_keepalive": True}),
        )
        self.r: Any = aioredis.Redis.from_pool(pool)
        self.wake = WakeListener(self.r, self.k.wake)
        self._pool_kwargs = {**pool.connection_kwargs, "connection_class": pool.connection_class}
        self._blocking: Any = None
        self._terminal_read: asyncio.Future[bool] | None = None
        self._claim = self.r.register_script(lua.CLAIM)
        self._heartbeat = self.r.register_script(lua.HEARTBEAT)
        self._complete = self.r.register_script(lua.COMPLETE)
        self._fail = self.r.register_script(lua.FAIL)
        self._requeue = self.r.register_script(lua.REQUEUE_EXPIRED)
        self._create = self.r.register_script(lua.CREATE)
        self._unlock = self.r.register_script(lua.LOCK_RELEASE)
        self._release = self.r.register_script(lua.RELEASE)
        self._stop_if_running = self.r.register_script(lua.STOP_IF_RUNNING)
        self._submit = self.r.register_script(lua.SUBMIT)
        self._merged = self.r.register_script(lua.MERGED)
        self._merge_back = self.r.register_script(lua.MERGE_BACK)
        self._store_turn = self.r.register_script(lua.STORE_TURN)
        self._extend = self.r.register_script(lua.EXTEND_LEASES)
        self._retry_failed = self.r.register_script(lua.RETRY_FAILED)
        self._coord_lease = self.r.register_script(lua.COORDINATOR_LEASE)

    @property
    def blocking(self) -> Any:
        """A client for blocking reads that wait on a person (an approval's BLPOP), in a
        pool of its own: held for seconds each, they must not take the connections every
        other call of a packed actor's agents shares. Connected on first use."""
        if self._blocking is None:
            pool = aioredis.BlockingConnectionPool(
                max_connections=MAX_CONNECTIONS, timeout=None, **self._pool_kwargs
            )
            self._blocking = aioredis.Redis.from_pool(pool)
        return self._blocking

    async def close(self) -> None:
        await self.wake.close()
        if self._blocking is not None:
            await self._blocking.aclose()
        await self.r.aclose()

    # -- runs --------------------------------------------------------------------------
    async def exists(self) -> bool:
        return bool(await self.r.exists(self.k.meta))

    async def init_run(self, meta: dict[str, str], agents: list[dict[str, str]]) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(
            self.k.meta,
            mapping={**meta, "run_id": self.run_id, "state": "running", "created": str(now_ms())},
        )
        pipe.zadd(RUNS, {self.run_id: time.time()})
        for a in agents:
            pipe.rpush(self.k.agents, a["name"])
            pipe.hset(
                self.k.agent(a["name"]), mapping={**a, "status": "starting", "task": "", "turns": 0}
            )
        await pipe.execute()
        await self.emit("run_started", data={"agents": len(agents)})

    @staticmethod
    async def latest_run(r: Any) -> str | None:
        runs = await r.zrevrange(RUNS, 0, 0)
        return runs[0] if runs else None

    async def meta(self) -> dict[str, str]:
        return await self.r.hgetall(self.k.meta)

    async def meta_fields(self, *fields: str) -> dict[str, str]:
        """Some fields of the run's meta hash: the whole hash holds the run's plan (MBs
        for a run of a thousand agents), too much to read several times a second."""
        values = await self.r.hmget(self.k.meta, list(fields))
        return {f: v for f, v in zip(fields, values, strict=True) if v is not None}

    async def plan_json(self) -> str | None:
        """The run's stored plan (swarm.plan.RunPlan as JSON): its own key, or the meta
        hash's field in a run stored before it had one. None: no plan stored."""
        text = await self.r.get(self.k.plan)
        return text if text is not None else await self.r.hget(self.k.meta, "plan")

    async def edges_json(self) -> str:
        """The topology's edges (JSON pairs): their own key (a mesh of a thousand agents
        is 10 MB), or the meta hash's field in a run stored before it had one."""
        text = await self.r.get(self.k.edges)
        return text if text is not None else (await self.r.hget(self.k.meta, "edges") or "[]")

    async def run_state(self) -> str:
        """The run's state alone (the meta hash also holds the whole plan)."""
        return await self.r.hget(self.k.meta, "state") or "running"

    async def resume_run(self, lease_ms: int = 120_000) -> None:
        """Mark a stopped run as running again; tasks left claimed are re-attached by
        their agents (their leases get a fresh deadline, so the time the run was stopped
        costs no attempt and does not count toward a task's wall-clock limit)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.meta, mapping={"state": "running", "reason": ""})
        pipe.hdel(self.k.meta, "finished")
        pipe.delete(self.k.budget)  # reservations of requests that never settled
        now = await self.now_ms()
        for t in await self.tasks():
            if t.status == "claimed":
                pipe.hset(self.k.task(t.id), "claimed_at", now)
        await pipe.execute()
        await self.extend_leases(lease_ms)
        await self.emit("run_resumed")

    async def extend_leases(self, lease_ms: int) -> int:
        return int(await self._extend(args=[self.k.prefix, lease_ms]))

    async def retry_failed(self) -> int:
        """Failed tasks (and the dependants that failed with them) get a new attempt."""
        return int(await self._retry_failed(args=[self.k.prefix]))

    async def now_ms(self) -> int:
        """Redis' clock: the one every lease is measured on."""
        now_s, now_us = await self.r.time()
        return int(now_s) * 1000 + int(now_us) // 1000

    # -- the coordinator's lease -------------------------------------------------------
    async def hold_coordinator(
        self, holder: dict[str, Any], ttl_ms: int, force: bool = False
    ) -> bool:
        """Take or renew the run's coordinator lease (``holder`` carries its token)."""
        args = [self.k.prefix, json.dumps(holder), ttl_ms, holder["token"], "1" if force else ""]
        return bool(await self._coord_lease(args=args))

    async def coordinator(self) -> tuple[dict[str, Any], int] | None:
        """Who holds the coordinator lease, and for how many more milliseconds."""
        pipe = self.r.pipeline(transaction=True)
        pipe.get(self.k.coordinator)
        pipe.pttl(self.k.coordinator)
        raw, ttl = await pipe.execute()
        return (json.loads(raw), int(ttl)) if raw else None

    async def drop_coordinator(self, token: str) -> None:
        held = await self.coordinator()
        if held is not None and held[0].get("token") == token:
            await self.r.delete(self.k.coordinator)

    async def request_stop(self, reason: str) -> bool:
        """Ask a running run to stop: agents give their tasks back and exit. Atomic: a run
        that finished meanwhile keeps its final state."""
        return bool(await self._stop_if_running(args=[self.k.prefix, reason]))

    async def set_state(self, state: str, reason: str = "") -> None:
        await self.r.hset(
            self.k.meta, mapping={"state": state, "reason": reason, "finished": str(now_ms())}
        )
        await self.emit("run_finished", data={"state": state, "reason": reason})

    # -- tasks -------------------------------------------------------------------------
    async def create_task(self, task: dict[str, Any], needs: Iterable[str] = ()) -> bool:
        fields = {k: v for k, v in task.items() if v is not None and k != "needs"}
        res = await self._create(args=[self.k.prefix, json.dumps(fields), json.dumps(list(needs))])
        return bool(res)

    async def task_ids(self) -> list[str]:
        return await self.r.lrange(self.k.tasks, 0, -1)

    async def task(self, task_id: str) -> TaskView | None:
        h = await self.r.hgetall(self.k.task(task_id))
        return TaskView.from_hash(h) if h else None

    async def tasks_by_id(self, ids: Iterable[str]) -> list[TaskView]:
        """These tasks (the ones that exist), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.k.task(i))
        return [TaskView.from_hash(h) for h in await pipe.execute() if h]

    async def all_terminal(self) -> bool:
        """Whether every task is completed or failed, from their statuses alone. Callers
        at the same moment share one read: the hundreds of agents of a packed actor that
        all see the last task end each read every task otherwise (1,000 agents x 5,000
        tasks: 5 million reads, and GBs of task objects at once)."""
        if self._terminal_read is None or self._terminal_read.done():
            self._terminal_read = asyncio.ensure_future(self._all_terminal())
        return await asyncio.shield(self._terminal_read)

    async def _all_terminal(self) -> bool:
        ids = await self.task_ids()
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hget(self.k.task(i), "status")
        return all(status in TERMINAL for status in await pipe.execute())

    async def task_heads(self) -> list[TaskHead]:
        """Every task's status, role, agent, assignee and claim time, in one round trip
        (not the whole hash: results and descriptions stay on the server)."""
        ids = await self.task_ids()
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hmget(self.k.task(i), HEAD_FIELDS)
        rows = await pipe.execute()
        missing = [i for i, row in zip(ids, rows, strict=True) if row[0] is None]
        if missing:
            raise StateCorrupt(
                f"run {self.run_id}: task(s) {', '.join(missing)} are listed but their data "
                "is gone from Redis (an evicting maxmemory-policy, or a manual delete)"
            )
        return [
            TaskHead(i, st, role or "", agent or "", who or "", int(float(at or 0)))
            for i, (st, role, agent, who, at) in zip(ids, rows, strict=True)
        ]

    async def tasks(self) -> list[TaskView]:
        ids = await self.task_ids()
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.k.task(i))
        hashes = await pipe.execute()
        missing = [i for i, h in zip(ids, hashes, strict=True) if not h]
        if missing:  # listed but gone: corruption (eviction, a manual DEL), never skipped
            raise StateCorrupt(
                f"run {self.run_id}: task(s) {', '.join(missing)} are listed but their data "
                "is gone from Redis (an evicting maxmemory-policy, or a manual delete)"
            )
        return [TaskView.from_hash(h) for h in hashes]

    # Task changes by an agent carry its claim's fencing token (``token``): a process that
    # lost the lease (a partitioned old actor, a stop followed by a quick resume) is
    # refused. An empty token skips the check (tests and tools that act as the owner).
    @overload
    async def claim(self, agent: str, role: str, lease_ms: int) -> Claim | None: ...
    @overload
    async def claim(
        self, agent: str, role: str, lease_ms: int, idle: Literal[True]
    ) -> Claim | Idle: ...
    async def claim(
        self, agent: str, role: str, lease_ms: int, idle: bool = False
    ) -> Claim | Idle | None:
        """The agent's own claim (re-attached) or the next ready task it may take.

        ``idle`` is the agent loop's claim, which does in the same round trip what the loop
        did around it (lua.CLAIM): a stopped run claims nothing, a claim marks the agent
        working and brings the task along, and nothing to claim comes back as an `Idle`
        instead of None: an idle agent learns what it waits on without reading every task."""
        res = await self._claim(args=[self.k.prefix, agent, role, lease_ms, "1" if idle else ""])
        if not res:
            return None
        if res[1] == "idle":
            waiting = [w for w in str(res[3]).split(",") if w]
            return Idle(int(res[2] or 0), waiting, str(res[4]), str(res[5]))
        task = None
        if len(res) > 4 and res[4]:
            flat = res[4]
            task = TaskView.from_hash(dict(zip(flat[::2], flat[1::2], strict=True)))
        session_len = int(res[5]) if len(res) > 5 else -1
        return Claim(res[0], res[1], int(res[2] or 0), str(res[3]), task, session_len)

    async def heartbeat(self, task_id: str, agent: str, lease_ms: int, token: str = "") -> bool:
        args: list[str | int] = [self.k.prefix, task_id, agent, lease_ms, token]
        return bool(await self._heartbeat(args=args))

    async def complete(self, task_id: str, agent: str, result: str, token: str = "") -> bool:
        preview = result[:500]  # cut in Python: Lua's string.sub would split a UTF-8 character
        args = [self.k.prefix, task_id, agent, result, preview, token]
        return bool(await self._complete(args=args))

    async def fail(self, task_id: str, agent: str, reason: str, token: str = "") -> bool:
        return bool(await self._fail(args=[self.k.prefix, task_id, agent, reason, token]))

    async def release(self, task_id: str, agent: str, reason: str, token: str = "") -> bool:
        """Give a claimed task back to the queue without counting the attempt."""
        return bool(await self._release(args=[self.k.prefix, task_id, agent, reason, token]))

    async def submit(
        self, task_id: str, agent: str, result: str, commit: str, token: str = ""
    ) -> bool:
        """A finished task's committed work enters the merge queue (worktree runs)."""
        args = [self.k.prefix, task_id, agent, result, result[:500], commit, token]
        return bool(await self._submit(args=args))

    async def merged(self, task_id: str, commit: str, stats: dict[str, Any], preview: str) -> bool:
        args = [self.k.prefix, task_id, commit, json.dumps(stats), preview[:500]]
        return bool(await self._merged(args=args))

    async def merge_back(
        self,
        task_id: str,
        kind: str,
        details: dict[str, Any],
        max_attempts: int,
        prefer_ms: int,
        reason: str,
    ) -> int:
        """Send a task back to its session (1) or fail it once its merge attempts are
        used (2); 0 when it is not in the queue."""
        args: list[str | int] = [
            self.k.prefix,
            task_id,
            kind,
            json.dumps(details),
            max_attempts,
            prefer_ms,
            reason,
        ]
        return int(await self._merge_back(args=args))

    async def merge_queue(self) -> list[str]:
        return await self.r.lrange(self.k.merge_queue, 0, -1)

    async def set_exclusive(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Tasks whose declared paths overlap: never claimed while the other is worked."""
        pipe = self.r.pipeline(transaction=True)
        for a, b in pairs:
            pipe.sadd(self.k.exclusive(a), b)
            pipe.sadd(self.k.exclusive(b), a)
        await pipe.execute()

    async def requeue_expired(self) -> int:
        return int(await self._requeue(args=[self.k.prefix]))

    # -- provider outages ----------------------------------------------------------------
    async def provider_failing(self, credential: str, error: str = "") -> int:
        """A request failed after every retry: note since when the run's provider has been
        failing (the coordinator stops the run after provider_outage_s) and count the
        credential's outage rounds (its circuit pauses longer each round)."""
        key = f"{SCHEMA}:circuit:{credential}"
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(self.k.meta, "provider_failing_since", await self.now_ms())
        pipe.hset(self.k.meta, "provider_error", error[:300])
        pipe.incr(key)
        pipe.expire(key, 900)
        res = await pipe.execute()
        return int(res[2])

    async def provider_ok(self, credential: str) -> None:
        await self.r.delete(f"{SCHEMA}:circuit:{credential}")

    # -- events ------------------------------------------------------------------------
    async def emit(
        self, kind: str, task: str = "", agent: str = "", data: dict[str, Any] | None = None
    ) -> None:
        fields = self._event_fields(kind, task, agent, data)
        if kind not in WAKE_EVENTS:
            await self.r.xadd(self.k.events, fields, maxlen=200_000, approximate=True)
            return
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.k.events, fields, maxlen=200_000, approximate=True)
        self._wake(pipe, fields)
        await pipe.execute()

    def _wake(self, pipe: Any, fields: dict[str, str]) -> None:
        """The copy of a WAKE_EVENTS event on the wake stream (as lua's emit writes it)."""
        wake = {"type": fields["type"], "ts": fields["ts"], "task": fields["task"]}
        pipe.xadd(self.k.wake, wake, maxlen=10_000, approximate=True)

    @staticmethod
    def _event_fields(
        kind: str, task: str, agent: str, data: dict[str, Any] | None
    ) -> dict[str, str]:
        return {
            "type": kind,
            "ts": str(now_ms()),
            "task": task,
            "agent": agent,
            "data": json.dumps(data or {}),
        }

    async def events(self, after: str = "0", count: int = 1000) -> list[Event]:
        rows = await self.r.xrange(
            self.k.events, min=f"({after}" if after != "0" else "-", count=count
        )
        return [Event.from_fields(i, f) for i, f in rows]

    async def wait_events(self, after: str, block_ms: int, count: int = 1000) -> list[Event]:
        """Block until events newer than `after` exist (or block_ms passes); at most
        `count` of them are returned (1: the caller only wants to be woken)."""
        res = await self.r.xread({self.k.events: after}, block=block_ms, count=count)
        return [Event.from_fields(i, f) for _, rows in res for i, f in rows]

    async def wait_wake(self, after: str, block_ms: int) -> list[Event]:
        """Block until the wake stream (WAKE_EVENTS only) has entries newer than `after`
        (or block_ms passes): every waiter of this board shares one blocking read."""
        return [Event.from_fields(i, f) for i, f in await self.wake.wait(after, block_ms)]

    async def last_event_id(self) -> str:
        rows = await self.r.xrevrange(self.k.events, count=1)
        return rows[0][0] if rows else "0-0"

    # -- agents ------------------------------------------------------------------------
    async def agent_names(self) -> list[str]:
        return await self.r.lrange(self.k.agents, 0, -1)

    async def agents(self) -> list[dict[str, str]]:
        names = await self.agent_names()
        pipe = self.r.pipeline(transaction=False)
        for n in names:
            pipe.hgetall(self.k.agent(n))
        return list(await pipe.execute())

    async def update_agent(
        self, name: str, event: str | None = None, data: dict[str, Any] | None = None, **fields: Any
    ) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.agent(name), mapping={k: str(v) for k, v in fields.items()})
        if event:
            ev = self._event_fields(event, str(fields.get("task", "")), name, data)
            pipe.xadd(self.k.events, ev, maxlen=200_000, approximate=True)
            if event in WAKE_EVENTS:
                self._wake(pipe, ev)
        await pipe.execute()

    async def mark_agents(
        self, names: Iterable[str], event: str, data: dict[str, Any], **fields: Any
    ) -> None:
        """update_agent for many agents in one round trip (a stop marks a thousand)."""
        pipe = self.r.pipeline(transaction=False)
        mapping = {k: str(v) for k, v in fields.items()}
        for name in names:
            pipe.hset(self.k.agent(name), mapping=mapping)
            ev = self._event_fields(event, str(fields.get("task", "")), name, data)
            pipe.xadd(self.k.events, ev, maxlen=200_000, approximate=True)
            if event in WAKE_EVENTS:
                self._wake(pipe, ev)
        await pipe.execute()

    # -- sessions ----------------------------------------------------------------------
    async def session(self, task_id: str) -> list[dict[str, Any]]:
        return [json.loads(m) for m in await self.r.lrange(self.k.session(task_id), 0, -1)]

    async def record_turn(
        self, agent: str, task_id: str, messages: list[dict[str, Any]], **kw: Any
    ) -> int:
        """record_turn_and_peek without the peek: its stored status alone."""
        res, _ = await self.record_turn_and_peek(agent, task_id, messages, **kw)
        return res

    async def record_turn_and_peek(
        self,
        agent: str,
        task_id: str,
        messages: list[dict[str, Any]],
        usage: dict[str, float] | None = None,
        agent_fields: dict[str, Any] | None = None,
        events: list[tuple[str, dict[str, Any]]] | None = None,
        settle: Reservation | None = None,
        clear_task_fields: tuple[str, ...] = (),
        set_task_fields: dict[str, Any] | None = None,
        token: str = "",
        expected: int = -1,
        inbox_read: int = 0,
        peek_inbox: int = 0,
        rate_done: list[str] | None = None,
        state: dict[str, str] | None = None,
    ) -> tuple[int, list[dict[str, Any]] | None]:
        """Store one turn at once: its messages, usage, agent state, events, and the
        settling of its budget reservation (lua.STORE_TURN). With ``token`` only the
        lease's holder stores messages; with ``expected`` (the session's length before
        this turn) a retry stores nothing twice; ``inbox_read`` inbox messages (the oldest,
        shown to the model in these messages) are removed with them; with ``peek_inbox`` the
        oldest unread ones come back, left in place (None: not stored, nothing peeked);
        ``rate_done`` (RateSlot.done_in_store) ends the request's rate-limit place;
        ``state``: the agent's tool state written in the turn (stored with it, if stored).
        Returns 1 stored, 2 already stored, 0 not the holder (usage is recorded anyway), -1
        the session is not as expected."""
        ints: dict[str, str] = {}
        floats: dict[str, str] = {}
        for f, v in (usage or {}).items():
            if isinstance(v, float):  # a float field stays float (HINCRBY on "0.5" fails)
                floats[f] = repr(v)
            elif v:
                ints[f] = str(int(v))
        payload = {
            "messages": [json.dumps(m) for m in messages],
            "ints": ints,
            "floats": floats,
            "agent": {k: str(v) for k, v in (agent_fields or {}).items()},
            "events": [[kind, json.dumps(data)] for kind, data in events or []],
            "settle": settle.holder if settle is not None else "",
            "clear": list(clear_task_fields),
            "set": {k: str(v) for k, v in (set_task_fields or {}).items()},
            "inbox": inbox_read,
            "peek": peek_inbox,
            "index": SESSIONS,
            "sid": f"{self.run_id}/{task_id}",
        }
        if rate_done:
            payload["rate"] = rate_done
        if state:
            payload["state"] = state
        args: list[str | int] = [
            self.k.prefix,
            task_id,
            agent,
            token,
            expected,
            json.dumps(payload),
        ]
        res = await self._store_turn(args=args)
        if isinstance(res, list):
            return int(res[0]), [json.loads(m) for m in res[1]]
        return int(res), None

    async def record_usage(self, agent: str, task_id: str, usage: dict[str, float]) -> None:
        """Count usage spent outside a stored turn (an attempt that failed after the
        provider did the work) in the counters the budget reads: the run's, the agent's
        and the task's. lua.STORE_TURN with nothing else: no messages, no reservation
        settled, not fenced (it was spent whoever holds the task now)."""
        await self.record_turn(agent, task_id, [], usage=usage)

    async def usage(self, kind: str | None = None, name: str = "") -> dict[str, float]:
        key = self.k.usage if kind is None else self.k.usage_of(kind, name)
        return {k: float(v) for k, v in (await self.r.hgetall(key)).items()}

    # -- notes, inboxes, per-agent state ----------------------------------------------
    async def note_write(self, key: str, value: str, agent: str) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.notes, key, value)
        pipe.xadd(self.k.events, self._event_fields("note_written", "", agent, {"key": key}))
        await pipe.execute()

    async def notes(self) -> dict[str, str]:
        return await self.r.hgetall(self.k.notes)

    async def send(self, sender: str, to: str, body: str) -> None:
        msg = json.dumps({"from": sender, "body": body, "ts": now_ms()})
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(self.k.inbox(to), msg)
        pipe.xadd(self.k.events, self._event_fields("message_sent", "", sender, {"to": to}))
        await pipe.execute()

    async def inbox_size(self, agent: str) -> int:
        return int(await self.r.llen(self.k.inbox(agent)))

    async def peek_inbox(self, agent: str, limit: int = 20) -> list[dict[str, Any]]:
        """The oldest unread messages, left in place (a stored turn removes them)."""
        return [json.loads(m) for m in await self.r.lrange(self.k.inbox(agent), 0, limit - 1)]

    async def drain_inbox(self, agent: str) -> list[dict[str, Any]]:
        pipe = self.r.pipeline(transaction=True)
        pipe.lrange(self.k.inbox(agent), 0, -1)
        pipe.delete(self.k.inbox(agent))
        raw, _ = await pipe.execute()
        return [json.loads(m) for m in raw]

    async def state_get(self, agent: str, key: str) -> str | None:
        return await self.r.hget(self.k.state(agent), key)

    async def state_set(self, agent: str, key: str, value: str) -> None:
        await self.r.hset(self.k.state(agent), key, value)

    @contextlib.asynccontextmanager
    async def path_lock(
        self, path: str, ttl_ms: int = 30_000, wait_s: float = 60.0
    ) -> AsyncIterator[None]:
        """A per-path lock across agents (SET NX PX with a token; released by token)."""
        key, token = self.k.lock(path), secrets.token_hex(8)
        deadline = time.monotonic() + wait_s
        delay = 0.005
        while not await self.r.set(key, token, nx=True, px=ttl_ms):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not lock {path} within {wait_s:.0f}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            await self._unlock(keys=[key], args=[token])
