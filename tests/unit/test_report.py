"""swarm.report: the progress report, JSON, JUnit XML and step summary, from snapshots
built by hand: every figure they show must come from the snapshot."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET

import pytest

from swarm.report import (
    json_report,
    junit_xml,
    markdown,
    percent,
    render,
    step_summary,
    xml_text,
)
from swarm.status import AgentRow, PhaseRow, Snapshot, TaskRow, UsageRow

P1, P2 = "Phase 1: Foundation", "Phase 2: Core Implementation"
T0 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC


def task(id: str, phase: str, status: str, **kw: object) -> TaskRow:
    base: dict[str, object] = {
        "id": id,
        "title": f"Build {id}",
        "phase": phase,
        "status": status,
        "assignee": "",
        "attempts": 0,
    }
    return TaskRow.model_validate(base | kw)


def phases_of(tasks: list[TaskRow], names: list[str]) -> list[PhaseRow]:
    return [
        PhaseRow(
            name=n,
            total=sum(t.phase == n for t in tasks),
            completed=sum(t.phase == n and t.status == "completed" for t in tasks),
            failed=sum(t.phase == n and t.status == "failed" for t in tasks),
        )
        for n in names
    ]


def snap(
    state: str,
    tasks: list[TaskRow],
    agents: list[AgentRow],
    reason: str = "",
    finished: bool = True,
    names: tuple[str, ...] = (P1, P2),
) -> Snapshot:
    usage = UsageRow(
        input_tokens=sum(t.input_tokens for t in tasks),
        output_tokens=sum(t.output_tokens for t in tasks),
        usd=round(sum(t.usd for t in tasks), 6),
        turns=sum(t.turns for t in tasks),
        requests=sum(t.turns for t in tasks) + 1,
    )
    return Snapshot(
        run_id="code-mesh-20260101-000000-ab12",
        name="code-mesh",
        state=state,
        reason=reason,
        repo="/tmp/repo",
        created_ms=T0,
        finished_ms=T0 + 754_300 if finished else 0,
        tasks=tasks,
        agents=agents,
        phases=phases_of(tasks, list(names)),
        usage=usage,
    )


def done(id: str, phase: str, agent: str, turns: int = 3, role: str = "") -> TaskRow:
    return task(
        id,
        phase,
        "completed",
        assignee=agent,
        attempts=1,
        turns=turns,
        input_tokens=1200 * turns,
        output_tokens=85 * turns,
        usd=0.00417 * turns,
        result=f"{id} done",
        role=role,
    )


def agent(name: str, role: str, status: str, **kw: object) -> AgentRow:
    return AgentRow.model_validate({"name": name, "role": role, "status": status, "task": ""} | kw)


@pytest.fixture
def completed() -> Snapshot:
    tasks = [
        done("workspace", P1, "tool-developer-1", role="tool"),
        done("traits", P1, "tool-developer-2", 2, role="tool"),
        done("anthropic-auth", P2, "auth-specialist", 5, role="auth"),
        done("read-tool", P2, "tool-developer-1", 4, role="tool"),
    ]
    agents = [
        agent("auth-specialist", "auth", "done", turns=5, input_tokens=6000, usd=0.02085),
        agent("tool-developer-1", "tool", "done", turns=7, input_tokens=8400, usd=0.02919),
        agent("tool-developer-2", "tool", "done", turns=2, input_tokens=2400, usd=0.00834),
    ]
    return snap("completed", tasks, agents)


@pytest.fixture
def cascade() -> Snapshot:
    reason = 'cargo test: 2 failures <in "auth" & tokens>\nsee log'
    tasks = [
        done("workspace", P1, "tool-developer-1", role="tool"),
        task(
            "anthropic-auth",
            P2,
            "failed",
            role="auth",
            assignee="auth-specialist",
            attempts=2,
            turns=9,
            input_tokens=15000,
            output_tokens=900,
            usd=0.0585,
            error=reason,
        ),
        task("token-refresh", P2, "failed", role="auth", needs=["anthropic-auth"],
             error="dependency anthropic-auth failed"),
        task("auth-cli", P2, "failed", role="cli", needs=["token-refresh"],
             error="dependency token-refresh failed"),
    ]  # fmt: skip
    agents = [
        agent("auth-specialist", "auth", "done", turns=9),
        agent("tool-developer-1", "tool", "done", turns=3),
        agent("cli-developer", "cli", "done"),
    ]
    return snap("failed", tasks, agents)


@pytest.fixture
def running() -> Snapshot:
    tasks = [
        done("workspace", P1, "tool-developer-1", role="tool"),
        done("read-tool", P2, "tool-developer-1", role="tool"),
        done("write-tool", P2, "tool-developer-2", role="tool"),
        task("edit-tool", P2, "claimed", role="tool", assignee="tool-developer-2", attempts=2,
             turns=1, input_tokens=900, output_tokens=40, usd=0.0033),
        task("tui", P2, "pending", role="tui", needs=["edit-tool", "read-tool"]),
        task("docs", P2, "pending", role="doc", needs=["tui"]),
    ]  # fmt: skip
    agents = [
        agent("tool-developer-1", "tool", "idle", turns=6),
        agent(
            "tool-developer-2",
            "tool",
            "working",
            task="edit-tool",
            turns=4,
            todos=[
                {"content": "Parse edits", "status": "completed"},
                {"content": "Apply edits", "status": "in_progress"},
                {"content": "Test edits", "status": "pending"},
            ],
        ),
        agent("tui-developer", "tui", "waiting", waiting_for=["edit-tool"]),
        agent("doc-specialist", "doc", "waiting", waiting_for=["tui"]),
    ]
    return snap("running", tasks, agents, finished=False)


@pytest.fixture
def budget() -> Snapshot:
    tasks = [
        done("workspace", P1, "tool-developer-1", role="tool"),
        done("traits", P1, "tool-developer-1", role="tool"),
        task("bash-tool", P1, "ready", role="tool", attempts=1, turns=2, usd=0.01),
        task("grep-tool", P2, "pending", role="tool", needs=["bash-tool"]),
    ]
    agents = [agent("tool-developer-1", "tool", "stopped", turns=8)]
    return snap("budget", tasks, agents, reason="max_usd 0.05 reached ($0.0512 spent)")


ALL = ["completed", "cascade", "running", "budget"]

NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def allowed_numbers(s: Snapshot, times: dict[str, float] | None = None) -> set[str]:
    """Every number a report may print, computed here from the snapshot independently."""
    ints: set[int] = {0, len(s.tasks), len(s.phases), len(s.agents)}
    ints |= set(range(1, max(len(s.tasks), len(s.agents)) + 1))  # list positions
    floats: set[str] = set()

    def usage_like(o: TaskRow | AgentRow | UsageRow) -> None:
        ints.update({o.input_tokens, o.output_tokens, o.turns})
        floats.add(f"{o.usd:.4f}")

    for t in s.tasks:
        usage_like(t)
        ints.add(t.attempts)
    for a in s.agents:
        usage_like(a)
    usage_like(s.usage)
    ints.update({s.usage.requests, s.usage.cache_read_tokens, s.usage.cache_creation_tokens})
    for st in ("completed", "failed", "claimed", "ready", "pending"):
        ints.add(sum(t.status == st for t in s.tasks))
    for st in {a.status for a in s.agents}:
        ints.add(sum(a.status == st for a in s.agents))
    ints.add(sum(t.attempts for t in s.tasks))
    ints.add(sum(t.attempts > 1 for t in s.tasks))
    ints.add(sum(p.completed == p.total for p in s.phases))
    done_all = sum(t.status == "completed" for t in s.tasks)
    ints.add(100 * done_all // len(s.tasks))
    for p in s.phases:
        ints.update({p.total, p.completed, p.failed, 100 * p.completed // p.total})
        by_role: dict[str, list[TaskRow]] = {}
        for t in s.tasks:
            if t.phase == p.name:
                by_role.setdefault(t.role, []).append(t)
        for g in by_role.values():
            gd = sum(t.status == "completed" for t in g)
            ints.update({len(g), gd, sum(t.status == "failed" for t in g), 100 * gd // len(g)})
    for a in s.agents:  # todo summary: completed / all
        ints.update({sum(t.get("status") == "completed" for t in a.todos), len(a.todos)})
    if s.state != "running":
        ints.add({"completed": 0, "failed": 1, "budget": 3, "timeout": 3}[s.state])
    if s.finished_ms:
        floats.add(f"{(s.finished_ms - s.created_ms) / 1000:,.1f}")
    for seconds in (times or {}).values():
        floats.add(f"{seconds:,.1f}")
    texts = [s.run_id, s.name, s.repo, s.reason]
    texts += [x for t in s.tasks for x in (t.id, t.title, t.phase, t.error, t.result)]
    texts += [x for a in s.agents for x in (a.name, a.role, a.model, *a.waiting_for)]
    texts += [t.get("content", "") for a in s.agents for t in a.todos]
    for ms in (s.created_ms, s.finished_ms):
        if ms:
            texts.append(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)))
    found_in_text = {n for x in texts for n in NUMBER.findall(x)}
    return {f"{i:,}" for i in ints} | {str(i) for i in ints} | floats | found_in_text


@pytest.mark.parametrize("name", ALL)
def test_every_number_in_the_markdown_comes_from_the_snapshot(
    name: str, request: pytest.FixtureRequest
) -> None:
    s: Snapshot = request.getfixturevalue(name)
    for text, times in ((markdown(s), None), (markdown(s, {s.tasks[0].id: 12.34}), {"x": 12.34})):
        allowed = allowed_numbers(s, times)
        stray = [n for n in NUMBER.findall(text) if n not in allowed]
        assert stray == [], f"numbers not derived from the snapshot: {stray}\n{text}"
        for invented in ("Lines of", "Technical Decisions", "Performance Notes", "Modules"):
            assert invented.lower() not in text.lower()


def test_completed_report_shape(completed: Snapshot) -> None:
    md = markdown(completed)
    assert md.startswith("# code-mesh progress report\n")
    assert "✅ completed · exit code 0 (every task completed)" in md
    assert f"### ✅ {P1} (100% complete)" in md
    assert f"### ✅ {P2} (100% complete)" in md
    assert "- [x] Build workspace (`workspace`, tool-developer-1)" in md
    assert "- [ ]" not in md
    assert "- **Tasks**: 4/4 completed (100%), 0 failed" in md
    assert "- **Phases complete**: 2/2" in md
    assert "- **Agents**: 3 (3 done)" in md
    assert "- **Model turns**: 14 (15 requests)" in md
    assert "- **Tokens**: 16,800 input / 1,190 output" in md
    assert f"- **Cost**: ${completed.usage.usd:.4f}" in md
    assert "- **Wall time**: 754.3 s" in md
    assert "**Started** 2026-01-01 00:00:00 UTC · **finished** 2026-01-01 00:12:34 UTC" in md
    assert "1. **auth-specialist** (auth): ✅ done; completed `anthropic-auth`" in md
    assert "completed `workspace`, `read-tool`" in md  # tool-developer-1's two tasks
    # no failures, nothing remaining: those sections are left out, not padded
    assert "Failures" not in md and "Remaining" not in md
    # the per-task table has a row per task and no wall-time column without times
    assert md.count("| ✅ completed |") == 4
    assert "Wall time |" not in md
    assert "| `read-tool` | ✅ completed | tool-developer-1 | 1 | 4 | 4,800 / 340 |" in md


def test_wall_times_appear_only_where_known(completed: Snapshot) -> None:
    md = markdown(completed, {"workspace": 2.25, "traits": 61.0})
    assert "Wall time |" in md
    assert "| $0.0125 | 2.2 s |" in md
    assert "| 61.0 s |" in md
    assert md.count("| - |") == 2  # anthropic-auth, read-tool: no stored times


def test_cascade_failure(cascade: Snapshot) -> None:
    md = markdown(cascade)
    assert "❌ failed · exit code 1 (a task failed)" in md
    # phase 2: 0 of 3 completed, all failed; grouped by role (auth has two tasks)
    assert f"### ❌ {P2} (0% complete, 3 failed)" in md
    assert "#### auth (❌ 2 failed, 0%)" in md
    assert "#### cli (❌ 1 failed, 0%)" in md
    # the reason is on one line and complete
    assert 'cargo test: 2 failures <in "auth" & tokens> see log' in md
    assert (
        "- [ ] Build token-refresh (`token-refresh`) — ❌ failed: dependency anthropic-auth failed"
        in md
    )
    assert "### 🐛 Failures" in md
    assert "- `anthropic-auth` Build anthropic-auth, auth-specialist, 2 attempts: cargo test" in md
    assert "- `auth-cli` Build auth-cli, never started: dependency token-refresh failed" in md
    assert "- **Tasks**: 1/4 completed (25%), 3 failed" in md
    assert "(1 task needed more than one)" in md
    assert "failed `anthropic-auth`" in md  # in auth-specialist's activity line


def test_running_with_waiting_agents(running: Snapshot) -> None:
    md = markdown(running)
    assert "🔄 running" in md and "exit code" not in md
    assert "still running" in md and "Wall time" not in md
    # 2 of 5 tasks of phase 2: 40%, shown rounded down; the tool group 2 of 3: 66%
    assert f"### 🔄 {P2} (40% complete)" in md
    assert "#### tool (🔄 in progress - 66%)" in md
    assert "#### tui (⏸️ not started - 0%)" in md
    assert "- **Tasks**: 3/6 completed (50%), 0 failed, 1 in progress, 2 pending" in md
    assert "- **Agents**: 4 (1 idle, 1 working, 2 waiting)" in md
    assert (
        "2. **tool-developer-2** (tool): 🔄 working on `edit-tool` (Build edit-tool), "
        "todo 1/3 Apply edits; completed `write-tool`"
    ) in md
    assert "3. **tui-developer** (tui): ⏸️ waiting for `edit-tool` · 0 turns" in md
    assert "4. **doc-specialist** (doc): ⏸️ waiting for `tui`" in md
    assert "1. **tool-developer-1** (tool): 💤 idle; completed `workspace`, `read-tool`" in md
    # what remains, in the order it will move: the claimed task first
    remaining = md.split("### 🚧 Remaining Tasks\n")[1].split("\n\n")[0].splitlines()
    assert remaining == [
        "1. `edit-tool` Build edit-tool — 🔄 in progress by tool-developer-2 (attempt 2)",
        "2. `tui` Build tui — ⏸️ pending: needs `edit-tool`",  # read-tool is done
        "3. `docs` Build docs — ⏸️ pending: needs `tui`",
    ]
    assert "Failures" not in md


def test_budget_stopped(budget: Snapshot) -> None:
    md = markdown(budget)
    assert "💸 budget · exit code 3 (the budget is exhausted)" in md
    assert "**Reason**: max_usd 0.05 reached ($0.0512 spent)" in md
    assert "- run stopped (budget): max_usd 0.05 reached ($0.0512 spent)" in md
    assert f"### 🔄 {P1} (66% complete)" in md
    assert f"### ⏸️ {P2} (0% complete)" in md
    assert "— 🟡 ready (attempt 1 was handed back)" in md
    assert "1. **tool-developer-1** (tool): ⏹️ stopped; completed `workspace`, `traits`" in md


def test_percent_rounds_down() -> None:
    assert [percent(2, 3), percent(199, 200), percent(1, 1), percent(0, 0)] == [66, 99, 100, 0]


def parse(xml: str) -> ET.Element:
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(xml.encode("utf-8"))


def totals(el: ET.Element) -> tuple[int, int, int, int]:
    return (
        int(el.get("tests", -1)),
        int(el.get("failures", -1)),
        int(el.get("errors", -1)),
        int(el.get("skipped", -1)),
    )


@pytest.mark.parametrize("name", ALL)
def test_junit_counts_match_the_cases(name: str, request: pytest.FixtureRequest) -> None:
    s: Snapshot = request.getfixturevalue(name)
    root = parse(junit_xml(s))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [x.get("name") for x in suites] == [p.name for p in s.phases]
    for suite, phase in zip(suites, s.phases, strict=True):
        cases = suite.findall("testcase")
        assert {c.get("classname") for c in cases} <= {phase.name}
        assert totals(suite) == (
            len(cases),
            sum(c.find("failure") is not None for c in cases),
            0,
            sum(c.find("skipped") is not None for c in cases),
        )
        assert (phase.total, phase.failed) == totals(suite)[:2]
    all_cases = list(root.iter("testcase"))
    assert [c.get("name") for c in all_cases] == [f"{t.id}: {t.title}" for t in s.tasks]
    finished = sum(t.status in ("completed", "failed") for t in s.tasks)
    assert totals(root) == (
        len(s.tasks),
        sum(t.status == "failed" for t in s.tasks),
        0,
        len(s.tasks) - finished,
    )
    # without stored times no testcase carries a made-up time
    assert all(c.get("time") is None for c in root.iter("testcase"))


def test_junit_failures_and_skips(cascade: Snapshot, running: Snapshot) -> None:
    root = parse(junit_xml(cascade))
    failures = {c.get("name"): c.find("failure") for c in root.iter("testcase")}
    auth = failures["anthropic-auth: Build anthropic-auth"]
    assert auth is not None
    assert auth.get("message") == 'cargo test: 2 failures <in "auth" & tokens>\nsee log'
    assert "attempts: 2" in (auth.text or "")
    cascaded = failures["auth-cli: Build auth-cli"]
    assert cascaded is not None and cascaded.get("message") == "dependency token-refresh failed"
    assert root.find("testsuite/properties/property[@name='run_state']").get("value") == "failed"  # type: ignore[union-attr]

    skipped = {
        c.get("name"): (c.find("skipped").get("message") if c.find("skipped") is not None else None)  # type: ignore[union-attr]
        for c in parse(junit_xml(running)).iter("testcase")
    }
    assert skipped == {
        "workspace: Build workspace": None,
        "read-tool: Build read-tool": None,
        "write-tool: Build write-tool": None,
        "edit-tool: Build edit-tool": "not run: status claimed",
        "tui: Build tui": "not run: status pending",
        "docs: Build docs": "not run: status pending",
    }


def test_junit_times_only_where_known(completed: Snapshot, running: Snapshot) -> None:
    root = parse(junit_xml(completed, {"workspace": 2.25, "traits": 1.5}))
    times = {c.get("name", "").split(":")[0]: c.get("time") for c in root.iter("testcase")}
    assert times == {
        "workspace": "2.250",
        "traits": "1.500",
        "anthropic-auth": None,
        "read-tool": None,
    }
    suites = root.findall("testsuite")
    assert suites[0].get("time") == "3.750"  # every case of phase 1 has a time
    assert suites[1].get("time") is None
    assert root.get("time") == "754.300"  # the run's wall time
    assert root.get("timestamp") == "2026-01-01T00:00:00"
    assert parse(junit_xml(running)).get("time") is None  # still running


def test_junit_escapes_anything(completed: Snapshot) -> None:
    nasty = "a <b> & \"c\" 'd' ]]> \x1b[31mred\x1b[0m \x00 \ud800 ✓"
    t = completed.tasks[0].model_copy(
        update={"title": nasty, "status": "failed", "error": nasty, "result": nasty}
    )
    u = completed.tasks[1].model_copy(update={"result": nasty})
    s = completed.model_copy(update={"tasks": [t, u, *completed.tasks[2:]], "reason": nasty})
    xml = junit_xml(s)
    root = parse(xml)
    case = next(root.iter("testcase"))
    expected = xml_text(nasty)
    assert "\\x1b[31mred" in expected and "\\x00" in expected and "\\ud800" in expected
    assert case.get("name") == f"workspace: {expected}"
    failure = case.find("failure")
    assert failure is not None and failure.get("message") == expected
    assert case.find("system-out") is None  # a failed task: its text is in the failure
    assert expected in (
        root.findall("testsuite")[0].findall("testcase")[1].findtext("system-out") or ""
    )
    # and the other formats carry it too
    assert json.loads(json_report(s))["tasks"][0]["title"] == nasty
    for text in (markdown(s), step_summary(s)):
        assert "\x1b" not in text and r"\x1b[31mred" in text


def test_json_report(running: Snapshot, cascade: Snapshot) -> None:
    data = json.loads(json_report(running, {"workspace": 2.5}))
    assert data["run_id"] == running.run_id and data["state"] == "running"
    assert data["exit_code"] is None and data["wall_s"] is None
    assert data["progress"] == {
        "tasks": 6,
        "completed": 3,
        "failed": 0,
        "claimed": 1,
        "ready": 0,
        "pending": 2,
        "percent_complete": 50,
    }
    assert [p["percent_complete"] for p in data["phases"]] == [100, 40]
    assert [t["wall_s"] for t in data["tasks"]] == [2.5, None, None, None, None, None]
    assert data["agents"][2]["waiting_for"] == ["edit-tool"]
    failed = json.loads(json_report(cascade))
    assert failed["exit_code"] == 1 and failed["wall_s"] == 754.3
    assert failed["tasks"][2]["error"] == "dependency anthropic-auth failed"


def test_step_summary(cascade: Snapshot, budget: Snapshot, completed: Snapshot) -> None:
    text = step_summary(cascade)
    lines = text.splitlines()
    assert lines[0] == "### swarm `code-mesh`: ❌ failed"
    assert "exit code 1: a task failed · 1/4 tasks completed (25%), 3 failed · 754.3 s" in lines[2]
    table = [line for line in lines if line.startswith("| ")]
    assert len(table) == 1 + 4  # header + one row per task
    assert table[0] == "| Task | Phase | Status | Agent | Attempts | Turns | Cost |"
    assert (
        f"| `anthropic-auth` Build anthropic-auth | {P2} | ❌ failed | auth-specialist | 2 | 9 | $0.0585 |"
        in lines
    )
    assert "**Failures**" in text
    assert "- `auth-cli`: dependency token-refresh failed" in lines
    assert '- `anthropic-auth`: cargo test: 2 failures <in "auth" & tokens> see log' in lines
    assert text.endswith("\n\n")  # appended summaries stay separate blocks

    b = step_summary(budget)
    assert "exit code 3: the budget is exhausted" in b
    assert "Reason: max_usd 0.05 reached ($0.0512 spent)" in b

    c = step_summary(completed, {"workspace": 2.25})
    assert "exit code 0: every task completed · 4/4 tasks completed (100%), 0 failed" in c
    assert "| Time |" in c and "| 2.2 s |" in c
    assert (
        f"**Usage**: 16,800 input + 1,190 output tokens · 14 model turns · ${completed.usage.usd:.4f}"
        in c
    )
    assert "Failures" not in c


def test_table_cells_are_escaped(completed: Snapshot) -> None:
    t = completed.tasks[0].model_copy(update={"title": "a | b\nc"})
    s = completed.model_copy(update={"tasks": [t, *completed.tasks[1:]]})
    assert "| `workspace` a \\| b c |" in step_summary(s)


def test_render_formats(completed: Snapshot) -> None:
    assert render(completed, "md") == markdown(completed)
    assert render(completed, "json") == json_report(completed)
    assert render(completed, "junit") == junit_xml(completed)
    with pytest.raises(ValueError, match="unknown report format"):
        render(completed, "html")
