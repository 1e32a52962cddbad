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
