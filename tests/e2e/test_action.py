"""The composite action (action.yml) run locally the way a GitHub runner runs it.

Each job is a fresh clone of a fixture repository (examples/calc with the demo config as
.github/swarm.yaml) whose `origin` is a local bare repository; GITHUB_* and RUNNER_*
are set; `uses:` steps are stand-ins (setup-python: nothing; upload/download-artifact: a
local artifact store shared by the attempts of one workflow run); a stand-in `gh` first on
PATH records what it was asked and prints a made-up pull request URL; the swarm inside runs
offline against the scripted LLM server. The action's install step is skipped through its
documented test hook SWARM_BIN (this checkout's CLI), so nothing is installed here. Every
attempt runs on a fresh runner: the same workspace path as on GitHub, nothing left of the
previous attempt but the artifacts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarm.blackboard.connection import stop_embedded
from swarm.llmstub import StubScript, StubServer
from swarm.paths import DATA_DIR
from tests.e2e.actionrunner import ActionResult, Runner

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "4242"
REPO_SLUG = "acme/calc"
PR_URL = f"https://github.com/{REPO_SLUG}/pull/1"
OUTPUTS = {
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

GH_STANDIN = """\
#!{python}
# A stand-in for the gh CLI: records each call (argv, the --body-file's text, stdin) as a
# JSON line in $GH_STANDIN_LOG and answers like gh for the calls the action makes.
import json, os, sys
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
body = open(opt("--body-file"), encoding="utf-8").read() if opt("--body-file") else None
stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
with open(os.environ["GH_STANDIN_LOG"], "a", encoding="utf-8") as f:
    f.write(json.dumps({{"argv": args, "body": body, "stdin": stdin,
                        "token": bool(os.environ.get("GH_TOKEN"))}}) + "\\n")
prs_file = os.environ["GH_STANDIN_PRS"]
prs = json.load(open(prs_file)) if os.path.exists(prs_file) else {{}}
if args[:2] == ["pr", "list"]:
    print(prs.get(opt("--head"), ""))
elif args[:2] == ["pr", "create"]:
    url = "https://github.com/{slug}/pull/%d" % (len(prs) + 1)
    prs[opt("--head")] = url
    json.dump(prs, open(prs_file, "w"))
    print("Creating pull request for %s into %s" % (opt("--head"), opt("--base")), file=sys.stderr)
    print(url)
elif args[:2] == ["pr", "edit"]:
    print(args[2])
else:
    print("gh stand-in: unsupported call %r" % args, file=sys.stderr)
    sys.exit(1)
