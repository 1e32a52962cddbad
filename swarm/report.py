"""Reports of a run, built only from its stored state (a status.Snapshot) and measured
times: the Markdown progress report (`swarm report`), JSON, JUnit XML and the GitHub step
summary (`swarm ci --junit FILE`, $GITHUB_STEP_SUMMARY).

Nothing is estimated or made up. The only figures are counts of tasks, agents and phases,
the usage the providers reported (tokens, turns, cost), attempts, failure reasons, and
wall times computed from stored timestamps. A task's wall time (JUnit `time`, the per-task
table) is the time from its last claim to its end, from the `claimed_at` and `finished_at`
fields of its task hash; a task without both has none and none is shown.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from swarm.blackboard.board import TERMINAL, Blackboard
from swarm.coordinator import exit_code_for
from swarm.status import AgentRow, PhaseRow, Snapshot, TaskRow, snapshot

FORMATS = ("md", "json", "junit")
TaskTimes = Mapping[str, float]  # task id -> wall seconds (only tasks that have one)

EXIT_MEANING = {
    "completed": "every task completed",
    "failed": "a task failed",
    "budget": "the budget is exhausted",
    "timeout": "the wall time is exhausted",
    "interrupted": "interrupted; `swarm resume RUN` continues",
}
STATE_ICON = {
    "completed": "✅",
    "failed": "❌",
    "running": "🔄",
    "budget": "💸",
    "timeout": "⏱️",
    "interrupted": "⏹️",
}
TASK_ICON = {"completed": "✅", "failed": "❌", "claimed": "🔄", "ready": "🟡", "pending": "⏸️"}
AGENT_ICON = {
    "done": "✅",
    "working": "🔄",
    "waiting": "⏸️",
    "idle": "💤",
    "starting": "⏳",
    "dead": "❌",
    "stopped": "⏹️",
}

# ---- figures derived from the snapshot ------------------------------------------------


def percent(done: int, total: int) -> int:
    """Whole percent, rounded down: 100 only when everything is done."""
    return 100 * done // total if total else 0


def exit_code(snap: Snapshot) -> int | None:
    """The exit code the run ended with (None while it runs)."""
    return None if snap.state == "running" else exit_code_for(snap.state)


def wall_s(snap: Snapshot) -> float | None:
    """Seconds from the run's creation to its end (None while it runs)."""
    if snap.created_ms and snap.finished_ms and snap.finished_ms >= snap.created_ms:
        return (snap.finished_ms - snap.created_ms) / 1000
    return None


def counts(tasks: list[TaskRow]) -> dict[str, int]:
    out = {s: 0 for s in ("completed", "failed", "claimed", "ready", "pending")}
    for t in tasks:
        out[t.status] = out.get(t.status, 0) + 1
    return out


