"""The fault suite: each fault injected from outside into a real swarm; every task
completes exactly once, no turn is stored twice, and the figures go to the fault table.
Quick sizes here (inside `make test`); full sizes with `make faults`."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from tests.faults.harness import GOOD_KEY, RayCluster, Swarm, descendants, finish, size

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def _assert_clean(swarm: Swarm, fig: object) -> None:
    assert fig.lost == 0, fig
    assert fig.completed_twice == 0, fig
    assert fig.turns_stored_twice == 0, fig
    # every task's command ran, and (outside a killed command's turn) once; a task whose
    # call was interrupted by the kill was told so, and the scripted model does not redo it
    lines = set(swarm.log_lines())
    every = {f"t{i:02d}" for i in range(swarm.n_tasks)}
    assert lines <= every, lines
    assert every - lines <= swarm.interrupted_tasks(), (every - lines, lines)


def test_agent_actors_sigkilled_mid_run(tmp_path: Path) -> None:
    n_tasks, kills = size(16, 40), size(3, 10)
    with Swarm(tmp_path, "f-actors", n_tasks, agents=4) as swarm:
        proc = swarm.launch()
        killed = 0
        first_kill = None
        while killed < kills and proc.poll() is None:
            target = (killed + 1) * n_tasks // (kills + 2)
            swarm.wait_for(lambda b, n=target: _at_least(b, n), 240, f"{target} tasks completed")
            pids = [p for p in swarm.agent_pids() if psutil.pid_exists(p) and p != os.getpid()]
            if not pids:
                continue
            os.kill(pids[killed % len(pids)], signal.SIGKILL)
            first_kill = first_kill or time.time()
            killed += 1
        code, out = finish(proc, 400)
        assert code == 0, out[-4000:]
        fig = swarm.figures("agent actor SIGKILL", first_kill, [code], f"{killed} kills")
        fig.report()
        _assert_clean(swarm, fig)
        assert killed == kills


def test_raylet_sigkilled_ray_restarts_and_agents_continue(tmp_path: Path) -> None:
    n_tasks = size(24, 40)  # long enough for the agents to notice their raylet is gone
    with Swarm(tmp_path, "f-raylet", n_tasks, agents=3, delay_s=1.0) as swarm:
        proc = swarm.launch()
        swarm.wait_for(lambda b: _at_least(b, 2), 240, "2 tasks completed")
        raylets = descendants(proc.pid, "raylet")
        assert raylets, "no raylet under the launch process"
        raylets[0].kill()
        fault_at = time.time()
        code, out = finish(proc, 400)
        assert code == 0, out[-4000:]
        events = swarm.board_call(lambda b: b.events(count=1_000_000))
        seen = [
            (round(e.ts / 1000 - fault_at, 1), e.type, e.agent, e.data)
            for e in events
            if e.ts / 1000 > fault_at - 1
            and e.type
            not in ("model_turn", "tool_call", "session_started", "task_claimed", "task_completed")
        ]
        assert any(e.type == "ray_lost" for e in events), seen
        assert not any(e.type == "task_failed" for e in events)
        fig = swarm.figures("raylet SIGKILL (node loss)", fault_at, [code])
        fig.report()
        _assert_clean(swarm, fig)


AGENT_SLOTS = "swarm_agent"  # the resource that marks nodes which reach the workspace


def test_second_ray_node_killed(tmp_path: Path) -> None:
    """A shared run on a cluster of two nodes of this machine (`ray start --head`, then
    `ray start --address`), its agents spread over both; the second node's raylet is
    SIGKILLed. Its agents come back on the head (Ray restarts them, or the coordinator
    respawns those whose run() gave up first), no task fails, nothing runs twice."""
    n_tasks, agents = size(40, 80), 4  # work left for the lost agents once they are back
    with RayCluster() as cluster:
        cluster.start_head(num_cpus=1, resources={AGENT_SLOTS: agents})
        worker = cluster.add_node(num_cpus=1, resources={AGENT_SLOTS: agents})
        with Swarm(tmp_path, "f-node", n_tasks, agents=agents, delay_s=1.0) as swarm:
            swarm.extra_env = {**cluster.client_env(), "SWARM_AGENT_RESOURCE": AGENT_SLOTS}
            prefix = f"swarm-{swarm.run_id}-"
            proc = swarm.launch()
            swarm.wait_for(lambda b: _at_least(b, 2), 240, "2 tasks completed")
            placed = [a for a in cluster.actors(prefix) if a["state"] == "ALIVE"]
            lost = {_agent_of(a["name"], prefix) for a in placed if a["node"] == worker}
            assert len(placed) == agents and lost, placed  # spread: some on the second node
            cluster.track()  # its processes, to be found once orphaned
            cluster.raylet(worker).kill()
            fault_at = time.time()
            recovered_at = _wait_back(swarm, cluster, prefix, lost, worker, proc)
            code, out = finish(proc, 400)
            assert code == 0, out[-4000:]
            events = swarm.board_call(lambda b: b.events(count=1_000_000))
            kinds = {e.type for e in events}
            assert "task_failed" not in kinds and "ray_lost" not in kinds, sorted(kinds)
            respawned = sum(e.type == "agent_respawned" for e in events)
            notes = (
                f"{len(lost)} of {agents} agents on it, {respawned} respawned by the coordinator"
            )
            scenario = "second Ray node killed (its raylet SIGKILL)"
            fig = swarm.figures(scenario, fault_at, [code], notes, recovered_at)
            fig.report()
            _assert_clean(swarm, fig)
    assert not cluster.alive(), [p.cmdline()[:2] for p in cluster.alive()]


def _agent_of(actor_name: str, prefix: str) -> str:
    return actor_name[len(prefix) :].rsplit("-", 1)[0]  # swarm-RUN-AGENT-RESPAWNS


def _wait_back(
    swarm: Swarm,
    cluster: RayCluster,
    prefix: str,
    lost: set[str],
    dead_node: str,
    proc: object,
) -> float:
    """Wait until every agent of the lost node runs again on a live node: its actor is
    alive elsewhere and its loop stored that process's pid. Then no agent has a second
    actor left over (one Ray restarted after the coordinator respawned the agent)."""

    async def pids(board: object) -> dict[str, str]:
        names = await board.agent_names()  # type: ignore[attr-defined]
        rows = await board.agents()  # type: ignore[attr-defined]
        return {n: row.get("pid", "") for n, row in zip(names, rows, strict=True)}

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the lost agents came back"  # type: ignore[attr-defined]
        actors = cluster.actors(prefix)
        alive = {_agent_of(a["name"], prefix): a for a in actors if a["state"] == "ALIVE"}
        stored = swarm.board_call(pids)
        if all(
            n in alive and alive[n]["node"] != dead_node and stored.get(n) == str(alive[n]["pid"])
            for n in lost
        ):
            live = Counter(_agent_of(a["name"], prefix) for a in actors if a["state"] != "DEAD")
            assert all(c == 1 for c in live.values()), actors
            return time.time()
        time.sleep(0.3)
    raise AssertionError(f"the agents {sorted(lost)} of the lost node did not come back")


def test_coordinator_sigkilled_then_resumed(tmp_path: Path) -> None:
    n_tasks = size(8, 20)
    with Swarm(tmp_path, "f-coord", n_tasks, agents=3, lease_s=4.0) as swarm:
        proc = swarm.launch()
        swarm.wait_for(lambda b: _at_least(b, 2), 240, "2 tasks completed")
        tree = [p for p in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        fault_at = time.time()
        status = swarm.cli("status", swarm.run_id, "--json")
        code, out = finish(status, 60)
        assert code == 0 and json.loads(out)["state"] == "orphaned", out[-2000:]
        # nothing of the run outlives its dead coordinator for more than a lease period
        deadline = time.monotonic() + 4.0 + 15
        while time.monotonic() < deadline and _alive(tree):
            time.sleep(0.5)
        assert not _alive(tree), [p.cmdline()[:2] for p in _alive(tree)]
        resumed = swarm.resume()
        code2, out2 = finish(resumed, 400)
        assert code2 == 0, out2[-4000:]
        assert "taking run" in out2
        fig = swarm.figures("coordinator SIGKILL, then resume", fault_at, [-9, code2])
        fig.report()
        _assert_clean(swarm, fig)


def test_sighup_stops_like_sigterm_and_resume_completes(tmp_path: Path) -> None:
    n_tasks = size(6, 12)
    # slow turns: the signal must come while the run still has work (a loaded CI machine
    # takes a moment to notice the first task completed)
    with Swarm(tmp_path, "f-hup", n_tasks, agents=2, delay_s=1.0) as swarm:
        proc = swarm.launch()
        swarm.wait_for(lambda b: _at_least(b, 1), 240, "1 task completed")
        # the key reaches agents in memory: no agent process holds it in its environment
        pids = swarm.agent_pids()
        assert pids
        for pid in pids:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                assert GOOD_KEY.encode() not in fh.read(), f"agent pid {pid} holds the key"
        proc.send_signal(signal.SIGHUP)
        fault_at = time.time()
        code, out = finish(proc, 120)
        assert code == 130, out[-4000:]
        state = swarm.board_call(lambda b: b.meta())["state"]
        assert state == "interrupted"
        code2, out2 = finish(swarm.resume(), 400)
        assert code2 == 0, out2[-4000:]
        fig = swarm.figures("SIGHUP (terminal closed), then resume", fault_at, [code, code2])
        fig.report()
        _assert_clean(swarm, fig)


@pytest.mark.parametrize("outage_s", [8] + ([60] if os.environ.get("SWARM_FAULTS_FULL") else []))
def test_external_redis_killed_and_back(tmp_path: Path, outage_s: int) -> None:
    n_tasks = size(8, 20)
    with Swarm(tmp_path, "f-redis", n_tasks, agents=3, delay_s=0.5) as swarm:
        proc = swarm.launch()
        swarm.wait_for(lambda b: _at_least(b, 2), 240, "2 tasks completed")
        swarm.redis.kill()
        fault_at = time.time()
        time.sleep(outage_s)
        swarm.redis.start()
        code, out = finish(proc, 400)
        assert code == 0, out[-4000:]
        assert "Traceback" not in out, out[-4000:]
        fig = swarm.figures(f"external Redis SIGKILL, back after {outage_s} s", fault_at, [code])
        fig.report()
        _assert_clean(swarm, fig)


def test_provider_storm_longer_than_the_retry_window(tmp_path: Path) -> None:
    n_tasks = size(6, 12)
    with Swarm(tmp_path, "f-storm", n_tasks, agents=3) as swarm:
        proc = swarm.launch()
        swarm.wait_for(lambda b: _at_least(b, 1), 240, "1 task completed")
        storm = size(25, 60)
        swarm.stub.chaos(status=529, outage_s=storm)
        fault_at = time.time()
        code, out = finish(proc, 600)
        assert code == 0, out[-4000:]
        events = swarm.board_call(lambda b: b.events(count=1_000_000))
        kinds = {e.type for e in events}
        assert "circuit_open" in kinds and "task_released" in kinds, sorted(kinds)
        assert "task_failed" not in kinds
        fig = swarm.figures(f"provider 529 storm for {storm} s", fault_at + storm, [code])
        fig.report()
        _assert_clean(swarm, fig)


def test_rejected_key_stops_the_run_once_and_resume_completes(tmp_path: Path) -> None:
    n_tasks = size(4, 8)
    with Swarm(tmp_path, "f-401", n_tasks, agents=2) as swarm:
        bad = "sk-faults-revoked-key-987654321"
        swarm.key = bad
        swarm.stub.chaos(rejected_keys=[bad])
        code, out = finish(swarm.launch(), 240)
        assert code == 130, out[-4000:]
        meta = swarm.board_call(lambda b: b.meta())
        assert "ANTHROPIC_API_KEY" in meta["reason"] and bad not in meta["reason"], meta
        events = swarm.board_call(lambda b: b.events(count=1_000_000))
        assert not any(e.type == "task_failed" for e in events)
        assert sum(e.type == "run_finished" for e in events) == 1
        assert bad not in json.dumps([e.model_dump() for e in events]) and bad not in out
        swarm.key = GOOD_KEY
        code2, out2 = finish(swarm.resume(), 400)
        assert code2 == 0, out2[-4000:]
        fig = swarm.figures("401 (key revoked), resume with a good key", None, [code, code2])
        fig.report()
        _assert_clean(swarm, fig)


def test_random_429_and_529(tmp_path: Path) -> None:
    n_tasks = size(10, 40)
    with Swarm(tmp_path, "f-random", n_tasks, agents=4, delay_s=0.1) as swarm:
        swarm.stub.chaos(random_rate=0.2, random_statuses=[429, 529])
        code, out = finish(swarm.launch(), 400)
        assert code == 0, out[-4000:]
        fig = swarm.figures("20 % random 429/529", None, [code])
        fig.report()
        _assert_clean(swarm, fig)
        assert fig.wasted > 0  # the faults really were served


async def _at_least(board: object, n: int) -> bool:
    tasks = await board.tasks()  # type: ignore[attr-defined]
    return sum(t.status == "completed" for t in tasks) >= n


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out
