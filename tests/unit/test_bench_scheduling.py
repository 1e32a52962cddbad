"""The scheduling benchmark's lower bound: the overhead-free list schedule."""

from __future__ import annotations

import pytest

from benchmarks.scheduling import Task, critical_path, list_schedule, make_dag, role_work


def test_a_chain_takes_the_sum_of_its_tasks() -> None:
    dag = [Task("a", "r", 2), Task("b", "r", 1, ["a"]), Task("c", "r", 3, ["b"])]
    assert list_schedule(dag, per_role=5, latency=0.1) == pytest.approx(0.6)
    assert critical_path(dag, 0.1) == pytest.approx(0.6)


def test_agents_of_a_role_are_the_limit_when_needs_are_not() -> None:
    dag = [Task(f"t{i}", "r", 1) for i in range(4)] + [Task("x", "q", 1)]
    assert list_schedule(dag, per_role=2, latency=1.0) == pytest.approx(2.0)
    assert list_schedule(dag, per_role=1, latency=1.0) == pytest.approx(4.0)
    assert role_work(dag, 2, 1.0) == pytest.approx(2.0)
    assert critical_path(dag, 1.0) == pytest.approx(1.0)


def test_free_agents_take_ready_tasks_in_list_order() -> None:
    # one agent: the long task listed first goes first, the dependent waits for its need
    dag = [Task("long", "r", 3), Task("short", "r", 1), Task("after", "q", 1, ["short"])]
    assert list_schedule(dag, per_role=1, latency=1.0) == pytest.approx(5.0)


def test_the_dag_is_reproducible_and_its_needs_come_earlier() -> None:
    dag = make_dag(60, 5, seed=13)
    assert dag == make_dag(60, 5, seed=13)
    assert dag != make_dag(60, 5, seed=14)
    seen: set[str] = set()
    for t in dag:
        assert set(t.needs) <= seen and 1 <= t.turns <= 4
        seen.add(t.id)
    bound = list_schedule(dag, 2, 0.2)
    assert bound >= max(critical_path(dag, 0.2), role_work(dag, 2, 0.2)) - 1e-9
