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
from swarm.providers.pricing import cost_usd, usage_fields
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
    no_progress_turns: int = 0  # fail a task after this many turns that changed nothing
    credential_env: str = ""  # the variable holding the agent's provider key (never its value)
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


AUTH_STATUS = (401, 403)
OUTAGE_BACKOFF_S = (5.0, 15.0, 30.0, 60.0, 120.0)  # the circuit's pauses, by outage round


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
        self._token = ""  # the current claim's fencing token
        self._stored = 0  # messages of the current task's session stored in Redis
        self._last_status: tuple[Any, ...] | None = None
        self._outage = False  # a request failed after every retry, none has succeeded since
        self._last_provider_error = ""
        from swarm.progress import ProgressTracker

        self.progress = ProgressTracker(swarm.no_progress_turns)

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
                self._token = claim.token
                await self.work(claim.task_id)
                continue
            # (expired leases are requeued by the coordinator alone: it knows when Redis
            # was unreachable, and gives every lease its time back first)
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
            await self._provider_failed(task_id, exc)
        except Exception as exc:  # a bug costs the task, never the agent (or the run)
            reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
            await self.board.emit(
                "agent_error", task=task_id, agent=self.agent.name, data={"error": reason}
            )
            await self.board.fail(task_id, self.agent.name, reason, self._token)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await heartbeat
            self._task_id = ""

    async def _provider_failed(self, task_id: str, exc: ProviderError) -> None:
        """What a provider error the retry layer gave up on does to the task and the run:
        a rejected key stops the run once (no task fails, resume continues); an outage
        hands the task back and pauses every agent on the credential; anything else is
        the task's own failure."""
        name = self.agent.name
        await self.board.emit(
            "provider_error",
            task=task_id,
            agent=name,
            data={"error": str(exc)[:500], "status": exc.status, "retryable": exc.retryable},
        )
        if exc.status in AUTH_STATUS:
            where = f"in {self.swarm.credential_env}" if self.swarm.credential_env else ""
            reason = (
                f"the provider rejected the credential {where} (HTTP {exc.status}); fix it "
                "and run `swarm resume RUN`"
            ).replace("  ", " ")
            await self.board.release(task_id, name, reason, self._token)
            await self.board.request_stop(reason)
            return
        if exc.retryable:
            await self.board.release(task_id, name, f"provider outage: {exc}"[:300], self._token)
            self._last_provider_error = redact(str(exc), self._secrets)
            pause = await self._open_circuit()
            await self.board.emit("circuit_open", task=task_id, agent=name, data={"pause_s": pause})
            return
        await self.board.fail(task_id, name, f"provider error: {exc}", self._token)

    async def _open_circuit(self) -> float:
        """Pause every agent on this credential (the limiter's shared block), longer on
        each round of the same outage; mark since when the provider has been failing."""
        credential = self.limiter.credential if self.limiter is not None else self.agent.model
        rounds = await self.board.provider_failing(credential, self._last_provider_error)
        self._outage = True
        pause = OUTAGE_BACKOFF_S[min(rounds, len(OUTAGE_BACKOFF_S)) - 1]
        if self.limiter is not None:
            await self.limiter.block_for(pause)
        return pause

    async def _heartbeat(self, task_id: str, worker: asyncio.Task[Any] | None) -> bool:
        """Renew the lease every third of it. When it cannot be renewed before the lease's
        deadline (Redis unreachable, the task passed to another), stop acting on the task:
        cancelling the worker kills its running command."""
        lease_s = self.swarm.lease_ms / 1000
        deadline = asyncio.get_running_loop().time() + lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            left = deadline - asyncio.get_running_loop().time() - 0.5
            ok = False
            with contextlib.suppress(Exception):  # a Redis error, or no answer in time
                ok = await asyncio.wait_for(
                    self.board.heartbeat(
                        task_id, self.agent.name, self.swarm.lease_ms, self._token
                    ),
                    timeout=max(left, 0.1),
                )
            if not ok:
                if worker is not None:
                    worker.cancel()
                return False
            deadline = asyncio.get_running_loop().time() + lease_s

    async def _guard(self, task_id: str) -> None:
        """Before touching the task's worktree: the lease must still be ours."""
        if not await self.board.heartbeat(
            task_id, self.agent.name, self.swarm.lease_ms, self._token
        ):
            raise LeaseLost(task_id)

    async def _store(self, task_id: str, messages: list[Message], **kw: Any) -> None:
        """Store messages of the current task's session (fenced and exactly once); a
        session held by another now raises LeaseLost."""
        dumped = [m.model_dump() for m in messages]
        res = await self.board.record_turn(
            self.agent.name, task_id, dumped, token=self._token, expected=self._stored, **kw
        )
        if res <= 0:
            raise LeaseLost(task_id)
        self._stored += len(dumped)

    async def _enter_workspace(self, task: TaskView) -> None:
        if self.workspaces is None:
            return
        await self._guard(task.id)
        self.ctx.workspace = await self.workspaces.enter(task)
        if self.hub is not None:
            await self.hub.reroot(self.ctx.workspace)

    async def _open_session(self, task: TaskView) -> list[Message]:
        """The task's conversation so far (started if new), with what came back to it:
        a merge the queue sent back, or a retry after it failed."""
        name = self.agent.name
        stored = [Message.model_validate(m) for m in await self.board.session(task.id)]
        self._stored = len(stored)
        if not stored:
            deps = [d for d in [await self.board.task(n) for n in task.needs] if d]
            first = Message.user_text(task_prompt(task, deps))
            await self._store(task.id, [first], events=[("session_started", {})])
            stored = [first]
        messages = repair(stored)
        if len(messages) != len(stored) or messages != stored:
            await self.board.emit("transcript_repaired", task=task.id, agent=name)
        if task.rework and self.workspaces is not None:  # the merge queue sent it back
            await self._guard(task.id)
            note = Message.user_text(await self.workspaces.take_up_rework(task))
            kind = json.loads(task.rework).get("kind", "")
            await self._store(
                task.id,
                [note],
                events=[("rework_started", {"kind": kind})],
                clear_task_fields=("rework",),
            )
            messages.append(note)
        if task.retry:  # `swarm resume --retry-failed`: a new attempt, with fresh turns
            note = Message.user_text(
                f"This task failed before ({task.retry}) and is being tried again. Continue "
                "from where you are, and finish it or call task_fail with the reason."
            )
            turns = sum(1 for m in messages if m.role == "assistant")
            await self._store(
                task.id,
                [note],
                events=[("retry_started", {"previous_error": task.retry[:300]})],
                clear_task_fields=("retry",),
                set_task_fields={"turn_base": turns},
            )
            task.turn_base = turns
            messages.append(note)
        return messages

    async def _converse(self, task: TaskView) -> None:
        name = self.agent.name
        await self._enter_workspace(task)
        messages = await self._open_session(task)
        last = messages[-1]
        if last.role == "assistant" and not last.tool_calls:  # finished before a crash
            await self._finish(task, last.text)
            return
        gave_up = _last_task_fail(messages)
        if gave_up is not None:  # called task_fail, then the process died
            await self.board.fail(task.id, name, gave_up, self._token)
            return
        max_turns = task.max_turns or self.swarm.max_turns
        await self.progress.start(self.ctx.workspace)
        # The budget and the rate limiter need the request's size before it is sent:
        # about 4 characters a token; the real usage settles the reservation afterwards.
        turns = sum(1 for m in messages if m.role == "assistant")
        chars = self._fixed_chars + sum(len(m.model_dump_json()) for m in messages)
        while True:
            if turns - task.turn_base >= max_turns:
                await self.board.fail(
                    task.id, name, f"max_turns ({max_turns}) reached", self._token
                )
                return
            resp = await self._turn(task, messages, chars, turns + 1)
            if resp is None:  # the budget is spent or the run stopped: the task goes back
                return
            turns += 1
            messages.append(resp.message)
            chars += len(resp.message.model_dump_json())
            calls = resp.message.tool_calls
            nudge = self._nudge(resp)
            if nudge is not None:  # a reply cut off, or empty: never a result, never run
                stop = resp.stop_reason or ""
                await self._store(
                    task.id, [nudge], events=[("reply_refused", {"stop_reason": stop})]
                )
                messages.append(nudge)
                chars += len(nudge.model_dump_json())
                continue
            if not calls:
                await self._finish(task, resp.message.text)
                return
            reply = await self._run_tools(task.id, calls)
            messages.append(reply)
            chars += len(reply.model_dump_json())
            if self.handle.failed_reason is not None:
                await self.board.fail(task.id, name, self.handle.failed_reason, self._token)
                return
            stalled = await self.progress.after_turn(calls, reply)
            if stalled:
                await self.board.emit(
                    "no_progress", task=task.id, agent=name, data={"turns": stalled}
                )
                await self.board.fail(
                    task.id,
                    name,
                    f"no progress in the last {stalled} turns (no file, note, message or task "
                    "changed)",
                    self._token,
                )
                return

    async def _turn(
        self, task: TaskView, messages: list[Message], chars: int, turn: int
    ) -> ModelResponse | None:
        """One model request, reserved against the budget and stored with its usage."""
        name = self.agent.name
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
            await self.board.release(task.id, name, exc.reason, self._token)
            return None
        try:
            resp, attempts = await with_retries(
                functools.partial(self._request, messages, est_in),
                self.retry,
                lambda attempt, exc, delay: self._on_retry(task.id, attempt, exc, delay),
            )
        except BaseException as exc:
            if isinstance(exc, ProviderError) and exc.usage is not None:
                # the last attempt broke after the provider did the work: it counts (before
                # its reservation goes, so the budget always sees one or the other)
                spent = usage_fields(self.agent.model, exc.usage, self.swarm.pricing)
                await self.board.record_usage(name, task.id, spent)
            await self.budget.release(name)
            raise
        if self._outage:  # the provider answers again: close the credential's circuit
            self._outage = False
            if self.limiter is not None:
                await self.board.provider_ok(self.limiter.credential)
        u = resp.usage
        usd = cost_usd(self.agent.model, u, self.swarm.pricing)
        # Fenced: if the lease lapsed during the request (a stalled process, a Redis
        # outage) and the task passed to another, the reply is not stored; its usage is
        # recorded either way, since it was spent.
        await self._store(
            task.id,
            [resp.message],
            usage={
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cache_read_tokens": u.cache_read_tokens,
                "cache_creation_tokens": u.cache_creation_tokens,
                "usd": usd,
                "turns": 1,
                "requests": attempts,
            },
            agent_fields={"turns_task": turn - task.turn_base},
            settle=reservation,
            events=[
                (
                    "model_turn",
                    {
                        "turn": turn,
                        "input_tokens": u.input_tokens,
                        "output_tokens": u.output_tokens,
                        "usd": usd,
                        "tool_calls": [c.name for c in resp.message.tool_calls],
                        "attempts": attempts,
                    },
                )
            ],
        )
        return resp

    async def _run_tools(self, task_id: str, calls: list[Any]) -> Message:
        """Run a turn's tool calls and store their results."""
        results: list[ToolResult] = []
        events: list[tuple[str, dict[str, Any]]] = []
        for call in calls:
            out = await self.runner.run(call.name, call.input)
            text = redact(out.text, self._secrets)  # a file or command may print a key
            results.append(ToolResult(tool_call_id=call.id, content=text, is_error=out.is_error))
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
        await self._store(task_id, [reply], events=events)  # LeaseLost: another holds it now
        return reply

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
            if self.limiter is not None  # with no limits set, it still honours a block
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
        """An attempt failed and is retried; what it cost, if the provider did the work
        (a stream broken half way), counts in the usage and the budget."""
        spent = None
        if exc.usage is not None:
            spent = usage_fields(self.agent.model, exc.usage, self.swarm.pricing)
            await self.board.record_usage(self.agent.name, task_id, spent)
        await self.board.emit(
            "provider_retry",
            task=task_id,
            agent=self.agent.name,
            data={
                "attempt": attempt,
                "status": exc.status,
                "delay_s": round(delay, 3),
                "error": str(exc)[:300],
                **({"spent": spent} if spent else {}),
            },
        )

    async def _finish(self, task: TaskView, text: str) -> None:
        """The model is done: complete the task (in a worktree run, once its committed
        work is merged; a task that changed nothing completes at once)."""
        result = text.strip() or "(done)"
        if self.workspaces is not None:
            await self._guard(task.id)
            outcome, _ = await self.workspaces.finish(task, self.agent.name, result, self._token)
            if outcome == "queued":
                return
            if outcome == "lost":
                await self.board.emit("complete_refused", task=task.id, agent=self.agent.name)
                return
        if not await self.board.complete(task.id, self.agent.name, result, self._token):
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