"""


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-c", "user.name=fixture", "-c", "user.email=fixture@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"git {args}: {proc.stderr}"
    return proc.stdout.strip()


def demo_script(fail_document: bool = False, slow_fix: bool = False) -> StubScript:
    """The demo's scripted model without its watchable delays; optionally the writer gives
    up on `document`, after the fix has been merged (a failed verdict with work to keep),
    or the first answer for `fix-mean` takes a while (a moment to cancel the job in, with
    the request in flight and no tool running)."""
    data = yaml.safe_load((DATA_DIR / "configs" / "demo.stub.yaml").read_text(encoding="utf-8"))
    for conv in data["conversations"]:
        for turn in conv["turns"]:
            turn["delay_s"] = 0
        if slow_fix and conv.get("task") == "fix-mean":
            conv["turns"][0]["delay_s"] = 4
        if fail_document and conv.get("task") == "document":
            conv["turns"] = [
                {"tool_calls": [{"name": "task_fail", "input": {"reason": "no docs today"}}]}
            ]
    return StubScript.model_validate(data)


@dataclass
class Workflow:
    """One workflow run: the fixture's origin, the artifact store its attempts share, the
    stand-in gh's records, and the scripted server."""

    tmp: Path
    origin: Path
    store: Path
    stub: StubServer
    gh_log: Path = field(init=False)
    gh_prs: Path = field(init=False)
    bin: Path = field(init=False)
    swarm_bin: Path = field(init=False)
    runner: Path = field(init=False)

    def __post_init__(self) -> None:
        self.gh_log = self.tmp / "gh-calls.jsonl"
        self.gh_prs = self.tmp / "gh-prs.json"
        self.bin = self.tmp / "bin"  # first on PATH: the stand-in gh
        self.bin.mkdir()
        gh = self.bin / "gh"
        gh.write_text(GH_STANDIN.format(python=sys.executable, slug=REPO_SLUG), encoding="utf-8")
        # SWARM_BIN: this checkout's swarm, and the python beside it (as in a venv's bin/)
        venv_bin = self.tmp / "swarm-venv" / "bin"
        venv_bin.mkdir(parents=True)
        self.swarm_bin = venv_bin / "swarm"
        self.swarm_bin.write_text(
            f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m swarm.cli "$@"\n',
            encoding="utf-8",
        )
        python = venv_bin / "python"
        python.write_text(
            f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" "$@"\n', encoding="utf-8"
        )
        for p in (gh, self.swarm_bin, python):
            p.chmod(p.stat().st_mode | stat.S_IXUSR)
        self.runner = self.tmp / "runner"

    def gh_calls(self) -> list[dict[str, Any]]:
        if not self.gh_log.exists():
            return []
        return [json.loads(line) for line in self.gh_log.read_text().splitlines()]

    def fresh_runner(self) -> None:
        """Nothing of an earlier attempt's runner is left (its embedded Redis stopped)."""
        if self.runner.exists():
            stop_embedded(self.runner / "work" / "calc" / "calc" / ".swarm")
            shutil.rmtree(self.runner)

    def attempt(
        self,
        n: int,
        inputs: dict[str, str],
        cancel: tuple[str, Callable[[], bool]] | None = None,
    ) -> tuple[ActionResult, Path]:
        """Run the action as attempt n of the workflow run on a fresh runner: a new clone
        of origin at the same path, a new RUNNER_TEMP, the same artifact store."""
        self.fresh_runner()
        job = self.runner
        workspace = job / "work" / "calc" / "calc"
        git(self.tmp, "clone", "--quiet", str(self.origin), str(workspace))
        home = job / "home"  # no ~/.gitconfig, like a fresh runner
        home.mkdir()
        drop = ("ANTHROPIC_", "OPENAI_", "REDIS_URL", "GITHUB_", "RUNNER_", "GH_", "SWARM_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)} | {
            "HOME": str(home),
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_RUN_ID": RUN_ID,
            "GITHUB_RUN_ATTEMPT": str(n),
            "GITHUB_REPOSITORY": REPO_SLUG,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_EVENT_NAME": "workflow_dispatch",
            "GITHUB_BASE_REF": "",
            "GITHUB_ACTION_PATH": str(ROOT),
            "RUNNER_TEMP": str(job / "temp"),
            "RUNNER_OS": "Linux",
            # the caller's step env: the provider key from its secrets (here: the stub's)
            "ANTHROPIC_BASE_URL": self.stub.base_url,
            "ANTHROPIC_API_KEY": "stub-key-not-secret",
            # the stand-ins' records, and the action's test hook
            "GH_STANDIN_LOG": str(self.gh_log),
            "GH_STANDIN_PRS": str(self.gh_prs),
            "SWARM_BIN": str(self.swarm_bin),
        }
        github = {
            "run_id": RUN_ID,
            "run_attempt": str(n),
            "workspace": str(workspace),
            "repository": REPO_SLUG,
            "event_name": "workflow_dispatch",
            "base_ref": "",
            "token": "ghs_not_a_real_token",
            "server_url": "https://github.com",
            "action_path": str(ROOT),
            "event": {"repository": {"default_branch": "main"}},
        }
        runner = Runner(
            action_dir=ROOT,
            workspace=workspace,
            runner_temp=job / "temp",
            github=github,
            env=env,
            uses={
                "actions/setup-python": lambda with_, env: {"python-path": sys.executable},
                "actions/upload-artifact": self.upload,
                "actions/download-artifact": self.download,
            },
            cancel=cancel,
        )
        return runner.run(inputs), workspace

    # actions/upload-artifact and actions/download-artifact against a local store
    def upload(self, with_: dict[str, str], env: dict[str, str]) -> dict[str, str]:
        lines = [s.strip() for s in with_["path"].splitlines() if s.strip()]
        include = [Path(s) for s in lines if not s.startswith("!")]
        exclude = [Path(s[1:]) for s in lines if s.startswith("!")]
        assert len(include) == 1, "one folder per artifact in action.yml"
        hidden = with_.get("include-hidden-files", "false") == "true"
        root = include[0]
        files = []
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(root)
                if not p.is_file() or any(p == e or e in p.parents for e in exclude):
                    continue
                if not hidden and any(part.startswith(".") for part in rel.parts):
                    continue
                files.append(rel)
        if not files:
            if with_.get("if-no-files-found", "warn") == "error":
                raise FileNotFoundError(f"no files at {root}")
            return {}
        dest = self.store / with_["name"]
        if dest.exists():
            if with_.get("overwrite", "false") != "true":
                raise FileExistsError("(409) Conflict: an artifact with this name already exists")
            shutil.rmtree(dest)
        for rel in files:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, dest / rel)
        return {"artifact-id": str(len(list(self.store.iterdir())))}

    def download(self, with_: dict[str, str], env: dict[str, str]) -> dict[str, str]:
        src = self.store / with_["name"]
        if not src.is_dir():
            raise FileNotFoundError(f"Artifact not found for name: {with_['name']}")
        shutil.copytree(src, with_["path"], dirs_exist_ok=True)
        return {"download-path": with_["path"]}


