"""The CI verdict fails closed: only a completed run within its budget is a success."""

from __future__ import annotations

import pytest

from swarm.ci import ci_run_id, decide
from swarm.status import Snapshot, TaskRow, UsageRow


def snap(state: str, *statuses: str, reason: str = "") -> Snapshot:
    tasks = [
        TaskRow.model_construct(id=f"t{i}", status=s, title="", phase="", error="")
        for i, s in enumerate(statuses)
    ]
    return Snapshot.model_construct(
        run_id="r",
        name="n",
        state=state,
        reason=reason,
        tasks=tasks,
        agents=[],
        phases=[],
        usage=UsageRow(),
    )


@pytest.mark.parametrize(
    ("state", "statuses", "code", "changes", "require", "verdict", "exit_code"),
    [
        ("completed", ("completed", "completed"), 0, 3, False, "success", 0),
        ("completed", ("completed",), 0, 0, False, "success", 0),
        ("completed", ("completed",), 0, 0, True, "failure", 1),
        ("failed", ("completed", "failed"), 1, 2, False, "failure", 1),
        ("budget", ("completed", "ready"), 3, 2, False, "budget", 3),
        ("timeout", ("claimed",), 3, 0, False, "budget", 3),
        ("interrupted", ("completed", "claimed"), 130, 1, False, "failure", 130),
        # a run that says completed with a task left open is not a success
        ("completed", ("completed", "pending"), 0, 1, False, "failure", 1),
    ],
)
def test_verdict_matrix(state, statuses, code, changes, require, verdict, exit_code) -> None:
    v = decide(snap(state, *statuses), code, changes, require)
    assert (v.verdict, v.exit_code) == (verdict, exit_code), v


def test_run_id_comes_from_the_workflow_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_RUN_ID", "123")
    assert ci_run_id(None) == "gh-123"
    assert ci_run_id("mine") == "mine"
    monkeypatch.setenv("GITHUB_RUN_ID", "")
    assert ci_run_id(None) is None
