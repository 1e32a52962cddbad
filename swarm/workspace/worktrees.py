"""The git side of a worktree run: the run's branch, a worktree and branch per task, the
merge queue's own worktree. Nothing here touches the user's branch, index or files."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from swarm.errors import BadInput
from swarm.workspace.git import Git, GitError, author_env

QUEUE_DIR = "_queue"  # the merge queue's worktree, beside the tasks' ones


class WorkspaceSettings(BaseModel):
    """How a run's agents see the repository; resolved once at launch, stored in meta."""

    mode: Literal["worktree", "shared"] = "shared"
    repo: str  # the user's checkout
    run_branch: str = ""  # swarm/<run-id>
    base_commit: str = ""  # the user's HEAD at launch
    root: str = ""  # .swarm/worktrees/<run-id>
    gate: str | None = None
    gate_timeout_s: float = 900.0
    max_attempts: int = 3


def run_branch_name(run_id: str) -> str:
    return f"swarm/{run_id}"


def dirty_files(repo: Path) -> list[str]:
    """Changed, staged and untracked files of the checkout (what a worktree would not see)."""
    out = Git(repo).run("status", "--porcelain", "-z", "--untracked-files=all").out
    files = []
    for entry in out.split("\0"):
        if len(entry) > 3:
            files.append(entry[3:])
    return [f for f in files if f]


def prepare_run_branch(repo: Path, run_id: str, include_dirty: bool) -> tuple[str, str]:
    """Create ``swarm/<run-id>`` from the user's HEAD (plus, with ``include_dirty``, a first
    commit of the uncommitted changes, made through a private index). Returns the branch
    and the base commit. Raises BadInput for a dirty tree or a repository without commits."""
    git = Git(repo)
    head = git.rev("HEAD")
    if head is None:
        raise BadInput(f"--repo: {repo} has no commits yet; commit something first")
    branch = run_branch_name(run_id)
    taken = git.out(
        "for-each-ref", "--format=%(refname)", f"refs/heads/{branch}", f"refs/heads/{branch}-tasks/"
    )
    if taken:
        raise BadInput(f"--run-id: branch {branch} already exists in {repo}; pick another id")
    dirty = dirty_files(repo)
    start = head
    if dirty and not include_dirty:
        shown = "\n".join(f"  {f}" for f in dirty[:20])
        more = f"\n  ... and {len(dirty) - 20} more" if len(dirty) > 20 else ""
        raise BadInput(
            f"--repo: {repo} has uncommitted changes, which the agents' worktrees would not "
            f"see:\n{shown}{more}\nCommit or stash them, or pass --include-dirty to make them "
            "the first commit of the run's branch (your checkout stays as it is)."
        )
    if dirty:
        start = _commit_dirty(git, head, run_id)
    git.run("branch", branch, start)
    return branch, head


