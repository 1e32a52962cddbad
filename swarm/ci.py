"""`swarm ci`: a swarm as a CI job — the run (resumed when the job is re-run), a verdict
that fails closed, the artifacts, `$GITHUB_OUTPUT` and the step summary (docs/ci.md)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from swarm.blackboard.board import Blackboard
from swarm.blackboard.connection import open_redis, state_dir, stop_embedded
from swarm.config import Overrides
from swarm.coordinator import EXIT_BUDGET, EXIT_OK, EXIT_TASK_FAILED
from swarm.report import junit_xml, render, step_summary
from swarm.secrets import redact, secret_values
from swarm.status import Snapshot, snapshot

STATE_FILES = ("redis.db", "appendonlydir", "appendonly.aof")  # the embedded Redis' data
BUNDLE = "branches.bundle"  # the run's git branches, for a re-run on a fresh runner


@dataclass
class Verdict:
    verdict: str  # success | failure | budget
    exit_code: int
    reason: str


def ci_run_id(explicit: str | None) -> str | None:
    """--run-id, else one per workflow run: a re-run of its jobs gets the same id (and
    resumes), a new dispatch a new one."""
    if explicit:
        return explicit
    gh = os.environ.get("GITHUB_RUN_ID", "").strip()
    return f"gh-{gh}" if gh.isdigit() else None


def decide(snap: Snapshot, exit_code: int, changed_files: int, require_changes: bool) -> Verdict:
    """Exit 0 only when every task completed within the budget (each merge behind the
    gate) and, if asked, something changed; a limit reached is never a success."""
    tasks = snap.tasks
    failed = [t.id for t in tasks if t.status == "failed"]
    open_ = [t.id for t in tasks if t.status not in ("completed", "failed")]
    if exit_code == EXIT_BUDGET or snap.state in ("budget", "timeout"):
        why = snap.reason or f"the run stopped: {snap.state}"
        return Verdict("budget", EXIT_BUDGET, why)
    if exit_code != EXIT_OK or failed or open_ or snap.state != "completed":
        parts = []
        if failed:
            parts.append(f"{len(failed)} task(s) failed: {', '.join(failed)}")
        if open_:
            parts.append(f"{len(open_)} task(s) not finished: {', '.join(open_)}")
        why = "; ".join(parts) or snap.reason or f"the run ended {snap.state}"
        return Verdict("failure", exit_code if exit_code not in (0, 2) else EXIT_TASK_FAILED, why)
    if require_changes and changed_files == 0:
        return Verdict("failure", EXIT_TASK_FAILED, "--require-changes: the run changed nothing")
    return Verdict("success", EXIT_OK, f"{len(tasks)} task(s) completed")


def git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)


def run_patch(snap: Snapshot) -> str:
    """The run's changes against where it started (its branch in a worktree run, the
    working tree in a shared one)."""
    repo = Path(snap.repo)
    if snap.workspace == "worktree" and snap.base_commit and snap.branch:
        return git(repo, "diff", "--binary", snap.base_commit, snap.branch).stdout
    if (repo / ".git").exists():
        return git(repo, "diff", "--binary", "HEAD").stdout
    return ""


def changed_files(snap: Snapshot) -> int:
    repo = Path(snap.repo)
    if snap.workspace == "worktree" and snap.base_commit and snap.branch:
        out = git(repo, "diff", "--name-only", snap.base_commit, snap.branch).stdout
    elif (repo / ".git").exists():
        out = git(repo, "status", "--porcelain").stdout
    else:
        return 0
    return len([line for line in out.splitlines() if line.strip()])


async def _read(run_id: str, workdir: Path) -> tuple[Snapshot, dict[str, float], list[str]]:
    from swarm.report import task_times

    handle = open_redis(state_dir(workdir))
    board = Blackboard(handle.url, run_id)
    try:
        snap = await snapshot(board)
        times = await task_times(board, snap)
        values = secret_values()
        lines, after = [], "0"
        while True:
            batch = await board.events(after)
            if not batch:
                break
            lines += [redact(e.model_dump_json(), values) for e in batch]
            after = batch[-1].id
        return snap, times, lines
    finally:
        await board.close()
        handle.close()


def write_artifacts(
    folder: Path, snap: Snapshot, times: dict[str, float], events: list[str], workdir: Path
) -> Path:
    """report.md/json, junit.xml, events.jsonl, swarm.patch and state/ (what a re-run
    restores into .swarm/ to resume). Returns the report's path."""
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.md"
    report.write_text(render(snap, "md", times), encoding="utf-8")
    (folder / "report.json").write_text(render(snap, "json", times), encoding="utf-8")
    (folder / "junit.xml").write_text(junit_xml(snap, times), encoding="utf-8")
    (folder / "events.jsonl").write_text("".join(f"{line}\n" for line in events), "utf-8")
    (folder / "swarm.patch").write_text(run_patch(snap), encoding="utf-8")
    save_state(folder / "state", snap, workdir)
    return report


