"""The offline demo through the CLI, as a user runs it."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.wellformed import anthropic_request_problems

pytestmark = pytest.mark.e2e


def swarm(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "REDIS_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_swarm_fixes_the_bug(tmp_path: Path, data_dir: Path) -> None:
    example = data_dir / "examples" / "calc"
    before = {p.name: p.read_bytes() for p in example.iterdir() if p.is_file()}

    proc = swarm("demo", "--no-dashboard", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "tasks: 4/4 completed, 0 failed" in proc.stdout
    # worktree mode: the work is on the run's branch, merged behind the example's tests
    assert "demo: the agents' work is on branch swarm/calc-demo-" in proc.stdout
    assert "see it with `swarm diff calc-demo-" in proc.stdout

    status = swarm("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    snap = json.loads(status.stdout)
    assert snap["state"] == "completed"
    assert {t["id"]: t["status"] for t in snap["tasks"]} == {
        "investigate": "completed",
        "fix-mean": "completed",
        "verify": "completed",
        "document": "completed",
    }
    assert all(t["attempts"] == 1 for t in snap["tasks"])
    assert {a["name"] for a in snap["agents"]} == {"analyst", "fixer", "tester", "writer"}
    assert all(a["status"] == "done" for a in snap["agents"])
    fixer = next(a for a in snap["agents"] if a["name"] == "fixer")
    assert [t["status"] for t in fixer["todos"]] == ["completed", "completed", "in_progress"]
    assert snap["usage"]["input_tokens"] > 0 and snap["usage"]["usd"] > 0
    assert sum(a["turns"] for a in snap["agents"]) == snap["usage"]["turns"] == 13
    assert sum(t["turns"] for t in snap["tasks"]) == 13
    assert sum(t["usd"] for t in snap["tasks"]) == pytest.approx(snap["usage"]["usd"])

    run_dir = tmp_path / ".swarm" / "demo" / snap["run_id"]
    repo = run_dir / "calc"
    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "-q"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tests.returncode == 0, tests.stderr
    assert "sum(values) / len(values)" in (repo / "calc.py").read_text()
    assert (repo / "docs" / "CHANGES.md").read_text().startswith("# Changes")

    # the original example is untouched
    assert {p.name: p.read_bytes() for p in example.iterdir() if p.is_file()} == before
    assert not (example / "docs").exists()
    assert not filecmp.cmp(example / "calc.py", repo / "calc.py", shallow=False)

    # every request the stub saw was a well-formed Anthropic request
    records = [
        json.loads(line) for line in (run_dir / "stub-requests.jsonl").read_text().splitlines()
    ]
    assert len(records) == 13
    for rec in records:
        assert rec["status"] == 200, rec
        assert anthropic_request_problems(rec["body"]) == [], rec["body"]
        assert "stub-key" not in json.dumps(rec)  # the key is redacted
