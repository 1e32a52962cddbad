"""The one wrapper around git's command line: arguments as lists (never a shell string),
hooks off for the swarm's own commits, a clear error when a command fails."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from swarm.errors import SwarmError

#: Every git command the swarm runs: no user hooks, no pager, no prompts, no GPG.
BASE = [
    "git",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "core.quotePath=false",
]
SWARM_NAME, SWARM_EMAIL = "swarm", "swarm@localhost"


class GitError(SwarmError):
    """A git command failed; the message has the command and git's own words."""

    def __init__(self, args: list[str], code: int, stderr: str):
        self.code, self.stderr = code, stderr.strip()
        super().__init__(f"git {' '.join(args)} exited {code}: {self.stderr[-800:]}")


@dataclass
class Result:
    code: int
    out: str
    err: str


def git_env(extra: dict[str, str] | None = None, identity: bool = True) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # a caller's GIT_DIR / GIT_INDEX_FILE / GIT_WORK_TREE would point git elsewhere
        if not (k.startswith("GIT_") and k not in ("GIT_EXEC_PATH",))
    }
    env.update(GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", LC_ALL="C")
    if identity:  # the swarm's own commits; the user's (swarm apply) keep their identity
        env.update(
            GIT_COMMITTER_NAME=SWARM_NAME,
            GIT_COMMITTER_EMAIL=SWARM_EMAIL,
            GIT_AUTHOR_NAME=SWARM_NAME,
            GIT_AUTHOR_EMAIL=SWARM_EMAIL,
        )
    env.update(extra or {})
    return env


class Git:
    """git in one directory (a checkout or a worktree)."""

    def __init__(self, cwd: Path | str, identity: bool = True):
        self.cwd = Path(cwd)
        self.identity = identity

    def run(
        self,
        *args: str,
        check: bool = True,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> Result:
        proc = subprocess.run(
            [*BASE, *args],
            cwd=self.cwd,
            env=git_env(env, self.identity),
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise GitError(list(args), proc.returncode, proc.stderr or proc.stdout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def out(self, *args: str, env: dict[str, str] | None = None) -> str:
        return self.run(*args, env=env).out.strip()

    # -- queries -------------------------------------------------------------------------
    def rev(self, ref: str) -> str | None:
        r = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return r.out.strip() or None if r.code == 0 else None

    def is_ancestor(self, a: str, b: str) -> bool:
        return self.run("merge-base", "--is-ancestor", a, b, check=False).code == 0


def toplevel(path: Path) -> Path | None:
    """The root of the git checkout that holds ``path``, or None when it is not in one."""
    r = Git(path).run("rev-parse", "--show-toplevel", check=False)
    return Path(r.out.strip()) if r.code == 0 and r.out.strip() else None


def author_env(name: str) -> dict[str, str]:
    return {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": f"{name}@swarm.localhost"}