def fmt_ts(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def fmt_s(seconds: float) -> str:
    return f"{seconds:,.1f} s"


def fmt_usd(usd: float) -> str:
    return f"${usd:.4f}"


# characters XML 1.0 does not allow, and that a terminal or a Markdown page should not
# get raw either (control characters from tool output, lone surrogates)
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(text: str) -> str:
    """Text XML 1.0 can carry: forbidden characters become visible escapes (\\x1b)."""

    def esc(m: re.Match[str]) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _NOT_XML.sub(esc, text)


def one_line(text: str, limit: int = 500) -> str:
    """Whitespace collapsed, control characters escaped, cut at `limit` characters (…)."""
    flat = " ".join(xml_text(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _icon_state(state: str) -> str:
    return f"{STATE_ICON[state]} {state}" if state in STATE_ICON else state


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return one_line(text, 200).replace("\\", "\\\\").replace("|", "\\|")


def _role_of(t: TaskRow, agents: dict[str, AgentRow]) -> str:
    if t.role:
        return t.role
    if t.agent in agents:
        return agents[t.agent].role
    return t.agent or "other"


def _open_needs(t: TaskRow, status: dict[str, str]) -> list[str]:
    return [n for n in t.needs if status.get(n) != "completed"]


def _task_state(t: TaskRow, status: dict[str, str]) -> str:
    """What an unchecked task is doing, from its stored fields."""
    if t.status == "failed":
        return f"❌ failed: {one_line(t.error) or 'no reason stored'}"
    if t.status == "claimed":
        who = f" by {t.assignee}" if t.assignee else ""
        return f"🔄 in progress{who} (attempt {t.attempts})"
    if t.status == "pending":
        needs = _open_needs(t, status)
        return "⏸️ pending" + (": needs " + ", ".join(f"`{n}`" for n in needs) if needs else "")
    if t.status == "ready":
        return "🟡 ready" + (f" (attempt {t.attempts} was handed back)" if t.attempts else "")
    return t.status


def _phase_heading(p: PhaseRow, tasks: list[TaskRow]) -> str:
    pct = percent(p.completed, p.total)
    if p.total and p.completed == p.total:
        icon = "✅"
    elif p.failed and all(t.status in TERMINAL for t in tasks):
        icon = "❌"
    elif any(t.status in ("completed", "failed", "claimed") for t in tasks):
        icon = "🔄"
    else:
        icon = "⏸️"
    extra = f", {p.failed} failed" if p.failed else ""
    return f"### {icon} {p.name} ({pct}% complete{extra})"


def _task_line(t: TaskRow, status: dict[str, str]) -> str:
    title = one_line(t.title, 200) or t.id
    if t.status == "completed":
        by = f", {t.assignee}" if t.assignee else ""
        merged = (
            f" — merged `{t.merge_commit[:10]}`: {len(t.files)} file(s), +{t.added} -{t.removed}"
            if t.merge_commit
            else ""
        )
        return f"- [x] {title} (`{t.id}`{by}){merged}"
    return f"- [ ] {title} (`{t.id}`) — {_task_state(t, status)}"


def _group_label(role: str, tasks: list[TaskRow]) -> str:
    done = sum(t.status == "completed" for t in tasks)
    failed = sum(t.status == "failed" for t in tasks)
    if done == len(tasks):
        return f"#### {role} (✅ complete)"
    if failed and all(t.status in TERMINAL for t in tasks):
        return f"#### {role} (❌ {failed} failed, {percent(done, len(tasks))}%)"
    started = any(t.status in ("completed", "failed", "claimed") for t in tasks)
    state = "🔄 in progress" if started else "⏸️ not started"
    return f"#### {role} ({state} - {percent(done, len(tasks))}%)"


def _agent_line(a: AgentRow, tasks: list[TaskRow], by_id: dict[str, TaskRow]) -> str:
    icon = AGENT_ICON.get(a.status, "•")
    if a.status == "working" and a.task:
        title = by_id[a.task].title if a.task in by_id else ""
        doing = f"working on `{a.task}`" + (f" ({one_line(title, 120)})" if title else "")
        if a.todo_summary:
            doing += f", todo {a.todo_summary}"
    elif a.status == "waiting":
        doing = "waiting for " + (", ".join(f"`{w}`" for w in a.waiting_for) or "other tasks")
    else:
        doing = a.status or "unknown"
    mine_done = [t.id for t in tasks if t.assignee == a.name and t.status == "completed"]
    mine_failed = [t.id for t in tasks if t.assignee == a.name and t.status == "failed"]
    parts = [f"{icon} {doing}"]
    if mine_done:
        parts.append("completed " + ", ".join(f"`{i}`" for i in mine_done))
    if mine_failed:
        parts.append("failed " + ", ".join(f"`{i}`" for i in mine_failed))
    usage = (
        f"{a.turns} turns, {a.input_tokens:,} in / {a.output_tokens:,} out tokens, {fmt_usd(a.usd)}"
    )
    return f"**{a.name}** ({a.role}): " + "; ".join(parts) + f" · {usage}"


# ---- Markdown progress report ----------------------------------------------------------


def markdown(snap: Snapshot, task_times: TaskTimes | None = None) -> str:
    """The progress report: phases with completion, task checklists, agent activity,
    overall measured figures, failures and what remains. Only stored or measured values."""
    times = task_times or {}
    status = {t.id: t.status for t in snap.tasks}
    by_id = {t.id: t for t in snap.tasks}
    agents = {a.name: a for a in snap.agents}
    c = counts(snap.tasks)
    total = len(snap.tasks)
    code = exit_code(snap)
    out: list[str] = [f"# {snap.name or snap.run_id} progress report", ""]

    head = f"**Run** `{snap.run_id}` · **state** {_icon_state(snap.state)}"
    if code is not None:
        head += f" · exit code {code}"
        if snap.state in EXIT_MEANING:
            head += f" ({EXIT_MEANING[snap.state]})"
    out.append(head)
    if snap.reason:
        out += ["", f"**Reason**: {one_line(snap.reason)}"]
    if snap.repo:
        out += ["", f"**Repository**: `{snap.repo}`"]
    if snap.branch:
        kept = [t.id for t in snap.tasks if t.status != "completed"]
        out += ["", f"**Branch**: `{snap.branch}` (from `{snap.base_commit[:10]}`)"]
        if kept:
            out.append(
                "Unfinished tasks keep their branches: "
                + ", ".join(f"`{snap.branch}-tasks/{k}`" for k in kept)
            )
    if snap.created_ms:
        when = f"**Started** {fmt_ts(snap.created_ms)}"
        if snap.finished_ms:
            when += f" · **finished** {fmt_ts(snap.finished_ms)}"
        elif snap.state == "running":
            when += " · still running"
        out += ["", when]

    out += ["", "## 🎯 Phases", ""]
    for p in snap.phases:
        mine = [t for t in snap.tasks if t.phase == p.name]
        out += [_phase_heading(p, mine), ""]
        groups: dict[str, list[TaskRow]] = {}
        for t in mine:
            groups.setdefault(_role_of(t, agents), []).append(t)
        if len(groups) > 1 and any(len(g) > 1 for g in groups.values()):
            for role, group in groups.items():
                out += [_group_label(role, group)]
                out += [_task_line(t, status) for t in group]
                out.append("")
        else:
            out += [_task_line(t, status) for t in mine]
            out.append("")
    unphased = [t for t in snap.tasks if not t.phase]
    if unphased:
        done = sum(t.status == "completed" for t in unphased)
        out += [f"### Tasks created during the run ({percent(done, len(unphased))}% complete)", ""]
        out += [_task_line(t, status) for t in unphased]
        out.append("")

    u = snap.usage
    out += ["### 📊 Overall Progress"]
    detail = [f"{c['failed']} failed"]
    for key, label in (("claimed", "in progress"), ("ready", "ready"), ("pending", "pending")):
        if c.get(key):
            detail.append(f"{c[key]} {label}")
    out.append(
        f"- **Tasks**: {c['completed']}/{total} completed "
        f"({percent(c['completed'], total)}%), " + ", ".join(detail)
    )
    phases_done = sum(p.total > 0 and p.completed == p.total for p in snap.phases)
    out.append(f"- **Phases complete**: {phases_done}/{len(snap.phases)}")
    by_status: dict[str, int] = {}
    for a in snap.agents:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    agent_detail = ", ".join(f"{n} {s}" for s, n in by_status.items())
    out.append(f"- **Agents**: {len(snap.agents)}" + (f" ({agent_detail})" if agent_detail else ""))
    attempts = sum(t.attempts for t in snap.tasks)
    retried = sum(t.attempts > 1 for t in snap.tasks)
    out.append(
        f"- **Attempts**: {attempts}"
        + (
            f" ({retried} {'task' if retried == 1 else 'tasks'} needed more than one)"
            if retried
            else ""
        )
    )
    turns = f"- **Model turns**: {u.turns}"
    if u.requests:
        turns += f" ({u.requests} requests)"
    out.append(turns)
    tokens = f"- **Tokens**: {u.input_tokens:,} input / {u.output_tokens:,} output"
    if u.cache_read_tokens or u.cache_creation_tokens:
        tokens += f" (cache: {u.cache_read_tokens:,} read, {u.cache_creation_tokens:,} written)"
    out.append(tokens)
    if u.compactions or u.prunes:
        out.append(
            f"- **Context**: {u.compactions} compaction(s), {u.prunes} prune(s) of old tool "
            "output to stay inside the context window"
        )
    out.append(f"- **Cost**: {fmt_usd(u.usd)}")
    wall = wall_s(snap)
    if wall is not None:
        out.append(f"- **Wall time**: {fmt_s(wall)}")
    out.append("")

    if snap.agents:
        out += ["### 🔨 Swarm Activity"]
        out += [f"{i}. {_agent_line(a, snap.tasks, by_id)}" for i, a in enumerate(snap.agents, 1)]
        out.append("")

    failed = [t for t in snap.tasks if t.status == "failed"]
    if failed or (snap.reason and snap.state not in ("completed", "running")):
        out += ["### 🐛 Failures"]
        if snap.state not in ("completed", "running", "failed") and snap.reason:
            out.append(f"- run stopped ({snap.state}): {one_line(snap.reason)}")
        for t in failed:
            who = f", {t.assignee}" if t.assignee else ""
            tries = f", {t.attempts} attempts" if t.attempts else ", never started"
            out.append(
                f"- `{t.id}` {one_line(t.title, 200)}{who}{tries}: "
                f"{one_line(t.error) or 'no reason stored'}"
            )
        out.append("")

    remaining = [t for t in snap.tasks if t.status not in TERMINAL]
    order = {"claimed": 0, "ready": 1, "pending": 2}
    remaining.sort(key=lambda t: order.get(t.status, 3))
    if remaining:
        out += ["### 🚧 Remaining Tasks"]
        out += [
            f"{i}. `{t.id}` {one_line(t.title, 200)} — {_task_state(t, status)}"
            for i, t in enumerate(remaining, 1)
        ]
        out.append("")

    if snap.tasks:
        out += ["### 📈 Measured per Task", ""]
        cols = ["Task", "Status", "Agent", "Attempts", "Turns", "Tokens in / out", "Cost"]
        if times:
            cols.append("Wall time")
        out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for t in snap.tasks:
            row = [
                f"`{cell(t.id)}`",
                f"{TASK_ICON.get(t.status, '')} {t.status}",
                cell(t.assignee) or "-",
                str(t.attempts),
                str(t.turns),
                f"{t.input_tokens:,} / {t.output_tokens:,}",
                fmt_usd(t.usd),
            ]
            if times:
                row.append(fmt_s(times[t.id]) if t.id in times else "-")
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    out += [
        "---",
        "",
        "*Generated by `swarm report` from the run's stored state: every figure above is "
        "a stored count or a measured value.*",
    ]
    return "\n".join(out) + "\n"


# ---- JSON ------------------------------------------------------------------------------


def json_report(snap: Snapshot, task_times: TaskTimes | None = None) -> str:
    """The snapshot (as `swarm status --json`) plus the figures the reports derive."""
    times = task_times or {}
    c = counts(snap.tasks)
    data: dict[str, Any] = snap.model_dump()
    data["exit_code"] = exit_code(snap)
    data["wall_s"] = wall_s(snap)
    data["progress"] = {
        "tasks": len(snap.tasks),
        **c,
        "percent_complete": percent(c["completed"], len(snap.tasks)),
    }
    for p in data["phases"]:
        p["percent_complete"] = percent(p["completed"], p["total"])
    for t in data["tasks"]:
        t["wall_s"] = times.get(t["id"])
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


# ---- JUnit XML -------------------------------------------------------------------------


def _s(value: float) -> str:
    return f"{value:.3f}"


def junit_xml(snap: Snapshot, task_times: TaskTimes | None = None) -> str:
    """One testsuite per phase, one testcase per task (classname = phase). Failed tasks
    carry <failure message=reason>, unfinished ones <skipped message="not run: status X">;
    `time` only where a task's wall time is known."""
    times = task_times or {}
    c = counts(snap.tasks)
    root = ET.Element(
        "testsuites",
        name=xml_text(" ".join(x for x in ("swarm", snap.name, snap.run_id) if x)),
        tests=str(len(snap.tasks)),
        failures=str(c["failed"]),
        errors="0",
        skipped=str(len(snap.tasks) - c["completed"] - c["failed"]),
    )
    wall = wall_s(snap)
    if wall is not None:
        root.set("time", _s(wall))
    phase_names = [p.name for p in snap.phases]
    if any(not t.phase for t in snap.tasks):
        phase_names.append("")
    if snap.created_ms:  # when the run started (a phase's own start is not stored)
        root.set(
            "timestamp", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(snap.created_ms / 1000))
        )
    for phase in phase_names:
        mine = [t for t in snap.tasks if t.phase == phase]
        label = phase or "(created during the run)"
        pc = counts(mine)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=xml_text(label),
            tests=str(len(mine)),
            failures=str(pc["failed"]),
            errors="0",
            skipped=str(len(mine) - pc["completed"] - pc["failed"]),
        )
        if mine and all(t.id in times for t in mine):
            suite.set("time", _s(sum(times[t.id] for t in mine)))
        props = ET.SubElement(suite, "properties")
        for key, value in (
            ("run_id", snap.run_id),
            ("run_state", snap.state),
            ("run_reason", snap.reason),
        ):
            if value:
                ET.SubElement(props, "property", name=key, value=xml_text(value))
        for t in mine:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=xml_text(label),
                name=xml_text(f"{t.id}: {t.title}" if t.title else t.id),
            )
            if t.id in times:
                case.set("time", _s(times[t.id]))
            detail = (
                f"agent: {t.assignee or '-'}; attempts: {t.attempts}; turns: {t.turns}; "
                f"tokens: {t.input_tokens} in / {t.output_tokens} out; usd: {t.usd:.6f}"
            )
            if t.status == "failed":
                fail = ET.SubElement(
                    case,
                    "failure",
                    message=xml_text(t.error or "no reason stored"),
                    type="task_failed",
                )
                fail.text = xml_text(f"{t.error}\n{detail}")
            elif t.status != "completed":
                ET.SubElement(case, "skipped", message=xml_text(f"not run: status {t.status}"))
            else:
                out = ET.SubElement(case, "system-out")
                out.text = xml_text(f"{detail}\n{t.result}")
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---- GitHub step summary ---------------------------------------------------------------