def make_origin(tmp: Path) -> Path:
    seed = tmp / "seed"
    shutil.copytree(DATA_DIR / "examples" / "calc", seed)
    (seed / ".github").mkdir()
    shutil.copy(DATA_DIR / "configs" / "demo.yaml", seed / ".github" / "swarm.yaml")
    git(seed, "init", "--quiet", "--initial-branch=main")
    git(seed, "add", "-A")
    git(seed, "commit", "--quiet", "-m", "calc with a bug")
    origin = tmp / "origin.git"
    git(tmp, "clone", "--quiet", "--bare", str(seed), str(origin))
    return origin


class InFlight:
    """ASGI middleware counting the scripted server's requests not yet answered."""

    def __init__(self, app: Any) -> None:
        self.app, self.count = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.count -= 1


@contextlib.contextmanager
def new_workflow(tmp_path: Path, script: StubScript) -> Iterator[Workflow]:
    server = StubServer(script, record_path=tmp_path / "stub-requests.jsonl")
    server.app.asgi = InFlight(server.app.asgi)  # type: ignore[assignment]
    with server as stub:
        store = tmp_path / "artifact-store"
        store.mkdir()
        wf = Workflow(tmp_path, make_origin(tmp_path), store, stub)
        try:
            yield wf
        finally:
            wf.fresh_runner()


@pytest.fixture
def workflow(tmp_path: Path) -> Iterator[Workflow]:
    with new_workflow(tmp_path, demo_script()) as wf:
        yield wf


def check_outputs(result: ActionResult, verdict: str, exit_code: int) -> dict[str, str]:
    out = result.outputs
    assert set(out) == OUTPUTS
    assert out["run-id"] == f"gh-{RUN_ID}", result.log()
    assert (out["verdict"], out["exit-code"]) == (verdict, str(exit_code)), result.log()
    assert out["branch"] == f"swarm/gh-{RUN_ID}"
    assert float(out["usd"]) > 0 and int(out["tokens"]) > 0
    assert out["state"]
    report = Path(out["report-path"])
    assert report.name == "report.md" and report.is_file()
    assert report.read_text(encoding="utf-8").startswith("# calc-demo progress report")
    return out