def save_state(dest: Path, snap: Snapshot | None, workdir: Path, repo: Path | None = None) -> None:
    """The embedded Redis' data (never its password) and a git bundle of the run's
    branches: a fresh runner restores both and the run goes on where it stopped."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    source = state_dir(workdir)
    for name in STATE_FILES:
        path = source / name
        if path.is_dir():
            shutil.copytree(path, dest / name)
        elif path.is_file():
            shutil.copy2(path, dest / name)
    pattern = "refs/heads/swarm/"
    if snap is not None and snap.branch and snap.workspace == "worktree":
        repo, pattern = Path(snap.repo), f"refs/heads/{snap.branch}*"
    if repo is not None and (repo / ".git").exists():
        names = git(repo, "for-each-ref", "--format=%(refname)", pattern).stdout.split()
        if names:
            git(repo, "bundle", "create", str(dest / BUNDLE), *names)


def restore_branches(state: Path, repo: Path) -> int:
    """Fetch the run's branches from a restored bundle into the repository (a re-run on a
    fresh checkout); returns how many refs were restored."""
    bundle = state / BUNDLE
    if not bundle.is_file():
        return 0
    heads = git(repo, "bundle", "list-heads", str(bundle)).stdout.split("\n")
    refs = [line.split()[1] for line in heads if len(line.split()) == 2]
    missing = [r for r in refs if git(repo, "rev-parse", "-q", "--verify", r).returncode != 0]
    if missing:
        git(repo, "fetch", "--quiet", str(bundle), *[f"{r}:{r}" for r in missing])
    return len(missing)


def write_outputs(values: dict[str, str]) -> None:
    path = os.environ.get("GITHUB_OUTPUT", "")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as out:
            for key, value in values.items():
                out.write(f"{key}={value.replace(chr(10), ' ')}\n")
    except OSError as exc:
        print(f"warning: GITHUB_OUTPUT: cannot append to {path}: {exc}", file=sys.stderr)


def write_summary(text: str) -> None:
    path = os.environ.get("GITHUB_STEP_SUMMARY", "")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        print(f"warning: GITHUB_STEP_SUMMARY: cannot append to {path}: {exc}", file=sys.stderr)


@dataclass
class CiOptions:
    config: Path
    repo: Path | None = None
    run_id: str | None = None
    artifacts: Path | None = None
    require_changes: bool = False
    overrides: Overrides | None = None
    junit: Path | None = None
    json_events: bool = False
    include_dirty: bool = False


def run_ci(opts: CiOptions, workdir: Path | None = None) -> int:
    """The whole job; returns its exit code (BadInput propagates: exit 2, nothing spent)."""
    from swarm.launch import LaunchResult, launch, resume, run_exists

    workdir = workdir or Path.cwd()
    rid = ci_run_id(opts.run_id)
    if opts.artifacts is not None and restore_state(opts.artifacts / "state", workdir):
        print(f"ci: restored the previous attempt's state from {opts.artifacts / 'state'}")
    if rid is not None and run_exists(rid, workdir):
        print(f"ci: run {rid} exists in .swarm/ (a re-run): resuming it")
        if opts.artifacts is not None and opts.repo is not None:
            restore_branches(opts.artifacts / "state", opts.repo)
        budget = {
            k: v
            for k, v in (opts.overrides or Overrides()).model_dump().items()
            if k in ("max_usd", "max_wall_s") and v is not None
        }
        if _run_state(rid, workdir) == "completed":
            # a re-run of a job whose run had finished ("Re-run all jobs"): nothing is
            # sent again; the verdict is read from the stored state as before
            print(f"ci: run {rid} already completed: nothing to resume")
            result = LaunchResult(rid, "completed", EXIT_OK, opts.repo or workdir)
        else:
            result = resume(rid, opts.json_events, True, budget, workdir)
    else:
        result = launch(
            opts.config,
            opts.repo,
            rid,
            opts.json_events,
            True,
            workdir,
            opts.include_dirty,
            overrides=opts.overrides,
        )
    snap, times, events = asyncio.run(_read(result.run_id, workdir))
    # the job is over: stop the embedded Redis (it writes everything to disk as it goes),
    # so the state copied into the artifacts is whole and nothing is left running
    stop_embedded(state_dir(workdir))
    verdict = decide(snap, result.exit_code, changed_files(snap), opts.require_changes)
    report = ""
    if opts.artifacts is not None:
        report = str(write_artifacts(opts.artifacts, snap, times, events, workdir))
    if opts.junit is not None:
        opts.junit.parent.mkdir(parents=True, exist_ok=True)
        opts.junit.write_text(junit_xml(snap, times), encoding="utf-8")
        print(f"junit: {opts.junit}")
    u = snap.usage
    write_outputs(
        {
            "run-id": result.run_id,
            "state": snap.state,
            "exit-code": str(verdict.exit_code),
            "verdict": verdict.verdict,
            "branch": snap.branch if snap.workspace == "worktree" else "",
            "usd": f"{u.usd:.6f}",
            "tokens": str(
                u.input_tokens + u.output_tokens + u.cache_read_tokens + u.cache_creation_tokens
            ),
            "report-path": report,
        }
    )
    write_summary(step_summary(snap, times, verdict=verdict.verdict, why=verdict.reason))
    print(f"verdict: {verdict.verdict} ({verdict.reason}); exit {verdict.exit_code}")
    return verdict.exit_code


def _run_state(run_id: str, workdir: Path) -> str:
    async def read() -> str:
        handle = open_redis(state_dir(workdir))
        board = Blackboard(handle.url, run_id)
        try:
            return str((await board.meta()).get("state", ""))
        finally:
            await board.close()
            handle.close()

    return asyncio.run(read())


def restore_state(state: Path, workdir: Path) -> bool:
    """Copy a previous attempt's saved state (its artifacts' state/) into .swarm/ when
    there is none yet; True if it did."""
    target = state_dir(workdir)
    if not state.is_dir() or any((target / name).exists() for name in STATE_FILES):
        return False
    from swarm.blackboard.connection import ensure_state_dir

    ensure_state_dir(target)
    for name in STATE_FILES:
        path = state / name
        if path.is_dir():
            shutil.copytree(path, target / name)
        elif path.is_file():
            shutil.copy2(path, target / name)
    return True


def main(argv: list[str]) -> int:
    """`python -m swarm.ci save-state DIR [REPO]`: what a CI job's always() step saves
    when `swarm ci` could not (the job was killed): the state folder's data files and the
    run branches of REPO."""
    if len(argv) not in (2, 3) or argv[0] != "save-state":
        print("usage: python -m swarm.ci save-state DIR [REPO]", file=sys.stderr)
        return 2
    repo = Path(argv[2]) if len(argv) == 3 else None
    save_state(Path(argv[1]), None, Path.cwd(), repo)
    print(f"saved the run state to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
