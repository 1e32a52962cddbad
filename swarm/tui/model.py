"""What the interactive dashboard shows, read from the blackboard and made ready to draw:
pure functions over stored state (snapshot, sessions, events, the topology), so the
views stay thin and are tested without a terminal."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel

from swarm.blackboard.board import Blackboard, Event
from swarm.status import AgentRow, Snapshot

WORKING = "working"
# Event types the tail always keeps: the ones a person watching needs to notice
NOTABLE = frozenset(
    {
        "context_compacted",
        "context_pruned",
        "provider_retry",
        "retry_started",
        "rework_started",
        "merge_queued",
        "merged",
        "merge_retry",
        "merge_error",
        "merge_gave_up",
        "task_failed",
        "task_requeued",
        "approval_requested",
        "approval_answered",
        "approval_withdrawn",
        "run_finished",
    }
)


def elapsed_s(snap: Snapshot, now_ms: int | None = None) -> float:
    if not snap.created_ms:
        return 0.0
    end = snap.finished_ms or now_ms or int(time.time() * 1000)
    return max(0.0, (end - snap.created_ms) / 1000)


def clock(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


def bar(value: float, limit: float | None, width: int = 20) -> str:
    """'[#####-----] 50%' of a limit; without one, no bar."""
    if not limit:
        return ""
    ratio = max(0.0, min(1.0, value / limit))
    full = round(ratio * width)
    return f"[{'#' * full}{'-' * (width - full)}] {value / limit:.0%}"


def header_lines(snap: Snapshot, now_ms: int | None = None) -> list[str]:
    u = snap.usage
    tokens = u.input_tokens + u.output_tokens
    first = (
        f"{snap.name}  run {snap.run_id}  {snap.state}"
        + (f" ({snap.reason})" if snap.reason else "")
        + f"  elapsed {clock(elapsed_s(snap, now_ms))}  turns {u.turns}"
    )
    cost = f"cost ${u.usd:,.4f}" + (
        f" of ${snap.max_usd:,.2f} {bar(u.usd, snap.max_usd)}" if snap.max_usd else " (no max_usd)"
    )
    toks = f"tokens {tokens:,}" + (
        f" of {snap.max_tokens:,} {bar(tokens, snap.max_tokens)}"
        if snap.max_tokens
        else " (no max_tokens)"
    )
    return [first, f"{cost}    {toks}"]


def phase_percent(total: int, completed: int) -> int:
    """Completed share of a phase's tasks, as the progress report counts it (rounded
    down: 100 only when every task is completed)."""
    from swarm.report import percent

    return percent(completed, total)


def agent_status(a: AgentRow) -> str:
    if a.waiting_for:
        return f"waiting for {', '.join(a.waiting_for)}"
    return a.status


def agent_todo(a: AgentRow) -> str:
    """Todo progress while the agent works on a task; a finished (or waiting) agent's
    last list is not shown as in progress."""
    if a.status != WORKING or not a.task:
        return ""
    return a.todo_summary


def current_tool(last_message: dict[str, Any] | None) -> str:
    """From the last stored message of the agent's task: the tool calls it runs now (an
    assistant message with tool calls and no results yet), or 'model' while the model is
    asked (a user message is the last one)."""
    if not last_message:
        return ""
    blocks = last_message.get("content") or []
    if last_message.get("role") == "assistant":
        calls = [b.get("name", "?") for b in blocks if b.get("type") == "tool_call"]
        return ", ".join(calls)
    return "model"


async def current_tools(board: Blackboard, snap: Snapshot) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in snap.agents:
        if a.status != WORKING or not a.task:
            continue
        raw = await board.r.lindex(board.k.session(a.task), -1)
        try:
            out[a.name] = current_tool(json.loads(raw) if raw else None)
        except ValueError:
            out[a.name] = ""
    return out


# -- the conversation of a task ----------------------------------------------------------
class Fold(BaseModel):
    """One entry of a conversation: a line always shown, and a body shown when unfolded."""

    kind: str  # prompt | text | thinking | call | result | error
    line: str
    body: str = ""


def _first_line(text: str, limit: int = 100) -> str:
    line = next((s for s in text.splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def call_summary(name: str, args: dict[str, Any]) -> str:
    for key in ("command", "file_path", "pattern", "to", "key", "title", "reason"):
        if key in args:
            return f"{name} {str(args[key])[:100]}"
    return f"{name} {json.dumps(args)[:100]}" if args else name


def fold_messages(messages: list[dict[str, Any]]) -> list[Fold]:
    out: list[Fold] = []
    for i, m in enumerate(messages):
        role = m.get("role", "")
        for b in m.get("content") or []:
            kind = b.get("type")
            if kind == "text":
                text = str(b.get("text", ""))
                what = "prompt" if role == "user" and i == 0 else "text"
                who = "user" if role == "user" else "assistant"
                n = len(text.splitlines())
                more = f"  (+{n - 1} lines)" if n > 1 else ""
                out.append(Fold(kind=what, line=f"{who}: {_first_line(text)}{more}", body=text))
            elif kind == "tool_call":
                args = b.get("input") or {}
                out.append(
                    Fold(
                        kind="call",
                        line=f"→ {call_summary(str(b.get('name', '?')), args)}",
                        body=json.dumps(args, indent=1),
                    )
                )
            elif kind == "tool_result":
                text = str(b.get("content", ""))
                err = bool(b.get("is_error"))
                n = len(text.splitlines())
                out.append(
                    Fold(
                        kind="error" if err else "result",
                        line=f"← {'error: ' if err else ''}{_first_line(text)}  ({n} lines)",
                        body=text,
                    )
                )
            elif kind in ("thinking", "redacted_thinking"):
                text = str(b.get("thinking", ""))
                out.append(Fold(kind="thinking", line=f"thinking: {_first_line(text)}", body=text))
    return out


class Conversation(BaseModel):
    agent: str
    task: str
    messages: int  # stored in the session
    shown_from: int  # index of the first message shown
    folds: list[Fold]


async def conversation(board: Blackboard, agent: str, task: str, latest: int = 12) -> Conversation:
    """The latest ``latest`` messages of the task's stored session, folded."""
    key = board.k.session(task)
    n = int(await board.r.llen(key)) if task else 0
    start = max(0, n - latest)
    raw = await board.r.lrange(key, start, -1) if task else []
    msgs = []
    for r in raw:
        try:
            msgs.append(json.loads(r))
        except ValueError:
            continue
    folds = fold_messages(msgs)
    if start:  # the first shown message is not the prompt
        folds = [f.model_copy(update={"kind": "text"}) if f.kind == "prompt" else f for f in folds]
    return Conversation(agent=agent, task=task, messages=n, shown_from=start, folds=folds)


