"""`swarm report` after a real (offline) run, and `swarm ci --junit` with a GitHub step
summary, through the CLI as a user or a CI job runs them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from swarm.llmstub import StubServer, load_script

pytestmark = pytest.mark.e2e

TASKS = ["investigate", "fix-mean", "verify", "document"]


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("ANTHROPIC_", "REDIS_URL", "GITHUB_STEP_SUMMARY")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | extra


def swarm(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm.cli", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check_junit(xml: str, run_id: str) -> ET.Element:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == (
        "4",
        "0",
        "0",
        "0",
    )
    assert run_id in (root.get("name") or "")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["Phase 1: Investigate", "Phase 2: Fix and document"]
    assert [s.get("tests") for s in suites] == ["1", "3"]
    cases = list(root.iter("testcase"))
    assert [c.get("name", "").split(":")[0] for c in cases] == TASKS
    assert cases[0].get("name") == "investigate: Find why the test suite fails"
    assert [c.get("classname") for c in cases] == [suites[0].get("name")] + [
        suites[1].get("name")
    ] * 3
    assert not [c for c in cases if c.find("failure") is not None or c.find("skipped") is not None]
    # each task's wall time, from its stored claim and finish times, within the run's
    run_s = float(root.get("time") or 0)
    times = [float(c.get("time") or -1) for c in cases]
    assert all(0 < t <= run_s for t in times), (times, run_s)
    assert "mean()" in (cases[0].findtext("system-out") or "")  # the task's result
    return root


def test_report_after_the_demo(tmp_path: Path) -> None:
    demo = swarm("demo", "--no-dashboard", cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    snap = json.loads(swarm("status", "--json", cwd=tmp_path).stdout)
    run_id = snap["run_id"]

    junit = swarm("report", "--format", "junit", cwd=tmp_path)
    assert junit.returncode == 0, junit.stderr
    check_junit(junit.stdout, run_id)

    md = swarm("report", run_id, "--format", "md", cwd=tmp_path)
    assert md.returncode == 0, md.stderr
    text = md.stdout
    assert text.startswith("# calc-demo progress report\n")
    assert f"**Run** `{run_id}` · **state** ✅ completed · exit code 0" in text
    assert "### ✅ Phase 1: Investigate (100% complete)" in text
    assert "### ✅ Phase 2: Fix and document (100% complete)" in text
    assert "- [x] Fix the failing function (`fix-mean`, fixer)" in text
    assert "- **Tasks**: 4/4 completed (100%), 0 failed" in text
    u = snap["usage"]
    assert f"- **Model turns**: {u['turns']} " in text
    assert f"- **Tokens**: {u['input_tokens']:,} input / {u['output_tokens']:,} output" in text
    assert f"- **Cost**: ${u['usd']:.4f}" in text
    for a in snap["agents"]:
        assert re.search(
            rf"\*\*{a['name']}\*\* \({a['role']}\): ✅ done; completed `[a-z-]+` · "
            rf"{a['turns']} turns, {a['input_tokens']:,} in / {a['output_tokens']:,} out tokens",
            text,
        ), a["name"]
    assert "Failures" not in text and "Remaining" not in text
    assert "| Wall time |" in text

    data = json.loads(swarm("report", "--format", "json", cwd=tmp_path).stdout)
    assert data["run_id"] == run_id and data["exit_code"] == 0
    assert data["progress"]["percent_complete"] == 100
    assert all(t["wall_s"] > 0 for t in data["tasks"])

    out = tmp_path / "report.md"
    assert swarm("report", "--output", str(out), cwd=tmp_path).returncode == 0
    assert out.read_text(encoding="utf-8").startswith("# calc-demo progress report")

    bad = swarm("report", "--format", "html", cwd=tmp_path)
    assert bad.returncode == 2 and "--format" in bad.stderr
    missing = swarm("report", "no-such-run", cwd=tmp_path)
    assert missing.returncode == 2 and "no-such-run" in missing.stderr


def test_ci_writes_junit_and_step_summary(tmp_path: Path, data_dir: Path) -> None:
    repo = tmp_path / "calc"
    shutil.copytree(data_dir / "examples" / "calc", repo)
    summary = tmp_path / "step-summary.md"
    summary.write_text("# an earlier step\n", encoding="utf-8")
    junit = tmp_path / "reports" / "out.xml"  # its folder does not exist yet
    with StubServer(load_script(data_dir / "configs" / "demo.stub.yaml")) as stub:
        env = clean_env(
            ANTHROPIC_BASE_URL=stub.base_url,
            ANTHROPIC_API_KEY="stub-key-not-secret",
            GITHUB_STEP_SUMMARY=str(summary),
        )
        proc = swarm(
            "ci",
            str(data_dir / "configs" / "demo.yaml"),
            "--repo",
            str(repo),
            "--junit",
            "reports/out.xml",
            "--run-id",
            "ci-report-test",
            cwd=tmp_path,
            env=env,
        )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "junit: reports/out.xml" in proc.stdout
    check_junit(junit.read_text(encoding="utf-8"), "ci-report-test")

    text = summary.read_text(encoding="utf-8")
    assert text.startswith("# an earlier step\n### swarm `calc-demo`: ✅ completed\n")
    assert "Run `ci-report-test` · exit code 0: every task completed" in text
    assert "4/4 tasks completed (100%), 0 failed" in text
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [r.split("`")[1] for r in rows] == TASKS
    assert all("| ✅ completed |" in r for r in rows)
    assert re.search(r"\*\*Usage\*\*: [\d,]+ input \+ [\d,]+ output tokens · 13 model turns", text)
    assert "sum(values) / len(values)" in (repo / "calc.py").read_text()


def test_ci_bad_input_writes_no_report(tmp_path: Path, data_dir: Path) -> None:
    """Bad input (a missing repo) exits 2 before any run, and writes no report."""
    summary = tmp_path / "summary.md"
    proc = swarm(
        "ci",
        str(data_dir / "configs" / "demo.yaml"),
        "--repo",
        str(tmp_path / "missing"),
        "--junit",
        "out.xml",
        cwd=tmp_path,
        env=clean_env(GITHUB_STEP_SUMMARY=str(summary)),
    )
    assert proc.returncode == 2, proc.stderr
    assert not (tmp_path / "out.xml").exists() and not summary.exists()
