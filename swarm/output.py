"""What `swarm run` prints while its agent works: the model's text as it arrives (from the
provider's stream, `TEXT_SINK`), then the session as it is stored (tool calls and their
results as lines), or NDJSON events with --format json (`text_delta` as text arrives, then
the stored messages). Everything but the live text is read from the blackboard, like every
view: the printed conversation is the stored one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from swarm.blackboard.board import Blackboard, TaskView
from swarm.dashboard import describe
from swarm.sessions import _fold

# events worth a line beside the conversation (to stderr in text mode)
NOTABLE = frozenset(
    {
        "provider_retry",
        "provider_error",
        "circuit_open",
        "context_compacted",
        "context_pruned",
        "doom_loop",
        "permission_denied",
        "no_progress",
        "task_failed",
        "run_finished",
        "agent_error",
    }
)
MAX_RESULT_CHARS = 4000  # a tool result in an NDJSON event; longer ones say truncated


class SessionPrinter:
    def __init__(self, board: Blackboard, task_id: str, fmt: str, start: int):
        self.board = board
        self.task_id = task_id
        self.json = fmt == "json"
        self.next = start  # the index of the next stored message to print
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self._done = asyncio.Event()
        self._last_event = "$"
        self._streamed = False  # text of the turn in flight was printed as it arrived

    def live_text(self, piece: str) -> None:
        """The model's reply text as the provider streams it (provider TEXT_SINK)."""
        if self.json:
            self.emit("text_delta", text=piece)
            return
        self._streamed = True
        sys.stdout.write(piece)
        sys.stdout.flush()

    def emit(self, kind: str, **data: Any) -> None:
        sys.stdout.write(json.dumps({"type": kind, **data}, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def header(self, sid: str, model: str, repo: Path, continued: bool) -> None:
        if self.json:
            self.emit("session", id=sid, model=model, repo=str(repo), continued=continued)
            return
        how = "continuing" if continued else "session"
        self.err.print(f"{how} {sid} · {model} · {repo}", style="dim", markup=False)

    async def follow(self) -> None:
        """Print what is stored, woken by the run's events, until stop()."""
        self._last_event = await self.board.last_event_id()
        while not self._done.is_set():
            events = await self.board.wait_events(self._last_event, block_ms=300)
            await self.drain()
            for e in events:
                self._last_event = e.id
                self.event(e.type, e.task, e.data, e.ts)

    async def stop(self, follower: asyncio.Task[None]) -> None:
        """Stop following; print what was stored (and announced) since the last round."""
        self._done.set()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(follower, timeout=5)
        await self.drain()
        if self._last_event != "$":
            for e in await self.board.events(self._last_event):
                self._last_event = e.id
                self.event(e.type, e.task, e.data, e.ts)

    def event(self, kind: str, task: str, data: dict[str, Any], ts: int) -> None:
        if task and task != self.task_id:
            return
        if self.json:
            if kind not in ("agent_status", "tool_call"):  # tool calls come as messages
                self.emit("event", event=kind, ts=ts, data=data)
            return
        if kind in NOTABLE and kind != "run_finished":
            from swarm.blackboard.board import Event

            text = describe(Event(id="0", type=kind, ts=ts, task=task, data=data))
            self.err.print(f"  [{kind}] {text}", style="yellow", markup=False)

    async def drain(self) -> None:
        raw = await self.board.r.lrange(self.board.k.session(self.task_id), self.next, -1)
        for m in raw:
            self.next += 1
            self.message(json.loads(m))

    def message(self, msg: dict[str, Any]) -> None:
        role = msg.get("role")
        for b in msg.get("content", []):
            kind = b.get("type")
            if kind == "text":
                text = b.get("text", "")
                if self.json:
                    self.emit("text" if role == "assistant" else "user", text=text)
                elif role == "assistant" and self._streamed:
                    sys.stdout.write("\n")  # printed as it arrived: end its line
                    self._streamed = False
                elif role == "assistant" and text.strip():
                    self.out.print(text.strip(), markup=False)
            elif kind == "tool_call":
                if self.json:
                    self.emit("tool_call", id=b["id"], name=b["name"], input=b.get("input", {}))
                else:
                    args = json.dumps(b.get("input", {}), ensure_ascii=False)
                    self.out.print(f"→ {b['name']} {_fold(args, 160)}", style="cyan", markup=False)
            elif kind == "tool_result":
                content = str(b.get("content", ""))
                if self.json:
                    self.emit(
                        "tool_result",
                        tool_call_id=b.get("tool_call_id", ""),
                        is_error=bool(b.get("is_error")),
                        content=content[:MAX_RESULT_CHARS],
                        truncated=len(content) > MAX_RESULT_CHARS,
                    )
                else:
                    mark = "✗" if b.get("is_error") else "←"
                    lines = content.count("\n") + 1 if content else 0
                    more = f"  [{lines} lines]" if lines > 1 else ""
                    style = "red" if b.get("is_error") else "dim"
                    self.out.print(
                        f"  {mark} {_fold(content, 160)}{more}", style=style, markup=False
                    )
            elif kind == "thinking" and self.json:
                self.emit("thinking", text=b.get("thinking", ""))

    async def footer(
        self, sid: str, state: str, code: int, reason: str, task: TaskView | None
    ) -> None:
        usage = await self.board.usage("task", self.task_id)
        u = {
            "input_tokens": int(usage.get("input_tokens", 0)),
            "output_tokens": int(usage.get("output_tokens", 0)),
            "turns": int(usage.get("turns", 0)),
            "usd": round(usage.get("usd", 0.0), 6),
        }
        status = task.status if task is not None else ""
        if self.json:
            self.emit(
                "result",
                session=sid,
                state=state,
                status=status,
                exit_code=code,
                result=task.result if task is not None else "",
                error=(task.error if task is not None else "") or reason,
                usage=u,
            )
            return
        why = task.error if task is not None and task.error else reason
        shown = status if status in ("completed", "failed") else state
        self.err.print(
            f"session {sid}: {shown}{' (' + why + ')' if why and code else ''} · "
            f"{u['turns']} turns · {u['input_tokens']:,} in / {u['output_tokens']:,} out · "
            f"${u['usd']:.4f}",
            style="dim",
            markup=False,
        )
        self.err.print(f'continue with: swarm run --session {sid} "..."', style="dim", markup=False)
