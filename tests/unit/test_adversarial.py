"""Hostile inputs: every tool must refuse escapes, never hang, and leave no process behind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from swarm.tools import bash as bash_mod
from swarm.tools.base import ToolContext
from swarm.tools.builtin import BUILTIN_TOOLS, local_context

OUTSIDE = "Access denied: {arg} is outside the workspace"
SYMLINK = "resolves through a symlink to"
ENV = "is an environment file that may hold secrets"


@dataclass
class Env:
    ws: Path
    out: Path
    ctx: ToolContext


@pytest.fixture
def env(tmp_path: Path) -> Env:
    ws = tmp_path / "ws"
    out = tmp_path / "outside"
    (ws / "src").mkdir(parents=True)
    out.mkdir()
    (out / "secret.txt").write_text("TOP SECRET\n")
    (out / "victim.txt").write_text("untouched\n")
    (ws / "src" / "a.py").write_text("print('hello')\n")
    (ws / "link_file").symlink_to(out / "secret.txt")
    (ws / "victim_link").symlink_to(out / "victim.txt")
    (ws / "link_dir").symlink_to(out)
    os.mkfifo(ws / "fifo")
    (ws / ".env").write_text("API_KEY=sk-live-123\n")
    (ws / ".env.local").write_text("API_KEY=sk-local-456\n")
    (ws / ".env.example").write_text("API_KEY=your-key-here\n")
    (ws / "image.bin").write_bytes(bytes(range(256)) * 8)
    with open(ws / "sparse.img", "wb") as fh:
        fh.truncate(100 * 1024 * 1024)
    with open(ws / "header_then_sparse.log", "wb") as fh:
        fh.write(b"".join(b"line %d\n" % i for i in range(1, 5001)))
        fh.truncate(100 * 1024 * 1024)
    (ws / "one_line.min.js").write_text("x" * 100_000)
    (ws / "latin1.txt").write_bytes(b"na\xefve caf\xe9\n\xff\xfe\n")
    (ws / "dos.txt").write_bytes(b"alpha\r\nbeta\r\ngamma\r\n")
    ctx = local_context(ws)
    ctx.output_dir = tmp_path / "bash-outputs"
    return Env(ws, out, ctx)


@dataclass
class Case:
    id: str
    tool: str
    args: dict[str, Any]
    expect: str  # substring of the text ({arg} is replaced by the offending argument)
    is_error: bool = True
    max_s: float = 2.0
    check: Callable[[Env], None] | None = None
    before: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def outside_untouched(e: Env) -> None:
    assert sorted(p.name for p in e.out.iterdir()) == ["secret.txt", "victim.txt"]
    assert (e.out / "victim.txt").read_text() == "untouched\n"


def crlf_kept(e: Env) -> None:
    assert (e.ws / "dos.txt").read_bytes() == b"alpha\r\nBETA\r\nBETA2\r\ngamma\r\n"


CASES = [
    # ---- read: escapes
    Case("read-dotdot", "read", {"file_path": "../outside/secret.txt"}, OUTSIDE),
    Case("read-deep-dotdot", "read", {"file_path": "src/../../../../../etc/passwd"}, OUTSIDE),
    Case("read-abs-etc", "read", {"file_path": "/etc/passwd"}, OUTSIDE),
    Case("read-abs-outside", "read", {"file_path": "{out}/secret.txt"}, OUTSIDE),
    Case("read-home", "read", {"file_path": "~/.bashrc"}, OUTSIDE),
    Case("read-proc-environ", "read", {"file_path": "/proc/self/environ"}, OUTSIDE),
    Case("read-dev-zero", "read", {"file_path": "/dev/zero"}, OUTSIDE),
    Case("read-dev-urandom", "read", {"file_path": "/dev/urandom"}, OUTSIDE),
    Case("read-symlink-file-out", "read", {"file_path": "link_file"}, SYMLINK),
    Case("read-symlink-dir-out", "read", {"file_path": "link_dir/secret.txt"}, SYMLINK),
    Case("read-nul-in-path", "read", {"file_path": "src/a.py\x00.txt"}, "contains a NUL byte"),
    # ---- read: special and hostile files
    Case("read-fifo", "read", {"file_path": "fifo"}, "is a fifo (named pipe)"),
    Case("read-env", "read", {"file_path": ".env"}, ENV),
    Case("read-env-local", "read", {"file_path": ".env.local"}, ENV),
    Case("read-env-example", "read", {"file_path": ".env.example"}, "API_KEY=your-key-here", False),
    Case(
        "read-binary", "read", {"file_path": "image.bin"}, "looks like a binary file (2048 bytes)"
    ),
    Case("read-sparse-100mb", "read", {"file_path": "sparse.img"}, "looks like a binary file"),
    Case(
        "read-text-then-100mb-nul",
        "read",
        {"file_path": "header_then_sparse.log", "limit": 3},
        f"{3:>6}\tline 3\n\n(Showing lines 1-3. Use offset=4 to read more.)",
        False,
    ),
    Case(
        "read-100k-single-line",
        "read",
        {"file_path": "one_line.min.js"},
        "... [line truncated: 100000 characters]",
        False,
    ),
    Case("read-non-utf8", "read", {"file_path": "latin1.txt"}, "na\ufffdve caf\ufffd", False),
    # ---- write / edit escapes
    Case(
        "write-abs-outside",
        "write",
        {"file_path": "{out}/pwned.txt", "content": "x"},
        OUTSIDE,
        check=outside_untouched,
    ),
    Case(
        "write-dotdot",
        "write",
        {"file_path": "../outside/pwned.txt", "content": "x"},
        OUTSIDE,
        check=outside_untouched,
    ),
    Case(
        "write-through-dir-symlink",
        "write",
        {"file_path": "link_dir/pwned.txt", "content": "x"},
        SYMLINK,
        check=outside_untouched,
    ),
    Case(
        "write-over-file-symlink",
        "write",
        {"file_path": "victim_link", "content": "x"},
        SYMLINK,
        check=outside_untouched,
    ),
    Case(
        "edit-via-symlink-out",
        "edit",
        {"file_path": "victim_link", "old_string": "untouched", "new_string": "pwned"},
        SYMLINK,
        check=outside_untouched,
    ),
    Case(
        "multiedit-abs-outside",
        "multiedit",
        {"file_path": "{out}/victim.txt", "edits": [{"old_string": "u", "new_string": "p"}]},
        OUTSIDE,
        check=outside_untouched,
    ),
    Case("write-env", "write", {"file_path": ".env", "content": "API_KEY=x"}, ENV),
    Case("write-fifo", "write", {"file_path": "fifo", "content": "x"}, "is a fifo"),
    Case(
        "edit-crlf-kept",
        "edit",
        {"file_path": "dos.txt", "old_string": "beta\n", "new_string": "BETA\nBETA2\n"},
        "Edited dos.txt: 1 replacement.",
        False,
        check=crlf_kept,
        before=[("read", {"file_path": "dos.txt"})],
    ),
    # ---- search escapes
    Case("glob-dotdot", "glob", {"pattern": "../*"}, "outside the workspace"),
    Case("glob-dotdot-deep", "glob", {"pattern": "../../**/*.py"}, "outside the workspace"),
    Case("glob-abs", "glob", {"pattern": "/etc/*"}, "outside the workspace"),
    Case("glob-dotdot-after-wildcard", "glob", {"pattern": "*/../../*"}, "cannot use '..'"),
    Case("glob-path-outside", "glob", {"pattern": "*", "path": "{out}"}, "outside the workspace"),
    Case("glob-symlink-dir", "glob", {"pattern": "*", "path": "link_dir"}, SYMLINK),
    Case("grep-path-abs", "grep", {"pattern": "root", "path": "/etc"}, OUTSIDE),
    Case("grep-path-dotdot", "grep", {"pattern": "SECRET", "path": ".."}, OUTSIDE),
    Case("grep-path-symlink-dir", "grep", {"pattern": "SECRET", "path": "link_dir"}, SYMLINK),
    Case(
        "grep-does-not-follow-symlinks",
        "grep",
        {"pattern": "SECRET", "output_mode": "content"},
        "No matches found",
        False,
    ),
    Case("grep-env-content", "grep", {"pattern": "sk-live", "glob": ".env*"}, "No matches", False),
    # ---- bash: hangs and runaway processes
    Case(
        "bash-yes-flood",
        "bash",
        {"command": "yes", "timeout": 3000},
        "(command killed: output exceeded 64 MB",
        max_s=5.0,
    ),
    Case(
        "bash-endless-printer-timeout",
        "bash",
        {"command": "while :; do echo tick; sleep 0.01; done", "timeout": 500},
        "(timed out after 500 ms)\nExit code: 143 (killed by SIGTERM)",
        max_s=3.0,
    ),
    Case(
        "bash-background-holds-pipe",
        "bash",
        {"command": "sleep 1000 & echo started"},
        "started\n\n(background processes still running after the command were killed)",
        False,
    ),
    Case(
        "bash-ignores-sigterm",
        "bash",
        {"command": "trap '' TERM; sleep 1000", "timeout": 500},
        "(timed out after 500 ms)\nExit code: 137 (killed by SIGKILL)",
        max_s=4.5,
    ),
    Case(
        "bash-orphaned-fork",
        "bash",
        {"command": "(sleep 1000 &) ; echo done"},
        "done\n",
        False,
    ),
    Case(
        "bash-double-fork-setsid",
        "bash",
        {"command": "(setsid sleep 1000 &) ; (nohup sleep 1000 >/dev/null 2>&1 &) ; echo ok"},
        "ok\n",
        False,
    ),
    Case("bash-stdin-cat", "bash", {"command": "cat"}, "(no output)\n\nExit code: 0", False),
    Case(
        "bash-timeout-clamped",
        "bash",
        {"command": "echo hi", "timeout": 10_000_000},
        "(timeout 10000000 ms exceeds the maximum; clamped to 600000 ms)",
        False,
    ),
    Case(
        "bash-closed-stdout-then-hang",
        "bash",
        {"command": "exec >&- 2>&-; sleep 1000", "timeout": 500},
        "(timed out after 500 ms)",
        max_s=3.0,
    ),
    Case(
        "bash-stopped-process",
        "bash",
        {"command": "kill -STOP $$", "timeout": 500},
        "(timed out after 500 ms)\nExit code: 143 (killed by SIGTERM)",
        max_s=3.0,
    ),
    Case(
        "bash-binary-garbage",
        "bash",
        {"command": "head -c 20000 /dev/urandom"},
        "Exit code: 0",
        False,
    ),
    Case(
        "bash-background-printer",
        "bash",
        {"command": "(while :; do echo bg; sleep 0.01; done) & sleep 0.05; echo fg"},
        "fg",
        False,
    ),
]


def _fill(value: Any, e: Env) -> Any:
    if isinstance(value, str):
        return value.replace("{out}", str(e.out)).replace("{ws}", str(e.ws))
    if isinstance(value, dict):
        return {k: _fill(v, e) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, e) for v in value]
    return value


@pytest.fixture(autouse=True)
def no_process_survives() -> Iterator[None]:
    yield
    assert bash_mod.live_spawned_pids() == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_input(case: Case, env: Env) -> None:
    for name, args in case.before:
        assert not (await BUILTIN_TOOLS[name](args, env.ctx)).is_error
    args = _fill(case.args, env)
    start = time.monotonic()
    out = await BUILTIN_TOOLS[case.tool](args, env.ctx)
    elapsed = time.monotonic() - start
    arg = str(args.get("file_path", args.get("path", args.get("pattern", ""))))
    assert case.expect.replace("{arg}", arg) in out.text, out.text[:2000]
    assert out.is_error is case.is_error, out.text[:2000]
    assert elapsed < case.max_s, f"took {elapsed:.2f}s"
    assert "TOP SECRET" not in out.text and "sk-live" not in out.text and "sk-local" not in out.text
    if case.check:
        case.check(env)


def test_there_are_enough_hostile_cases() -> None:
    assert len(CASES) >= 30


async def test_setsid_escapee_is_found_and_killed(env: Env) -> None:
    """A process that left the group (setsid) is still killed, found by its marker."""
    # found by its command line from out here ($! would be a pid of the command's own PID
    # namespace, not of this one)
    tag = f"1000.{os.getpid()}{int(time.time() * 1000) % 100000}"
    out = await BUILTIN_TOOLS["bash"]({"command": f"setsid sleep {tag} & echo started"}, env.ctx)
    assert "started" in out.text
    left = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    if tag.encode() in fh.read():
                        left.append(int(entry))
            except OSError:
                continue
    assert not left


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that never reaps it does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in (b"Z", b"X")


def test_zz_no_process_started_by_a_tool_is_alive() -> None:
    """Runs last in this module: no member of any process group a tool spawned is running,
    and no process carries the marker of a tool call (so setsid escapees are gone too)."""
    assert len(bash_mod.SPAWNED) > 0
    pgids = {pgid for pgid, _ in bash_mod.SPAWNED}
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    pgrp = int(fh.read().rsplit(b")", 1)[1].split()[2])
            except (OSError, ValueError, IndexError):
                continue
            if pgrp in pgids:
                members.append(int(entry))
    assert members == []
    assert bash_mod.live_spawned_pids() == []
