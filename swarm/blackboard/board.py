"""The blackboard API: tasks, leases, events, sessions, notes, inboxes, agent state."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel

from swarm.blackboard import lua
from swarm.blackboard.keys import RUNS, Keys
from swarm.blackboard.limits import Reservation

TERMINAL = ("completed", "failed")


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
        ):
            data[f] = int(float(h.get(f) or 0))
        return cls.model_validate(data)


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

    def __init__(self, url: str, run_id: str):
        self.url = url
        self.run_id = run_id
        self.k = Keys(run_id)
        # decode_responses=True: every reply is str; redis-py's stubs cannot express that
        # encoding_errors="replace": one bad byte must never break every reader of a key
        self.r: Any = aioredis.Redis.from_url(url, decode_responses=True, encoding_errors="replace")
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

    async def close(self) -> None:
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

    async def resume_run(self, lease_ms: int = 120_000) -> None:
        """Mark a stopped run as running again; tasks left claimed are re-attached by
        their agents (or requeued when their lease expires)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k.meta, mapping={"state": "running", "reason": ""})
        pipe.hdel(self.k.meta, "finished")
        pipe.delete(self.k.budget)  # reservations of requests that never settled
        # Tasks left claimed get a fresh lease, so their agents re-attach to them when
        # they start instead of the expired lease costing an attempt (or failing the task).
        now_s, now_us = await self.r.time()
        fresh = now_s * 1000 + now_us // 1000 + lease_ms
        for t in await self.tasks():
            if t.status == "claimed":
                pipe.hset(self.k.task(t.id), "lease_until", fresh)
        await pipe.execute()
        await self.emit("run_resumed")

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

    async def tasks(self) -> list[TaskView]:
        ids = await self.task_ids()
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(self.k.task(i))
        return [TaskView.from_hash(h) for h in await pipe.execute() if h]

    async def claim(self, agent: str, role: str, lease_ms: int) -> tuple[str, str, int] | None:
        res = await self._claim(args=[self.k.prefix, agent, role, lease_ms])
        if not res:
            return None
        return res[0], res[1], int(res[2] or 0)

    async def heartbeat(self, task_id: str, agent: str, lease_ms: int) -> bool:
        return bool(await self._heartbeat(args=[self.k.prefix, task_id, agent, lease_ms]))

    async def complete(self, task_id: str, agent: str, result: str) -> bool:
        preview = result[:500]  # cut in Python: Lua's string.sub would split a UTF-8 character
        return bool(await self._complete(args=[self.k.prefix, task_id, agent, result, preview]))

    async def fail(self, task_id: str, agent: str, reason: str) -> bool:
        return bool(await self._fail(args=[self.k.prefix, task_id, agent, reason]))

    async def release(self, task_id: str, agent: str, reason: str) -> bool:
        """Give a claimed task back to the queue without counting the attempt."""
        return bool(await self._release(args=[self.k.prefix, task_id, agent, reason]))

    async def submit(self, task_id: str, agent: str, result: str, commit: str) -> bool:
        """A finished task's committed work enters the merge queue (worktree runs)."""
        args = [self.k.prefix, task_id, agent, result, result[:500], commit]
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

    # -- events ------------------------------------------------------------------------
    async def emit(
        self, kind: str, task: str = "", agent: str = "", data: dict[str, Any] | None = None
    ) -> None:
        await self.r.xadd(
            self.k.events,
            self._event_fields(kind, task, agent, data),
            maxlen=200_000,
            approximate=True,
        )

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

    async def wait_events(self, after: str, block_ms: int) -> list[Event]:
        """Block until events newer than `after` exist (or block_ms passes)."""
        res = await self.r.xread({self.k.events: after}, block=block_ms, count=1000)
        return [Event.from_fields(i, f) for _, rows in res for i, f in rows]

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
            pipe.xadd(
                self.k.events,
                self._event_fields(event, str(fields.get("task", "")), name, data),
                maxlen=200_000,
                approximate=True,
            )
        await pipe.execute()

    # -- sessions ----------------------------------------------------------------------
    async def session(self, task_id: str) -> list[dict[str, Any]]:
        return [json.loads(m) for m in await self.r.lrange(self.k.session(task_id), 0, -1)]

    async def record_turn(
        self,
        agent: str,
        task_id: str,
        messages: list[dict[str, Any]],
        usage: dict[str, float] | None = None,
        agent_fields: dict[str, Any] | None = None,
        events: list[tuple[str, dict[str, Any]]] | None = None,
        settle: Reservation | None = None,
        clear_task_fields: tuple[str, ...] = (),
    ) -> None:
        """Append messages, usage, agent state and events of one turn in one transaction
        (and release the turn's budget reservation in the same one)."""
        pipe = self.r.pipeline(transaction=True)
        if clear_task_fields:
            pipe.hdel(self.k.task(task_id), *clear_task_fields)
        if settle is not None:
            pipe.hdel(self.k.budget, settle.holder)
        if messages:
            pipe.rpush(self.k.session(task_id), *[json.dumps(m) for m in messages])
        if usage:
            for key in (
                self.k.usage,
                self.k.usage_of("agent", agent),
                self.k.usage_of("task", task_id),
            ):
                for f, v in usage.items():
                    if isinstance(v, float):  # a float field stays float (HINCRBY on "0.5" fails)
                        pipe.hincrbyfloat(key, f, v)
                    elif v:
                        pipe.hincrby(key, f, int(v))
        if agent_fields:
            pipe.hset(self.k.agent(agent), mapping={k: str(v) for k, v in agent_fields.items()})
        for kind, data in events or []:
            pipe.xadd(
                self.k.events,
                self._event_fields(kind, task_id, agent, data),
                maxlen=200_000,
                approximate=True,
            )
        await pipe.execute()

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
