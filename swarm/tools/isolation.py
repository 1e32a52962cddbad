"""The one rule for running an agent-requested command: in a PID namespace of its own.

A command started through :func:`wrap` runs as
``unshare [--user --map-current-user] --pid --fork --mount-proc --kill-child --
python -I -S nsinit.py -- ARGV``: a new PID namespace with its own /proc, so it sees its
own processes only and cannot read the environment or memory of the agent, the CLI or
the user's shell (where the provider keys live). :mod:`swarm.tools.nsinit` is the
namespace's PID 1: it forwards termination signals, reaps, reports the command's exact
exit status on a pipe, drops ``CAP_SYS_ADMIN`` (a command running as root could
otherwise unmount the private /proc), and its exit takes the whole namespace down (the
kernel kills every process left in it, ``setsid`` or not).

Which form works is found out at first use, once per process, by running a probe
through it (:func:`current`). Tried in order: ``unshare --pid`` (root, or
``CAP_SYS_ADMIN``), ``unshare --user --map-current-user --pid`` (unprivileged user
namespaces; the command keeps its uid and has no capabilities), ``unshare --user
--map-root-user --pid`` (util-linux older than 2.38). When every form is refused the
commands run without isolation: :func:`isolation_level` says ``"none"``,
:func:`isolation_reason` says why, and a warning is issued once.

The hook: ``SWARM_ISOLATION`` in the environment. Unset or ``auto``: the forms above.
``none``: no isolation (warned). Anything else: a command prefix (shell words) tried
alone, e.g. bubblewrap, which must start the init as PID 1 of a new PID namespace with a
private /proc::

    SWARM_ISOLATION="bwrap --dev-bind / / --unshare-pid --as-pid-1 --proc /proc --die-with-parent --"

(not tested here: bwrap is not installed on the development machine; a prefix that
does not give the init PID 1 with a private /proc fails the probe and is reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Level = Literal["pid-namespace", "none"]
ENV_HOOK = "SWARM_ISOLATION"
INIT = Path(__file__).with_name("nsinit.py")
_NS = ("--pid", "--fork", "--mount-proc", "--kill-child")
#: Prefixes tried in order until one passes the probe.
DEFAULT_FORMS: tuple[tuple[str, ...], ...] = (
    ("unshare", *_NS),
    ("unshare", "--user", "--map-current-user", *_NS),
    ("unshare", "--user", "--map-root-user", *_NS),
)
PROBE_TIMEOUT_S = 10.0
CAP_SYS_ADMIN = 21
# Run through a form: it must be PID 2 (the init is 1), see only the namespace's
# processes, and hold no CAP_SYS_ADMIN.
_PROBE = (
    "import os\n"
    "caps = {l.split(':')[0]: int(l.split()[1], 16) for l in open('/proc/self/status')"
    " if l.startswith('Cap')}\n"
    "pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
    f"print(os.getpid(), len(pids), caps['CapEff'] >> {CAP_SYS_ADMIN} & 1)\n"
)


@dataclass(frozen=True)
class Isolation:
    level: Level
    prefix: tuple[str, ...]  # what goes before the init; () when level is "none"
    reason: str  # the form in use, or why there is none

    @property
    def isolated(self) -> bool:
        return self.level == "pid-namespace"


_lock = threading.Lock()
_current: Isolation | None = None


def _python() -> str:
    return sys.executable or shutil.which("python3") or "python3"


def init_argv(grace_s: float, status_fd: int | None) -> list[str]:
    argv = [_python(), "-I", "-S", str(INIT), "--grace", f"{grace_s:g}"]
    if status_fd is not None:
        argv += ["--status-fd", str(status_fd)]
    return [*argv, "--"]


def _probe(prefix: Sequence[str]) -> str | None:
    """None when ``prefix`` gives a private PID namespace; otherwise what went wrong."""
    if not prefix or shutil.which(prefix[0]) is None:
        return f"{prefix[0] if prefix else '(empty)'}: not found"
    argv = [*prefix, *init_argv(0, None), _python(), "-I", "-S", "-c", _PROBE]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            cwd="/",
            env={"PATH": os.environ.get("PATH", os.defpath)},
            start_new_session=True,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{shlex.join(prefix)}: {exc}"
    said = (proc.stderr or proc.stdout).decode("utf-8", "replace").strip().splitlines()
    if proc.returncode != 0:
        tail = said[-1] if said else ""
        return f"{shlex.join(prefix)}: exit {proc.returncode}: {tail}".rstrip(": ")
    try:
        pid, nprocs, sys_admin = (int(x) for x in proc.stdout.split())
    except ValueError:
        return f"{shlex.join(prefix)}: unexpected probe output {proc.stdout[:200]!r}"
    if pid != 2 or nprocs > 3:
        return f"{shlex.join(prefix)}: no private PID namespace (pid {pid}, {nprocs} in /proc)"
    if sys_admin:
        return f"{shlex.join(prefix)}: the command would keep CAP_SYS_ADMIN"
    return None


def _detect() -> Isolation:
    hook = os.environ.get(ENV_HOOK, "").strip()
    if hook.lower() == "none":
        return Isolation("none", (), f"disabled by {ENV_HOOK}=none")
    forms = DEFAULT_FORMS if hook.lower() in ("", "auto") else (tuple(shlex.split(hook)),)
    problems = []
    for form in forms:
        problem = _probe(form)
        if problem is None:
            return Isolation("pid-namespace", form, shlex.join(form))
        problems.append(problem)
    return Isolation("none", (), "PID namespaces refused: " + "; ".join(problems))


def current() -> Isolation:
    """The isolation commands get in this process (probed at the first call; blocks for
    the probe, about 0.1 s per form tried)."""
    global _current
    with _lock:
        if _current is None:
            _current = _detect()
            if not _current.isolated:
                msg = (
                    "agents' commands run WITHOUT a PID namespace: they can read the "
                    f"environment of the user's other processes ({_current.reason})"
                )
                log.warning(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return _current


async def acurrent() -> Isolation:
    """:func:`current` for async code: the first probe runs in a thread, off the loop."""
    done = _current
    return done if done is not None else await asyncio.to_thread(current)


def cached() -> Isolation | None:
    """The probed isolation, or None before the first :func:`current` (never blocks)."""
    return _current


def reset() -> None:
    """Forget the probe (after changing ``SWARM_ISOLATION``); the next use probes again."""
    global _current
    with _lock:
        _current = None


def isolation_level() -> Level:
    return current().level


def isolation_reason() -> str:
    return current().reason


def wrap(argv: Sequence[str], *, grace_s: float = 2.0, status_fd: int | None = None) -> list[str]:
    """``argv`` as it must be started: inside a PID namespace when available.

    ``grace_s``: how long the namespace's init waits, after the command exited, for
    processes it left behind to end on SIGTERM before the namespace is torn down.
    ``status_fd``: a pipe's write end (pass it in ``pass_fds``) on which the init reports
    the command's exact status (:func:`read_status`); ignored without isolation.
    """
    iso = current()
    if not iso.isolated:
        return list(argv)
    return [*iso.prefix, *init_argv(grace_s, status_fd), *argv]


@dataclass(frozen=True)
class CommandStatus:
    returncode: int | None  # Popen convention (-N: killed by signal N); None: not reported
    leftovers: bool  # processes were still running when the command exited


def read_status(fd: int) -> CommandStatus:
    """What the init wrote on the status pipe (read end ``fd``, not closed here). Call it
    after the process exited: it does not wait."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 4096):
            data += chunk
    code: int | None = None
    leftovers = False
    for line in data.decode("ascii", "replace").splitlines():
        kind, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            if kind == "exit":
                code = int(value)
            elif kind == "signal":
                code = -int(value)
        if kind == "leftovers":
            leftovers = True
    return CommandStatus(code, leftovers)
