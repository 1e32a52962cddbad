"""The agent loop: plain asyncio, no Ray. Ray only hosts it (swarm.coordinator)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from swarm import approvals
from swarm.blackboard.board import Blackboard, Claim, TaskView
from swarm.blackboard.limits import (
    Budget,
    BudgetExhausted,
    RateLimiter,
    RateSlot,
    Reservation,
)
from swarm.blackboard.lua import WAKE_EVENTS
from swarm.config import AgentInstance
from swarm.context import (
    COMPACT_PROMPT,
    ContextPolicy,
    Conversation,
    SizeMeter,
    apply_prune,
    build_view,
    cap_tool_output,
    compacted_message,
    fallback_summary,
    files_written,
    inbox_block,
    msg_chars,
    prunable_chars,
    prune_point,
    shrink,
    summary_request,
)
from swarm.providers.base import Provider, ProviderError
from swarm.providers.pricing import cost_usd, usage_fields
from swarm.providers.repair import INTERRUPTED, repair
from swarm.providers.retry import RetryPolicy, with_retries
from swarm.providers.types import (
    Message,
    ModelResponse,
    TextBlock,
    ToolResult,
    ToolSpec,
    Usage,
)
from swarm.secrets import redact, secret_values
from swarm.tools.base import Tool, ToolContext, ToolOutput
from swarm.tools.swarm_tools import SWARM_TOOLS, ReadInbox, SwarmHandle
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
    no_progress_turns: int = 0  # fail a task after this many turns that changed nothing
    credential_env: str = ""  # the variable holding the agent's provider key (never its value)
    # USD per 1M tokens (input, output, cache read, cache write) overriding pricing.py
    pricing: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    # the config's `context:` (swarm.context)
    prune_at: float = 0.5
    compact_at: float = 0.85
    keep_turns: int = 3
    max_turn_tool_chars: int = 60_000
    # the config's `approvals.timeout_s`: an `ask` call waits this long for a person even
    # when no one is attached; unset, it waits only while someone is attached
    approval_timeout_s: float | None = None


class BoardState:
    """Per-agent tool state (read hashes, todos) kept on the blackboard. Writes wait for
    the turn's store (lua.STORE_TURN writes them with the tool results, in the same round
    trip): tool state changes with the turn that made them, or not at all."""

    def __init__(self, board: Blackboard, agent: str):
        self.board, self.agent = board, agent
        self.pending: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        if key in self.pending:
            return self.pending[key]
        return await self.board.state_get(self.agent, key)

    async def set(self, key: str, value: str) -> None:
        self.pending[key] = value

    def take(self) -> dict[str, str]:
        """The writes since the last store, for this one."""
        pending, self.pending = self.pending, {}
        return pending


class BoardLocks:
    """Per-path write locks shared by every agent of the run."""

    def __init__(self, board: Blackboard):
        self.board = board

    def lock(self, path: str) -> Any:
        return self.board.path_lock(path)


class LeaseLost(Exception):
    pass


class HandedBack(Exception):
    """The task was released (the budget is spent, the run is stopping): nothing more to
    do on it in this process."""


AUTH_STATUS = (401, 403)
INBOX_SHOWN = 20  # unread inbox messages shown with a turn's tool results, at most
# The inbox read with a model turn's store stands in for reading it again after the tools
# ran when they took less than this; a message sent during a longer command is shown with
# its result.
INBOX_FRESH_S = 0.25
#: The task field holding a turn's finished tool outputs while one of its calls waits
#: for approval.
CHECKPOINT = "ask_checkpoint"
#: How long an `ask` call waits at most while someone is attached and no
#: `approvals.timeout_s` is configured.
ATTENDED_WAIT_S = 3600.0
#: The tool call the runner is working on (read-only calls run at the same time).
_CURRENT_CALL: contextvars.ContextVar[Any] = contextvars.ContextVar("swarm_current_call")
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
            "Each task gets a git worktree of the repository of its own; file paths are "
            "relative to its root. Your changes are committed and merged for you when you "
            "finish: do not commit or switch branches. "
            if swarm.workspace == "worktree"
            else "You share one repository with the other agents; file paths are relative to "
            "its root. "
        )
        + "When the task is done, reply with a short summary of what you did and no tool "
        "calls: that reply is the task's result. If you cannot do it, call task_fail."
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
    @property
    def _secrets(self) -> list[str]:
        """Read when used: an OAuth token renewed during the run is registered as it
        comes (swarm.credentials.refresh), and must be redacted from then on."""
        return secret_values()

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
        self.info = agent.info  # context window, output limit, request options
        self.policy = ContextPolicy(
            window=self.info.context_window,
            max_output=self.info.max_output_tokens,
            prune_at=swarm.prune_at,
            compact_at=swarm.compact_at,
            keep_turns=swarm.keep_turns,
            max_turn_tool_chars=swarm.max_turn_tool_chars,
        )
        self.meter = SizeMeter()
        self._task_prompt = ""  # the current task's opening message (kept by compactions)
        self._files: list[str] = []  # files its write/edit calls named
        self.retry = retry or RetryPolicy()
        self.limiter = limiter
        self._ahead: RateSlot | None = None  # the next request's place, asked for ahead
        self._rate_done: list[str] | None = None  # its end, for the turn's store
        # the unread inbox, read with the model turn's store (None: not read)
        self._inbox_peeked: list[dict[str, Any]] | None = None
        self._inbox_peeked_at = 0.0
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
        self._fixed_chars = len(self.system) + sum(len(t.model_dump_json()) for t in self.specs)
        from swarm.tools.runner import ToolRunner

        self.runner = ToolRunner(
            self.tools, ctx, permissions, self._tool_event, approver=self._approve
        )
        self._turn_done: dict[str, ToolOutput] = {}  # this turn's finished calls, by id
        self._checkpointed = False  # this turn's finished calls are stored (an ask waits)
        self._running: set[str] = set()  # its calls running now (checkpointed turns)
        self._resume_calls: dict[str, ToolOutput] | None = None
        self._task_id = ""
        self._token = ""  # the current claim's fencing token
        self._fresh = False  # the current claim found its session empty
        self._stored = 0  # messages of the current task's session stored in Redis
        self._last_status: tuple[Any, ...] | None = None
        self._outage = False  # a request failed after every retry, none has succeeded since
        self._last_provider_error = ""
        self._by_hand = False  # work_claimed: the session goes on from a person's message
        from swarm.progress import ProgressTracker

        self.progress = ProgressTracker(swarm.no_progress_turns)

    async def _tool_event(self, kind: str, data: dict[str, Any]) -> None:
        if kind in ("doom_loop", "permission_denied"):  # worth a line on the dashboard
            if isinstance(data.get("subject"), str):
                data = {**data, "subject": redact(data["subject"], self._secrets)}
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
            # one round trip: a stopped run claims nothing and says so; nothing to claim
            # comes back with the count of open tasks and what this agent waits on, so an
            # idle agent reads no task on a wake-up
            claim = await self.board.claim(name, role, self.swarm.lease_ms, idle=True)
            if isinstance(claim, Claim):
                self._token = claim.token
                # the claim marked it working, as set_status would have
                self._last_status = ("working", claim.task_id, (("waiting_for", ""),))
                self._fresh = claim.session_len == 0  # nothing stored yet: no session to read
                await self.work(claim.task_id, claim.task)
                continue
            if claim.state != "running":
                break
            # (expired leases are requeued by the coordinator alone: it knows when Redis
            # was unreachable, and gives every lease its time back first)
            if claim.open <= 0 and await self.board.all_terminal():
                break  # (the count is a cue; the tasks themselves decide)
            waiting = claim.waiting_for
            if waiting:
                await self.set_status("waiting", waiting_for=",".join(waiting))
            else:
                await self.set_status("idle", waiting_for="")
            await self._wait_for_work(claim.last_event, min(self.swarm.lease_ms // 2, 5000))
        await self.set_status("done", waiting_for="")

    async def work_claimed(self, task_id: str, token: str) -> None:
        """Work one task this agent already holds (``token``: its claim's fencing token):
        how `swarm run` hosts the loop in-process, for one task."""
        await self.budget.release(self.agent.name)
        self._token = token
        self._by_hand = True  # a person's new message follows any earlier task_fail
        try:
            await self.work(task_id)
        finally:
            self._by_hand = False

    async def _wait_for_work(self, last: str, block_ms: int) -> None:
        """Sleep until an event that can make a task claimable (or end the run) arrives,
        or ``block_ms`` passes: other agents' turns and status changes wake nobody."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block_ms / 1000
        while (left := deadline - loop.time()) > 0:
            # the wake stream holds only WAKE_EVENTS: others' turns never wake this agent
            events = await self.board.wait_wake(last, block_ms=max(int(left * 1000), 1))
            if not events or any(e.type in WAKE_EVENTS for e in events):
                return
            last = events[-1].id

    async def work(self, task_id: str, task: TaskView | None = None) -> None:
        self._task_id = task_id
        self.handle.task_id = task_id
        if isinstance(self.ctx.state, BoardState):
            self.ctx.state.take()  # writes of a turn that was never stored (a lost lease)
        self.handle.failed_reason = None
        if task is None:
            task = await self.board.task(task_id)
        if task is None:  # claimed a moment ago, so it exists; never crash the agent on it
            return
        await self.set_status("working", task=task_id, waiting_for="")
        heartbeat = asyncio.create_task(self._heartbeat(task_id, asyncio.current_task()))
        try:
            await self._converse(task)
        except LeaseLost:
            await self.board.emit("lease_lost", task=task_id, agent=self.agent.name)
        except HandedBack:
            pass
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
        kw.setdefault("rate_done", self._take_rate_done())  # a request ended since the last
        if isinstance(self.ctx.state, BoardState):
            kw.setdefault("state", self.ctx.state.take())
        res, peeked = await self.board.record_turn_and_peek(
            self.agent.name, task_id, dumped, token=self._token, expected=self._stored, **kw
        )
        if res <= 0:
            raise LeaseLost(task_id)
        self._stored += len(dumped)
        self._inbox_peeked = peeked
        self._inbox_peeked_at = time.monotonic()

    async def _enter_workspace(self, task: TaskView) -> None:
        if self.workspaces is None:
            return
        await self._guard(task.id)
        self.ctx.workspace = await self.workspaces.enter(task)
        if self.hub is not None:
            await self.hub.reroot(self.ctx.workspace)

    async def _open_session(self, task: TaskView) -> Conversation:
        """The task's conversation as the model sees it (started if new), with what came
        back to it: a merge the queue sent back, or a retry after it failed."""
        name = self.agent.name
        fresh, self._fresh = self._fresh, False
        stored = (
            [] if fresh else [Message.model_validate(m) for m in await self.board.session(task.id)]
        )
        self._stored = len(stored)
        if not stored:
            deps = await self.board.tasks_by_id(task.needs)
            first, unread = await self._with_inbox(Message.user_text(task_prompt(task, deps)))
            await self._store(task.id, [first], events=[("session_started", {})], inbox_read=unread)
            stored = [first]
        self._task_prompt = task_prompt_of(stored[0])
        self._files = files_written(stored)
        view = build_view(stored, task.ctx_start, task.ctx_pruned, task.ctx_turns)
        self._resume_calls = await self._checkpointed_calls(task.id, stored)
        messages = repair(view)
        if self._resume_calls is not None and view and view[-1] == stored[-1]:
            messages = messages[:-1]  # the calls go on below, not "interrupted"
        else:
            self._resume_calls = None
        if len(messages) != len(view) or messages != view:
            await self.board.emit("transcript_repaired", task=task.id, agent=name)
        convo = Conversation(messages, turns_before=task.ctx_turns, pruned=task.ctx_pruned)
        if task.ctx_ratio > 0:  # sized as before a crash, so the same view is replayed
            self.meter.tokens_per_char = task.ctx_ratio
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
            convo.append(note)
        if task.retry:  # `swarm resume --retry-failed`: a new attempt, with fresh turns
            note = Message.user_text(
                f"This task failed before ({task.retry}) and is being tried again. Continue "
                "from where you are, and finish it or call task_fail with the reason."
            )
            turns = convo.turns
            await self._store(
                task.id,
                [note],
                events=[("retry_started", {"previous_error": task.retry[:300]})],
                clear_task_fields=("retry",),
                set_task_fields={"turn_base": turns},
            )
            task.turn_base = turns
            convo.append(note)
        return convo

    async def _converse(self, task: TaskView) -> None:
        name = self.agent.name
        await self._enter_workspace(task)
        convo = await self._open_session(task)
        last = convo.messages[-1]
        if last.role == "assistant" and not last.tool_calls:  # finished before a crash
            await self._finish(task, last.text)
            return
        gave_up = None if self._by_hand else _last_task_fail(convo.messages)
        if gave_up is not None:  # called task_fail, then the process died
            await self.board.fail(task.id, name, gave_up, self._token)
            return
        max_turns = task.max_turns or self.swarm.max_turns
        await self.progress.start(self.ctx.workspace)
        if self._resume_calls is not None:  # stopped while an `ask` waited: go on from there
            reply = await self._run_tools(task.id, last.tool_calls, done=self._resume_calls)
            self._resume_calls = None
            convo.append(reply)
            if self.handle.failed_reason is not None:
                await self.board.fail(task.id, name, self.handle.failed_reason, self._token)
                return
        overflows = 0  # overflow errors since the last reply
        while True:
            if convo.turns - task.turn_base >= max_turns:
                await self.board.fail(
                    task.id, name, f"max_turns ({max_turns}) reached", self._token
                )
                return
            await self._fit(task, convo)
            outcome = await self._turn(task, convo, convo.turns + 1)
            if outcome is None:  # the request did not fit: compact, then try again
                overflows += 1
                if overflows > 2 or not await self._compact(task, convo, "overflow"):
                    await self.board.fail(
                        task.id,
                        name,
                        f"the task does not fit the context window of {self.agent.model} "
                        f"({self.policy.window} tokens) even after compaction",
                        self._token,
                    )
                    return
                continue
            overflows = 0
            resp, note = outcome
            convo.append(resp.message)
            if note is not None:  # cut off, empty or refused: never a result, never run
                convo.append(note)
                if resp.stop_reason == "refusal":
                    reason = f"the model refused: {resp.message.text.strip()[:300]}"
                    await self.board.fail(task.id, name, reason, self._token)
                    return
                continue
            calls = resp.message.tool_calls
            if resp.stop_reason == "pause" and not calls:  # send it back to go on
                continue
            if not calls:
                await self._finish(task, resp.message.text)
                return
            reply = await self._run_tools(task.id, calls)
            convo.append(reply)
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

    def _tokens(self, chars: int) -> int:
        return self.meter.tokens(self._fixed_chars + chars)

    async def _fit(self, task: TaskView, convo: Conversation) -> None:
        """Before a request: prune old tool output past the prune threshold (when that
        frees enough to be worth a cache miss), compact past the compaction threshold."""
        policy = self.policy
        before = self._tokens(convo.chars)
        if before > policy.prune_limit:
            upto = prune_point(convo, policy.keep_turns)
            gain = self.meter.tokens(prunable_chars(convo, upto))
            # each prune costs the cache everything after its first change: prune rarely,
            # in steps of half the room between the two thresholds
            if upto > convo.pruned and gain >= policy.prune_step:
                convo.replace(apply_prune(convo.messages, upto, convo.turns_before))
                convo.pruned = upto
                after = self._tokens(convo.chars)
                await self._store(
                    task.id,
                    [],
                    usage={"prunes": 1},
                    set_task_fields={"ctx_pruned": upto},
                    events=[
                        (
                            "context_pruned",
                            {"tokens_before": before, "tokens_after": after, "upto_turn": upto},
                        )
                    ],
                )
                before = after
        if before > policy.compact_limit:
            await self._compact(task, convo, "threshold")

    async def _compact(self, task: TaskView, convo: Conversation, why: str) -> bool:
        """Summarise the conversation (by the model, else from its tool calls) and go on
        from the task prompt plus that summary. False when there is nothing to compact."""
        if len(convo.messages) <= 1:
            return False
        before = self._tokens(convo.chars)
        limit = self.policy.usable

        def fits(msgs: list[Message]) -> bool:
            return self._tokens(sum(msg_chars(m) for m in msgs) + len(COMPACT_PROMPT)) <= limit

        source = (
            convo.messages
            if fits(convo.messages)
            else shrink(convo.messages, convo.turns_before, fits)
        )
        summary, by, settle, usage = "", "model", None, None
        for _ in range(2):
            request = summary_request(repair(source))
            try:
                resp, attempts, settle = await self._model_call(task.id, Conversation(request))
            except ProviderError as exc:
                if exc.kind != "context_exceeded":
                    raise
                limit //= 2  # the estimate was off: ask for a summary of less
                source = shrink(source, convo.turns_before, fits)
                continue
            usage = self._usage_fields(resp, attempts)
            summary = resp.message.text.strip()
            if resp.stop_reason == "refusal":
                summary = ""
            break
        if not summary:
            summary, by = fallback_summary(convo.messages), "fallback"
        turns = convo.turns
        msg = compacted_message(self._task_prompt, summary, turns, self._files)
        after = self._tokens(msg_chars(msg))
        await self._store(
            task.id,
            [msg],
            usage={**(usage or {}), "compactions": 1},
            settle=settle,
            set_task_fields={"ctx_start": self._stored, "ctx_pruned": 0, "ctx_turns": turns},
            events=[
                (
                    "context_compacted",
                    {
                        "tokens_before": before,
                        "tokens_after": after,
                        "turns": turns,
                        "reason": why,
                        "summary_by": by,
                    },
                )
            ],
        )
        convo.replace([msg])
        convo.turns_before, convo.pruned = turns, 0
        return True

    async def _model_call(
        self, task_id: str, convo: Conversation
    ) -> tuple[ModelResponse, int, Reservation]:
        """One model request, reserved against the budget and sent through the retry
        layer; the budget spent (or the run stopping) hands the task back."""
        name = self.agent.name
        messages = convo.messages
        chars = self._fixed_chars + convo.chars  # kept as messages come, not re-measured
        est_in, est_out = self.meter.tokens(chars), self.info.max_output_tokens
        ahead = self.limiter.new_slot(est_in) if self.limiter is not None else None
        try:
            reservation = await self.budget.reserve(
                name,
                cost_usd(
                    self.agent.model,
                    Usage(input_tokens=est_in, output_tokens=est_out),
                    self.swarm.pricing,
                ),
                est_in + est_out,
                slot=ahead,
            )
            self._ahead = ahead  # its rate-limit place, asked for in the same round trip
        except BudgetExhausted as exc:
            await self.board.release(task_id, name, exc.reason, self._token)
            raise HandedBack(exc.reason) from None
        try:
            resp, attempts = await with_retries(
                functools.partial(self._request, messages, est_in),
                self.retry,
                lambda attempt, exc, delay: self._on_retry(task_id, attempt, exc, delay),
            )
        except BaseException as exc:
            if isinstance(exc, ProviderError) and exc.usage is not None:
                # the last attempt broke after the provider did the work: it counts (before
                # its reservation goes, so the budget always sees one or the other)
                spent = usage_fields(self.agent.model, exc.usage, self.swarm.pricing)
                await self.board.record_usage(name, task_id, spent)
            await self.budget.release(name)
            raise
        if self._outage:  # the provider answers again: close the credential's circuit
            self._outage = False
            if self.limiter is not None:
                await self.board.provider_ok(self.limiter.credential)
        u = resp.usage
        self.meter.observe(chars, u.input_tokens + u.cache_read_tokens + u.cache_creation_tokens)
        return resp, attempts, reservation

    def _take_rate_done(self) -> list[str] | None:
        done, self._rate_done = self._rate_done, None
        return done

    def _usage_fields(self, resp: ModelResponse, attempts: int) -> dict[str, float]:
        fields = usage_fields(self.agent.model, resp.usage, self.swarm.pricing)
        return {**fields, "turns": 1, "requests": attempts}

    async def _turn(
        self, task: TaskView, convo: Conversation, turn: int
    ) -> tuple[ModelResponse, Message | None] | None:
        """One turn of the task: the request, and its reply stored with its usage (and
        with the note sent back when the reply cannot stand: in one transaction, so a
        crash never makes a cut-off reply the result). None: it did not fit the window."""
        try:
            resp, attempts, reservation = await self._model_call(task.id, convo)
        except ProviderError as exc:
            if exc.kind != "context_exceeded":
                raise
            await self.board.emit(
                "context_overflow",
                task=task.id,
                agent=self.agent.name,
                data={"error": str(exc)[:300]},
            )
            return None
        usage = self._usage_fields(resp, attempts)
        u = resp.usage
        event = {
            "turn": turn,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "cache_read_tokens": u.cache_read_tokens,
            "usd": usage["usd"],
            "tool_calls": [c.name for c in resp.message.tool_calls],
            "attempts": attempts,
            "stop_reason": resp.stop_reason or resp.raw_stop_reason or "",
        }
        if resp.stop_reason == "context_exceeded":  # the window filled up mid-reply
            await self._store(
                task.id,
                [],
                usage=usage,
                settle=reservation,
                events=[("model_turn", event)],
            )
            return None
        note = self._nudge(resp)
        stored = [resp.message] if note is None else [resp.message, note]
        events: list[tuple[str, dict[str, Any]]] = [("model_turn", event)]
        if note is not None:
            events.append(("reply_refused", {"stop_reason": event["stop_reason"]}))
        # Fenced: if the lease lapsed during the request (a stalled process, a Redis
        # outage) and the task passed to another, the reply is not stored; its usage is
        # recorded either way, since it was spent.
        await self._store(
            task.id,
            stored,
            usage=usage,
            agent_fields={"turns_task": turn - task.turn_base},
            set_task_fields={"ctx_ratio": round(self.meter.tokens_per_char, 6)},
            settle=reservation,
            events=events,
            # the tool results shown next carry the unread inbox: read it in this trip
            peek_inbox=INBOX_SHOWN if note is None and resp.message.tool_calls else 0,
        )
        self._files += [f for f in files_written([resp.message]) if f not in self._files]
        return resp, note

    async def _with_inbox(self, message: Message) -> tuple[Message, int]:
        """``message`` with the agent's unread inbox added (shown to the model unasked);
        the count is removed from the inbox when the message is stored."""
        unread, self._inbox_peeked = self._inbox_peeked, None
        if unread is None or time.monotonic() - self._inbox_peeked_at > INBOX_FRESH_S:
            unread = await self.board.peek_inbox(self.agent.name, INBOX_SHOWN)
        text, count = inbox_block(unread)
        if not count:
            return message, 0
        return Message(role=message.role, content=[*message.content, TextBlock(text=text)]), count

    async def _run_tools(
        self, task_id: str, calls: list[Any], done: dict[str, ToolOutput] | None = None
    ) -> Message:
        """Run a turn's tool calls (read-only ones at the same time) and store their
        results, cut to the turn's share of the context window, with any unread inbox.
        ``done``: outputs of calls that ran before this process stopped (a checkpoint
        stored while an ``ask`` waited): not run again."""
        self._turn_done = dict(done or {})
        self._checkpointed = done is not None
        self._running = set()
        outs = await self._run_calls(calls)
        if any(c.name == ReadInbox.name for c in calls):  # the inbox read ahead is gone
            self._inbox_peeked = None
        texts = [redact(out.text, self._secrets) for out in outs]  # a command may print a key
        cap = min(
            self.swarm.max_turn_tool_chars,
            int(self.policy.prune_limit / self.meter.tokens_per_char),
        )
        texts = cap_tool_output(texts, cap)
        results: list[ToolResult] = []
        events: list[tuple[str, dict[str, Any]]] = []
        for call, out, text in zip(calls, outs, texts, strict=True):
            results.append(ToolResult(tool_call_id=call.id, content=text, is_error=out.is_error))
            events.append(
                (
                    "tool_call",
                    {
                        "tool": call.name,
                        "is_error": out.is_error,
                        "summary": redact(_summary(call.name, call.input), self._secrets),
                        **_small(out.meta),
                    },
                )
            )
        reply, unread = await self._with_inbox(Message(role="user", content=list(results)))
        if unread:
            events.append(("inbox_shown", {"messages": unread}))
        # LeaseLost: another holds it now
        await self._store(
            task_id,
            [reply],
            events=events,
            inbox_read=unread,
            clear_task_fields=(CHECKPOINT,) if self._checkpointed else (),
        )
        self._turn_done, self._checkpointed = {}, False
        return reply

    async def _run_calls(self, calls: list[Any]) -> list[ToolOutput]:
        """Each call's output, in order; a run of read-only calls goes at once."""
        outs: list[ToolOutput] = []
        i = 0
        while i < len(calls):
            j = i
            while j < len(calls) and self._read_only(calls[j].name):
                j += 1
            if j - i > 1:
                outs += await asyncio.gather(*(self._run_call(c) for c in calls[i:j]))
                i = j
                continue
            outs.append(await self._run_call(calls[i]))
            i += 1
        return outs

    async def _run_call(self, call: Any) -> ToolOutput:
        done = self._turn_done.get(call.id)
        if done is not None:  # ran before a stop, while another call of the turn waited
            return done
        _CURRENT_CALL.set(call)  # each call of a gather runs in a context of its own
        # in a checkpointed turn, a call that changes things is marked running while it
        # runs: after a crash its effect is unknown, so it is reported, never run again
        tracked = self._checkpointed and not self._read_only(call.name)
        if tracked:
            self._running.add(call.id)
            await self._checkpoint()
        try:
            out = await self.runner.run(call.name, call.input)
        finally:
            self._running.discard(call.id)
        self._turn_done[call.id] = out
        if self._checkpointed:
            await self._checkpoint()
        return out

    # -- approvals (docs/approvals.md) --------------------------------------------------
    async def _approve(self, tool: str, subject: str, rule: str | None) -> tuple[bool, str]:
        """A permission rule says ``ask``: ask a person when the run is attended or a
        timeout is configured, else deny. The call has not run; while it waits the
        heartbeat keeps the lease, and the budget and wall-clock keep counting."""
        board, name = self.board, self.agent.name
        call = _CURRENT_CALL.get(None)
        args = call.input if call is not None and isinstance(call.input, dict) else {}
        summary = approvals.summarise(tool, subject, args, self._secrets)
        if await approvals.always_allowed(board, tool, [rule if rule is not None else summary]):
            return True, ""
        timeout = self.swarm.approval_timeout_s
        if timeout is None and not await approvals.attended(board):
            return False, approvals.UNATTENDED
        # what the turn's other calls gave so far is stored first, so a stop or a crash
        # while waiting loses nothing: after a restart this call is asked about again
        if call is not None:
            self._running.discard(call.id)  # waiting, not running
        await self._checkpoint()
        ap = await approvals.request(
            board, agent=name, task=self._task_id, tool=tool, summary=summary, rule=rule
        )
        try:
            decision, message = await approvals.wait(
                board, ap.id, timeout or ATTENDED_WAIT_S, while_attended=timeout is None
            )
        except BaseException:  # stopped or cancelled while waiting: take the question back
            with contextlib.suppress(Exception):
                await asyncio.shield(approvals.withdraw(board, ap.id))
            raise
        if decision == "allow":
            if call is not None and not self._read_only(tool):
                self._running.add(call.id)  # it runs now: from here its effect is unknown
                await self._checkpoint()
            return True, ""
        return False, approvals.denial_note(await approvals.answer_of(board, ap.id), message)

    async def _checkpoint(self) -> None:
        done = {
            cid: {"text": redact(o.text, self._secrets), "is_error": o.is_error}
            for cid, o in self._turn_done.items()
        }
        point = {"at": self._stored, "done": done, "running": sorted(self._running)}
        await self._store(self._task_id, [], set_task_fields={CHECKPOINT: json.dumps(point)})
        self._checkpointed = True

    async def _checkpointed_calls(
        self, task_id: str, stored: list[Message]
    ) -> dict[str, ToolOutput] | None:
        """The outputs a checkpoint kept for the session's last turn, when its tool calls
        were cut short while an ``ask`` waited (None: no such checkpoint); a call that
        was running when the process stopped is reported as interrupted."""
        if not stored or stored[-1].role != "assistant" or not stored[-1].tool_calls:
            return None
        raw = await self.board.r.hget(self.board.k.task(task_id), CHECKPOINT)
        if not raw:
            return None
        point = json.loads(raw)
        if point.get("at") != len(stored):
            return None
        ids = {c.id for c in stored[-1].tool_calls}
        outs = {cid: ToolOutput.error(INTERRUPTED) for cid in point.get("running", [])}
        outs.update(
            {
                cid: ToolOutput(text=o["text"], is_error=bool(o["is_error"]))
                for cid, o in point.get("done", {}).items()
            }
        )
        return {cid: out for cid, out in outs.items() if cid in ids}

    def _read_only(self, name: str) -> bool:
        tool = self.tools.get(name)
        return tool is not None and tool.read_only

    def _nudge(self, resp: ModelResponse) -> Message | None:
        """The reply to send instead of acting on a turn that hit the output limit (its
        tool calls may be cut short), was refused, or said nothing at all."""
        calls = resp.message.tool_calls
        limit = self.info.max_output_tokens
        if resp.stop_reason == "refusal":
            return (
                Message.user_text(
                    "Your reply was refused or stopped by a content filter; it is not the task's "
                    "result, and the task fails with this reason."
                )
                if not calls
                else Message(
                    role="user",
                    content=[
                        ToolResult(
                            tool_call_id=c.id,
                            content="not run: the reply was refused or stopped by a content filter",
                            is_error=True,
                        )
                        for c in calls
                    ],
                )
            )
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
        if not calls and not resp.message.text.strip() and resp.stop_reason != "pause":
            return Message.user_text(
                "Your reply was empty. Reply with a short summary of what you did (no tool "
                "calls) to complete the task, or call task_fail with the reason."
            )
        return None

    async def _request(self, messages: list[Message], est_tokens: int) -> ModelResponse:
        """One attempt: wait for the credential's shared rate limit, then call the model."""
        ahead, self._ahead = self._ahead, None  # a retry asks for a place of its own
        self._rate_done = None
        slot: contextlib.AbstractAsyncContextManager[RateSlot | None] = (
            self.limiter.slot(est_tokens, ahead=ahead)
            if self.limiter is not None  # with no limits set, it still honours a block
            else contextlib.nullcontext(None)
        )
        try:
            async with slot as held:
                resp = await self.provider.complete(
                    model=self.model,
                    system=self.system,
                    messages=messages,
                    tools=self.specs,
                    max_tokens=self.info.max_output_tokens,
                    options=self.info.options,
                )
                if held is not None:  # the turn's store ends its place, in the same trip
                    self._rate_done = held.done_in_store()
                return resp
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


def task_prompt_of(first: Message) -> str:
    """The task's own prompt from the session's first message (without an inbox note)."""
    texts = [b.text for b in first.content if isinstance(b, TextBlock)]
    return texts[0] if texts else first.text


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