def step_summary(
    snap: Snapshot, task_times: TaskTimes | None = None, verdict: str = "", why: str = ""
) -> str:
    """A compact Markdown summary for $GITHUB_STEP_SUMMARY: the verdict (`swarm ci`),
    state, what the exit code means, one table row per task, what was merged and where
    the branch is, cost against the budget, failures and why."""
    times = task_times or {}
    c = counts(snap.tasks)
    total = len(snap.tasks)
    code = exit_code(snap)
    out = [f"### swarm `{snap.name or snap.run_id}`: {_icon_state(snap.state)}", ""]
    if verdict:
        icon = "✅" if verdict == "success" else "❌"
        out += [f"**Verdict: {icon} {verdict}** — {one_line(why)}", ""]
    line = f"Run `{snap.run_id}`"
    if code is not None:
        line += f" · exit code {code}"
        if snap.state in EXIT_MEANING:
            line += f": {EXIT_MEANING[snap.state]}"
    line += (
        f" · {c['completed']}/{total} tasks completed ({percent(c['completed'], total)}%)"
        f", {c['failed']} failed"
    )
    wall = wall_s(snap)
    if wall is not None:
        line += f" · {fmt_s(wall)}"
    out.append(line)
    if snap.reason:
        out += ["", f"Reason: {one_line(snap.reason)}"]
    out += [""]
    cols = ["Task", "Phase", "Status", "Agent", "Attempts", "Turns", "Cost"]
    if times:
        cols.append("Time")
    out += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for t in snap.tasks:
        row = [
            f"`{cell(t.id)}` {cell(t.title)}".strip(),
            cell(t.phase) or "-",
            f"{TASK_ICON.get(t.status, '')} {t.status}",
            cell(t.assignee) or "-",
            str(t.attempts),
            str(t.turns),
            fmt_usd(t.usd),
        ]
        if times:
            row.append(fmt_s(times[t.id]) if t.id in times else "-")
        out.append("| " + " | ".join(row) + " |")
    u = snap.usage
    cost = fmt_usd(u.usd) + (f" of the {fmt_usd(snap.max_usd)} budget" if snap.max_usd else "")
    out += [
        "",
        f"**Usage**: {u.input_tokens:,} input + {u.output_tokens:,} output tokens · "
        f"{u.turns} model turns · {cost}",
    ]
    if snap.workspace == "worktree" and snap.branch:
        merged = [t for t in snap.tasks if t.merge_commit]
        out += [
            "",
            f"**Branch**: `{snap.branch}` (from `{snap.base_commit[:12]}`) · "
            f"{len(merged)} task(s) merged"
            + (": " + ", ".join(f"`{cell(t.id)}`" for t in merged) if merged else ""),
        ]
    failed = [t for t in snap.tasks if t.status == "failed"]
    if failed:
        out += ["", "**Failures**"]
        out += [f"- `{t.id}`: {one_line(t.error) or 'no reason stored'}" for t in failed]
    return "\n".join(out) + "\n\n"


