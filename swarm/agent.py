"""The agent loop: plain asyncio, no Ray. Ray only hosts it (swarm.coordinator)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from swarm.blackboard.board import TERMINAL, Blackboard, TaskView
from swarm.blackboard.limits import Budget, BudgetExhausted, RateLimiter
from swarm.config import AgentInstance
from swarm.providers.base import Provider, ProviderError
from swarm.providers.pricing import cost_usd
from swarm.providers.repair import repair
from swarm.providers.retry import RetryPolicy, with_retries
from swarm.providers.types import Message, ModelResponse, ToolResult, ToolSpec, Usage
from swarm.secrets import redact, secret_values
from swarm.tools.base import Tool, ToolContext
from swarm.tools.swarm_tools import SWARM_TOOLS, SwarmHandle
from swarm.workspace.tasks import TaskWorkspaces


@dataclass
class SwarmInfo:
    """What an agent knows of the swarm around it (all from the config)."""

    name: str
    goal: str
    neighbours: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    max_turns: int = 40
    max_usd: float | None = None
    max_tokens: int | None = None
    lease_ms: int = 30_000
    workspace: str = "shared"  # or "worktree": a git worktree per task
    max_output_tokens: int = 8192
    # USD per 1M tokens (input, output, cache read, cache write) overriding pricing.py
    pricing: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


class BoardState:
    """Per-agent tool state (read hashes, todos) kept on the blackboard."""

    def __init__(self, board: Blackboard, agent: str):
        self.board, self.agent = board, agent

    async def get(self, key: str) -> str | None:
        return await self.board.state_get(self.agent, key)

    async def set(self, key: str, value: str) -> None:
        await self.board.state_set(self.agent, key, value)


class BoardLocks:
    """Per-path write locks shared by every agent of the run."""

    def __init__(self, board: Blackboard):
        self.board = board

    def lock(self, path: str) -> Any:
        return self.board.path_lock(path)


class LeaseLost(Exception):
    pass


def system_prompt(agent: AgentInstance, swarm: SwarmInfo) -> str:
    """Byte-stable per agent, so prompt caching can share it across its tasks."""
    peers = ", ".join(swarm.neighbours) or "none"
    return (
        f"{agent.prompt.strip()}\n\n"
        f"Agent: {agent.name} (role: {agent.role})\n"
        f"Swarm: {swarm.name}. Goal: {swarm.goal}\n"
        f"Agents you can message: {peers}.\n\n"
        + (
            "You work in a git worktree of the repository of your own for each task; file "
            "paths are relative to its root. When you finish, your changes are committed and "
            "merged for you (do not commit or switch branches yourself). "
            if swarm.workspace == "worktree"
            else "You share one repository with the other agents; file paths are relative to "
            "its root. "
        )
        + "Work on the task you are given with your tools. When the task is done, reply with a "
        "short summary of what you did and no tool calls: that reply is the task's result. "
        "If you cannot do the task, call task_fail with the reason."
    )


def task_prompt(task: TaskView, deps: list[TaskView]) -> str:
    text = f"Task {task.id}: {task.title}\n"
    if task.phase:
        text += f"Phase: {task.phase}\n"
    if task.description:
        text += f"\n{task.description.strip()}\n"
    for d in deps:
        text += f"\nResult of {d.id} ({d.title}): {d.result.strip()[:2000]}\n"
    return text


class AgentLoop:
    def __init__(
        self,
        board: Blackboard,
        agent: AgentInstance,
        swarm: SwarmInfo,
        provider: Provider,
        tools: dict[str, Tool],
        ctx: ToolContext,
        retry: RetryPolicy | None = None,
        permissions: Any = None,
        limiter: RateLimiter | None = None,
        workspaces: TaskWorkspaces | None = None,
        hub: Any = None,
    ):
        self.board = board
        self.agent = agent
        self.swarm = swarm
        self.provider = provider
        self.model = agent.model.split("/", 1)[1]
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self.workspaces = workspaces  # worktree runs: a git worktree per task
        self.hub = hub  # the agent's MCP servers, re-rooted in each task's worktree
        self.budget = Budget(board.r, board.run_id, swarm.max_usd, swarm.max_tokens)
        self.handle = SwarmHandle(
            board=board,
            agent=agent.name,
            role=agent.role,
            neighbours=swarm.neighbours,
            roles=swarm.roles,
            agents=swarm.agents,
        )
        ctx.swarm = self.handle
        self.ctx = ctx
        self.tools = {**tools, **SWARM_TOOLS}
        self.specs: list[ToolSpec] = [t.spec() for t in self.tools.values()]
        self.system = system_prompt(agent, swarm)
        self._secrets = secret_values()
        self._fixed_chars = len(self.system) + sum(len(t.model_dump_json()) for t in self.specs)
        from swarm.tools.runner import ToolRunner

        self.runner = ToolRunner(self.tools, ctx, permissions, self._tool_event)
        self._task_id = ""
        self._last_status: tuple[Any, ...] | None = None

    async def _tool_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("doom_loop", "permission_denied"):  # worth a line on the dashboard
            await self.board.emit(kind, task=self._task_id, agent=self.agent.name, data=data)

    async def set_status(self, status: str, task: str = "", **extra: Any) -> None:
        """Store and announce a status change; repeating the same status writes nothing
        (an event per repeat would wake every waiting agent, which would repeat theirs)."""
        key = (status, task, tuple(sorted(extra.items())))
        if key == self._last_status:
            return
        self._last_status = key
        await self.board.update_agent(
            self.agent.name,
            event="agent_status",
            data={"status": status, **extra},
            status=status,
            task=task,
            pid=os.getpid(),
            **extra,
        )

    async def run(self) -> None:
        """Claim and work tasks until every task of the run is completed or failed."""
        name, role = self.agent.name, self.agent.role
        await self.budget.release(name)  # a reservation left by this agent's previous process
        await self.set_status("idle")
        while True:
            last = await self.board.last_event_id()
            meta = await self.board.meta()
            if meta.get("state", "running") != "running":
                break
            claim = await self.board.claim(name, role, self.swarm.lease_ms)
            if claim is not None:
                await self.work(claim[0])
                continue
            await self.board.requeue_expired()
            tasks = await self.board.tasks()
            if all(t.status in TERMINAL for t in tasks):
                break
            waiting = self._waiting_for(tasks)
            if waiting:
                await self.set_status("waiting", waiting_for=",".join(waiting))
            else:
                await self.set_status("idle", waiting_for="")
            await self.board.wait_events(last, block_ms=min(self.swarm.lease_ms // 2, 5000))
        await self.set_status("done", waiting_for="")

    def _waiting_for(self, tasks: list[TaskView]) -> list[str]:
        """Unfinished dependencies of the pending tasks this agent could take."""
        status = {t.id: t.status for t in tasks}
        out: list[str] = []
        for t in tasks:
            mine = t.agent == self.agent.name or (not t.agent and t.role == self.agent.role)
            if mine and t.status == "pending":
                out += [n for n in t.needs if status.get(n) != "completed" and n not in out]
        return out

    async def work(self, task_id: str) -> None:
        self._task_id = task_id
        self.handle.task_id = task_id
        self.handle.failed_reason = None
        task = await self.board.task(task_id)
        if task is None:  # claimed a moment ago, so it exists; never crash the agent on it
            return
        await self.set_status("working", task=task_id, waiting_for="")
        heartbeat = asyncio.create_task(self._heartbeat(task_id, asyncio.current_task()))
        try:
            await self._converse(task)
        except LeaseLost:
            await self.board.emit("lease_lost", task=task_id, agent=self.agent.name)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if heartbeat.done() and heartbeat.result() is False and current is not None:
                current.uncancel()  # the heartbeat cancelled us; the loop itself goes on
                await self.board.emit("lease_lost", task=task_id, agent=self.agent.name)
            else:
                raise
        except ProviderError as exc:
            await self.board.fail(task_id, self.agent.name, f"provider error: {exc}")
            await self.board.emit(
                "provider_error",
                task=task_id,
                agent=self.agent.name,
                data={"error": str(exc), "status": exc.status},
            )
        except Exception as exc:  # a bug costs the task, never the agent (or the run)
            reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
            await self.board.emit(
                "agent_error", task=task_id, agent=self.agent.name, data={"error": reason}
            )
            await self.board.fail(task_id, self.agent.name, reason)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat
            self._task_id = ""

    async def _heartbeat(self, task_id: str, worker: asyncio.Task[Any] | None) -> bool:
        interval = self.swarm.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            if not await self.board.heartbeat(task_id, self.agent.name, self.swarm.lease_ms):
                if worker is not None:
                    worker.cancel()
                return False

    async def _guard(self, task_id: str) -> None:
        """Before touching the task's worktree: the lease must still be ours."""
        if not await self.board.heartbeat(task_id, self.agent.name, self.swarm.lease_ms):
            raise LeaseLost(task_id)

    async def _enter_workspace(self, task: TaskView) -> None:
        if self.workspaces is None:
            return
        await self._guard(task.id)
        self.ctx.workspace = await self.workspaces.enter(task)
        if self.hub is not None:
            await self.hub.reroot(self.ctx.workspace)

    async def _converse(self, task: TaskView) -> None:
        name = self.agent.name
        await self._enter_workspace(task)
        stored = [Message.model_validate(m) for m in await self.board.session(task.id)]
        if not stored:
            deps = [d for d in [await self.board.task(n) for n in task.needs] if d]
            first = Message.user_text(task_prompt(task, deps))
            await self.board.record_turn(
                name, task.id, [first.model_dump()], events=[("session_started", {})]
            )
            stored = [first]
        messages = repair(stored)
        if len(messages) != len(stored) or messages != stored:
            await self.board.emit("transcript_repaired", task=task.id, agent=name)
        if task.rework and self.workspaces is not None:  # the merge queue sent it back
            await self._guard(task.id)
            note = Message.user_text(await self.workspaces.take_up_rework(task))
            kind = json.loads(task.rework).get("kind", "")
            await self.board.record_turn(
                name,
                task.id,
                [note.model_dump()],
                events=[("rework_started", {"kind": kind})],
                clear_task_fields=("rework",),
            )
            messages.append(note)
        last = messages[-1]
        if last.role == "assistant" and not last.tool_calls:  # finished before a crash
            await self._finish(task, last.text)
            return
        gave_up = _last_task_fail(messages)
        if gave_up is not None:  # called task_fail, then the process died
            await self.board.fail(task.id, name, gave_up)
            return
        max_turns = task.max_turns or self.swarm.max_turns
        # The budget and the rate limiter need the request's size before it is sent:
        # about 4 characters a token; the real usage settles the reservation afterwards.
        turns = sum(1 for m in messages if m.role == "assistant")
        chars = self._fixed_chars + sum(len(m.model_dump_json()) for m in messages)
        while True:
            if turns >= max_turns:
                await self.board.fail(task.id, name, f"max_turns ({max_turns}) reached")
                return
            est_in, est_out = chars // 4 + 1, self.swarm.max_output_tokens
            try:
                reservation = await self.budget.reserve(
                    name,
                    cost_usd(
                        self.agent.model,
                        Usage(input_tokens=est_in, output_tokens=est_out),
                        self.swarm.pricing,
                    ),
                    est_in + est_out,
                )
            except BudgetExhausted as exc:
                await self.board.release(task.id, name, exc.reason)
                return
            try:
                resp, attempts = await with_retries(
                    functools.partial(self._request, messages, est_in),
                    self.retry,
                    lambda attempt, exc, delay: self._on_retry(task.id, attempt, exc, delay),
                )
            except BaseException:
                await self.budget.release(name)
                raise
            turns += 1
            u = resp.usage
            usd = cost_usd(self.agent.model, u, self.swarm.pricing)
            # The lease may have lapsed during the request (a stalled process, a Redis
            # blip) and the task passed to another agent: then this turn is not ours to
            # store or act on. (Its usage was still spent; it is recorded below.)
            still_ours = await self.board.heartbeat(task.id, name, self.swarm.lease_ms)
            await self.board.record_turn(
                name,
                task.id,
                [resp.message.model_dump()] if still_ours else [],
                usage={
                    "input_tokens": u.input_tokens,
                    "output_tokens": u.output_tokens,
                    "cache_read_tokens": u.cache_read_tokens,
                    "cache_creation_tokens": u.cache_creation_tokens,
                    "usd": usd,
                    "turns": 1,
                    "requests": attempts,
                },
                agent_fields={"turns_task": turns},
                settle=reservation,
                events=[
                    (
                        "model_turn",
                        {
                            "turn": turns,
                            "input_tokens": u.input_tokens,
                            "output_tokens": u.output_tokens,
                            "usd": usd,
                            "tool_calls": [c.name for c in resp.message.tool_calls],
                            "attempts": attempts,
                        },
                    )
                ],
            )
            if not still_ours:
                raise LeaseLost(task.id)
            messages.append(resp.message)
            chars += len(resp.message.model_dump_json())
            calls = resp.message.tool_calls
            nudge = self._nudge(resp)
            if nudge is not None:  # a reply cut off, or empty: never a result, never run
                await self.board.record_turn(
                    name,
                    task.id,
                    [nudge.model_dump()],
                    events=[("reply_refused", {"stop_reason": resp.stop_reason or ""})],
                )
                messages.append(nudge)
                chars += len(nudge.model_dump_json())
                continue
            if not calls:
                await self._finish(task, resp.message.text)
                return
            results: list[ToolResult] = []
            events: list[tuple[str, dict[str, Any]]] = []
            for call in calls:
                out = await self.runner.run(call.name, call.input)
                text = redact(out.text, self._secrets)  # a file or command may print a key
                results.append(
                    ToolResult(tool_call_id=call.id, content=text, is_error=out.is_error)
                )
                events.append(
                    (
                        "tool_call",
                        {
                            "tool": call.name,
                            "is_error": out.is_error,
                            "summary": _summary(call.name, call.input),
                            **_small(out.meta),
                        },
                    )
                )
            reply = Message(role="user", content=list(results))
            if not await self.board.heartbeat(task.id, name, self.swarm.lease_ms):
                raise LeaseLost(task.id)  # the results belong to a session now held by another
            await self.board.record_turn(name, task.id, [reply.model_dump()], events=events)
            messages.append(reply)
            chars += len(reply.model_dump_json())
            if self.handle.failed_reason is not None:
                await self.board.fail(task.id, name, self.handle.failed_reason)
                return

    def _nudge(self, resp: ModelResponse) -> Message | None:
        """The reply to send instead of acting on a turn that hit the output limit (its
        tool calls may be cut short) or said nothing at all."""
        calls = resp.message.tool_calls
        limit = self.swarm.max_output_tokens
        if resp.stop_reason == "max_tokens":
            if calls:
                text = (
                    f"Your reply hit the output limit ({limit} tokens) before this call was "
                    "complete, so it was not run. Split the work into smaller steps."
                )
                return Message(
                    role="user",
                    content=[
                        ToolResult(tool_call_id=c.id, content=text, is_error=True) for c in calls
                    ],
                )
            return Message.user_text(
                f"Your reply was cut off at the output limit ({limit} tokens). Finish with a "
                "shorter summary of what you did."
            )
        if not calls and not resp.message.text.strip():
            return Message.user_text(
                "Your reply was empty. Reply with a short summary of what you did (no tool "
                "calls) to complete the task, or call task_fail with the reason."
            )
        return None

    async def _request(self, messages: list[Message], est_tokens: int) -> ModelResponse:
        """One attempt: wait for the credential's shared rate limit, then call the model."""
        slot = (
            self.limiter.slot(est_tokens)
            if self.limiter is not None and self.limiter.enabled
            else contextlib.nullcontext(0.0)
        )
        try:
            async with slot:
                return await self.provider.complete(
                    model=self.model,
                    system=self.system,
                    messages=messages,
                    tools=self.specs,
                    max_tokens=self.swarm.max_output_tokens,
                )
        except ProviderError as exc:
            if exc.status == 429 and self.limiter is not None:
                await self.limiter.block_for(exc.retry_after_s or 1.0)
            raise

    async def _on_retry(self, task_id: str, attempt: int, exc: ProviderError, delay: float) -> None:
        await self.board.emit(
            "provider_retry",
            task=task_id,
            agent=self.agent.name,
            data={
                "attempt": attempt,
                "status": exc.status,
                "delay_s": round(delay, 3),
                "error": str(exc)[:300],
            },
        )

    async def _finish(self, task: TaskView, text: str) -> None:
        """The model is done: complete the task (in a worktree run, once its committed
        work is merged; a task that changed nothing completes at once)."""
        result = text.strip() or "(done)"
        if self.workspaces is not None:
            await self._guard(task.id)
            outcome, _ = await self.workspaces.finish(task, self.agent.name, result)
            if outcome == "queued":
                return
            if outcome == "lost":
                await self.board.emit("complete_refused", task=task.id, agent=self.agent.name)
                return
        if not await self.board.complete(task.id, self.agent.name, result):
            await self.board.emit("complete_refused", task=task.id, agent=self.agent.name)


def _last_task_fail(messages: list[Message]) -> str | None:
    """The reason of a task_fail call in the latest assistant turn, if it made one."""
    for msg in reversed(messages):
        if msg.role == "assistant":
            for call in msg.tool_calls:
                if call.name == "task_fail":
                    return str(call.input.get("reason", "")) or "gave up"
            return None
    return None


def _summary(tool: str, args: dict[str, Any]) -> str:
    for key in ("command", "file_path", "pattern", "to", "key", "title", "reason"):
        if key in args:
            return f"{tool} {str(args[key])[:120]}"
    return tool


def _small(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in meta.items()
        if isinstance(v, (int, float, bool, str)) and (not isinstance(v, str) or len(v) < 200)
    }
