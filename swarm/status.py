"""A run's state as one snapshot, read from the blackboard (used by status, dashboard, report)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from swarm.blackboard.board import Blackboard
from swarm.tools.todo import STATE_KEY as TODO_KEY


class TaskRow(BaseModel):
    id: str
    title: str
    phase: str
    status: str
    assignee: str
    attempts: int
    role: str = ""
    agent: str = ""
    needs: list[str] = []
    result: str = ""
    error: str = ""
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    # worktree runs (from git, stored when the merge queue merged the task)
    merge_commit: str = ""
    merge_attempts: int = 0
    files: list[str] = []
    added: int = 0
    removed: int = 0


class AgentRow(BaseModel):
    name: str
    role: str
    model: str = ""
    status: str
    task: str
    waiting_for: list[str] = []
    pid: int | None = None
    turns: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0
    compactions: int = 0
    todos: list[dict[str, str]] = []  # the agent's todo list (todowrite), as stored

    @property
    def todo_summary(self) -> str:
        """'2/5 Write the parser' : completed of all, and the one in progress."""
        if not self.todos:
            return ""
        done = sum(t.get("status") == "completed" for t in self.todos)
        now = next(
            (t.get("content", "") for t in self.todos if t.get("status") == "in_progress"), ""
        )
        return f"{done}/{len(self.todos)} {now}".strip()


class UsageRow(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    usd: float = 0.0
    turns: int = 0
    requests: int = 0
    compactions: int = 0  # conversations summarised to fit the context window
    prunes: int = 0  # times old tool output was replaced by placeholders


class PhaseRow(BaseModel):
    name: str
    total: int
    completed: int
    failed: int


class Snapshot(BaseModel):
    run_id: str
    name: str
    state: str
    reason: str = ""
    repo: str = ""
    created_ms: int = 0
    finished_ms: int = 0
    tasks: list[TaskRow]
    agents: list[AgentRow]
    phases: list[PhaseRow]
    usage: UsageRow
    workspace: str = "shared"
    branch: str = ""  # the run's branch (worktree runs)
    base_commit: str = ""
    merge_queue: list[str] = []
    worktrees_bytes: int = 0  # disk used by the run's worktrees now
    max_usd: float | None = None  # the run's budget, as its plan holds it
    max_tokens: int | None = None


def _budget(meta: dict[str, str], plan: str | None) -> dict[str, Any]:
    """The run's budget (resume may have raised it): the meta hash's copy, else (a run
    stored before it had one) the stored plan's."""
    try:
        if "budget" in meta:
            budget = json.loads(meta["budget"])
        else:
            budget = json.loads(plan or "{}")["loaded"]["config"]["budget"]
    except (ValueError, KeyError, TypeError):
        return {}
    return {"max_usd": budget.get("max_usd"), "max_tokens": budget.get("max_tokens")}


def _usage(raw: dict[str, float]) -> UsageRow:
    return UsageRow.model_validate(
        {k: (v if k == "usd" else int(v)) for k, v in raw.items() if k in UsageRow.model_fields}
    )


async def _state(board: Blackboard, meta: dict[str, str]) -> str:
    """The stored state, except that a run marked running whose coordinator is gone (its
    lease lapsed, or its process is dead on this machine) is orphaned: `swarm resume`
    takes it over."""
    state = meta.get("state", "unknown")
    if state != "running":
        return state
    from swarm.liveness import coordinator_liveness

    live = await coordinator_liveness(board)
    return "running" if live.state == "alive" else "orphaned"


async def snapshot(board: Blackboard) -> Snapshot:
    meta = await board.meta()
    tasks = await board.tasks()
    agents = []
    for a in await board.agents():
        u = _usage(await board.usage("agent", a.get("name", "")))
        pid = a.get("pid")
        todos_raw = await board.state_get(a.get("name", ""), TODO_KEY)
        try:
            todos = [t for t in json.loads(todos_raw or "[]") if isinstance(t, dict)]
        except ValueError:
            todos = []
        agents.append(
            AgentRow(
                name=a.get("name", ""),
                role=a.get("role", ""),
                model=a.get("model", ""),
                status=a.get("status", ""),
                task=a.get("task", ""),
                waiting_for=[w for w in a.get("waiting_for", "").split(",") if w],
                pid=int(pid) if pid else None,
                turns=u.turns,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                usd=round(u.usd, 6),
                compactions=u.compactions,
                todos=todos,
            )
        )
    task_usage = [_usage(await board.usage("task", t.id)) for t in tasks]
    phase_names: list[str] = json.loads(meta.get("phases") or "[]")
    for t in tasks:
        if t.phase and t.phase not in phase_names:
            phase_names.append(t.phase)
    phases = []
    for p in phase_names:
        mine = [t for t in tasks if t.phase == p]
        phases.append(
            PhaseRow(
                name=p,
                total=len(mine),
                completed=sum(t.status == "completed" for t in mine),
                failed=sum(t.status == "failed" for t in mine),
            )
        )
    workspace = meta.get("workspace") or "shared"
    # the plan is read only when needed: a worktree run's folders, an older run's budget
    plan = await board.plan_json() if workspace == "worktree" or "budget" not in meta else None
    return Snapshot(
        workspace=workspace,
        branch=meta.get("branch", ""),
        **_budget(meta, plan),
        base_commit=meta.get("base_commit", ""),
        merge_queue=await board.merge_queue() if workspace == "worktree" else [],
        worktrees_bytes=_worktrees_bytes(plan) if workspace == "worktree" else 0,
        run_id=board.run_id,
        name=meta.get("name", ""),
        state=await _state(board, meta),
        reason=meta.get("reason", ""),
        repo=meta.get("repo", ""),
        created_ms=int(meta.get("created") or 0),
        finished_ms=int(meta.get("finished") or 0),
        tasks=[
            TaskRow(
                id=t.id,
                title=t.title,
                phase=t.phase,
                status=t.status,
                assignee=t.assignee,
                attempts=t.attempts,
                role=t.role,
                agent=t.agent,
                needs=t.needs,
                result=t.result,
                error=t.error,
                turns=u.turns,
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                usd=round(u.usd, 6),
                merge_commit=t.merge_commit,
                merge_attempts=t.merge_attempts,
                files=t.files,
                added=t.added,
                removed=t.removed,
            )
            for t, u in zip(tasks, task_usage, strict=True)
        ],
        agents=agents,
        phases=phases,
        usage=_usage(await board.usage()),
    )


def _worktrees_bytes(text: str | None) -> int:
    from swarm.plan import RunPlan
    from swarm.workspace.worktrees import RunWorktrees

    try:
        plan = RunPlan.model_validate_json(text or "")
    except ValueError:
        return 0
    wt = RunWorktrees(plan.workspace, plan.run_id)
    return wt.disk_bytes() if wt.root.is_dir() else 0
