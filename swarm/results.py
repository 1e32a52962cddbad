"""What a worktree run hands the user: its change as one patch (`swarm diff`), merged into
their branch (`swarm apply`), and its worktrees and task branches cleaned up without
losing a commit (`swarm clean`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from swarm.errors import BadInput
from swarm.workspace.git import Git
from swarm.workspace.worktrees import RunWorktrees, WorkspaceSettings, dirty_files


def run_patch(settings: WorkspaceSettings) -> str:
    """The run's change: its base commit to the head of its branch."""
    _require_worktree(settings)
    return (
        Git(settings.repo)
        .run("diff", "--binary", settings.base_commit, f"refs/heads/{settings.run_branch}")
        .out
    )


def apply_run(repo: Path, branch: str) -> str:
    """Merge the run's branch into the user's current branch. Refuses (exit 2), changing
    nothing, when the tree is dirty or the merge would conflict."""
    git = Git(repo, identity=False)
    dirty = dirty_files(repo)
    if dirty:
        shown = ", ".join(dirty[:10]) + (" ..." if len(dirty) > 10 else "")
        raise BadInput(
            f"apply: {repo} has uncommitted changes ({shown}); commit or stash them first. "
            "Nothing was changed."
        )
    theirs = git.rev(f"refs/heads/{branch}")
    if theirs is None:
        raise BadInput(f"apply: branch {branch} does not exist in {repo}")
    head = git.rev("HEAD")
    if head is None:
        raise BadInput(f"apply: {repo} has no commits")
    if git.is_ancestor(theirs, head):
        return f"{branch} is already in your branch; nothing to apply"
    r = git.run(
        "merge-tree",
        "--write-tree",
        "--name-only",
        "-z",
        "--no-messages",
        head,
        theirs,
        check=False,
    )
    if r.code == 1:
        files = sorted({p for p in r.out.split("\0")[1:] if p})
        raise BadInput(
            f"apply: your branch moved since the run started and conflicts with {branch} in "
            f"{', '.join(files)}. Nothing was changed; merge it yourself with "
            f"`git merge {branch}`."
        )
    current = git.run("symbolic-ref", "--short", "-q", "HEAD", check=False).out.strip() or "HEAD"
    if git.is_ancestor(head, theirs):
        git.run("merge", "--ff-only", "--quiet", theirs)
        how = "fast-forwarded"
    else:
        git.run("merge", "--no-ff", "--no-edit", "--quiet", "-m", f"Merge {branch}", theirs)
        how = "merged"
    return f"{how} {current} to include {branch}"


@dataclass
class CleanReport:
    removed_worktrees: list[str] = field(default_factory=list)
    removed_branches: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # branches with unmerged commits
    freed_bytes: int = 0

    def lines(self, run_id: str) -> list[str]:
        out = [
            f"{run_id}: removed {len(self.removed_worktrees)} worktree(s), "
            f"{len(self.removed_branches)} branch(es), freed {human_bytes(self.freed_bytes)}"
        ]
        out += [f"  removed worktree {w}" for w in self.removed_worktrees]
        out += [f"  removed branch {b}" for b in self.removed_branches]
        out += [
            f"  kept {b}: it has commits not merged into the run's branch (--force drops it)"
            for b in self.kept
        ]
        return out


def clean_run(settings: WorkspaceSettings, run_id: str, force: bool) -> CleanReport:
    """Remove a finished run's worktrees and task branches; a branch with commits that are
    not merged into the run's branch stays (with its worktree) unless ``force``."""
    _require_worktree(settings)
    wt = RunWorktrees(settings, run_id)
    git = wt.repo
    report = CleanReport()
    before = wt.disk_bytes() if wt.root.is_dir() else 0
    run_head = git.rev(f"refs/heads/{settings.run_branch}") or settings.base_commit
    prefix = f"refs/heads/{wt.task_branch('')}"
    refs = git.out("for-each-ref", "--format=%(refname)", prefix).splitlines()
    for ref in refs:
        task_id = ref[len(prefix) :]
        branch = ref[len("refs/heads/") :]
        merged = git.is_ancestor(ref, run_head)
        if not merged and not force:
            report.kept.append(branch)
            continue
        if wt.task_path(task_id).exists():
            report.removed_worktrees.append(str(wt.task_path(task_id)))
        wt.remove_task(task_id, delete_branch=True)
        report.removed_branches.append(branch)
    if wt.root.is_dir():  # worktrees whose branch is gone already, and the queue's
        for path in sorted(wt.root.iterdir()):
            if path.name == "_queue" or git.rev(f"{prefix}{path.name}") is None:
                report.removed_worktrees.append(str(path))
                wt.remove_task(path.name, delete_branch=False)
    wt.remove_queue()
    after = wt.disk_bytes() if wt.root.is_dir() else 0
    report.freed_bytes = max(0, before - after)
    return report


def _require_worktree(settings: WorkspaceSettings) -> None:
    if settings.mode != "worktree":
        raise BadInput(
            "RUN: this run worked in the repository in place (workspace: shared); it has no "
            "branch, so there is nothing to diff, apply or clean"
        )


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
