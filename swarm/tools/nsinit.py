"""PID 1 of a command's PID namespace (see :mod:`swarm.tools.isolation`).

Run as ``python -I -S nsinit.py [--grace S] [--status-fd N] -- ARGV...`` by ``unshare
--pid --fork --mount-proc``. It is a standalone script: it imports nothing from swarm
and only what the interpreter has built in, so that it starts in a few milliseconds.

It

- drops ``CAP_SYS_ADMIN`` from the capability bounding set (and the ambient and
  inheritable sets), so that a command running as root cannot unmount the private
  /proc and look at the host's processes underneath it;
- starts ARGV as PID 2 in a session of its own (``$$`` is its process group and
  session, as with ``start_new_session``), with default signal dispositions;
- forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to every process of
  the namespace (a PID 1 without a handler would ignore them), and reaps orphans;
- when ARGV exits, writes ``exit N`` or ``signal N`` to the status fd (the exact
  status: PID 1 cannot die of a signal it sends itself), then, if processes are left,
  writes ``leftovers``, sends them SIGTERM and waits up to ``--grace`` seconds;
- exits with ARGV's exit code (128+N for a signal). Its exit takes the namespace down:
  the kernel SIGKILLs every process still in it.
"""

import os
import signal
import sys
import time

FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
CAP_SETPCAP = 8
CAP_SYS_ADMIN = 21
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _caps() -> dict[str, int]:
    with open("/proc/self/status") as fh:
        return {ln.split(":")[0]: int(ln.split()[1], 16) for ln in fh if ln.startswith("Cap")}


def drop_sys_admin() -> None:
    """Best effort; without CAP_SETPCAP (a user that is not root) there is nothing to drop:
    such a process has no capabilities after exec."""
    try:
        caps = _caps()
        if not caps.get("CapEff", 0) & (1 << CAP_SETPCAP):
            return
        import ctypes  # only here: it costs startup time

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        libc.prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0)
        if caps.get("CapInh", 0) & (1 << CAP_SYS_ADMIN):

            class Header(ctypes.Structure):
                _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

            class Data(ctypes.Structure):
                _fields_ = [
                    ("effective", ctypes.c_uint32),
                    ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32),
                ]

            header = Header(_LINUX_CAPABILITY_VERSION_3, 0)
            data = (Data * 2)()
            if libc.capget(ctypes.byref(header), data) == 0:
                data[0].inheritable &= ~(1 << CAP_SYS_ADMIN)
                libc.capset(ctypes.byref(header), data)
    except (OSError, AttributeError, ValueError):
        pass


def initial_environ() -> dict[bytes, bytes]:
    """The environment this process was started with: Python may have added to
    ``os.environ`` at startup (``LC_CTYPE=C.UTF-8``, PEP 538), the command must not see it."""
    try:
        with open("/proc/self/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        return {k: v for k, v in os.environb.items()}
    env: dict[bytes, bytes] = {}
    for item in data.split(b"\0"):
        key, eq, value = item.partition(b"=")
        if eq and key:
            env[key] = value
    return env


def others_alive() -> bool:
    """Reap what can be reaped; True when another process still runs in the namespace."""
    if os.getpid() != 1:
        return False
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
    try:
        os.kill(-1, 0)  # every process of the namespace but this one
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> int:
    if os.getpid() != 1:
        # kill(-1, ...) outside a PID namespace would signal every process of the user
        sys.stderr.write("nsinit: refusing to run: not PID 1 of a PID namespace\n")
        return 125
    grace = 2.0
    status_fd = -1
    while argv and argv[0] != "--":
        if argv[0] == "--grace":
            grace = float(argv[1])
        elif argv[0] == "--status-fd":
            status_fd = int(argv[1])
        else:
            sys.stderr.write(f"nsinit: unknown option {argv[0]}\n")
            return 125
        argv = argv[2:]
    argv = argv[1:]
    if not argv:
        sys.stderr.write("nsinit: no command\n")
        return 125
    if status_fd >= 0:
        os.set_inheritable(status_fd, False)
    env = initial_environ()
    drop_sys_admin()

    def forward(signum: int, _frame: object) -> None:
        if os.getpid() != 1:  # never outside the namespace (see the check above)
            return
        try:
            os.kill(-1, signum)
            if signum == signal.SIGTERM:
                os.kill(-1, signal.SIGCONT)
        except (ProcessLookupError, PermissionError):
            pass

    for s in FORWARDED:  # before the fork: a signal arriving meanwhile is not lost
        signal.signal(s, forward)
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            for s in (*FORWARDED, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(s, signal.SIG_DFL)  # Python ignores SIGPIPE and SIGXFSZ
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            sys.stderr.write(f"{argv[0]}: {exc.strerror}\n")
            sys.stderr.flush()
        os._exit(127)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            break
    code = os.waitstatus_to_exitcode(status)
    report = [f"signal {-code}" if code < 0 else f"exit {code}"]
    if status_fd >= 0:
        try:
            os.write(status_fd, (report[0] + "\n").encode())
        except OSError:
            pass
    if others_alive():
        if status_fd >= 0:
            try:
                os.write(status_fd, b"leftovers\n")
            except OSError:
                pass
        forward(signal.SIGTERM, None)
        deadline = time.monotonic() + grace
        while others_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