# -- the event tail ----------------------------------------------------------------------
def tail(events: list[Event], rows: int = 10) -> list[Event]:
    """The latest events, keeping notable ones (compactions, retries, the merge queue)
    over routine ones when there are more than fit."""
    if len(events) <= rows:
        return events
    keep = set()
    recent = events[-rows * 5 :]
    notable = [i for i, e in enumerate(recent) if e.type in NOTABLE]
    keep.update(notable[-(rows // 2) :])
    for i in range(len(recent) - 1, -1, -1):
        if len(keep) >= rows:
            break
        keep.add(i)
    return [recent[i] for i in sorted(keep)]


# -- the topology ------------------------------------------------------------------------
class Edge(BaseModel):
    a: str
    b: str
    messages: int = 0  # sent along it, either way


class Sent(BaseModel):
    ts: int
    sender: str
    to: str
    task: str = ""  # the sender's task when it sent it (from the events before)
    body: str = ""  # from the sender's stored session, once looked up


class Topology(BaseModel):
    kind: str
    nodes: list[str]
    status: dict[str, str]
    edges: list[Edge]
    recent: list[Sent]


def sent_of(e: Event, task: str = "") -> Sent | None:
    if e.type != "message_sent":
        return None
    return Sent(ts=e.ts, sender=e.agent, to=str(e.data.get("to", "")), task=task)


async def with_bodies(board: Blackboard, sent: list[Sent]) -> list[Sent]:
    """``sent`` with each message's text, from the send_message calls in the sender's
    task session (the event does not carry it): the latest calls to a recipient are
    matched with the latest messages to it."""
    out = [s.model_copy() for s in sent]
    groups: dict[tuple[str, str], list[Sent]] = {}
    for s in out:
        if s.task:
            groups.setdefault((s.task, s.to), []).append(s)
    calls: dict[str, list[tuple[str, str]]] = {}
    for task, to in groups:
        if task not in calls:
            calls[task] = []
            for raw in await board.r.lrange(board.k.session(task), 0, -1):
                try:
                    m = json.loads(raw)
                except ValueError:
                    continue
                for b in m.get("content") or []:
                    if b.get("type") == "tool_call" and b.get("name") == "send_message":
                        args = b.get("input") or {}
                        calls[task].append((str(args.get("to", "")), str(args.get("body", ""))))
        bodies = [body for who, body in calls[task] if who == to]
        for s, body in zip(reversed(groups[(task, to)]), reversed(bodies), strict=False):
            s.body = body
    return out


def topology(meta: dict[str, str], snap: Snapshot, sent: list[Sent]) -> Topology:
    """Agents, the edges they may message along (as the run's plan stored them) with the
    messages sent along each, and the latest messages."""
    try:
        pairs = [(str(a), str(b)) for a, b in json.loads(meta.get("edges") or "[]")]
    except (ValueError, TypeError):
        pairs = []
    counts: dict[frozenset[str], int] = {}
    for s in sent:
        k = frozenset((s.sender, s.to))
        counts[k] = counts.get(k, 0) + 1
    return Topology(
        kind=meta.get("topology", ""),
        nodes=[a.name for a in snap.agents],
        status={a.name: agent_status(a) for a in snap.agents},
        edges=[Edge(a=a, b=b, messages=counts.get(frozenset((a, b)), 0)) for a, b in pairs],
        recent=sent[-8:],
    )
