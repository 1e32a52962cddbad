"""Where agent actors may run: the driver's node, or on a joined cluster (shared runs) the
nodes that offer SWARM_AGENT_RESOURCE (tests/faults: a node of it killed)."""

from __future__ import annotations

from typing import Any

import pytest

from swarm.coordinator import Coordinator
from swarm.errors import BadInput
from swarm.hosting import AGENT_RESOURCE_ENV, agent_resource, check_agent_resource


@pytest.mark.parametrize(
    ("address", "resource", "mode", "expected"),
    [
        ("10.0.0.5:6379", "swarm_agent", "shared", "swarm_agent"),
        ("127.0.0.1:6379", " swarm_agent ", "shared", "swarm_agent"),
        ("10.0.0.5:6379", "swarm_agent", "worktree", None),  # worktrees are local files
        ("", "swarm_agent", "shared", None),  # a local Ray is one node
        ("local", "swarm_agent", "shared", None),
        ("10.0.0.5:6379", "", "shared", None),  # nothing named: the driver's node
    ],
)
def test_agent_resource(
    monkeypatch: pytest.MonkeyPatch, address: str, resource: str, mode: str, expected: str | None
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setenv(AGENT_RESOURCE_ENV, resource)
    assert agent_resource(mode) == expected


def _spec(mode: str) -> Any:
    return type("S", (), {"workspace": type("W", (), {"mode": mode})()})()


def test_a_named_resource_spreads_the_agents(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.setenv(AGENT_RESOURCE_ENV, "swarm_agent")
    assert Coordinator._placement(_spec("shared")) == {
        "resources": {"swarm_agent": 1},
        "scheduling_strategy": "SPREAD",
    }


def test_a_local_shared_run_needs_no_placement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv(AGENT_RESOURCE_ENV, "swarm_agent")
    assert Coordinator._placement(_spec("shared")) == {}


def test_too_little_of_the_resource_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "swarm_agent": 3.0})
    check_agent_resource("swarm_agent", 3)
    with pytest.raises(BadInput, match=r"offer 3 of it, the run has 4 agents"):
        check_agent_resource("swarm_agent", 4)
    with pytest.raises(BadInput, match=r"offer 0 of it"):
        check_agent_resource("other", 1)


def test_auto_packs_agents_one_process_per_core(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.hosting import agents_per_actor

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert agents_per_actor("auto", 10, cores=2) == 5
    assert agents_per_actor("auto", 3, cores=2) == 2
    assert agents_per_actor("auto", 1, cores=8) == 1
    assert agents_per_actor("auto", 1000, cores=2) == 500
    assert agents_per_actor(3, 10, cores=2) == 3


def test_auto_keeps_one_agent_per_actor_on_a_joined_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from swarm.hosting import agents_per_actor

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert agents_per_actor("auto", 10, cores=2) == 1
    assert agents_per_actor(4, 10, cores=2) == 4


def test_groups_keep_every_agent_once_in_order() -> None:
    from swarm.hosting import actor_groups

    specs = [_spec("shared") for _ in range(7)]
    groups = actor_groups(specs, 3)
    assert [len(g) for g in groups] == [3, 3, 1]
    assert [s for g in groups for s in g] == specs


def test_a_packed_actor_asks_for_one_agent_slot_per_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv(AGENT_RESOURCE_ENV, "swarm_agent")
    assert Coordinator._placement(_spec("shared"), 3)["resources"] == {"swarm_agent": 3}


def test_agents_per_actor_must_be_positive() -> None:
    from pydantic import ValidationError

    from swarm.config import Hosting

    assert Hosting().agents_per_actor == "auto"
    assert Hosting.model_validate({"agents_per_actor": 4}).agents_per_actor == 4
    with pytest.raises(ValidationError):
        Hosting.model_validate({"agents_per_actor": 0})
    with pytest.raises(ValidationError):
        Hosting.model_validate({"agents_per_actor": "many"})
