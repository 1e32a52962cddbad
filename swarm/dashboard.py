"""The view of a run, fed by the event stream: the interactive dashboard (swarm/tui) on
a TTY, plain timestamped lines otherwise, NDJSON events with --json. Shows only stored
values."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import IO

from swarm.blackboard.board import Blackboard, Event

BATCH = 1000  # events read at a time
GATHER_S = 0.1  # after a read, events gather this long before the next (lines lag by it)

STATUS_STYLE = {
    "working": "bold green",
    "waiting": "yellow",
    "idle": "dim",
    "done": "cyan",
    "dead": "bold red",
    "starting": "dim",
}


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
    if e.type == "merge_queued":
        return f"in the merge queue ({str(d.get('commit', ''))[:10]})"
    if e.type == "merged":
        return f"merged {str(d.get('commit', ''))[:10]} ({d.get('files', 0)} files)"
    if e.type in ("merge_retry", "merge_gave_up", "rework_started"):
        return str(d.get("reason") or d.get("kind") or "")
    if e.type == "retry_started":
        return f"retry after: {str(d.get('previous_error', ''))[:100]}"
    if e.type == "approval_requested":
        return f"asks: {d.get('summary', d.get('tool', ''))} (rule {d.get('rule')}); press a"
    if e.type == "approval_answered":
        return f"{d.get('tool')}: {d.get('decision')} ({d.get('remember')}) by {d.get('by')}"
    if e.type == "run_finished":
        return f"{d.get('state')} {d.get('reason', '')}".strip()
    return json.dumps(d)[:120] if d else ""


async def ended_line(board: Blackboard) -> str:
    from swarm.status import snapshot

    snap = await snapshot(board)
    done = sum(t.status == "completed" for t in snap.tasks)
    failed = sum(t.status == "failed" for t in snap.tasks)
    reason = f" ({snap.reason})" if snap.reason else ""
    return (
        f"run {snap.run_id}: {snap.state}{reason}; tasks {done}/{len(snap.tasks)} completed, "
        f"{failed} failed; details: swarm status {snap.run_id}"
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


class _Guarded:
    """stdout that never stops the run: once a write fails (a closed pipe, a terminal
    gone), later output is dropped."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.broken = False

    def write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.out.write(text)
        except (OSError, ValueError):
            self._broke()

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self.out.flush()
        except (OSError, ValueError):
            self._broke()

    def _broke(self) -> None:
        """The reader is gone. Later prints of this process (the run's summary) and the
        interpreter's last flush go to /dev/null instead of failing (Python would exit
        120 on a flush error, not with the run's exit code)."""
        self.broken = True
        if self.out is sys.stdout:
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, sys.stdout.fileno())
                os.close(null)
            except (OSError, ValueError):
                pass


async def follow(
    board: Blackboard,
    mode: str,
    stop: asyncio.Event,
    out: IO[str] | None = None,
    on_detach: Callable[[], None] | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> None:
    """Show the run until `stop` is set (or the run finishes and stop is set by the caller).
    mode: 'live' (the interactive dashboard) | 'plain' | 'json' | 'none'.

    ``on_detach`` is given by the process that hosts the run: `q` then closes the
    interactive view, calls it, and the run goes on here with plain lines. Without it
    (`swarm watch`), `q` just ends the view."""
    guarded = _Guarded(out or sys.stdout)
    if mode == "none":
        await stop.wait()
        return
    last = "0"
    if mode == "live":
        from swarm.tui.app import DashboardApp

        app = DashboardApp(board, stop, hosts_run=on_detach is not None, on_interrupt=on_interrupt)
        try:
            outcome = await app.run_async()
        except Exception as exc:  # the terminal went away: the run goes on without a view
            outcome = "failed"
            print(f"warning: the dashboard stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        await app.release()
        last = app.last
        if outcome != "detached" and outcome != "failed":
            return
        if outcome == "detached" and on_detach is not None:
            on_detach()
            guarded.write(
                f"detached: run {board.run_id} goes on in this process (pid {os.getpid()}), "
                f"printing plain lines; `swarm watch {board.run_id}` re-attaches, "
                "Ctrl-C here interrupts the run\n"
            )
        mode = "plain"

    def show(events: list[Event]) -> None:
        nonlocal last
        if not events:
            return
        last = events[-1].id
        for e in events:
            if mode == "json":
                guarded.write(e.model_dump_json() + "\n")
            elif mode == "plain" and worth_a_line(e):
                guarded.write(plain_line(e) + "\n")
        guarded.flush()

    async def drain() -> None:
        while events := await board.events(after=last, count=BATCH):
            show(events)

    while not stop.is_set():
        # one blocking read hands over what arrived; a busy run writes hundreds of
        # events a second, so the next read waits a moment for them to gather
        events = await board.wait_events(last if last != "0" else "0-0", 500, count=BATCH)
        show(events)
        if len(events) < BATCH and not stop.is_set():
            await asyncio.sleep(GATHER_S)
    await drain()
