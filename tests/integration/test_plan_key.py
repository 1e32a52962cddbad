"""The run's plan lives in a key of its own, not in the meta hash every poller reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm.blackboard.board import Blackboard
from swarm.plan import load_plan, make_plan, save_plan, store_plan
from swarm.status import snapshot

TASKS = 300

CONFIG = "\n".join(
    [
        "name: big",
        "goal: many tasks",
        "model: anthropic/claude-sonnet-5-5",
        "budget: {max_usd: 4.5, max_tokens: 90000}",
        "agents:",
        "  - {name: w, role: developer, count: 50}",
        "phases:",
        "  - name: one",
        "    tasks:",
        *(f"      - {{id: t{i}, title: task {i}, role: developer}}" for i in range(TASKS)),
    ]
)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")


async def _stored(board: Blackboard, tmp_path: Path) -> None:
    (tmp_path / "swarm.yaml").write_text(CONFIG + "\n")
    (tmp_path / "repo").mkdir()
    plan = make_plan(tmp_path / "swarm.yaml", tmp_path / "repo", board.run_id, tmp_path / "s")
    await store_plan(board, plan)


async def test_the_meta_hash_holds_no_plan_and_the_plan_key_does(
    board: Blackboard, tmp_path: Path
) -> None:
    await _stored(board, tmp_path)
    meta = await board.meta()
    assert "plan" not in meta and "config" not in meta and "edges" not in meta
    assert len(await board.edges_json()) > 20_000  # the mesh of 50 agents, in its key
    plan_bytes = len(await board.r.get(board.k.plan))
    assert sum(len(v) for v in meta.values()) * 10 < plan_bytes  # the meta hash stays small
    plan = await load_plan(board)
    assert len(plan.loaded.tasks) == TASKS and plan.run_id == board.run_id
    snap = await snapshot(board)
    assert (snap.max_usd, snap.max_tokens) == (4.5, 90000)


async def test_a_raised_budget_is_saved_with_the_plan_and_seen_by_status(
    board: Blackboard, tmp_path: Path
) -> None:
    await _stored(board, tmp_path)
    plan = await load_plan(board)
    plan.loaded.config.budget.max_usd = 9.0
    await save_plan(board, plan)
    assert (await load_plan(board)).loaded.config.budget.max_usd == 9.0
    assert (await snapshot(board)).max_usd == 9.0


async def test_a_run_stored_with_the_plan_in_its_meta_hash_still_loads(
    board: Blackboard, tmp_path: Path
) -> None:
    await _stored(board, tmp_path)
    text = await board.r.get(board.k.plan)
    # as an older swarm stored it: the plan in the meta hash, no budget field, no key
    await board.r.delete(board.k.plan)
    await board.r.hdel(board.k.meta, "budget")
    await board.r.hset(board.k.meta, "plan", text)
    assert len((await load_plan(board)).loaded.tasks) == TASKS
    assert (await snapshot(board)).max_usd == 4.5
    plan = await load_plan(board)
    await save_plan(board, plan)  # a resume moves it to its key
    assert "plan" not in await board.meta() and await board.r.get(board.k.plan) == text
