"""The interactive dashboard's keys on a real terminal (tmux), on a real swarm: detach
with q while the run goes on (even once its terminal is closed), re-attach with
`swarm watch`, read an agent's conversation, see the topology, survive a resize."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from tests.e2e.swarmrun import start_swarm
from tests.e2e.tuirun import Pane, prepare, reap, swarm_command, swarm_env, tmux
from tests.faults.harness import kill_tree

pytestmark = pytest.mark.e2e

CONFIG = """\
name: tui-test
goal: be watched
model: anthropic/claude-sonnet-5-5
topology: {kind: custom, edges: [[lead, dev]]}
agents:
  - {name: lead, role: developer}
  - {name: dev, role: developer}
phases:
  - name: "Phase 1: Plan"
    tasks:
      - {id: plan, title: Plan it, agent: lead}
  - name: "Phase 2: Build"
    tasks:
      - {id: build, title: Build it, agent: dev, needs: [plan]}
"""


def script(plan_sleep: int, build_sleep: int) -> StubScript:
    def bash(cmd: str) -> dict[str, object]:
        return {"name": "bash", "input": {"command": cmd}}

    return StubScript.model_validate(
        {
            "conversations": [
                {
                    "agent": "lead",
                    "task": "plan",
                    "turns": [
                        {
                            "text": "Telling dev what to build.",
                            "tool_calls": [
                                {"name": "send_message", "input": {"to": "dev", "body": "build it"}}
                            ],
                        },
                        {"tool_calls": [bash(f"sleep {plan_sleep}")]},
                        {"text": "planned"},
                    ],
                },
                {
                    "agent": "dev",
                    "task": "build",
                    "turns": [{"tool_calls": [bash(f"sleep {build_sleep}")]}, {"text": "built"}],
                },
            ]
        }
    )


def stored(redis_url: str, run_id: str) -> tuple[dict[str, str], dict[str, str]]:
    async def read() -> tuple[dict[str, str], dict[str, str]]:
        board = Blackboard(redis_url, run_id)
        try:
            return await board.meta(), {t.id: t.status for t in await board.tasks()}
        finally:
            await board.close()

    return asyncio.run(read())


def test_detach_reattach_conversation_topology(tmp_path: Path, redis_handle: RedisHandle) -> None:
    prepare(tmp_path, CONFIG)
    run_id = f"tui-{os.getpid()}-{int(time.time())}"
    with StubServer(script(plan_sleep=25, build_sleep=12)) as stub:
        env = swarm_env(stub.base_url, redis_handle.url)
        launch = Pane(
            f"tui-l-{tmp_path.name}",
            swarm_command("launch", "swarm.yaml", "--repo", "repo", "--run-id", run_id),
            env,
            tmp_path,
        )
        watch: Pane | None = None
        try:
            # the lead runs its command, the dev waits for it: both shown from stored state
            launch.wait_for(
                lambda f: (
                    "waiting for plan" in f
                    and any("lead" in line and "bash" in line for line in f.splitlines())
                )
            )
            frame = launch.capture()
            assert "tui-test" in frame and f"run {run_id}" in frame and "running" in frame
            assert "Phase 1: Plan" in frame and "0%" in frame

            # enter: the selected agent's (lead, the first) conversation, folded
            launch.keys("Enter")
            frame = launch.wait_for("conversation of lead on task plan")
            launch.wait_for(lambda f: "→ send_message dev" in f and "→ bash sleep 25" in f)
            launch.keys("Escape")
            launch.wait_for(lambda f: "waiting for plan" in f and "conversation of lead" not in f)

            # t: the topology, the message sent along its one edge
            launch.keys("t")
            frame = launch.wait_for("topology custom: 2 agents, 1 edges, 1 carried messages")
            assert "[lead]" in frame and "[dev]" in frame
            launch.wait_for("lead → dev  build it")  # the text, from lead's session
            launch.keys("Escape")

            # a resize redraws; the run goes on
            tmux("resize-window", "-t", launch.name, "-x", "110", "-y", "40")
            launch.wait_for("waiting for plan")

            # q: the view closes, the run goes on in that process
            launch.keys("q")
            launch.wait_for(f"detached: run {run_id} goes on in this process")
            assert stored(redis_handle.url, run_id)[0]["state"] == "running"

            # swarm watch re-attaches from another terminal
            watch = Pane(f"tui-w-{tmp_path.name}", swarm_command("watch", run_id), env, tmp_path)
            watch.wait_for(lambda f: f"run {run_id}" in f and "running" in f and "lead" in f)

            # closing the detached run's terminal does not end the run
            hosts = launch.processes()
            assert hosts, "the launch process is not in its pane"
            launch.kill()
            watch.wait_for(lambda f: "dev" in f and "build" in f, timeout=90)
            final = watch.wait_for("EXIT=0", timeout=120)  # watch ends when the run does
            assert f"run {run_id}: completed; tasks 2/2 completed, 0 failed" in final
            meta, tasks = stored(redis_handle.url, run_id)
            assert meta["state"] == "completed", meta.get("reason")
            assert tasks == {"plan": "completed", "build": "completed"}
            # and the detached process then ended by itself, with all it started
            assert reap(hosts, grace_s=60) == []
        finally:
            launch.kill()
            if watch is not None:
                watch.kill()
            reap(launch.processes(), grace_s=0)


ASK_CONFIG = """\
name: tui-ask
goal: ask a person
model: anthropic/claude-sonnet-5-5
permissions:
  bash: {"*": allow, "echo approved*": ask, "echo refused*": ask}
