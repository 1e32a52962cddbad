"""Worktree runs end to end: real git, a real swarm (CLI, local Ray, real Redis) against
the scripted server. The user's checkout is compared byte for byte before and after."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import RedisHandle
from swarm.llmstub import StubScript, StubServer
from tests.e2e.swarmrun import AGENTS_DIR, new_run_id, start_swarm

pytestmark = pytest.mark.e2e


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "u",
        "GIT_AUTHOR_EMAIL": "u@x",
        "GIT_COMMITTER_NAME": "u",
        "GIT_COMMITTER_EMAIL": "u@x",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_repo(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q", "--initial-branch=main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "init")
    return repo


def user_state(repo: Path) -> tuple[str, str, str, str]:
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "ls-files", "-s"),  # the index
    )


def swarm_cli(tmp_path: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url}
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def launch(
    tmp_path: Path, redis: RedisHandle, config: str, script: dict[str, Any], run_id: str
) -> tuple[subprocess.CompletedProcess[str], StubServer]:
    (tmp_path / "swarm.yaml").write_text(config)
    if not (tmp_path / "agents").exists():
        shutil.copytree(AGENTS_DIR, tmp_path / "agents")
    with StubServer(StubScript.model_validate(script)) as stub:
        proc = start_swarm(tmp_path, stub, redis.url, run_id, tmp_path / "repo")
        out, _ = proc.communicate(timeout=240)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, ""), stub


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "input": args}]}


async def _events(url: str, run_id: str) -> list[Any]:
    board = Blackboard(url, run_id)
    try:
        return await board.events(count=100_000)
    finally:
        await board.close()


CONFLICT_CONFIG = """\
name: wt-conflict
goal: two agents change one line
model: anthropic/claude-sonnet-5-5
lease_s: 20
workspace: worktree
agents:
  - {name: alice, role: developer}
  - {name: bob, role: developer}
phases:
  - name: one
    tasks:
      - {id: ta, title: Set x to 2, agent: alice}
      - {id: tb, title: Set x to 3, agent: bob}
  - name: two
    tasks:
      - {id: tc, title: Check both, agent: alice, needs: [ta, tb]}
"""

CONFLICT_SCRIPT = {
    "conversations": [
        {
            "agent": "alice",
            "task": "ta",
            "turns": [
                # a head start for bob: his worktree must start before ta is merged
                {"delay_s": 2, **call("read", file_path="a.py")},
                call("write", file_path="a.py", content="x = 2\n"),
                {"text": "set x to 2"},
            ],
        },
        {
            "agent": "bob",
            "task": "tb",
            "turns": [
                call("read", file_path="a.py"),
                call("write", file_path="a.py", content="x = 3\n"),
                {"delay_s": 3, "text": "set x to 3"},  # finishes after alice has merged
                {
                    "expect": {"last_user_text_contains": "a.py (also changed by task ta)"},
                    **call("read", file_path="a.py"),
                },
                {
                    "expect": {"last_tool_result_contains": "<<<<<<<"},
                    **call("write", file_path="a.py", content="x = 2 + 3\n"),
                },
                {"text": "resolved: x = 2 + 3"},
            ],
        },
        {
            "agent": "alice",
            "task": "tc",
            "turns": [
                call("read", file_path="a.py"),
                {"expect": {"last_tool_result_contains": "x = 2 + 3"}, "text": "both are in"},
            ],
        },
    ]
}


def test_conflict_goes_back_to_the_agent_and_nothing_is_lost(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    repo = make_repo(tmp_path, {"a.py": "x = 1\n"})
    before = user_state(repo)
    run_id = new_run_id("wtc")
    proc, _ = launch(tmp_path, redis_handle, CONFLICT_CONFIG, CONFLICT_SCRIPT, run_id)
    assert proc.returncode == 0, proc.stdout[-4000:]

    # the user's checkout did not move; the run's branch has both tasks' work
    assert user_state(repo) == before
    branch = f"swarm/{run_id}"
    assert git(repo, "show", f"{branch}:a.py") == "x = 2 + 3\n"
    log = git(repo, "log", "--format=%an %s", branch)
    assert "alice ta: Set x to 2" in log and "bob tb: Set x to 3" in log
    first_parent = git(repo, "log", "--first-parent", "--format=%s", branch).splitlines()
    assert first_parent == ["Merge tb: Set x to 3", "Merge ta: Set x to 2", "init"]

    events = asyncio.run(_events(redis_handle.url, run_id))
    kinds = [(e.type, e.task) for e in events]
    assert ("merge_conflict", "tb") in kinds
    conflict = next(e for e in events if e.type == "merge_conflict")
    assert conflict.data["files"] == ["a.py"] and conflict.data["by"] == {"a.py": ["ta"]}
    assert [t for k, t in kinds if k == "merged"] == ["ta", "tb"]
    assert [t for k, t in kinds if k == "task_completed"].count("tb") == 1
    # no worktree is left after a completed run
    assert not (tmp_path / ".swarm" / "worktrees" / run_id).exists()

    report = swarm_cli(tmp_path, redis_handle.url, "report", run_id)
    assert report.returncode == 0, report.stderr
    assert f"**Branch**: `{branch}`" in report.stdout
    tb_sha = git(repo, "rev-parse", branch).strip()
    assert f"(`tb`, bob) — merged `{tb_sha[:10]}`: 1 file(s), +1 -1" in report.stdout

    # swarm diff shows the change; swarm apply brings it in
    diff = swarm_cli(tmp_path, redis_handle.url, "diff", run_id)
    assert diff.returncode == 0, diff.stderr
    assert "-x = 1\n+x = 2 + 3" in diff.stdout
    (repo / "a.py").write_text("dirty\n")
    refused = swarm_cli(tmp_path, redis_handle.url, "apply", run_id)
    assert refused.returncode == 2 and "uncommitted changes" in refused.stderr
    assert (repo / "a.py").read_text() == "dirty\n"
    assert git(repo, "rev-parse", "HEAD") == before[0]
    git(repo, "checkout", "-q", "--", "a.py")
    applied = swarm_cli(tmp_path, redis_handle.url, "apply", run_id)
    assert applied.returncode == 0, applied.stderr
    assert (repo / "a.py").read_text() == "x = 2 + 3\n"
    assert git(repo, "status", "--porcelain") == ""


GATE_CONFIG = """\
name: wt-gate
goal: keep the tests green
model: anthropic/claude-sonnet-5-5
lease_s: 20
merge: {gate: "python3 -m unittest -q", gate_timeout_s: 60}
agents:
  - {name: dev, role: developer}