# ---- reading a run, writing files ------------------------------------------------------


async def task_times(board: Blackboard, snap: Snapshot) -> dict[str, float]:
    """Wall seconds of each finished task that was claimed: `finished_at - claimed_at`
    (its last attempt), both stored in the task's hash by the blackboard scripts."""
    ended = [t for t in snap.tasks if t.status in TERMINAL and t.assignee]
    pipe = board.r.pipeline(transaction=False)
    for t in ended:
        pipe.hmget(board.k.task(t.id), ["claimed_at", "finished_at"])
    out: dict[str, float] = {}
    for t, (claimed, finished) in zip(ended, await pipe.execute(), strict=True):
        try:
            start, end = int(float(claimed or 0)), int(float(finished or 0))
        except ValueError:
            continue
        if start and end >= start:
            out[t.id] = (end - start) / 1000
    return out


async def load(board: Blackboard) -> tuple[Snapshot, dict[str, float]]:
    snap = await snapshot(board)
    return snap, await task_times(board, snap)


def render(snap: Snapshot, fmt: str, times: TaskTimes | None = None) -> str:
    if fmt == "md":
        return markdown(snap, times)
    if fmt == "json":
        return json_report(snap, times)
    if fmt == "junit":
        return junit_xml(snap, times)
    raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")