agents:
  - {name: dev, role: developer}
phases:
  - name: "Phase 1: Ship"
    tasks:
      - {id: ship, title: Ship it, agent: dev}
"""


def test_a_approves_one_call_and_denies_another(tmp_path: Path, redis_handle: RedisHandle) -> None:
    prepare(tmp_path, ASK_CONFIG)
    run_id = f"tui-ask-{os.getpid()}-{int(time.time())}"
    bash = [
        {"tool_calls": [{"name": "bash", "input": {"command": cmd}}]}
        for cmd in ("echo approved-$((6*7))", "echo refused-$((6*8))")
    ]
    stub_script = StubScript.model_validate(
        {"conversations": [{"turns": [*bash, {"text": "shipped"}]}]}
    )
    with StubServer(stub_script) as stub:
        env = swarm_env(stub.base_url, redis_handle.url)
        launch = Pane(
            f"tui-a-{tmp_path.name}",
            swarm_command("launch", "swarm.yaml", "--repo", "repo", "--run-id", run_id),
            env,
            tmp_path,
        )
        try:
            # the dashboard attended the run, so the ask waits for it
            launch.wait_for("1 approval(s) pending: press a")
            launch.keys("a")
            launch.wait_for("dev [ship] bash: echo approved-$((6*7))  (rule echo approved*)")
            launch.keys("y")
            launch.wait_for("allowed: bash for dev")
            launch.wait_for("dev [ship] bash: echo refused-$((6*8))")
            launch.keys("n")
            launch.wait_for("denied: bash for dev")
            launch.keys("Escape")
            final = launch.wait_for("EXIT=0")
            assert "tasks: 1/1 completed" in final
            requests = stub.requests.snapshot()
        finally:
            launch.kill()
            reap(launch.processes(), grace_s=0)
    meta, tasks = stored(redis_handle.url, run_id)
    assert meta["state"] == "completed" and tasks == {"ship": "completed"}
    # what the model saw: the allowed call's output, the denied call's refusal
    seen = json.dumps(requests[-1].body["messages"])
    assert "approved-42" in seen
    assert "refused-48" not in seen and "denied it" in seen


def test_ctrl_c_in_the_dashboard_interrupts_the_run(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    prepare(tmp_path, CONFIG)
    run_id = f"tui-int-{os.getpid()}-{int(time.time())}"
    with StubServer(script(plan_sleep=60, build_sleep=1)) as stub:
        launch = Pane(
            f"tui-i-{tmp_path.name}",
            swarm_command("launch", "swarm.yaml", "--repo", "repo", "--run-id", run_id),
            swarm_env(stub.base_url, redis_handle.url),
            tmp_path,
        )
        try:
            launch.wait_for("waiting for plan")
            launch.keys("C-c")
            final = launch.wait_for("EXIT=", timeout=60)
        finally:
            launch.kill()
            reap(launch.processes(), grace_s=0)
    assert "EXIT=130" in final, final  # as Ctrl-C without a dashboard: state kept
    meta, tasks = stored(redis_handle.url, run_id)
    assert meta["state"] == "interrupted" and tasks["plan"] in ("claimed", "ready")


def test_a_closed_pipe_does_not_stop_the_run(tmp_path: Path, redis_handle: RedisHandle) -> None:
    """`swarm launch ... | head -n 1`: the plain lines' reader goes away at once."""
    prepare(tmp_path, CONFIG)
    run_id = f"tui-pipe-{os.getpid()}-{int(time.time())}"
    with StubServer(script(plan_sleep=2, build_sleep=1)) as stub:
        proc = start_swarm(tmp_path, stub, redis_handle.url, run_id)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline()
            proc.stdout.close()  # the pipe's reader is gone
            code = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
    meta, tasks = stored(redis_handle.url, run_id)
    assert meta["state"] == "completed" and tasks == {"plan": "completed", "build": "completed"}
    assert code == 0  # the run's exit code, not a failed flush's