def origin_branch(origin: Path, branch: str) -> str:
    return git(origin, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")


def test_a_successful_run_pushes_and_opens_a_pull_request_and_a_rerun_resumes(
    workflow: Workflow,
) -> None:
    result, workspace = workflow.attempt(1, {"config": ".github/swarm.yaml", "open-pr": "true"})
    assert not result.failed, result.log()
    skipped = [s.name for s in result.steps if s.outcome == "skipped"]
    assert skipped == [
        "Restore the previous attempt's state",  # the first attempt
        "Save the state of an interrupted run",  # swarm ci saved it with the artifacts
    ], result.log()
    assert all(s.outcome == "success" for s in result.steps if s.name not in skipped)
    out = check_outputs(result, "success", 0)
    assert out["state"] == "completed"
    assert out["pr-url"] == PR_URL

    # the run's own outputs file had them all, written by swarm ci
    run_outputs = result.step("run").outputs
    assert OUTPUTS - {"pr-url"} <= set(run_outputs), run_outputs

    # the step summary: swarm ci's summary, then the pull request
    assert "### swarm `calc-demo`" in result.summary
    assert f"Pull request: {PR_URL}" in result.summary

    # origin received the run's branch with the agents' merged work
    branch = out["branch"]
    sha = origin_branch(workflow.origin, branch)
    assert sha == git(workspace, "rev-parse", f"refs/heads/{branch}")
    assert "sum(values) / len(values)" in git(workflow.origin, "show", f"{sha}:calc.py")
    assert "# Changes" in git(workflow.origin, "show", f"{sha}:docs/CHANGES.md")
    # the checkout itself is untouched and clean
    assert git(workspace, "status", "--porcelain") == ""
    assert git(workspace, "rev-parse", "--abbrev-ref", "HEAD") == "main"

    # gh: no open pull request for the branch yet, so one is created
    calls = workflow.gh_calls()
    assert [c["argv"][:2] for c in calls] == [["pr", "list"], ["pr", "create"]]
    assert all(c["token"] for c in calls)
    create = calls[1]["argv"]
    assert create[create.index("--base") + 1] == "main"
    assert create[create.index("--head") + 1] == branch
    assert create[create.index("--title") + 1] == f"swarm: run gh-{RUN_ID}"
    assert "--draft" not in create
    body = calls[1]["body"]
    report = Path(out["report-path"]).read_text(encoding="utf-8")
    assert body.startswith(f"Run `gh-{RUN_ID}` · verdict **success** (exit code 0)")
    assert report in body

    # the artifacts: the report files, and the state under its own name
    reports = workflow.store / f"swarm-report-gh-{RUN_ID}-1"
    assert {p.name for p in reports.iterdir()} >= {
        "report.md",
        "report.json",
        "junit.xml",
        "events.jsonl",
        "swarm.patch",
    }
    assert not (reports / "state").exists()
    assert "sum(values) / len(values)" in (reports / "swarm.patch").read_text()
    state = workflow.store / f"swarm-state-gh-{RUN_ID}"
    assert any(p.is_file() for p in state.rglob("*"))

    # "Re-run jobs": attempt 2 on a fresh runner restores the state and resumes the run,
    # which is finished: no model request is sent again, and the pull request is updated
    requests_before = len(workflow.stub.requests)
    again, workspace2 = workflow.attempt(2, {"config": ".github/swarm.yaml", "open-pr": "true"})
    assert not again.failed, again.log()
    assert again.step("restore").outcome == "success"
    assert f"run gh-{RUN_ID} already completed" in again.step("run").log
    assert (workspace2 / ".swarm").is_dir()
    out2 = check_outputs(again, "success", 0)
    assert out2["run-id"] == out["run-id"] and out2["pr-url"] == PR_URL
    assert len(workflow.stub.requests) == requests_before
    calls = workflow.gh_calls()
    assert [c["argv"][:2] for c in calls[2:]] == [["pr", "list"], ["pr", "edit"]]
    assert calls[3]["argv"][2] == PR_URL
    assert origin_branch(workflow.origin, branch) == sha
    assert (workflow.store / f"swarm-report-gh-{RUN_ID}-2" / "report.md").is_file()


def test_a_failed_verdict_still_pushes_marks_the_pull_request_and_fails_the_job(
    tmp_path: Path,
) -> None:
    with new_workflow(tmp_path, demo_script(fail_document=True)) as wf:
        result, _ = wf.attempt(1, {"config": ".github/swarm.yaml", "open-pr": "true"})
        check_failed_run(wf, result)


def check_failed_run(wf: Workflow, result: ActionResult) -> None:
    assert result.failed
    # only the last step fails: everything before it ran, the artifacts were uploaded
    assert [s.name for s in result.steps if s.outcome == "failure"] == ["Verdict"], result.log()
    assert "::error title=swarm::verdict failure, exit code 1" in result.step("Verdict").log
    out = check_outputs(result, "failure", 1)
    assert out["pr-url"] == PR_URL
    assert (wf.store / f"swarm-report-gh-{RUN_ID}-1" / "report.md").is_file()

    # the merged work (the fix) is on the pushed branch, for inspection
    sha = origin_branch(wf.origin, out["branch"])
    assert "sum(values) / len(values)" in git(wf.origin, "show", f"{sha}:calc.py")

    calls = wf.gh_calls()
    assert [c["argv"][:2] for c in calls] == [["pr", "list"], ["pr", "create"]]
    create = calls[1]["argv"]
    assert create[create.index("--title") + 1] == f"[swarm failed] swarm: run gh-{RUN_ID}"
    assert create[create.index("--base") + 1] == "main"
    assert calls[1]["body"].startswith(f"Run `gh-{RUN_ID}` · verdict **failure** (exit code 1)")
    assert "no docs today" in calls[1]["body"]  # the report says what failed and why


def test_bad_input_fails_before_any_model_request(workflow: Workflow) -> None:
    result, _ = workflow.attempt(
        1, {"config": ".github/no-such-config.yaml", "open-pr": "true", "goal": "x"}
    )
    assert result.failed
    assert result.outputs["exit-code"] == "2" and result.outputs["verdict"] == "error"
    assert result.outputs["run-id"] == f"gh-{RUN_ID}"
    assert len(workflow.stub.requests) == 0
    assert result.step("pr").outcome == "skipped" and workflow.gh_calls() == []
    assert git(workflow.origin, "for-each-ref", "refs/heads/swarm/") == ""
    assert "exit code 2" in result.step("Verdict").log


def test_an_empty_budget_is_refused_without_running(workflow: Workflow) -> None:
    result, _ = workflow.attempt(1, {"config": ".github/swarm.yaml", "max-usd": ""})
    assert result.failed
    assert "max-usd is empty" in result.step("run").log
    assert result.outputs["exit-code"] == "2" and result.outputs["verdict"] == "error"
    assert len(workflow.stub.requests) == 0


def test_a_cancelled_job_saves_its_state_and_the_rerun_resumes_it(tmp_path: Path) -> None:
    """The job is cancelled (or times out) in the middle of the run: the always() steps
    save and upload the state; "Re-run jobs" on a fresh runner resumes the run, and no
    completed task's model requests are sent again."""
    with new_workflow(tmp_path, demo_script(slow_fix=True)) as wf:
        check_cancel_and_rerun(wf)


def check_cancel_and_rerun(workflow: Workflow) -> None:
    stub = workflow.stub
    inflight = stub.app.asgi
    assert isinstance(inflight, InFlight)

    def fix_requested() -> bool:
        """`investigate` is done (its 4 turns answered) and fix-mean's first request is in
        flight: the only request then, the others wait for fix-mean."""
        done = sum(r.task == "investigate" for r in stub.requests.snapshot())
        return done >= 4 and inflight.count > 0

    first, _ = workflow.attempt(1, {"config": ".github/swarm.yaml"}, cancel=("run", fix_requested))
    assert first.failed
    assert first.step("run").outcome == "cancelled"
    save = first.step("Save the state of an interrupted run")
    assert save.outcome == "success" and "saved the run state" in save.log, first.log()
    state = workflow.store / f"swarm-state-gh-{RUN_ID}"
    assert (state / "branches.bundle").is_file(), sorted(p.name for p in state.iterdir())
    assert first.step("pr").outcome == "skipped"  # open-pr is false: nothing pushed
    assert first.step("Verdict").outcome == "failure"
    assert "verdict none, exit code none" in first.step("Verdict").log

    before = stub.requests.snapshot()
    done_before = {r.task for r in before if r.task} - {"fix-mean"}
    assert "investigate" in done_before
    second, _ = workflow.attempt(2, {"config": ".github/swarm.yaml"})
    assert not second.failed, second.log()
    assert "resuming it" in second.step("run").log
    repeated = {r.task for r in stub.requests.snapshot()[len(before) :]} & done_before
    assert not repeated, repeated
    out = check_outputs(second, "success", 0)
    assert out["pr-url"] == ""
    assert git(workflow.origin, "for-each-ref", "refs/heads/swarm/") == ""