phases:
  - name: one
    tasks:
      - {id: change, title: Change add, agent: dev}
"""

GATE_SCRIPT = {
    "conversations": [
        {
            "agent": "dev",
            "task": "change",
            "turns": [
                call("read", file_path="calc.py"),
                call("write", file_path="calc.py", content="def add(a, b):\n    return a - b\n"),
                {"text": "changed add"},
                {
                    "expect": {"last_user_text_contains": "python3 -m unittest -q"},
                    **call("read", file_path="calc.py"),
                },
                call(
                    "write",
                    file_path="calc.py",
                    content="def add(a, b):\n    return a + b  # checked\n",
                ),
                {"text": "fixed add"},
            ],
        }
    ]
}

TESTS = "import unittest\nfrom calc import add\n\nclass T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"


def test_gate_keeps_a_broken_change_off_the_branch(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    repo = make_repo(
        tmp_path, {"calc.py": "def add(a, b):\n    return a + b\n", "test_calc.py": TESTS}
    )
    before = user_state(repo)
    run_id = new_run_id("wtg")
    proc, stub = launch(tmp_path, redis_handle, GATE_CONFIG, GATE_SCRIPT, run_id)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert user_state(repo) == before
    branch = f"swarm/{run_id}"
    # every commit on the branch's first-parent history passed the gate: the broken
    # version never reached it
    for sha in git(repo, "rev-list", "--first-parent", branch).split():
        assert "a - b" not in git(repo, "show", f"{sha}:calc.py")
    assert "a + b  # checked" in git(repo, "show", f"{branch}:calc.py")
    events = asyncio.run(_events(redis_handle.url, run_id))
    failed = [e for e in events if e.type == "gate_failed"]
    assert len(failed) == 1 and failed[0].data["exit_code"] != 0
    assert "FAILED" in failed[0].data["tail"] or "Error" in failed[0].data["tail"]
    # the model saw the gate's output
    fed_back = json.dumps(stub.requests[3].body)
    assert "merge gate" in fed_back and "python3 -m unittest -q" in fed_back


DIRTY_CONFIG = GATE_CONFIG.replace(
    'merge: {gate: "python3 -m unittest -q", gate_timeout_s: 60}\n', ""
)


def test_dirty_tree_is_refused_and_clean_keeps_unmerged_work(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    repo = make_repo(tmp_path, {"calc.py": "def add(a, b):\n    return a + b\n"})
    (repo / "notes.txt").write_text("mine\n")
    (tmp_path / "swarm.yaml").write_text(DIRTY_CONFIG)
    shutil.copytree(AGENTS_DIR, tmp_path / "agents")
    env = {"ANTHROPIC_API_KEY": "k", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarm.cli",
            "launch",
            "swarm.yaml",
            "--repo",
            str(repo),
            "--no-dashboard",
        ],
        cwd=tmp_path,
        env={**os.environ, **env, "REDIS_URL": redis_handle.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "notes.txt" in proc.stderr and "--include-dirty" in proc.stderr
    assert git(repo, "branch", "--list", "swarm/*") == ""
    os.remove(repo / "notes.txt")

    # a task that fails keeps its branch; clean refuses to drop it without --force
    script = {
        "conversations": [
            {
                "agent": "dev",
                "task": "change",
                "turns": [
                    call("read", file_path="calc.py"),
                    call(
                        "write", file_path="calc.py", content="def add(a, b):\n    return b + a\n"
                    ),
                    call("task_fail", reason="cannot finish"),
                ],
            }
        ]
    }
    run_id = new_run_id("wtd")
    done, _ = launch(tmp_path, redis_handle, DIRTY_CONFIG, script, run_id)
    assert done.returncode == 1, done.stdout[-3000:]
    wt = tmp_path / ".swarm" / "worktrees" / run_id / "change"
    assert (wt / "calc.py").read_text() == "def add(a, b):\n    return b + a\n"
    # commit what the agent left, as a person inspecting the branch might
    git(wt, "commit", "-qam", "keep")
    kept = swarm_cli(tmp_path, redis_handle.url, "clean", run_id)
    assert kept.returncode == 0, kept.stderr
    assert f"kept swarm/{run_id}-tasks/change" in kept.stdout
    assert git(repo, "branch", "--list", f"swarm/{run_id}-tasks/change").strip()
    forced = swarm_cli(tmp_path, redis_handle.url, "clean", run_id, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"removed branch swarm/{run_id}-tasks/change" in forced.stdout
    assert not git(repo, "branch", "--list", f"swarm/{run_id}-tasks/*").strip()
    assert not wt.exists()


def many_config(agents: int, tasks: int) -> str:
    lines = [
        "name: wt-many",
        "goal: many agents, many files",
        "model: anthropic/claude-sonnet-5-5",
        "lease_s: 30",
        "agents:",
        f"  - {{name: dev, role: developer, count: {agents}}}",
        "phases:",
        "  - name: one",
        "    tasks:",
    ]
    lines += [
        f"      - {{id: t{i}, title: File {i}, role: developer, paths: [out/f{i}.txt]}}"
        for i in range(tasks)
    ]
    return "\n".join(lines) + "\n"


def test_ten_agents_twenty_tasks_merge_one_at_a_time(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    make_repo(tmp_path, {"README": "many\n"})
    script = {
        "conversations": [
            {
                "task": f"t{i}",
                "turns": [
                    call("write", file_path=f"out/f{i}.txt", content=f"file {i}\n"),
                    {"text": f"wrote f{i}"},
                ],
            }
            for i in range(20)
        ]
    }
    run_id = new_run_id("wtm")
    proc, _ = launch(tmp_path, redis_handle, many_config(10, 20), script, run_id)
    assert proc.returncode == 0, proc.stdout[-4000:]
    repo = tmp_path / "repo"
    branch = f"swarm/{run_id}"
    files = git(repo, "ls-tree", "-r", "--name-only", branch).split()
    assert sorted(files) == sorted(["README"] + [f"out/f{i}.txt" for i in range(20)])
    events = asyncio.run(_events(redis_handle.url, run_id))
    merged = [e.task for e in events if e.type == "merged"]
    assert sorted(merged) == sorted(f"t{i}" for i in range(20))  # each exactly once
    # one merge at a time: every merge ends before the next one starts
    spans: list[tuple[int, int]] = []
    open_at: dict[str, int] = {}
    for e in events:
        if e.type == "merge_started":
            open_at[e.task] = e.ts
        elif e.type in ("merged", "merge_conflict", "gate_failed") and e.task in open_at:
            spans.append((open_at.pop(e.task), e.ts))
    assert len(spans) == 20
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end
    assert not (tmp_path / ".swarm" / "worktrees" / run_id).exists()
    assert git(repo, "branch", "--list", f"swarm/{run_id}-tasks/*") == ""


def test_sigkill_mid_task_resumes_in_the_same_worktree(
    tmp_path: Path, redis_handle: RedisHandle
) -> None:
    from tests.e2e.test_kill import CONFIG, SCRIPT, _kill_when_in_turn_2

    repo = make_repo(tmp_path, {"README": "kill\n"})
    before = user_state(repo)
    (tmp_path / "swarm.yaml").write_text(CONFIG)
    shutil.copytree(AGENTS_DIR, tmp_path / "agents")
    run_id = new_run_id("wtk")
    with StubServer(StubScript.model_validate(SCRIPT)) as stub:
        proc = start_swarm(tmp_path, stub, redis_handle.url, run_id, repo)
        try:
            asyncio.run(_kill_when_in_turn_2(stub, redis_handle.url, run_id))
            out, _ = proc.communicate(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out[-4000:]
        turns = [r.turn for r in stub.requests if r.agent == "worker"]
    assert turns == [0, 1, 2, 2, 3], turns  # continued, not restarted
    # the effects before the kill were kept in the worktree and merged exactly once
    assert git(repo, "show", f"swarm/{run_id}:log.txt").split() == ["one", "two", "three"]
    events = asyncio.run(_events(redis_handle.url, run_id))
    assert [e.task for e in events if e.type == "merged"] == ["long"]
    assert user_state(repo) == before