def _commit_dirty(git: Git, head: str, run_id: str) -> str:
    """A commit of the working tree as it is, on top of HEAD, without touching the index."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git.run("read-tree", head, env=env)
        git.run("add", "-A", env=env)
        tree = git.out("write-tree", env=env)
    message = f"Uncommitted changes at launch\n\nSwarm-Run: {run_id}\n"
    return git.out("commit-tree", tree, "-p", head, "-m", message)


class RunWorktrees:
    """A run's worktrees. Paths and branch names derive from the settings alone, so any
    process of the run (an agent, the queue, the CLI) finds the same ones."""

    def __init__(self, settings: WorkspaceSettings, run_id: str):
        self.s = settings
        self.run_id = run_id
        self.repo = Git(settings.repo)
        self.root = Path(settings.root)

    # -- names ---------------------------------------------------------------------------
    def task_path(self, task_id: str) -> Path:
        return self.root / task_id

    def task_branch(self, task_id: str) -> str:
        # not swarm/<run>/<task>: git cannot hold refs swarm/<run> and swarm/<run>/x at once
        return f"{self.s.run_branch}-tasks/{task_id}"

    @property
    def queue_path(self) -> Path:
        return self.root / QUEUE_DIR

    def head(self) -> str:
        sha = self.repo.rev(f"refs/heads/{self.s.run_branch}")
        if sha is None:
            raise GitError(["rev-parse", self.s.run_branch], 1, "the run's branch is gone")
        return sha

    @contextlib.contextmanager
    def _admin(self) -> Iterator[None]:
        """Worktree bookkeeping (add, remove, prune) one process at a time: a prune while
        another agent's ``worktree add`` is half done deletes its entry in .git/worktrees
        (git's own "locked" marker is written a moment too late for that)."""
        common = Path(self.repo.out("rev-parse", "--git-common-dir"))
        if not common.is_absolute():
            common = self.repo.cwd / common
        fd = os.open(common / "swarm-worktrees.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- a task's worktree -----------------------------------------------------------------
    def ensure_task(self, task_id: str) -> tuple[Path, str]:
        """The task's worktree, created on its branch from the run's head if it is not
        there yet; returns (path, the commit its branch started from)."""
        path, branch = self.task_path(task_id), self.task_branch(task_id)
        if (path / ".git").exists():
            return path, self._fork_point(branch)
        self.root.mkdir(parents=True, exist_ok=True)
        with self._admin():
            self.repo.run("worktree", "prune")
            if self.repo.rev(f"refs/heads/{branch}") is not None:
                self.repo.run("worktree", "add", "--quiet", str(path), branch)
                return path, self._fork_point(branch)
            base = self.head()
            self.repo.run("worktree", "add", "--quiet", "-b", branch, str(path), base)
        return path, base

    def _fork_point(self, branch: str) -> str:
        return self.repo.out("merge-base", branch, self.s.run_branch)

    def commit_task(self, task_id: str, agent: str, title: str, result: str) -> str:
        """Commit whatever the task changed (concluding a merge in progress); returns the
        head of the task's branch."""
        wt = Git(self.task_path(task_id))
        wt.run("add", "-A")
        merging = wt.run("rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).code == 0
        staged = wt.run("diff", "--cached", "--quiet", check=False).code != 0
        if staged or merging:
            summary = result.strip()[:4000] or "(done)"
            message = (
                f"{task_id}: {title}\n\n{summary}\n\n"
                f"Swarm-Run: {self.run_id}\nSwarm-Task: {task_id}\nSwarm-Agent: {agent}\n"
            )
            wt.run(
                "commit", "--quiet", "--no-verify", "-F", "-", env=author_env(agent), input=message
            )
        return wt.out("rev-parse", "HEAD")

    def sync_task(self, task_id: str) -> list[str]:
        """Bring the task's branch up to the run's head (a merge in its worktree); returns
        the files left in conflict (with markers) for the model to resolve."""
        wt = Git(self.task_path(task_id))
        if wt.run("rev-parse", "-q", "--verify", "MERGE_HEAD", check=False).code != 0:
            wt.run("add", "-A")
            if wt.run("diff", "--cached", "--quiet", check=False).code != 0:
                wt.run("commit", "--quiet", "--no-verify", "-m", f"{task_id}: work in progress")
            r = wt.run("merge", "--no-ff", "--no-edit", self.s.run_branch, check=False)
            if r.code == 0:
                return []
        return [f for f in wt.out("diff", "--name-only", "--diff-filter=U").splitlines() if f]

    def remove_task(self, task_id: str, delete_branch: bool) -> None:
        path = self.task_path(task_id)
        with self._admin():
            if path.exists():
                self.repo.run("worktree", "remove", "--force", str(path), check=False)
                shutil.rmtree(path, ignore_errors=True)
            self.repo.run("worktree", "prune", check=False)
        if delete_branch:
            self.repo.run("branch", "-D", self.task_branch(task_id), check=False)

    # -- the queue's worktree --------------------------------------------------------------
    def checkout_queue(self, commit: str) -> Path:
        path = self.queue_path
        if not (path / ".git").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with self._admin():
                self.repo.run("worktree", "prune")
                self.repo.run("worktree", "add", "--quiet", "--detach", str(path), commit)
        q = Git(path)
        q.run("checkout", "--quiet", "--detach", "--force", commit)
        q.run("clean", "-ffdq")
        return path

    def remove_queue(self) -> None:
        with self._admin():
            if self.queue_path.exists():
                self.repo.run("worktree", "remove", "--force", str(self.queue_path), check=False)
                shutil.rmtree(self.queue_path, ignore_errors=True)
            self.repo.run("worktree", "prune", check=False)
        if self.root.is_dir() and not any(self.root.iterdir()):
            self.root.rmdir()

    # -- merging ---------------------------------------------------------------------------
    def merge_tree(self, ours: str, theirs: str) -> tuple[str, list[str]]:
        """The merged tree of two commits, computed without a worktree, and the files in
        conflict (empty when it merges cleanly)."""
        r = self.repo.run(
            "merge-tree",
            "--write-tree",
            "--name-only",
            "-z",
            "--no-messages",
            ours,
            theirs,
            check=False,
        )
        if r.code not in (0, 1):
            raise GitError(["merge-tree", ours, theirs], r.code, r.err)
        parts = [p for p in r.out.split("\0") if p]
        return parts[0], sorted(set(parts[1:])) if r.code == 1 else []

    def commit_merge(self, tree: str, ours: str, theirs: str, message: str) -> str:
        return self.repo.out("commit-tree", tree, "-p", ours, "-p", theirs, "-m", message)

    def move_run_branch(self, new: str, old: str) -> bool:
        """Compare-and-swap: the branch moves only if it is still at ``old``."""
        ref = f"refs/heads/{self.s.run_branch}"
        return self.repo.run("update-ref", ref, new, old, check=False).code == 0

    def diffstat(self, old: str, new: str) -> tuple[list[str], int, int]:
        """Files changed, lines added and removed between two commits (from git)."""
        files, added, removed = [], 0, 0
        for line in self.repo.out("diff", "--numstat", "-z", old, new).split("\0"):
            cols = line.split("\t")
            if len(cols) == 3 and cols[2]:
                files.append(cols[2])
                added += int(cols[0]) if cols[0].isdigit() else 0
                removed += int(cols[1]) if cols[1].isdigit() else 0
        return files, added, removed

    def tasks_touching(self, since: str, files: list[str]) -> dict[str, list[str]]:
        """For each file, the tasks whose commits merged after ``since`` changed it."""
        out: dict[str, list[str]] = {}
        for f in files:
            log = self.repo.out(
                "log",
                "--no-merges",
                "--format=%(trailers:key=Swarm-Task,valueonly)",
                f"{since}..{self.s.run_branch}",
                "--",
                f,
            )
            out[f] = list(dict.fromkeys(t.strip() for t in log.splitlines() if t.strip()))
        return out

    def disk_bytes(self) -> int:
        total = 0
        for dirpath, _, names in os.walk(self.root):
            for n in names:
                try:
                    total += os.lstat(os.path.join(dirpath, n)).st_size
                except OSError:
                    pass
        return total
