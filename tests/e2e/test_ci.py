"""`swarm ci` as a CI job runs it: the verdict matrix, the outputs and artifacts, and a
re-run after a kill that resumes (checked against the scripted server's request log)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from swarm.blackboard.connection import stop_embedded
from swarm.llmstub import StubScript, StubServer, load_script

pytestmark = pytest.mark.e2e

KEY = "sk-ant-test-0123456789abcdef0123"  # long enough to count as a secret


def env(stub: StubServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    drop = ("ANTHROPIC_", "REDIS_URL", "GITHUB_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return base | {
        "ANTHROPIC_BASE_URL": stub.base_url,
        "ANTHROPIC_API_KEY": KEY,
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        **extra,
    }


def ci(*args: str, cwd: Path, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", "ci", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def outputs(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "output.txt").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def git_repo(path: Path, source: Path | None = None) -> Path:
    if source is not None:
        shutil.copytree(source, path)
    else:
        path.mkdir()
        (path / "README.md").write_text("a repository\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start"],
    ):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)
    return path


def tiny(tmp_path: Path, data_dir: Path, turns: list[dict[str, Any]]) -> StubServer:
    """A one-agent, one-task config on a git repository, and its script."""
    shutil.copytree(data_dir / "agents", tmp_path / "agents")
    (tmp_path / "swarm.yaml").write_text(
        "name: tiny\ngoal: a small job\nmodel: anthropic/claude-sonnet-5-5\n"
        "budget: {max_usd: 5}\nagents:\n  - {name: dev, role: developer}\n"
        "phases:\n  - name: one\n    tasks:\n      - {id: job, title: The job, agent: dev}\n"
    )
    git_repo(tmp_path / "repo")
    script = StubScript.model_validate({"conversations": [{"task": "job", "turns": turns}]})
    return StubServer(script).start()


def test_a_successful_run_writes_outputs_artifacts_and_a_branch(
    tmp_path: Path, data_dir: Path
) -> None:
    repo = git_repo(tmp_path / "calc", data_dir / "examples" / "calc")
    art = tmp_path / "art"
    with StubServer(load_script(data_dir / "configs" / "demo.stub.yaml")) as stub:
        proc = ci(
            str(data_dir / "configs" / "demo.yaml"),
            "--repo",
            str(repo),
            "--artifacts",
            str(art),
            "--require-changes",
            cwd=tmp_path,
            environ=env(stub, tmp_path, GITHUB_RUN_ID="4242"),
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = outputs(tmp_path)
    assert out["run-id"] == "gh-4242"  # from the workflow run: a re-run finds it again
    assert (out["verdict"], out["state"], out["exit-code"]) == ("success", "completed", "0")
    assert out["branch"] == "swarm/gh-4242" and float(out["usd"]) > 0 and int(out["tokens"]) > 0
    assert out["report-path"] == str(art / "report.md")
    for name in ("report.md", "report.json", "junit.xml", "events.jsonl", "swarm.patch"):
        assert (art / name).is_file(), name
    patch = (art / "swarm.patch").read_text()
    assert "calc.py" in patch and "sum(values) / len(values)" in patch
    events = (art / "events.jsonl").read_text()
    assert KEY not in events and "model_turn" in events
    assert all(json.loads(line)["type"] for line in events.splitlines())
    assert any((art / "state" / n).exists() for n in ("appendonly.aof", "appendonlydir"))
    assert not (art / "state" / "password").exists()  # the state carries no secret
    summary = (tmp_path / "summary.md").read_text()
    assert "**Verdict: ✅ success**" in summary and "of the $5.0000 budget" in summary
    assert "**Branch**: `swarm/gh-4242`" in summary and "task(s) merged" in summary
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--oneline", "swarm/gh-4242"],
        capture_output=True,
        text=True,
    )
    assert "fix-mean" in log.stdout
    assert not psutil.Process().children(recursive=True)  # nothing left running


def test_a_failed_task_fails_the_job(tmp_path: Path, data_dir: Path) -> None:
    stub = tiny(
        tmp_path,
        data_dir,
        [{"tool_calls": [{"name": "task_fail", "input": {"reason": "no database here"}}]}],
    )
    try:
        proc = ci("swarm.yaml", "--repo", "repo", cwd=tmp_path, environ=env(stub, tmp_path))
    finally:
        stub.stop()
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = outputs(tmp_path)
    assert (out["verdict"], out["exit-code"]) == ("failure", "1")
    summary = (tmp_path / "summary.md").read_text()
    assert "**Verdict: ❌ failure**" in summary and "no database here" in summary


def test_a_run_that_changed_nothing_fails_with_require_changes(
    tmp_path: Path, data_dir: Path
) -> None:
    stub = tiny(tmp_path, data_dir, [{"text": "Nothing needed changing."}])
    try:
        proc = ci(
            "swarm.yaml",
            "--repo",
            "repo",
            "--require-changes",
            cwd=tmp_path,
            environ=env(stub, tmp_path),
        )
    finally:
        stub.stop()
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = outputs(tmp_path)
    assert out["verdict"] == "failure" and out["state"] == "completed"
    assert "--require-changes: the run changed nothing" in (tmp_path / "summary.md").read_text()


def test_a_budget_reached_is_never_success(tmp_path: Path, data_dir: Path) -> None:
    repo = git_repo(tmp_path / "calc", data_dir / "examples" / "calc")
    with StubServer(load_script(data_dir / "configs" / "demo.stub.yaml")) as stub:
        proc = ci(
            str(data_dir / "configs" / "demo.yaml"),
            "--repo",
            str(repo),
            "--max-usd",
            "0.02",
            "--run-id",
            "tight",
            cwd=tmp_path,
            environ=env(stub, tmp_path),
        )
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = outputs(tmp_path)
    assert (out["verdict"], out["exit-code"], out["state"]) == ("budget", "3", "budget")
    assert out["branch"] == "swarm/tight"  # merged work stays on the branch
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%B", "main..swarm/tight"],
        capture_output=True,
        text=True,
    ).stdout
    summary = (tmp_path / "summary.md").read_text()
    assert "**Verdict: ❌ budget**" in summary
    line = next(x for x in summary.splitlines() if x.startswith("**Branch**"))
    merged = [part.strip("`, ") for part in line.split("merged", 1)[1].split(":")[-1].split()]
    for task in filter(None, merged):  # every merged task's work is on the branch
        assert f"Swarm-Task: {task}" in log, (task, log)


def test_bad_input_exits_2_before_any_request(tmp_path: Path, data_dir: Path) -> None:
    stub = tiny(tmp_path, data_dir, [{"text": "done"}])
    cfg = tmp_path / "swarm.yaml"
    cfg.write_text(cfg.read_text().replace("goal: a small job", "goal: a small job\ngaol: typo"))
    try:
        proc = ci("swarm.yaml", "--repo", "repo", cwd=tmp_path, environ=env(stub, tmp_path))
        bad_model = ci(
            "swarm.yaml",
            "--repo",
            "repo",
            "--model",
            "claude",
            cwd=tmp_path,
            environ=env(stub, tmp_path),
        )
    finally:
        stub.stop()
    assert proc.returncode == 2 and "swarm.yaml:3" in proc.stderr and "gaol" in proc.stderr
    assert bad_model.returncode == 2
    assert len(stub.requests) == 0


def test_a_rerun_after_a_kill_resumes_and_repeats_no_completed_task(
    tmp_path: Path, data_dir: Path
) -> None:
    repo = git_repo(tmp_path / "calc", data_dir / "examples" / "calc")
    art = tmp_path / "art"
    data = load_script(data_dir / "configs" / "demo.stub.yaml").model_dump(exclude_none=True)
    conv = next(c for c in data["conversations"] if c.get("task") == "fix-mean")
    conv["turns"][0]["delay_s"] = 4  # the job is killed while this request is out
    last_investigate = next(
        len(c["turns"]) - 1 for c in data["conversations"] if c.get("task") == "investigate"
    )
    script = StubScript.model_validate(data)
    with StubServer(script) as stub:
        environ = env(stub, tmp_path, GITHUB_RUN_ID="777", GITHUB_RUN_ATTEMPT="1")
        args = [
            sys.executable,
            "-m",
            "swarm.cli",
            "ci",
            str(data_dir / "configs" / "demo.yaml"),
            "--repo",
            str(repo),
            "--artifacts",
            str(art),
        ]
        first = subprocess.Popen(
            args,
            cwd=tmp_path,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while not any(
            r.task == "investigate" and r.turn == last_investigate for r in stub.requests
        ):  # investigate answered its last turn
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        time.sleep(2.0)  # it completes; fix-mean is claimed and its first request is out
        tree = [first.pid, *(p.pid for p in psutil.Process(first.pid).children(recursive=True))]
        for pid in tree:  # the runner is gone: the job and everything it started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        first.wait()
        time.sleep(1.5)  # the embedded Redis writes its log to disk every second
        # what the action's always() step uploads, then restores on the re-run's runner
        subprocess.run(
            [sys.executable, "-m", "swarm.ci", "save-state", str(art / "state")],
            cwd=tmp_path,
            check=True,
            env=environ,
        )
        stop_embedded(tmp_path / ".swarm")
        for _ in range(50):  # a fresh runner: nothing but the artifacts
            shutil.rmtree(tmp_path / ".swarm", ignore_errors=True)
            if not (tmp_path / ".swarm").exists():
                break
            time.sleep(0.1)  # a process of the killed run still writing there
        before = list(stub.requests)
        done_before = {r.task for r in before if r.task} - {"fix-mean"}
        assert done_before == {"investigate"}, done_before
        # fix-mean's first request was out when the job died (answered to no one)
        assert {r.turn for r in before if r.task == "fix-mean"} <= {0}
        second = ci(*args[4:], cwd=tmp_path, environ={**environ, "GITHUB_RUN_ATTEMPT": "2"})
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming it" in second.stdout
    after = stub.requests[len(before) :]
    repeated = {r.task for r in after} & done_before
    assert not repeated, repeated  # no completed task's requests sent again
    assert outputs(tmp_path)["verdict"] == "success"
