"""The interactive dashboard (Textual): the run's header, phases, agents and event tail,
with keys to detach, stop, answer approvals, read an agent's conversation and see the
topology. Everything shown is read from the blackboard; the only writes are the ones a
key asks for (a stop request, an approval's answer, the attended mark)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from swarm import approvals
from swarm.blackboard.board import Blackboard, Event
from swarm.dashboard import STATUS_STYLE, describe
from swarm.status import Snapshot, snapshot
from swarm.tui import model
from swarm.tui.canvas import draw

REDRAW_S = 0.25  # at most 4 redraws a second from new data
IDLE_REFRESH_MS = 1000  # without events, the elapsed clock still moves once a second
ATTEND_TTL_S = 30


class State:
    """The latest stored state the views draw from."""

    def __init__(self) -> None:
        self.snap: Snapshot | None = None
        self.meta: dict[str, str] = {}
        self.tools: dict[str, str] = {}
        self.events: list[Event] = []
        self.sent: list[model.Sent] = []
        self.last_task: dict[str, str] = {}  # each agent's latest task, from the events
        self.approvals: list[Any] = []
        self.error = ""


class _Capture:
    """Textual's capture of print() while it runs, with the real file descriptor behind
    it: in the coordinator's process Ray (re)starts under the dashboard, and ray.init
    enables faulthandler on sys.stderr's descriptor (Textual's own says -1)."""

    def __init__(self, inner: Any, fd: int) -> None:
        self.inner, self.fd = inner, fd

    def write(self, text: str) -> None:
        self.inner.write(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd


class ConfirmStop(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "yes, stop"),
        Binding("n,escape", "answer(False)", "no"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def compose(self) -> ComposeResult:
        yield Static(
            f"Stop run {self.run_id}? The agents hand back their tasks; "
            "`swarm resume` continues it.\n\n[b]y[/] stop    [b]n[/] keep it running",
            id="confirm",
        )

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConversationScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("f", "fold", "fold/unfold"),
    ]

    def __init__(self, board: Blackboard, agent: str, task: str) -> None:
        super().__init__()
        self.board, self.agent_name, self.task_id = board, agent, task
        self.unfolded = False
        self.convo: model.Conversation | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="convo-title")
        with VerticalScroll():
            yield Static(id="convo")
        yield Footer()

    async def on_mount(self) -> None:
        await self.reload()
        self.set_interval(1.0, self.reload)

    async def reload(self) -> None:
        try:
            n = (
                int(await self.board.r.llen(self.board.k.session(self.task_id)))
                if self.task_id
                else 0
            )
            if self.convo is not None and n == self.convo.messages:
                return
            self.convo = await model.conversation(self.board, self.agent_name, self.task_id)
        except Exception as exc:  # Redis away: keep what is shown
            self.query_one("#convo-title", Static).update(f"cannot read the session: {exc}")
            return
        self.show()

    def action_fold(self) -> None:
        self.unfolded = not self.unfolded
        self.show()

    def show(self) -> None:
        c = self.convo
        if c is None:
            return
        title = (
            f"conversation of {c.agent} on task {c.task or '-'}: {c.messages} stored messages"
            + (f", the latest from #{c.shown_from + 1}" if c.shown_from else "")
            + ("  (unfolded)" if self.unfolded else "  (folded: f unfolds)")
        )
        self.query_one("#convo-title", Static).update(Text(title, "bold"))
        body = Text()
        if not c.task:
            body.append(f"{c.agent} has no current task")
        style = {"call": "cyan", "result": "green", "error": "red", "thinking": "dim italic"}
        for f in c.folds:
            body.append(f.line + "\n", style.get(f.kind, "bold" if f.kind == "prompt" else ""))
            if self.unfolded and f.body and f.body.strip() != f.line:
                for line in f.body.splitlines()[:200]:
                    body.append("    " + line + "\n", "dim")
        self.query_one("#convo", Static).update(body)


class TopologyScreen(Screen[None]):
    BINDINGS = [Binding("escape,t", "app.pop_screen", "back")]

    def __init__(self, board: Blackboard) -> None:
        super().__init__()
        self.board = board
        self.recent: list[model.Sent] = []  # the latest messages, with their text

    def compose(self) -> ComposeResult:
        yield Static(id="topo-title")
        yield Static(id="topo")
        yield Static(id="topo-recent")
        yield Footer()

    def on_mount(self) -> None:
        self.on_data(self.app.state)  # type: ignore[attr-defined]

    def on_resize(self) -> None:
        self.on_data(self.app.state)  # type: ignore[attr-defined]

    def on_data(self, state: State) -> None:
        if state.snap is None:
            return
        topo = model.topology(state.meta, state.snap, state.sent)
        busy = sum(1 for e in topo.edges if e.messages)
        self.query_one("#topo-title", Static).update(
            Text(
                f"topology {topo.kind}: {len(topo.nodes)} agents, {len(topo.edges)} edges, "
                f"{busy} carried messages ({len(state.sent)} sent)",
                "bold",
            )
        )
        size = self.size
        height = max(6, size.height - 14)
        self.query_one("#topo", Static).update(draw(topo, size.width - 2, height))
        if [(s.ts, s.sender, s.to) for s in topo.recent] != [
            (s.ts, s.sender, s.to) for s in self.recent
        ]:
            self.recent = topo.recent
            self.run_worker(self._bodies(topo.recent), exclusive=True, group="bodies")
        self._show_recent()

    async def _bodies(self, sent: list[model.Sent]) -> None:
        with contextlib.suppress(Exception):  # Redis away: the messages without their text
            self.recent = await model.with_bodies(self.board, sent)
            self._show_recent()

    def _show_recent(self) -> None:
        recent = Text("recent messages:\n" if self.recent else "no messages sent yet\n", "bold")
        for s in self.recent:
            ts = time.strftime("%H:%M:%S", time.localtime(s.ts / 1000))
            body = " ".join(s.body.split())
            body = body if len(body) <= 100 else body[:99] + "…"
            recent.append(f"  {ts} {s.sender} → {s.to}", "")
            recent.append(f"  {body}\n" if body else "\n", "italic")
        self.query_one("#topo-recent", Static).update(recent)


class ApprovalsScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("j,down", "move(1)", "next", show=False),
        Binding("k,up", "move(-1)", "previous", show=False),
        Binding("y", "answer('allow', 'once')", "allow"),
        Binding("n", "answer('deny', 'once')", "deny"),
        Binding("A", "answer('allow', 'always')", "always allow"),
    ]

    def __init__(self, board: Blackboard) -> None:
        super().__init__()
        self.board = board
        self.index = 0
        self.note = ""

    def compose(self) -> ComposeResult:
        yield Static(id="approvals")
        yield Footer()

    def on_mount(self) -> None:
        self.on_data(self.app.state)  # type: ignore[attr-defined]

    def on_data(self, state: State) -> None:
        pending = state.approvals
        self.index = max(0, min(self.index, len(pending) - 1))
        out = Text()
        out.append(
            f"{len(pending)} pending approval(s): y allow   n deny   A always allow\n\n", "bold"
        )
        for i, a in enumerate(pending):
            line = f"{a.agent} [{a.task}] {a.tool}: {a.summary}  (rule {a.rule})"
            out.append(
                ("▶ " if i == self.index else "  ") + line + "\n",
                "reverse" if i == self.index else "",
            )
        if self.note:
            out.append("\n" + self.note + "\n", "italic")
        self.query_one("#approvals", Static).update(out)

    def action_move(self, step: int) -> None:
        self.index += step
        self.on_data(self.app.state)  # type: ignore[attr-defined]

    async def action_answer(
        self, decision: approvals.Decision, remember: approvals.Remember
    ) -> None:
        pending = self.app.state.approvals  # type: ignore[attr-defined]
        if not pending:
            return
        a = pending[self.index]
        ok = await approvals.answer(self.board, a.id, decision, remember=remember)
        verb = {"allow": "allowed", "deny": "denied"}[decision]
        self.note = (
            f"{verb}{' always' if remember == 'always' else ''}: {a.tool} for {a.agent}"
            if ok
            else f"{a.id} was already answered"
        )
        self.app.state.approvals = [p for p in pending if p.id != a.id]  # type: ignore[attr-defined]
        self.on_data(self.app.state)  # type: ignore[attr-defined]


class DashboardApp(App[str]):
    """Returns how it ended: 'finished' (the run is over), 'detached' (q; the run goes
    on) or 'quit' (q in a viewer that hosts no run)."""

    TITLE = "swarm"
    ENABLE_COMMAND_PALETTE = False  # every action has its key
    CSS = """
    #header { height: auto; padding: 0 1; background: $boost; }
    #phases, #agents, #events { height: auto; padding: 0 1; }
    #agents { margin-top: 1; }
    #events { margin-top: 1; }
    ConfirmStop { align: center middle; }
    #confirm { width: 70; height: auto; padding: 1 2; border: thick $error; background: $panel; }
    """
    BINDINGS = [
        Binding("q", "detach", "detach"),
        Binding("s", "stop_run", "stop"),
        Binding("a", "approvals", "approvals"),
        Binding("t", "topology", "topology"),
        Binding("j,down", "move(1)", "next agent", show=False),
        Binding("k,up", "move(-1)", "previous agent", show=False),
        Binding("enter", "conversation", "conversation"),
        Binding("ctrl+c", "interrupt", "interrupt", show=False, priority=True),
    ]

    def __init__(
        self,
        board: Blackboard,
        stop: asyncio.Event,
        hosts_run: bool = False,
        on_interrupt: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._capture_stdout = _Capture(self._capture_stdout, 1)  # type: ignore[assignment]
        self._capture_stderr = _Capture(self._capture_stderr, 2)  # type: ignore[assignment]
        self.board = board
        self.finished = stop
        self.hosts_run = hosts_run
        self.on_interrupt = on_interrupt
        self.state = State()
        self.last = "0"
        self.selected = 0
        self.redraws = 0  # data-driven redraws (the benchmark and tests read it)
        self._shown: dict[str, Any] = {}
        self.who = f"dashboard:{socket.gethostname()}:{os.getpid()}"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="header")
            yield Static(id="phases")
            yield Static(id="agents")
            yield Static(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.run_worker(self._feed(), exclusive=True, group="feed")

    # -- data --------------------------------------------------------------------------
    async def _feed(self) -> None:
        attended_at = 0.0
        while True:
            t0 = time.monotonic()
            done = self.finished.is_set()
            try:
                await self._load()
                self.state.error = ""
                if time.monotonic() - attended_at > ATTEND_TTL_S / 3:
                    await approvals.attach(self.board, self.who, ATTEND_TTL_S)
                    attended_at = time.monotonic()
            except Exception as exc:  # a Redis outage: say so, keep the last state
                self.state.error = f"{type(exc).__name__}: {exc}"[:200]
            self._draw()
            if done:
                self.exit("finished")
                return
            if not self.finished.is_set():
                with contextlib.suppress(Exception):
                    await self.board.wait_events(
                        self.last if self.last != "0" else "0-0", IDLE_REFRESH_MS, count=1
                    )
            await asyncio.sleep(max(0.0, REDRAW_S - (time.monotonic() - t0)))

    async def _load(self) -> None:
        # a long run's history is read a few thousand events a round, so the first
        # draw does not wait for all of it (the next round starts at once while some
        # remain: wait_events returns immediately)
        for _ in range(5):
            events = await self.board.events(after=self.last, count=1000)
            if not events:
                break
            self.last = events[-1].id
            self.state.events.extend(events)
            del self.state.events[:-200]
            for e in events:
                if e.agent and e.task and e.type in ("task_claimed", "task_resumed"):
                    self.state.last_task[e.agent] = e.task
                sent = model.sent_of(e, self.state.last_task.get(e.agent, ""))
                if sent is not None:
                    self.state.sent.append(sent)
            del self.state.sent[:-5000]
        snap = await snapshot(self.board)
        self.state.snap = snap
        if not self.state.meta:
            meta = await self.board.meta()
            self.state.meta = {**meta, "edges": await self.board.edges_json()}
        self.state.tools = await model.current_tools(self.board, snap)
        self.state.approvals = list(await approvals.pending(self.board))

    async def release(self) -> None:
        """The view is closed: the run is no longer attended by it (a question waiting
        for a person is then denied unless someone else is attached or approvals.timeout_s
        is set)."""
        with contextlib.suppress(Exception):
            await approvals.detach(self.board, self.who)

    # -- drawing -----------------------------------------------------------------------
    def _update(self, widget_id: str, key: Any, renderable: Any) -> None:
        if self._shown.get(widget_id) == key:
            return
        self._shown[widget_id] = key
        self.query_one(f"#{widget_id}", Static).update(renderable)

    def _draw(self) -> None:
        state, snap = self.state, self.state.snap
        self.redraws += 1
        on_data = getattr(self.screen, "on_data", None)
        if on_data is not None and self.screen is not self.screen_stack[0]:
            on_data(state)
        if snap is None:
            self._update("header", state.error, Text(state.error or "reading the run..."))
            return
        lines = model.header_lines(snap)
        if state.approvals:
            lines.append(f"{len(state.approvals)} approval(s) pending: press a")
        if state.error:
            lines.append(f"blackboard unreachable: {state.error}")
        self._update("header", tuple(lines), Text("\n".join(lines), "bold"))
        phases = Table(box=None, show_header=False, expand=True)
        phases.add_column("phase")
        phases.add_column("pct", justify="right")
        phases.add_column("n", justify="right")
        for p in snap.phases:
            phases.add_row(
                p.name,
                f"{model.phase_percent(p.total, p.completed)}%",
                f"{p.completed}/{p.total}" + (f" ({p.failed} failed)" if p.failed else ""),
            )
        key = tuple((p.name, p.completed, p.failed, p.total) for p in snap.phases)
        self._update("phases", key, phases)
        self._draw_agents()
        rows = model.tail(state.events, 10)
        events = Table(box=None, show_header=False, expand=True)
        for e in rows:
            style = "yellow" if e.type in model.NOTABLE else ""
            events.add_row(
                time.strftime("%H:%M:%S", time.localtime(e.ts / 1000)),
                e.agent or "-",
                Text(e.type, style),
                Text(describe(e), overflow="ellipsis", no_wrap=True),
            )
        self._update("events", tuple(e.id for e in rows), events)

    def _draw_agents(self) -> None:
        snap = self.state.snap
        if snap is None:
            return
        self.selected = max(0, min(self.selected, len(snap.agents) - 1))
        table = Table(box=None, header_style="bold", expand=True)
        # compactions only once there are any: a narrow terminal has no room to spare
        ctx = any(a.compactions for a in snap.agents)
        columns = ["agent", "status", "task", "tool", "todo", "turns", *(["ctx"] if ctx else [])]
        for col in [*columns, "tokens", "$"]:
            table.add_column(col, justify="right" if col in ("turns", "ctx", "$") else "left")
        key = []
        for i, a in enumerate(snap.agents):
            status = model.agent_status(a)
            row = (
                ("▶ " if i == self.selected else "  ") + a.name,
                status,
                a.task or "-",
                self.state.tools.get(a.name, "") or "-",
                model.agent_todo(a) or "-",
                str(a.turns),
                *([str(a.compactions or "-")] if ctx else []),
                f"{a.input_tokens:,}/{a.output_tokens:,}",
                f"{a.usd:.4f}",
            )
            key.append(row)
            table.add_row(
                row[0],
                Text(status, "yellow" if a.waiting_for else STATUS_STYLE.get(a.status, "")),
                *row[2:4],
                Text(row[4], overflow="ellipsis", no_wrap=True),
                *row[5:],
                style="reverse" if i == self.selected else "",
            )
        self._update("agents", tuple(key), table)

    # -- keys --------------------------------------------------------------------------
    def action_move(self, step: int) -> None:
        self.selected += step
        self._draw_agents()

    def action_detach(self) -> None:
        self.exit("detached" if self.hosts_run else "quit")

    def action_interrupt(self) -> None:
        if self.on_interrupt is not None:
            self.on_interrupt()
        else:
            self.exit("quit")

    async def action_stop_run(self) -> None:
        snap = self.state.snap
        if snap is None or await self.board.run_state() != "running":
            self.notify("the run is not running")
            return

        async def answered(yes: bool | None) -> None:
            if yes:
                ok = await self.board.request_stop("stopped from the dashboard")
                self.notify("stopping: agents hand back their tasks" if ok else "not running")

        self.push_screen(ConfirmStop(snap.run_id), answered)

    def action_approvals(self) -> None:
        self.push_screen(ApprovalsScreen(self.board))

    def action_topology(self) -> None:
        self.push_screen(TopologyScreen(self.board))

    def action_conversation(self) -> None:
        snap = self.state.snap
        if snap is None or not snap.agents:
            return
        a = snap.agents[self.selected]
        # an agent between tasks: the one it worked last
        task = a.task or self.state.last_task.get(a.name, "")
        self.push_screen(ConversationScreen(self.board, a.name, task))
