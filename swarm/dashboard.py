"""The live view of a run, fed by the event stream: rich Live on a TTY, plain
timestamped lines otherwise, NDJSON events with --json. Shows only stored values."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from swarm.blackboard.board import Blackboard, Event
from swarm.status import Snapshot, snapshot

STATUS_STYLE = {
    "working": "bold green",
    "waiting": "yellow",
    "idle": "dim",
    "done": "cyan",
    "dead": "bold red",
    "starting": "dim",
}
TASK_ICON = {"completed": "✅", "failed": "❌", "claimed": "🔄", "ready": "•", "pending": "⏸"}


def describe(e: Event) -> str:
    d = e.data
    if e.type == "tool_call":
        return f"{d.get('summary', d.get('tool', ''))}{' (error)' if d.get('is_error') else ''}"
    if e.type == "model_turn":
        calls = ", ".join(d.get("tool_calls", [])) or "final answer"
        return f"turn {d.get('turn')}: {d.get('input_tokens')} in / {d.get('output_tokens')} out -> {calls}"
    if e.type == "agent_status":
        extra = f" for {d['waiting_for']}" if d.get("waiting_for") else ""
        return f"{d.get('status')}{extra}"
    if e.type in ("task_failed", "task_requeued"):
        return str(d.get("reason", ""))
    if e.type == "task_completed":
        return str(d.get("result", ""))[:100]
    if e.type == "provider_retry":
        return (
            f"attempt {d.get('attempt')} failed ({d.get('status')}), retry in {d.get('delay_s')}s"
        )
    if e.type == "context_compacted":
        return (
            f"context compacted ({d.get('reason')}): {d.get('tokens_before'):,} -> "
            f"{d.get('tokens_after'):,} tokens after {d.get('turns')} turns"
        )
    if e.type == "context_pruned":
        return (
            f"old tool output pruned: {d.get('tokens_before'):,} -> "
            f"{d.get('tokens_after'):,} tokens"
        )
    if e.type == "inbox_shown":
        return f"{d.get('messages')} inbox message(s) shown to the model"
    if e.type == "reply_refused":
        return f"reply not used ({d.get('stop_reason') or 'empty'})"
    if e.type == "run_finished":
        return f"{d.get('state')} {d.get('reason', '')}".strip()
    return json.dumps(d)[:120] if d else ""


def render(snap: Snapshot, recent: list[Event]) -> Group:
    elapsed = ((snap.finished_ms or int(time.time() * 1000)) - snap.created_ms) / 1000
    u = snap.usage
    head = Text.assemble(
        (f"{snap.name} ", "bold"),
        (f"run {snap.run_id}  ", "dim"),
        (snap.state, "bold magenta"),
        f"  {elapsed:,.0f}s  tokens {u.input_tokens:,} in / {u.output_tokens:,} out"
        f"  ${u.usd:,.4f}  turns {u.turns}",
    )
    agents = Table(expand=True, box=None, header_style="bold")
    # compactions only once there are any: an 80-column terminal has no room to spare
    ctx = any(a.compactions for a in snap.agents)
    columns = ["agent", "role", "status", "task", "todo", "turns"] + (["ctx"] if ctx else [])
    for col in [*columns, "tokens in/out", "$"]:
        agents.add_column(
            col,
            justify="right" if col in ("turns", "ctx", "$") else "left",
            min_width={"status": 23, "tokens in/out": 13}.get(col),  # these stay whole
        )
    for a in snap.agents:
        status = a.status + (f" for {', '.join(a.waiting_for)}" if a.waiting_for else "")
        agents.add_row(
            a.name,
            a.role,
            Text(status, STATUS_STYLE.get(a.status, "")),
            a.task or "-",
            Text(a.todo_summary[:40] or "-", overflow="ellipsis"),
            str(a.turns),
            *([str(a.compactions) if a.compactions else "-"] if ctx else []),
            f"{a.input_tokens:,}/{a.output_tokens:,}",
            f"{a.usd:.4f}",
        )
    phases = Table(expand=True, box=None, show_header=False)
    phases.add_column("phase")
    phases.add_column("bar", ratio=1)
    phases.add_column("n", justify="right")
    for p in snap.phases:
        done = p.completed + p.failed
        phases.add_row(
            p.name,
            ProgressBar(total=max(p.total, 1), completed=done),
            f"{p.completed}/{p.total}" + (f" ({p.failed} failed)" if p.failed else ""),
        )
    tasks = Text()
    for t in snap.tasks:
        tasks.append(
            f"{TASK_ICON.get(t.status, '?')} {t.id} ", "bold" if t.status == "claimed" else ""
        )
    events = Table(expand=True, box=None, show_header=False)
    for e in recent[-8:]:
        events.add_row(
            time.strftime("%H:%M:%S", time.localtime(e.ts / 1000)),
            e.agent or "-",
            e.type,
            describe(e),
        )
    return Group(
        Panel(head),
        Panel(agents, title="agents"),
        Panel(phases, title="phases"),
        Panel(tasks, title="tasks"),
        Panel(events, title="events"),
    )


def worth_a_line(e: Event) -> bool:
    """Plain mode prints every event except routine status flips (idle, working, done),
    which the task and turn events already tell."""
    return e.type != "agent_status" or e.data.get("status") in ("waiting", "dead")


def plain_line(e: Event) -> str:
    ts = time.strftime("%H:%M:%S", time.localtime(e.ts / 1000))
    who = e.agent or "swarm"
    task = f" [{e.task}]" if e.task else ""
    return f"{ts} {who}{task} {e.type} {describe(e)}".rstrip()


async def follow(
    board: Blackboard, mode: str, stop: asyncio.Event, out: IO[str] | None = None
) -> None:
    """Show the run until `stop` is set (or the run finishes and stop is set by the caller).
    mode: 'live' | 'plain' | 'json' | 'none'."""
    out = out or sys.stdout
    if mode == "none":
        await stop.wait()
        return
    last = "0"
    recent: list[Event] = []

    async def drain() -> None:
        nonlocal last
        while True:
            events = await board.events(after=last, count=1000)
            if not events:
                return
            last = events[-1].id
            for e in events:
                if mode == "json":
                    out.write(e.model_dump_json() + "\n")
                elif mode == "plain" and worth_a_line(e):
                    out.write(plain_line(e) + "\n")
            recent.extend(events)
            del recent[:-50]
            out.flush()

    if mode != "live":
        while not stop.is_set():
            await drain()
            await _wait(board, last, stop)
        await drain()
        return

    from rich.live import Live

    console = Console(file=out)
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while not stop.is_set():
            await drain()
            live.update(render(await snapshot(board), recent))
            await _wait(board, last, stop, block_ms=250)
        await drain()
        live.update(render(await snapshot(board), recent))


async def _wait(board: Blackboard, last: str, stop: asyncio.Event, block_ms: int = 500) -> None:
    if stop.is_set():
        return
    await board.wait_events(last if last != "0" else "0-0", block_ms=block_ms)
